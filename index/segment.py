"""A segment: one immutable, self-checking batch of fingerprints on disk.

Segments are append-only and never modified after their manifest entry is written, which is what
makes the manifest checksums meaningful and lets readers memory-map files without locking.

Files of a segment directory:
- ``signatures.npy``: MinHash signatures, ``<u4`` (little-endian uint32), shape (rows, num_perm);
- ``embeddings.faiss``: FAISS ``IndexIDMap2`` over the L2-normalised embeddings, keyed by row
  (absent when the segment was stored without embeddings, e.g. a reference set);
- ``minhash_codes.faiss``: FAISS ``IndexBinaryIDMap`` over the 1-bit MinHash codes, keyed by row;
- ``metadata.sqlite``: row -> response id, prompt hash, model, timestamp, account (and texts);
- ``style_indptr.npy`` (``<i8``), ``style_indices.npy`` (``<i4``), ``style_counts.npy``
  (``<f4``): the style fingerprints as a CSR matrix (rows, style_features).
"""

from __future__ import annotations

import shutil
from functools import cached_property
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from fingerprint.fingerprinter import Fingerprints
from fingerprint.minhash import SIGNATURE_DTYPE
from fingerprint.records import ResponseRecord
from fingerprint.style import COUNT_DTYPE, INDEX_DTYPE
from index.codes import one_bit_codes
from index.errors import IndexCorruptedError, IndexStoreError
from index.files import fsync_path, sha256_file
from index.manifest import FileEntry, SegmentEntry, now_iso
from index.metadata import MetadataReader, MetadataWriter

SIGNATURES = "signatures.npy"
EMBEDDINGS = "embeddings.faiss"
CODES = "minhash_codes.faiss"
METADATA = "metadata.sqlite"
STYLE_INDPTR = "style_indptr.npy"
STYLE_INDICES = "style_indices.npy"
STYLE_COUNTS = "style_counts.npy"
SEGMENT_FILES = (SIGNATURES, EMBEDDINGS, CODES, METADATA, STYLE_INDPTR, STYLE_INDICES,
                 STYLE_COUNTS)
NO_EMBEDDINGS = "none"

STYLE_INDPTR_DTYPE = np.dtype("<i8")

EMBEDDING_INDEX_TYPE = "IDMap2,Flat(inner product)"
MINHASH_INDEX_TYPE = "BinaryIDMap,BinaryFlat(1-bit minhash)"


