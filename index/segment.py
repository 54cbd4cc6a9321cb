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
chosen types are recorded in the manifest.
"""

from __future__ import annotations

import math
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
from index.files import NpyAppender, fsync_path, sha256_file
from index.manifest import FileEntry, SegmentEntry, now_iso
from index.metadata import MetadataReader, MetadataWriter

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
# Vectors used to train the IVF centroids and PQ codebooks (FAISS wants >= 39 per centroid).
TRAINING_PER_LIST = 50
ROTATION_SEED = 1234
HNSW_NEIGHBOURS = 32  # graph over the IVF centroids, used to assign rows while building
HNSW_EF_ADD = 64
_BLOCK = 65_536  # rows moved at once when building indexes from the memory-mapped files

FLAT_EMBEDDINGS = "Flat(inner product)"
FLAT_CODES = "BinaryFlat(1-bit minhash)"
# Large segments find MinHash candidates by exact equality of single signature values (classic
# LSH with bands of one row): a near-duplicate at Jaccard J shares at least one of B values with
# probability 1 - (1 - J)^B (0.95 at J = 0.63 for B = 3). Each band costs 8 bytes per response
# (sorted value, row). k-means lists over 1-bit codes (BinaryIVF) scattered such near-duplicates:
# recall 0.78 at 1M rows with 256 of 4,096 lists probed (benchmarks/README.md).
MINHASH_BANDS = 3
BANDED = f"Bands{MINHASH_BANDS}(minhash values)"


def ivf_lists(rows: int) -> int:
    """Inverted lists for an IVF index of ``rows`` vectors: a power of two near 4 sqrt(rows)."""
    return int(min(65_536, max(16, 2 ** round(math.log2(4 * math.sqrt(max(rows, 1)))))))


def pq_subquantizers(dim: int) -> int:
    """4-bit PQ sub-quantizers per vector: 128 (64 bytes) when the dimension allows, fewer for
    small dimensions (at least 2 dimensions each).

    64 bytes + 8 for the id + 24 for the MinHash bands keep a response under 100 bytes of memory.
    Halving the codes (64 sub-quantizers, 32 bytes) lost too much: re-ranked recall@10 at 1M rows
    fell from 0.95 to 0.80 (benchmarks/README.md).
    """
    for m in (128, 64, 32, 16, 8, 4, 2):
        if dim % m == 0 and dim // m >= 2:
            return m
    return 2


def embedding_index_name(nlist: int, m: int) -> str:
    return f"RR,IVF{nlist},PQ{m}x4fs(L2)"


class SegmentWriter:
    """Builds a segment inside a private directory; nothing is visible until ``finish``.

    Fingerprints go to disk as they arrive (memory stays flat however large the batch); the
    FAISS indexes are built in ``finish``, when the size, and so the index type, is known.
    """

    def __init__(self, directory: Path, name: str, first_row: int, num_perm: int,
                 embedding_dim: int | None, style_features: int, store_text: bool):
        self.dir = directory
        self.name = name
        self.first_row = first_row
        self.num_perm = num_perm
        self.embedding_dim = embedding_dim
        self.store_text = store_text
        self.style_features = style_features
        self.rows = 0
        self.sources: list[str] = []
        self._sources_seen: set[str] = set()
        self.dir.mkdir(parents=True)
        self._signatures = NpyAppender(self.dir / SIGNATURES, SIGNATURE_DTYPE.str, (num_perm,))
        self._vectors = (None if embedding_dim is None else
                         NpyAppender(self.dir / EMBEDDING_VECTORS, VECTOR_DTYPE.str,
                                     (embedding_dim,)))
        self._indptr = NpyAppender(self.dir / STYLE_INDPTR, STYLE_INDPTR_DTYPE.str)
        self._indptr.append(np.zeros(1, dtype=STYLE_INDPTR_DTYPE))
        self._indices = NpyAppender(self.dir / STYLE_INDICES, np.dtype(INDEX_DTYPE).str)
        self._counts = NpyAppender(self.dir / STYLE_COUNTS, np.dtype(COUNT_DTYPE).str)
        self._nnz = 0
        self._metadata = MetadataWriter(self.dir / METADATA, store_text)
        self.embedding_index_type = NO_EMBEDDINGS
        self.minhash_index_type = FLAT_CODES

    def add(self, records: Sequence[ResponseRecord], fingerprints: Fingerprints,
            prompt_hashes: Sequence[str | None]) -> None:
        n = len(records)
        if len(fingerprints) != n or len(prompt_hashes) != n:
            raise ValueError("records, fingerprints and prompt hashes must have equal lengths")
        if fingerprints.signatures.shape[1] != self.num_perm:
            raise ValueError(f"signatures have {fingerprints.signatures.shape[1]} permutations, "
                             f"the index {self.num_perm}")
        if fingerprints.style.shape != (n, self.style_features):
            raise ValueError(f"style fingerprints have shape {fingerprints.style.shape}, "
                             f"expected {(n, self.style_features)}")
        if self._vectors is not None:
            if fingerprints.embeddings is None:
                raise ValueError("this segment stores embeddings, but none were given")
            self._vectors.append(fingerprints.embeddings)
        self._signatures.append(fingerprints.signatures)
        style = fingerprints.style.tocsr()
        self._indptr.append(style.indptr[1:].astype(STYLE_INDPTR_DTYPE) + self._nnz)
        self._indices.append(style.indices)
        self._counts.append(style.data)
        self._nnz += int(style.indptr[-1])
        self._metadata.add(self.first_row + self.rows, records, prompt_hashes)
        self.rows += n
        for r in records:
            if r.source not in self._sources_seen:
                self._sources_seen.add(r.source)
                self.sources.append(r.source)

    def finish(self, skipped_empty: int, skipped_duplicates: int) -> SegmentEntry:
        """Close the arrays, build the search indexes, flush everything and describe it."""
        appenders = [self._signatures, self._indptr, self._indices, self._counts]
        for appender in appenders + ([self._vectors] if self._vectors is not None else []):
            appender.close()
        if self._vectors is not None:
            self.embedding_index_type = self._build_embedding_index()
        self.minhash_index_type = self._build_code_index()
        self._metadata.close()
        files = []
        for name in SEGMENT_FILES:
            path = self.dir / name
            if (name in EMBEDDING_FILES and self._vectors is None) or \
                    name == (CODES if self.minhash_index_type == BANDED else BANDS):
                continue  # no embeddings; 1-bit codes or bands, whichever the size called for
            fsync_path(path)
            files.append(FileEntry(name, path.stat().st_size, sha256_file(path)))
        fsync_path(self.dir)
        return SegmentEntry(
            name=self.name, first_row=self.first_row, rows=self.rows, created_at=now_iso(),
            sources=tuple(self.sources), skipped_empty=skipped_empty,
            skipped_duplicates=skipped_duplicates, store_text=self.store_text,
            embedding_index=self.embedding_index_type, minhash_index=self.minhash_index_type,
            files=tuple(files))

    def _build_embedding_index(self) -> str:
        vectors = np.load(self.dir / EMBEDDING_VECTORS, mmap_mode="r")
        dim = int(vectors.shape[1])
        if self.rows < ANN_MIN_ROWS:
            index = faiss.IndexFlatIP(dim)
            for start in range(0, self.rows, _BLOCK):
                index.add(np.ascontiguousarray(vectors[start:start + _BLOCK], dtype=np.float32))
            faiss.write_index(index, str(self.dir / EMBEDDINGS))
            return FLAT_EMBEDDINGS
        nlist, m = ivf_lists(self.rows), pq_subquantizers(dim)
        _write_ivf_fastscan(vectors, nlist, m, self.dir / EMBEDDINGS)
        return embedding_index_name(nlist, m)

    def _build_code_index(self) -> str:
        signatures = np.load(self.dir / SIGNATURES, mmap_mode="r")
        if self.rows >= ANN_MIN_ROWS:
            bands = np.empty((MINHASH_BANDS, 2, self.rows), dtype=BAND_DTYPE)
            for band in range(MINHASH_BANDS):
                values = np.ascontiguousarray(signatures[:, band])
                order = np.argsort(values, kind="stable")
                bands[band, 0] = values[order]
                bands[band, 1] = order
            np.save(self.dir / BANDS, bands, allow_pickle=False)
            return BANDED
        index = faiss.IndexBinaryFlat(self.num_perm)
        for start in range(0, self.rows, _BLOCK):
            index.add(one_bit_codes(signatures[start:start + _BLOCK]))
        faiss.write_index_binary(index, str(self.dir / CODES))
        return FLAT_CODES

    def abort(self) -> None:
        for appender in (self._signatures, self._vectors, self._indptr, self._indices,
                         self._counts):
            try:
                if appender is not None:
                    appender.abort()
            except Exception:  # the directory is removed anyway
                pass
        try:
            self._metadata.close()
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _sample(array: np.ndarray, size: int) -> np.ndarray:
    """Up to ``size`` rows spread evenly over the array (deterministic: same data, same index)."""
    if array.shape[0] <= size:
        return np.asarray(array, dtype=np.float32)
    return np.asarray(array[np.linspace(0, array.shape[0] - 1, size).astype(np.int64)],
                      dtype=np.float32)


def _write_ivf_fastscan(vectors: np.ndarray, nlist: int, m: int, path: Path) -> None:
    """A rotated IVF index with 4-bit fast-scan PQ codes over every row of ``vectors``.

    Why this shape (measured on benchmarks/scaling.py's 1M corpus, benchmarks/README.md):
    - 4-bit fast-scan codes are scanned several times faster than 8-bit PQ of the same bytes, so
      more lists can be probed per query, and probed lists, not code precision, are what limit
      recall on this corpus (with 128 of 4,096 lists probed, 95% of the true top 10 lie in them);
    - L2 on residuals: the vectors are unit length, so L2 ranks as the inner product does, and
      coding residuals is more precise than coding the vectors;
    - a fixed random rotation spreads the static embedding's PCA-sorted variance over the
      sub-quantizers; OPQ did no better here and took minutes to train;
    - centroids by two-level k-means, and rows assigned to them through an HNSW graph over the
      centroids: flat k-means and flat assignment cost O(rows x lists) and would take most of
      an hour at 10M rows. The stored index gets a flat quantizer over the same centroids, so
      queries find their nearest lists exactly.
    """
    from faiss.contrib.clustering import two_level_clustering

    dim = int(vectors.shape[1])
    rotation = faiss.RandomRotationMatrix(dim, dim)
    rotation.init(ROTATION_SEED)
    sample = _sample(vectors, TRAINING_PER_LIST * nlist)
    for start in range(0, len(sample), _BLOCK):  # rotated in place: one copy of the sample
        sample[start:start + _BLOCK] = rotation.apply(sample[start:start + _BLOCK])
    # FAISS warns on stderr below 39 points per centroid; ~50 on average is plenty here
    centroids, _ = two_level_clustering(sample, int(math.sqrt(nlist)), nlist,
                                        min_points_per_centroid=1)
    graph = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # a graph built by one thread is the same on every run
    try:
        graph.add(centroids)
    finally:
        faiss.omp_set_num_threads(threads)
    graph.hnsw.efSearch = HNSW_EF_ADD
    ivf = faiss.IndexIVFPQFastScan(graph, dim, nlist, m, 4, faiss.METRIC_L2)
    ivf.train(sample)  # the quantizer holds its centroids: only the PQ codebooks are trained
    del sample
    for start in range(0, vectors.shape[0], _BLOCK):
        block = np.ascontiguousarray(vectors[start:start + _BLOCK], dtype=np.float32)
        ivf.add(rotation.apply(block))
    flat = faiss.IndexFlatL2(dim)
    flat.add(centroids)
    ivf.quantizer = flat  # same centroids, same order: list numbers keep their meaning
    faiss.write_index(faiss.IndexPreTransform(rotation, ivf), str(path))


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
        for name in self.files:
            self._path(name)

    def _path(self, name: str) -> Path:
        """The file's path, after checking its sha256 against the manifest (once per process)."""
        if name not in self._verified:
            expected = self.entry.file(name)
            actual = sha256_file(self.dir / name)
            if actual != expected.sha256:
                raise IndexCorruptedError(f"{self.dir / name}: checksum mismatch (expected sha256 "
                                          f"{expected.sha256}, actual {actual})")
            self._verified.add(name)
        return self.dir / name

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
