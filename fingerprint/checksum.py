"""The sha256 of a file's bytes, read in blocks: the one checksum every stored file carries
(index segments and marks, embedding caches, reference packs, provenance records)."""

from __future__ import annotations

import hashlib
import os

BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file at ``path``; OSError if it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(BLOCK), b""):
            digest.update(chunk)
    return digest.hexdigest()