class SegmentWriter:
    """Builds a segment inside a private directory; nothing is visible until ``finish``."""

    def __init__(self, directory: Path, name: str, first_row: int, num_perm: int,
                 embedding_dim: int | None, style_features: int, store_text: bool):
        self.dir = directory
        self.name = name
        self.first_row = first_row
        self.num_perm = num_perm
        self.store_text = store_text
        self.rows = 0
        self.sources: list[str] = []
        self._signatures: list[np.ndarray] = []
        self._style: list = []
        self.style_features = style_features
        self._embeddings = (None if embedding_dim is None
                            else faiss.IndexIDMap2(faiss.IndexFlatIP(embedding_dim)))
        self._codes = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(num_perm))
        self.dir.mkdir(parents=True)
        self._metadata = MetadataWriter(self.dir / METADATA, store_text)

    def add(self, records: Sequence[ResponseRecord], fingerprints: Fingerprints,
            prompt_hashes: Sequence[str | None]) -> None:
        n = len(records)
        if len(fingerprints) != n or len(prompt_hashes) != n:
            raise ValueError("records, fingerprints and prompt hashes must have equal lengths")
        if fingerprints.signatures.shape[1] != self.num_perm:
            raise ValueError(f"signatures have {fingerprints.signatures.shape[1]} permutations, "
                             f"the index {self.num_perm}")
        ids = np.arange(self.first_row + self.rows, self.first_row + self.rows + n, dtype=np.int64)
        signatures = np.ascontiguousarray(fingerprints.signatures, dtype=SIGNATURE_DTYPE)
        self._signatures.append(signatures)
        if fingerprints.style.shape != (n, self.style_features):
            raise ValueError(f"style fingerprints have shape {fingerprints.style.shape}, "
                             f"expected {(n, self.style_features)}")
        self._style.append(fingerprints.style)
        if self._embeddings is not None:
            if fingerprints.embeddings is None:
                raise ValueError("this segment stores embeddings, but none were given")
            self._embeddings.add_with_ids(np.ascontiguousarray(fingerprints.embeddings,
                                                               dtype=np.float32), ids)
        self._codes.add_with_ids(one_bit_codes(signatures), ids)
        self._metadata.add(self.first_row + self.rows, records, prompt_hashes)
        self.rows += n
        for r in records:
            if r.source not in self.sources:
                self.sources.append(r.source)

    def finish(self, skipped_empty: int, skipped_duplicates: int) -> SegmentEntry:
        """Write every file, flush it to disk and describe it for the manifest."""
        signatures = (np.concatenate(self._signatures) if self._signatures
                      else np.zeros((0, self.num_perm), dtype=SIGNATURE_DTYPE))
        np.save(self.dir / SIGNATURES, signatures.astype(SIGNATURE_DTYPE, copy=False),
                allow_pickle=False)
        self._write_style()
        if self._embeddings is not None:
            faiss.write_index(self._embeddings, str(self.dir / EMBEDDINGS))
        faiss.write_index_binary(self._codes, str(self.dir / CODES))
        self._metadata.close()
        files = []
        for name in SEGMENT_FILES:
            path = self.dir / name
            if name == EMBEDDINGS and self._embeddings is None:
                continue
            fsync_path(path)
            files.append(FileEntry(name, path.stat().st_size, sha256_file(path)))
        fsync_path(self.dir)
        return SegmentEntry(
            name=self.name, first_row=self.first_row, rows=self.rows, created_at=now_iso(),
            sources=tuple(self.sources), skipped_empty=skipped_empty,
            skipped_duplicates=skipped_duplicates, store_text=self.store_text,
            embedding_index=(EMBEDDING_INDEX_TYPE if self._embeddings is not None
                             else NO_EMBEDDINGS),
            minhash_index=MINHASH_INDEX_TYPE,
            files=tuple(files))

    def _write_style(self) -> None:
        from scipy import sparse

        style = (sparse.vstack(self._style, format="csr") if self._style
                 else sparse.csr_matrix((0, self.style_features), dtype=np.float32))
        np.save(self.dir / STYLE_INDPTR, style.indptr.astype(STYLE_INDPTR_DTYPE),
                allow_pickle=False)
        np.save(self.dir / STYLE_INDICES, style.indices.astype(INDEX_DTYPE), allow_pickle=False)
        np.save(self.dir / STYLE_COUNTS, style.data.astype(COUNT_DTYPE), allow_pickle=False)

    def abort(self) -> None:
        try:
            self._metadata.close()
        except Exception:  # the directory is removed anyway
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Segment:
    """Read side of a segment. Files are checked against the manifest before first use."""

    def __init__(self, directory: Path, entry: SegmentEntry, num_perm: int, style_features: int):
        self.dir = directory
        self.entry = entry
        self.num_perm = num_perm
        self.style_features = style_features
        self._verified = False
        for name in self.files:
            expected = entry.file(name)
            path = self.dir / name
            if not path.is_file():
                raise IndexCorruptedError(f"{path}: file is missing (segment {entry.name} lists "
                                          f"{expected.bytes} bytes)")
            size = path.stat().st_size
            if size != expected.bytes:
                raise IndexCorruptedError(f"{path}: size is {size} bytes, expected "
                                          f"{expected.bytes} (truncated or overwritten)")

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(n for n in SEGMENT_FILES if n != EMBEDDINGS or self.has_embeddings)

    @property
    def has_embeddings(self) -> bool:
        return self.entry.embedding_index != NO_EMBEDDINGS

    @property
    def first_row(self) -> int:
        return self.entry.first_row

    @property
    def rows(self) -> int:
        return self.entry.rows

    def verify(self) -> None:
        """Compare every file with its recorded sha256 (reads the whole segment once)."""
        if self._verified:
            return
        for name in self.files:
            expected = self.entry.file(name)
            actual = sha256_file(self.dir / name)
            if actual != expected.sha256:
                raise IndexCorruptedError(f"{self.dir / name}: checksum mismatch (expected sha256 "
                                          f"{expected.sha256}, actual {actual})")
        self._verified = True

    @cached_property
    def signatures(self) -> np.ndarray:
        self.verify()
        array = np.load(self.dir / SIGNATURES, mmap_mode="r", allow_pickle=False)
        expected = (self.rows, self.num_perm)
        if array.dtype != SIGNATURE_DTYPE or array.shape != expected:
            raise IndexCorruptedError(f"{self.dir / SIGNATURES}: expected {SIGNATURE_DTYPE} "
                                      f"{expected}, found {array.dtype} {array.shape}")
        return array

    @cached_property
    def style(self):
        """The style fingerprints, CSR (rows, style_features), arrays memory-mapped."""
        from scipy import sparse

        self.verify()
        parts = []
        for name, dtype in ((STYLE_COUNTS, COUNT_DTYPE), (STYLE_INDICES, INDEX_DTYPE),
                            (STYLE_INDPTR, STYLE_INDPTR_DTYPE)):
            array = np.load(self.dir / name, mmap_mode="r", allow_pickle=False)
            if array.dtype != dtype or array.ndim != 1:
                raise IndexCorruptedError(f"{self.dir / name}: expected 1-d {dtype}, found "
                                          f"{array.ndim}-d {array.dtype}")
            parts.append(array)
        counts, indices, indptr = parts
        if len(indptr) != self.rows + 1 or indptr[-1] != len(counts) or \
                len(indices) != len(counts):
            raise IndexCorruptedError(f"{self.dir}: style arrays do not form a "
                                      f"({self.rows} x {self.style_features}) matrix")
        return sparse.csr_matrix((counts, indices, indptr),
                                 shape=(self.rows, self.style_features))

    @cached_property
    def embedding_index(self) -> faiss.Index:
        if not self.has_embeddings:
            raise IndexStoreError(f"{self.dir}: this segment was stored without embeddings")
        self.verify()
        return self._checked(faiss.read_index, EMBEDDINGS)

    @cached_property
    def code_index(self) -> faiss.IndexBinary:
        self.verify()
        return self._checked(faiss.read_index_binary, CODES)

    @cached_property
    def metadata(self) -> MetadataReader:
        self.verify()
        return MetadataReader(self.dir / METADATA)

    def _checked(self, reader, name: str):
        try:
            index = reader(str(self.dir / name))
        except RuntimeError as exc:
            raise IndexCorruptedError(f"{self.dir / name}: FAISS cannot read it ({exc})") from None
        if index.ntotal != self.rows:
            raise IndexCorruptedError(f"{self.dir / name}: expected {self.rows} vectors, "
                                      f"found {index.ntotal}")
        return index

    def local(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64) - self.first_row

    def contains(self, row: int) -> bool:
        return self.first_row <= row < self.first_row + self.rows

    def embeddings(self, rows: Sequence[int]) -> np.ndarray:
        index = self.embedding_index
        if not len(rows):
            return np.zeros((0, index.d), dtype=np.float32)
        return np.stack([index.reconstruct(int(r)) for r in rows]).astype(np.float32)

    def close(self) -> None:
        if "metadata" in self.__dict__:
            self.metadata.close()
