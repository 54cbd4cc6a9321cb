"""Reference models' outputs, from the index or from files, in one shape for calibration.

Attribution is relative: a suspect is compared with independent models answering the same
prompts. Whether the references were stored in the index (``fingerprint reference add``) or given
for one call (``--reference``), calibration needs the same things from them: prompt keys, MinHash
signatures and style fingerprints (embeddings only where they were computed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fingerprint.fingerprinter import Fingerprinter
from fingerprint.normalize import prompt_hash
from fingerprint.records import FieldMap, ResponseRecord, read_records
from index.store import SegmentGroup


@dataclass(frozen=True)
class ReferenceData:
    """One reference model's responses: row i of every array is response i."""

    name: str
    prompt_hashes: tuple[str | None, ...]
    signatures: np.ndarray
    style: Any  # scipy.sparse CSR
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.prompt_hashes)

    def first_row_by_prompt(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row, h in enumerate(self.prompt_hashes):
            if h is not None and h not in out:
                out[h] = row
        return out


def reference_from_group(name: str, group: SegmentGroup) -> ReferenceData:
    rows = list(range(len(group)))
    hashes: list[str | None] = [None] * len(rows)
    for h, hash_rows in group.prompt_hashes().items():
        for row in hash_rows:
            hashes[row] = h
    return ReferenceData(name, tuple(hashes), group.signatures(rows), group.style(rows),
                         group.embeddings(rows) if group.has_embeddings else None)


def reference_from_records(name: str, records: Sequence[ResponseRecord],
                           fingerprinter: Fingerprinter) -> ReferenceData:
    texts = [r.response for r in records]
    fps = fingerprinter.fingerprint(texts, embed=False)
    version = fingerprinter.config.normalizer_version
    hashes = tuple(None if r.prompt is None else prompt_hash(r.prompt, version) for r in records)
    return ReferenceData(name, hashes, fps.signatures, fps.style)


def reference_from_file(path: str | os.PathLike[str], fingerprinter: Fingerprinter,
                        fields: FieldMap = FieldMap(), name: str | None = None) -> ReferenceData:
    """A reference model's outputs file; its name defaults to the file name without suffixes."""
    label = name or Path(str(path)).name.split(".")[0]
    return reference_from_records(label, list(read_records(path, fields)), fingerprinter)
