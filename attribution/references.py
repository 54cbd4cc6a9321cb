"""Reference models' outputs, from the index or from files, in one shape for calibration.

Attribution is relative: a suspect is compared with independent models answering the same
prompts. Whether the references were stored in the index (``fingerprint reference add``) or given
for one call (``--reference``), calibration needs the same things from them: prompt keys, MinHash
signatures and style fingerprints (embeddings only where they were computed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from attribution.errors import ReferenceMatchError, ReferenceNameError
from fingerprint.fingerprinter import Fingerprinter
from fingerprint.io import read_records
from fingerprint.normalize import prompt_hashes
from fingerprint.records import FieldMap, ResponseRecord
from index.reference_meta import check_reference_meta, meta_matches
from index.store import FingerprintIndex, SegmentGroup


@dataclass(frozen=True)
class ReferenceData:
    """One reference model's responses: row i of every array is response i."""

    name: str
    prompt_hashes: tuple[str | None, ...]
    signatures: np.ndarray
    style: Any  # scipy.sparse CSR
    embeddings: np.ndarray | None = None
    # rows -> their texts, for showing what a reference answered (None: texts not available)
    texts: Callable[[Sequence[int]], dict[int, str | None]] | None = None
    # what is known of the model (era, base_model, vendor, ...: index.reference_meta)
    meta: Mapping[str, str] = field(default_factory=dict, compare=False)
    _first_rows: dict[str, int] | None = field(default=None, init=False, repr=False,
                                               compare=False)

    def __len__(self) -> int:
        return len(self.prompt_hashes)

    def first_row_by_prompt(self) -> dict[str, int]:
        """Prompt hash -> its first row. Made once: calibration, the teacher check and every
        strongest pair's reference answers all ask (do not change the returned dict)."""
        if self._first_rows is None:
            out: dict[str, int] = {}
            for row, h in enumerate(self.prompt_hashes):
                if h is not None and h not in out:
                    out[h] = row
            object.__setattr__(self, "_first_rows", out)  # frozen: a cache, not state
        return self._first_rows


def reference_from_group(name: str, group: SegmentGroup,
                         meta: Mapping[str, str] | None = None) -> ReferenceData:
    rows = list(range(len(group)))
    hashes: list[str | None] = [None] * len(rows)
    for h, hash_rows in group.prompt_hashes().items():
        for row in hash_rows:
            hashes[row] = h
    return ReferenceData(name, tuple(hashes), group.signatures(rows), group.style(rows),
                         group.embeddings(rows) if group.has_embeddings else None,
                         texts=lambda wanted: {r: s.response
                                               for r, s in group.responses(wanted).items()},
                         meta=dict(meta or {}))


def reference_from_records(name: str, records: Sequence[ResponseRecord],
                           fingerprinter: Fingerprinter) -> ReferenceData:
    texts = [r.response for r in records]
    fps = fingerprinter.fingerprint(texts, embed=False)
    hashes = prompt_hashes((r.prompt for r in records), fingerprinter.config.normalizer_version)
    return ReferenceData(name, tuple(hashes), fps.signatures, fps.style,
                         texts=lambda wanted: {r: texts[r] for r in wanted})


def reference_from_file(path: str | os.PathLike[str], fingerprinter: Fingerprinter,
                        fields: FieldMap = FieldMap(), name: str | None = None) -> ReferenceData:
    """A reference model's outputs file; its name defaults to the file name without suffixes."""
    label = name or reference_name(path)
    return reference_from_records(label, list(read_records(path, fields)), fingerprinter)


def reference_name(path: str | os.PathLike[str]) -> str:
    """The name a reference file is known by: its file name without suffixes."""
    return Path(str(path)).name.split(".")[0]


def load_reference_files(paths: Sequence[str | os.PathLike[str]], fingerprinter: Fingerprinter,
                         fields: FieldMap = FieldMap()) -> list[ReferenceData]:
    """Reference models given as files (``--reference``), each named after its file.

    Two files with one name (``a/claude.jsonl`` and ``b/claude.jsonl``) would be one class with
    two sets of answers: refused before anything is read, naming both files.
    """
    seen: dict[str, str] = {}
    for path in paths:
        name = reference_name(path)
        if name in seen:
            raise ReferenceNameError(f"reference files {seen[name]} and {path} are both named "
                                     f"{name!r} (a reference is named after its file): rename "
                                     f"one of them")
        seen[name] = str(path)
    return [reference_from_file(p, fingerprinter, fields) for p in paths]


def stored_references(indexes: Sequence[FingerprintIndex]) -> list[ReferenceData]:
    """The reference sets stored in any of the indexes (the first of each name)."""
    stored: dict[str, ReferenceData] = {}
    for idx in indexes:
        for name, group in idx.references.items():
            stored.setdefault(name, reference_from_group(
                name, group, idx.manifest.reference_meta.get(name)))
    return list(stored.values())


def choose_references(indexes: Sequence[FingerprintIndex], fingerprinter: Fingerprinter,
                      references: Sequence[ReferenceData] | None = None,
                      files: Sequence[str | os.PathLike[str]] = (),
                      match: Mapping[str, str] | None = None) -> list[ReferenceData]:
    """The references of one call: ``files`` if given (each named after its file), else
    ``references`` (``[]``: none), else those stored in the indexes; with ``match`` (facts such
    as ``{"era": "2023"}``), only those whose facts match all of it (matched_references)."""
    if files:
        if match:
            raise ReferenceMatchError("references given as files carry no facts to match "
                                      "(era, base model, ...): store them with 'fingerprint "
                                      "reference add --era ...' and match those")
        return load_reference_files(files, fingerprinter)
    chosen = list(references) if references is not None else stored_references(indexes)
    return matched_references(chosen, match) if match else chosen


def matched_references(references: Sequence[ReferenceData], match: Mapping[str, str]
                       ) -> list[ReferenceData]:
    """The references whose facts match ``match`` (index.reference_meta.meta_matches).

    Why: the rank p-value asks how unusual the suspect is among models like it; comparing a 2023
    LLaMA fine-tune with 2024 vendor models measures the era as much as the teacher. A reference
    that does not state a fact does not match it. None matching is an error that says what the
    references do state, never a silent fall-back to all of them."""
    wanted = check_reference_meta(match, "--match-references")
    kept = [r for r in references if meta_matches(r.meta, wanted)]
    if kept:
        return kept
    stated = {k: sorted({r.meta[k] for r in references if k in r.meta}) for k in wanted}
    said = "; ".join(f"{k}: {', '.join(v) if v else 'stated by none'}"
                     for k, v in stated.items())
    want = ", ".join(f"{k}={v}" for k, v in wanted.items())
    raise ReferenceMatchError(f"none of the {len(references)} references has {want} ({said}); "
                              f"add facts with 'fingerprint reference describe'")


def match_note(references: Sequence[ReferenceData], match: Mapping[str, str] | None) -> str | None:
    """One line for a result: which references the null was drawn from, and why."""
    if not match:
        return None
    want = ", ".join(f"{k}={v}" for k, v in sorted(match.items()))
    return (f"the references are the {len(references)} matching {want} "
            f"({', '.join(r.name for r in references)}): the null is drawn from models with "
            f"these facts only")


def check_unique_names(references: Sequence[ReferenceData]) -> None:
    names = [r.name for r in references]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ReferenceNameError(f"reference names must be unique; given twice: "
                                 f"{', '.join(duplicates)}")
