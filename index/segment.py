"""A segment: one immutable, self-checking batch of fingerprints on disk.

Segments are append-only and never modified after their manifest entry is written, which is what
makes the manifest checksums meaningful and lets readers memory-map files without locking.

Files of a segment directory:
- ``signatures.npy``: MinHash signatures, ``<u4`` (little-endian uint32), shape (rows, num_perm);
- ``embeddings.npy``: the L2-normalised embeddings, ``<f2``, shape (rows, dim) (absent when the
  segment was stored without embeddings, e.g. a reference set);
- ``embeddings.faiss``: the FAISS search index over those embeddings (see below);
- ``minhash_codes.faiss``: a FAISS binary index over the 1-bit MinHash codes (small segments), or
  ``minhash_bands.npy``: sorted single signature values with their rows (large segments);
- ``metadata.sqlite``: row -> response id, prompt hash, model, timestamp, account (and texts);
- ``style_indptr.npy`` (``<i8``), ``style_indices.npy`` (``<i4``), ``style_counts.npy``
  (``<f4``): the style fingerprints as a CSR matrix (rows, style_features).

The ``.npy`` files are written block by block as the batch streams in and are memory-mapped when
read, so neither writing nor searching holds a segment's full vectors in memory. Only the two
FAISS indexes are loaded, and their type follows the segment's size: below ``ANN_MIN_ROWS`` rows
exact ones (flat inner product, flat Hamming); from there on compressed, approximate ones
(IVF with 4-bit fast-scan PQ for embeddings; for MinHash, an inverted index on single signature
values) whose candidates are re-ranked exactly on the memory-mapped vectors and signatures. The
chosen types are recorded in the manifest. Writing a segment is index.segment_writer's.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from fingerprint.minhash import SIGNATURE_DTYPE
from fingerprint.style import COUNT_DTYPE, INDEX_DTYPE
from index.errors import IndexCorruptedError, IndexStoreError
from index.files import sha256_file, sha256_files
from index.manifest import SegmentEntry
from index.metadata import MetadataReader

SIGNATURES = "signatures.npy"
EMBEDDING_VECTORS = "embeddings.npy"
EMBEDDINGS = "embeddings.faiss"
CODES = "minhash_codes.faiss"
BANDS = "minhash_bands.npy"
METADATA = "metadata.sqlite"
STYLE_INDPTR = "style_indptr.npy"
STYLE_INDICES = "style_indices.npy"
STYLE_COUNTS = "style_counts.npy"
SEGMENT_FILES = (SIGNATURES, EMBEDDING_VECTORS, EMBEDDINGS, CODES, BANDS, METADATA,
                 STYLE_INDPTR, STYLE_INDICES, STYLE_COUNTS)
EMBEDDING_FILES = (EMBEDDING_VECTORS, EMBEDDINGS)
NO_EMBEDDINGS = "none"

STYLE_INDPTR_DTYPE = np.dtype("<i8")
BAND_DTYPE = np.dtype("<u4")
VECTOR_DTYPE = np.dtype("<f2")  # half precision: cosines within 1e-3, half the disk

# From this many rows a segment gets approximate (IVF) indexes instead of exact (flat) ones.
ANN_MIN_ROWS = 100_000

FLAT_EMBEDDINGS = "Flat(inner product)"
FLAT_CODES = "BinaryFlat(1-bit minhash)"
# Large segments find MinHash candidates by exact equality of single signature values (classic
# LSH with bands of one row): a near-duplicate at Jaccard J shares at least one of B values with
# probability 1 - (1 - J)^B (0.95 at J = 0.63 for B = 3). Each band costs 8 bytes per response
# (sorted value, row). k-means lists over 1-bit codes (BinaryIVF) scattered such near-duplicates:
# recall 0.78 at 1M rows with 256 of 4,096 lists probed (benchmarks/README.md).
MINHASH_BANDS = 3
BANDED = f"Bands{MINHASH_BANDS}(minhash values)"


class Segment:
    """Read side of a segment. Sizes are checked on open, each file's sha256 on its first use."""

    def __init__(self, directory: Path, entry: SegmentEntry, num_perm: int, style_features: int):
        self.dir = directory
        self.entry = entry
        self.num_perm = num_perm
        self.style_features = style_features
        self._verified: set[str] = set()
        for expected in entry.files:
            path = self.dir / expected.name
            if not path.is_file():
                raise IndexCorruptedError(f"{path}: file is missing (segment {entry.name} lists "
                                          f"{expected.bytes} bytes)")
            size = path.stat().st_size
            if size != expected.bytes:
                raise IndexCorruptedError(f"{path}: size is {size} bytes, expected "
                                          f"{expected.bytes} (truncated or overwritten)")

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.entry.files)

    @property
    def has_embeddings(self) -> bool:
        return self.entry.embedding_index != NO_EMBEDDINGS

    @property
    def first_row(self) -> int:
        return self.entry.first_row

    @property
    def rows(self) -> int:
        return self.entry.rows

    @property
    def approximate(self) -> bool:
        """True for a large segment: approximate indexes, candidates re-ranked exactly."""
        return self.entry.minhash_index == BANDED

    def verify(self) -> None:
        """Compare every file with its recorded sha256 (reads the whole segment once)."""
        names = [name for name in self.files if name not in self._verified]
        for name, actual in zip(names, sha256_files([self.dir / n for n in names])):
            self._check(name, actual)

    def verify_file(self, name: str) -> None:
        """Compare one file with its recorded sha256."""
        self._path(name)

    def _path(self, name: str) -> Path:
        """The file's path, after checking its sha256 against the manifest (once per process)."""
        if name not in self._verified:
            self._check(name, sha256_file(self.dir / name))
        return self.dir / name

    def _check(self, name: str, actual: str) -> None:
        expected = self.entry.file(name)
        if actual != expected.sha256:
            raise IndexCorruptedError(f"{self.dir / name}: checksum mismatch (expected sha256 "
                                      f"{expected.sha256}, actual {actual})")
        self._verified.add(name)

    def _array(self, name: str, dtype: np.dtype, shape: tuple[int, ...] | None) -> np.ndarray:
        path = self._path(name)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise IndexCorruptedError(f"{path}: not a readable .npy array ({exc})") from None
        if array.dtype != dtype or (shape is not None and array.shape != shape) or \
                (shape is None and array.ndim != 1):
            wanted = f"{dtype} {shape}" if shape is not None else f"1-d {dtype}"
            raise IndexCorruptedError(f"{path}: expected {wanted}, found {array.dtype} "
                                      f"{array.shape}")
        return array

    @cached_property
    def signatures(self) -> np.ndarray:
        """(rows, num_perm) uint32, memory-mapped."""
        return self._array(SIGNATURES, SIGNATURE_DTYPE, (self.rows, self.num_perm))

    @cached_property
    def style(self):
        """The style fingerprints, CSR (rows, style_features), arrays memory-mapped."""
        from scipy import sparse

        counts = self._array(STYLE_COUNTS, np.dtype(COUNT_DTYPE), None)
        indices = self._array(STYLE_INDICES, np.dtype(INDEX_DTYPE), None)
        indptr = self._array(STYLE_INDPTR, STYLE_INDPTR_DTYPE, None)
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
        return self._checked(faiss.read_index, EMBEDDINGS)

    @cached_property
    def vectors(self) -> np.ndarray:
        """(rows, dim) float16 embeddings, memory-mapped."""
        return self._array(EMBEDDING_VECTORS, VECTOR_DTYPE, (self.rows, self.embedding_index.d))

    @cached_property
    def code_index(self) -> faiss.IndexBinary:
        return self._checked(faiss.read_index_binary, CODES)

    @cached_property
    def bands(self) -> np.ndarray:
        """(bands, 2, rows) uint32: per band, the sorted signature values and their rows; in
        memory (it is the MinHash search index of a large segment)."""
        path = self._path(BANDS)
        bands = np.load(path, allow_pickle=False)
        if bands.dtype != BAND_DTYPE or bands.shape != (MINHASH_BANDS, 2, self.rows):
            raise IndexCorruptedError(f"{path}: expected {BAND_DTYPE} "
                                      f"{(MINHASH_BANDS, 2, self.rows)}, found {bands.dtype} "
                                      f"{bands.shape}")
        return bands

    @cached_property
    def metadata(self) -> MetadataReader:
        return MetadataReader(self._path(METADATA))

    def _checked(self, reader, name: str):
        path = self._path(name)
        try:
            index = reader(str(path))
        except RuntimeError as exc:
            raise IndexCorruptedError(f"{path}: FAISS cannot read it ({exc})") from None
        if index.ntotal != self.rows:
            raise IndexCorruptedError(f"{path}: expected {self.rows} vectors, "
                                      f"found {index.ntotal}")
        return index

    def to_global(self, found: np.ndarray) -> np.ndarray:
        """FAISS result ids (segment-local positions, -1 for none) -> index rows."""
        found = np.asarray(found, dtype=np.int64)
        return np.where(found >= 0, found + self.first_row, -1)

    def local(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64) - self.first_row

    def contains(self, row: int) -> bool:
        return self.first_row <= row < self.first_row + self.rows

    def embeddings(self, local_rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 embeddings of the given local rows."""
        local_rows = np.asarray(local_rows, dtype=np.int64)
        return np.asarray(self.vectors[local_rows], dtype=np.float32)

    def close(self) -> None:
        if "metadata" in self.__dict__:
            self.metadata.close()
