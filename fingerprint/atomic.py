"""Durable, atomic file writes: a reader never sees a half-written file.

The file is written under a temporary name in the same directory, flushed to disk and moved into
place with ``os.replace`` (atomic on POSIX filesystems); the directory is fsync'd so the rename
itself survives a crash. Used for every file the toolkit writes whole: the index manifest, watermark
keys, probe files, marked files and reports.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (a directory's entry list must reach disk for renames)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically; ``mode`` applies from the first byte written, so a
    secret never sits in a world-readable temporary file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_path(target.parent)
