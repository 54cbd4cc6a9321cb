"""Writing a segment: fingerprints streamed to disk, then the search indexes their size calls for.

The file layout and the index types are described in index.segment (the read side). A segment
is written inside a private directory and becomes part of an index only when it is committed
(index.staging).
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from fingerprint.fingerprinter import Fingerprints
from fingerprint.minhash import SIGNATURE_DTYPE
from fingerprint.records import ResponseRecord
from fingerprint.style import COUNT_DTYPE, INDEX_DTYPE
from index.clustering import two_level_centroids
from index.codes import one_bit_codes
from index.errors import IndexStoreError, IndexWriteError
from index.files import NpyAppender, fsync_path, sha256_files
from index.manifest import FileEntry, SegmentEntry, now_iso
from index.metadata import MetadataWriter
from index.segment import (ANN_MIN_ROWS, BAND_DTYPE, BANDED, BANDS, CODES, EMBEDDING_FILES,
                           EMBEDDING_VECTORS, EMBEDDINGS, FLAT_CODES, FLAT_EMBEDDINGS, METADATA,
                           MINHASH_BANDS, NO_EMBEDDINGS, SEGMENT_FILES, SIGNATURES,
                           STYLE_COUNTS, STYLE_INDICES, STYLE_INDPTR, STYLE_INDPTR_DTYPE,
                           VECTOR_DTYPE)

# Vectors used to train the IVF centroids and PQ codebooks (FAISS wants >= 39 per centroid).
TRAINING_PER_LIST = 50
ROTATION_SEED = 1234
HNSW_NEIGHBOURS = 32  # graph over the IVF centroids, used to assign rows while building
# The graph's search width when assigning rows to lists. At 1M rows (4,096 lists) width 64 put
# 99.3% of rows in their nearest list and took 28 us a row, most of a build's index time; widths
# 16 and 32 put 96.7% and 98.6% there, and with 24 recall@10 of the stored index was the same
# (0.800 / 0.895 / 0.959 at 64 / 128 / 256 lists probed, against 0.798 / 0.895 / 0.958): a row
# one list off its nearest lies in the next nearest, which a query probing 128 lists reaches too.
HNSW_EF_ADD = 24
_BLOCK = 65_536  # rows moved at once when building indexes from the memory-mapped files


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
        try:  # a full disk can fail the first write: leave no directory behind then either
            self._signatures = NpyAppender(self.dir / SIGNATURES, SIGNATURE_DTYPE.str,
                                           (num_perm,))
            self._vectors = (None if embedding_dim is None else
                             NpyAppender(self.dir / EMBEDDING_VECTORS, VECTOR_DTYPE.str,
                                         (embedding_dim,)))
            self._indptr = NpyAppender(self.dir / STYLE_INDPTR, STYLE_INDPTR_DTYPE.str)
            self._indptr.append(np.zeros(1, dtype=STYLE_INDPTR_DTYPE))
            self._indices = NpyAppender(self.dir / STYLE_INDICES, np.dtype(INDEX_DTYPE).str)
            self._counts = NpyAppender(self.dir / STYLE_COUNTS, np.dtype(COUNT_DTYPE).str)
            self._metadata = MetadataWriter(self.dir / METADATA, store_text)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self._nnz = 0
        self.embedding_index_type = NO_EMBEDDINGS
        self.minhash_index_type = FLAT_CODES

    def add(self, records: Sequence[ResponseRecord], fingerprints: Fingerprints,
            prompt_hashes: Sequence[str | None]) -> None:
        n = len(records)
        if len(fingerprints) != n or len(prompt_hashes) != n:
            raise IndexStoreError("records, fingerprints and prompt hashes must have equal lengths")
        if fingerprints.signatures.shape[1] != self.num_perm:
            raise IndexStoreError(f"signatures have {fingerprints.signatures.shape[1]} permutations, "
                             f"the index {self.num_perm}")
        if fingerprints.style.shape != (n, self.style_features):
            raise IndexStoreError(f"style fingerprints have shape {fingerprints.style.shape}, "
                             f"expected {(n, self.style_features)}")
        if self._vectors is not None:
            if fingerprints.embeddings is None:
                raise IndexStoreError("this segment stores embeddings, but none were given")
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
        try:
            if self._vectors is not None:
                self.embedding_index_type = self._build_embedding_index()
            self.minhash_index_type = self._build_code_index()
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "write error" not in str(exc):
                raise  # a FAISS failure other than a write: a bug, keep its traceback
            where = re.search(r"write error in (.+)", str(exc))  # FAISS names file and errno
            detail = where.group(1) if where else f"{self.dir}: {exc}"
            raise IndexWriteError(f"{detail}; cannot write the search indexes: is the disk full, "
                                  f"or a file size limit reached? Nothing was added to the "
                                  f"index") from None
        self._metadata.close()
        # Every file but those of embeddings not stored, and but the 1-bit codes or the bands,
        # whichever the segment's size did not call for.
        names = [name for name in SEGMENT_FILES
                 if not ((name in EMBEDDING_FILES and self._vectors is None)
                         or name == (CODES if self.minhash_index_type == BANDED else BANDS))]
        paths = [self.dir / name for name in names]
        digests = sha256_files(paths, fsync=True)
        files = [FileEntry(name, path.stat().st_size, digest)
                 for name, path, digest in zip(names, paths, digests)]
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
    dim = int(vectors.shape[1])
    rotation = faiss.RandomRotationMatrix(dim, dim)
    rotation.init(ROTATION_SEED)
    # Rows are rotated here by numpy's threaded matrix product, 1.6x faster than the
    # transform's own apply; the stored IndexPreTransform rotates queries with the same matrix.
    rotate = faiss.vector_to_array(rotation.A).reshape(dim, dim).T.copy()
    sample = _sample(vectors, TRAINING_PER_LIST * nlist)
    for start in range(0, len(sample), _BLOCK):  # rotated in place: one copy of the sample
        sample[start:start + _BLOCK] = sample[start:start + _BLOCK] @ rotate
    centroids = two_level_centroids(sample, int(math.sqrt(nlist)), nlist)
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
        ivf.add(block @ rotate)
    flat = faiss.IndexFlatL2(dim)
    flat.add(centroids)
    ivf.quantizer = flat  # same centroids, same order: list numbers keep their meaning
    faiss.write_index(faiss.IndexPreTransform(rotation, ivf), str(path))
