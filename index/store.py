"""Opening an index for reading, and what it answers: search, prompt lookup, stored rows.

Served responses and every named reference set are each a ``SegmentGroup``: a list of segments
with one row numbering, which is all that search, prompt lookup and row access need.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from fingerprint.config import FingerprintConfig
from fingerprint.fingerprinter import Fingerprinter
from index.errors import ConfigMismatchError, IndexCorruptedError, IndexStoreError
from index.manifest import Manifest, SegmentEntry, read_manifest
from index.marks import MarksReader, check_label
from index.metadata import StoredResponse
from index.search import Hits, search_embeddings, search_minhash
from index.segment import Segment

SEGMENTS_DIR = "segments"
REFERENCES_DIR = "references"


class SegmentGroup:
    """Segments that share one row numbering: the served responses, or one reference set."""

    def __init__(self, directory: Path, entries: Sequence[SegmentEntry],
                 config: FingerprintConfig, embedding_dim: int | None):
        self.dir = directory
        self.config = config
        self.embedding_dim = embedding_dim
        self.segments = [Segment(directory / e.name, e, config.num_perm, config.style_features)
                         for e in entries]

    def __len__(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def has_embeddings(self) -> bool:
        return all(s.has_embeddings for s in self.segments)

    def close(self) -> None:
        for seg in self.segments:
            seg.close()

    def verify(self) -> None:
        """Check every segment file against its sha256 in the manifest."""
        for seg in self.segments:
            seg.verify()

    def search_minhash(self, signatures: np.ndarray, k: int = 10) -> Hits:
        return search_minhash(self.segments, signatures, k)

    def search_embeddings(self, vectors: np.ndarray, k: int = 10,
                          nprobe: int | None = None) -> Hits:
        return search_embeddings([s for s in self.segments if s.has_embeddings], vectors, k,
                                 nprobe)

    def rows_for_prompts(self, prompt_hashes: Iterable[str]) -> dict[str, list[int]]:
        hashes = list(prompt_hashes)
        out: dict[str, list[int]] = {}
        for seg in self.segments:
            for h, rows in seg.metadata.rows_for_prompts(hashes).items():
                out.setdefault(h, []).extend(rows)
        return out

    def prompt_hashes(self) -> dict[str, list[int]]:
        """Every stored prompt hash with its rows (responses without a prompt are left out)."""
        out: dict[str, list[int]] = {}
        for seg in self.segments:
            for h, rows in seg.metadata.prompt_hashes().items():
                out.setdefault(h, []).extend(rows)
        return out

    def rows_for_accounts(self, accounts: Iterable[str]) -> dict[str, list[int]]:
        """The rows served to each account (stored ``account`` metadata), in row order."""
        wanted = list(accounts)
        out: dict[str, list[int]] = {}
        for seg in self.segments:
            for account, rows in seg.metadata.rows_for_accounts(wanted).items():
                out.setdefault(account, []).extend(rows)
        return out

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        for seg in self.segments:
            found |= seg.metadata.existing_ids(ids)
        return found

    def signatures(self, rows: Sequence[int]) -> np.ndarray:
        out = np.zeros((len(rows), self.config.num_perm), dtype=np.uint32)
        for i, seg, local in self._locate(rows):
            out[i] = seg.signatures[local]
        return out

    def embeddings(self, rows: Sequence[int]) -> np.ndarray:
        if not self.has_embeddings:
            raise IndexStoreError(f"{self.dir}: stored without embeddings")
        out = np.zeros((len(rows), self.embedding_dim or 0), dtype=np.float32)
        for i, seg, local in self._locate(rows):
            out[i] = seg.embeddings([local])[0]
        return out

    def style(self, rows: Sequence[int]):
        """Style fingerprints of the given rows, CSR, in the given order."""
        from scipy import sparse

        wanted = np.asarray(rows, dtype=np.int64)
        parts, positions = [], []
        for seg in self.segments:
            mine = np.flatnonzero((wanted >= seg.first_row) & (wanted < seg.first_row + seg.rows))
            if mine.size:
                parts.append(seg.style[wanted[mine] - seg.first_row])
                positions.append(mine)
        found = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        if found.size != wanted.size:
            raise IndexCorruptedError(f"{self.dir}: some of rows {wanted.tolist()[:5]}... are "
                                      f"in no segment")
        if not parts:
            return sparse.csr_matrix((0, self.config.style_features), dtype=np.float32)
        return sparse.vstack(parts, format="csr")[np.argsort(found)]

    def responses(self, rows: Iterable[int]) -> dict[int, StoredResponse]:
        wanted = [int(r) for r in rows]
        out: dict[int, StoredResponse] = {}
        for seg in self.segments:
            mine = [r for r in wanted if seg.contains(r)]
            if mine:
                out.update(seg.metadata.responses(mine))
        return out

    def _locate(self, rows: Sequence[int]) -> Iterable[tuple[int, Segment, int]]:
        starts = np.array([s.first_row for s in self.segments], dtype=np.int64)
        for i, row in enumerate(rows):
            pos = int(np.searchsorted(starts, row, side="right")) - 1
            if pos < 0 or not self.segments[pos].contains(int(row)):
                raise IndexCorruptedError(f"{self.dir}: row {row} is in no segment")
            seg = self.segments[pos]
            yield i, seg, int(row) - seg.first_row


class FingerprintIndex(SegmentGroup):
    """A read-only snapshot of an index: served responses (this group) and named references."""

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path / SEGMENTS_DIR, manifest.segments, manifest.config,
                         manifest.embedding_dim)
        self.path = path
        self.manifest = manifest
        self._marks: MarksReader | None = None
        self.references = {name: SegmentGroup(path / REFERENCES_DIR / name, entries,
                                              manifest.config, manifest.embedding_dim)
                           for name, entries in sorted(manifest.references.items())}

    def __len__(self) -> int:
        return self.manifest.rows

    def __enter__(self) -> "FingerprintIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        super().close()
        for group in self.references.values():
            group.close()
        if self._marks is not None:
            self._marks.close()
            self._marks = None

    def marked_rows(self, label: str) -> list[int]:
        """The served rows carrying mark ``label`` (index.marks), in row order; none in an
        index without marks. Attribution and sharing select rows with it."""
        reader = self._marks_reader()
        return [] if reader is None else reader.rows(check_label(label))

    def mark_labels(self) -> dict[str, int]:
        """Every mark label with its number of marked rows."""
        reader = self._marks_reader()
        return {} if reader is None else reader.labels()

    def marked_accounts(self, label: str) -> dict[str, int]:
        """The accounts whose rows carry ``label``, each with its number of marked rows."""
        reader = self._marks_reader()
        return {} if reader is None else reader.rows_by_account(check_label(label))

    def _marks_reader(self) -> MarksReader | None:
        if self.manifest.marks is None:
            return None
        if self._marks is None:
            self._marks = MarksReader(self.path, self.manifest.marks)
        return self._marks

    def info(self) -> dict[str, Any]:
        m = self.manifest
        file_bytes: dict[str, int] = {}
        for seg in m.segments:
            for f in seg.files:
                file_bytes[f.name] = file_bytes.get(f.name, 0) + f.bytes
        return {
            "path": str(self.path),
            "format_version": m.format_version,
            "responses": m.rows,
            "skipped_empty": m.skipped_empty,
            "skipped_duplicates": sum(s.skipped_duplicates for s in m.segments),
            "embedding_dim": m.embedding_dim,
            "created_at": m.created_at,
            "updated_at": m.updated_at,
            "config": m.config.to_dict(),
            "versions": m.versions,
            "bytes": {"total": sum(file_bytes.values()), **file_bytes},
            "segments": [_segment_info(s) for s in m.segments],
            "references": {name: {"responses": sum(s.rows for s in segs),
                                  "bytes": sum(s.bytes for s in segs),
                                  "embeddings": all(s.embedding_index != "none" for s in segs),
                                  "meta": dict(m.reference_meta.get(name, {})),
                                  "segments": [_segment_info(s) for s in segs]}
                           for name, segs in sorted(m.references.items())},
        }


def _segment_info(s: SegmentEntry) -> dict[str, Any]:
    return {"name": s.name, "rows": s.rows, "first_row": s.first_row, "bytes": s.bytes,
            "created_at": s.created_at, "sources": list(s.sources),
            "skipped_empty": s.skipped_empty, "skipped_duplicates": s.skipped_duplicates,
            "store_text": s.store_text, "embedding_index": s.embedding_index,
            "minhash_index": s.minhash_index}


def open_index(path: str | os.PathLike[str],
               expected_config: FingerprintConfig | None = None) -> FingerprintIndex:
    """Open for reading; with ``expected_config``, any difference is a ConfigMismatchError."""
    root = Path(path)
    manifest = read_manifest(root)
    if expected_config is not None:
        differences = manifest.config.differences(expected_config)
        if differences:
            raise ConfigMismatchError(str(root), differences)
    return FingerprintIndex(root, manifest)


def fingerprinter_for(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None,
                      batch_size: int = 32) -> Fingerprinter:
    """A Fingerprinter with the index's config (the only one whose fingerprints compare with
    what it stores); ``overrides`` replace fields, which a writer then checks against the index
    and refuses, naming the differences."""
    config = read_manifest(Path(path)).config
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return Fingerprinter(config, batch_size=batch_size)
