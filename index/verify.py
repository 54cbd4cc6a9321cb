"""Checking an index against its manifest, file by file: what ``fingerprint verify`` runs.

Reading checks each file's size on open and its sha256 on first use, so damage is found when a
file is needed; a file no command happened to need could stay damaged unnoticed. ``verify_index``
reads everything: every file of every segment (served and reference sets) against its recorded
size and sha256, then each one's structure (array shapes and types, FAISS index sizes, metadata
rows), and reports every problem found rather than stopping at the first.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.errors import IndexStoreError
from index.manifest import read_manifest
from index.marks import MarksReader
from index.segment import Segment
from index.store import REFERENCES_DIR, SEGMENTS_DIR


@dataclass
class VerifyReport:
    path: str
    segments: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "segments": self.segments,
                "files": self.files, "bytes": self.bytes, "problems": list(self.problems)}


def verify_index(path: str | os.PathLike[str]) -> VerifyReport:
    """Every file of every segment checked; a manifest that cannot be read raises."""
    root = Path(path)
    manifest = read_manifest(root)
    report = VerifyReport(str(root))
    groups = [(root / SEGMENTS_DIR, manifest.segments)]
    groups += [(root / REFERENCES_DIR / name, entries)
               for name, entries in sorted(manifest.references.items())]
    for directory, entries in groups:
        for entry in entries:
            report.segments += 1
            report.files += len(entry.files)
            report.bytes += entry.bytes
            report.problems += _segment_problems(directory / entry.name, entry, manifest.config)
    if manifest.marks is not None:
        report.files += 1
        report.bytes += manifest.marks.bytes
        report.problems += _marks_problems(root, manifest)
    return report


def _marks_problems(root: Path, manifest: Any) -> list[str]:
    """The marks file (index.marks): size, sha256, a readable table holding the number of marks
    the manifest lists, each on a served row."""
    entry = manifest.marks
    try:
        reader = MarksReader(root, entry)
    except IndexStoreError as exc:
        return [str(exc)]
    try:
        count, top = reader.count(), reader.max_row()
    except IndexStoreError as exc:
        return [str(exc)]
    finally:
        reader.close()
    problems = []
    if count != entry.marks:
        problems.append(f"{reader.path}: {count} marks, the manifest lists {entry.marks}")
    if top is not None and top >= manifest.rows:
        problems.append(f"{reader.path}: marks row {top}, but the index serves rows 0 to "
                        f"{manifest.rows - 1}")
    return problems


def _segment_problems(directory: Path, entry: Any, config: Any) -> list[str]:
    try:
        segment = Segment(directory, entry, config.num_perm, config.style_features)
    except IndexStoreError as exc:  # a file missing or of the wrong size
        return [str(exc)]
    problems = []
    try:
        for name in segment.files:  # checksums first: each damaged file is named
            try:
                segment.verify_file(name)
            except IndexStoreError as exc:
                problems.append(str(exc))
        if problems:
            return problems
        checks = [lambda: segment.signatures, lambda: segment.style, lambda: segment.metadata]
        if segment.has_embeddings:
            checks += [lambda: segment.embedding_index, lambda: segment.vectors]
        checks.append(lambda: segment.bands if segment.approximate else segment.code_index)
        for check in checks:
            try:
                check()
            except IndexStoreError as exc:
                problems.append(str(exc))
        if problems:
            return problems
        try:
            rows = segment.metadata.count()
        except sqlite3.DatabaseError as exc:
            return [f"{directory / 'metadata.sqlite'}: not a readable database ({exc})"]
        if rows != entry.rows:
            problems.append(f"{directory / 'metadata.sqlite'}: {rows} rows, "
                            f"the manifest lists {entry.rows}")
    finally:
        segment.close()
    return problems
