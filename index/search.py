"""Top-k search across segments, merged into one ranking.

Every reported score is exact: the MinHash estimate on the full signatures (the figure datasketch
would give) or the cosine of the stored embeddings. A segment of up to ``EXACT_SCAN_ROWS`` rows
is scanned in full for MinHash. A larger one runs in two stages: candidates (by Hamming distance
of 1-bit codes up to 100k rows, by equal banded signature values beyond) are re-ranked on the full
signatures. Neither ranks weak matches well (at Jaccard 0.05 two bits agree 52.5% of the time
instead of 50%), which is why small segments skip that stage; both find near-duplicates.
Embeddings of a small segment are searched exactly (flat index); a large segment's IVF index
(4-bit fast-scan PQ codes) proposes candidates that are re-ranked on the memory-mapped vectors.
Both re-rankings are compiled (index/scan_kernels.py). The constants below were measured with
benchmarks/scaling.py (benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import faiss
import numpy as np

from fingerprint.errors import ConfigError
from index.codes import one_bit_codes
from index.segment import Segment

# Candidates fetched per requested neighbour from the 1-bit codes before exact re-ranking.
CANDIDATE_FACTOR = 8
MIN_CANDIDATES = 64
EXACT_SCAN_ROWS = 50_000
# Large segments, MinHash: rows taken per banded value. A value is shared by the rows whose
# minimum falls in the same shingle: at 10M synthetic rows (each sentence in ~260 responses) a cap
# of 256 lost near-duplicates (recall 0.82); 1,024 keeps 0.94 at 2,800 queries/s, 4,096 gives
# 0.97 at 1,300 (benchmarks/README.md).
BAND_CAP = 1024
# Large segments, embeddings: candidates re-ranked exactly per requested neighbour, and the share
# of the IVF lists a query visits (at least MIN_NPROBE). 1/16 is 256 of 4,096 lists at 1M rows:
# recall@10 0.94 on the scaling benchmark's corpus, where 1/32 gave 0.88.
EMBEDDING_CANDIDATE_FACTOR = 30
NPROBE_SHARE = 1 / 16
MIN_NPROBE = 64


@dataclass(frozen=True)
class Hits:
    """rows[i, j] is the j-th best stored row for query i (-1 where fewer exist)."""

    rows: np.ndarray  # (q, k) int64
    scores: np.ndarray  # (q, k) float64, estimated Jaccard or cosine; -inf where row is -1

    def for_query(self, i: int) -> list[tuple[int, float]]:
        return [(int(r), float(s)) for r, s in zip(self.rows[i], self.scores[i]) if r >= 0]


def _empty(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((q, k), -1, dtype=np.int64), np.full((q, k), -np.inf, dtype=np.float64)


def _merge(rows: np.ndarray, scores: np.ndarray, new_rows: np.ndarray, new_scores: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    all_rows = np.concatenate([rows, new_rows], axis=1)
    all_scores = np.concatenate([scores, new_scores], axis=1)
    all_scores = np.where(all_rows < 0, -np.inf, all_scores)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_rows, order, 1), np.take_along_axis(all_scores, order, 1)


def search_minhash(segments: Sequence[Segment], signatures: np.ndarray, k: int) -> Hits:
    signatures = np.asarray(signatures)
    q = signatures.shape[0]
    rows, scores = _empty(q, k)
    if q == 0:
        return Hits(rows, scores)
    codes = None  # 1-bit codes, made only if a segment is large enough to need them
    for seg in segments:
        if seg.rows == 0:
            continue
        if seg.rows <= EXACT_SCAN_ROWS:
            cand, exact = _exact_scan(seg, signatures, k)
        elif seg.approximate:
            cand, exact = _reranked(seg, signatures, _band_candidates(seg, signatures), k)
        else:
            codes = one_bit_codes(signatures) if codes is None else codes
            n_cand = min(seg.rows, max(MIN_CANDIDATES, CANDIDATE_FACTOR * k))
            _, found = seg.code_index.search(codes, n_cand)
            cand, exact = _reranked(seg, signatures, found, n_cand)
        rows, scores = _merge(rows, scores, cand, exact, k)
    return Hits(rows, scores)


def _exact_scan(seg: Segment, signatures: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from index.scan_kernels import top_equal_counts

    top = min(k, seg.rows)
    local = np.empty((len(signatures), top), dtype=np.int64)
    counts = np.empty((len(signatures), top), dtype=np.int64)
    top_equal_counts(np.ascontiguousarray(seg.signatures),
                     np.ascontiguousarray(signatures, dtype=seg.signatures.dtype), top, local,
                     counts)
    return seg.to_global(local), counts / seg.num_perm


def _reranked(seg: Segment, signatures: np.ndarray, found: Sequence[np.ndarray],
              top: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` candidates of each query by their exact estimate on the full signatures."""
    from index.scan_kernels import top_candidate_counts

    top = min(top, seg.rows)
    kept = [np.sort(f[f >= 0]) for f in found]  # sorted: ties keep the lower row
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum([len(f) for f in kept], out=offsets[1:])
    candidates = np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)
    local = np.empty((len(signatures), top), dtype=np.int64)
    counts = np.empty((len(signatures), top), dtype=np.int64)
    top_candidate_counts(np.asarray(seg.signatures),
                         np.ascontiguousarray(signatures, dtype=seg.signatures.dtype),
                         candidates, offsets, local, counts)
    exact = np.where(counts >= 0, counts / seg.num_perm, -np.inf)
    return seg.to_global(local), exact


def _band_candidates(seg: Segment, signatures: np.ndarray) -> list[np.ndarray]:
    """Rows sharing at least one banded signature value with each query (at most BAND_CAP per
    band: a value shared by thousands of rows is boilerplate, not a near-duplicate)."""
    bands = seg.bands
    found: list[list[np.ndarray]] = [[] for _ in range(len(signatures))]
    for band in range(bands.shape[0]):
        keys, rows = bands[band, 0], bands[band, 1]
        values = signatures[:, band].astype(keys.dtype)
        lo = np.searchsorted(keys, values, side="left")
        hi = np.minimum(np.searchsorted(keys, values, side="right"), lo + BAND_CAP)
        for i in range(len(signatures)):
            if hi[i] > lo[i]:
                found[i].append(rows[lo[i]:hi[i]].astype(np.int64))
    return [np.unique(np.concatenate(f)) if f else np.zeros(0, dtype=np.int64) for f in found]


def search_embeddings(segments: Sequence[Segment], vectors: np.ndarray, k: int,
                      nprobe: int | None = None) -> Hits:
    """``nprobe``: IVF lists visited per query in large segments (default: ``default_nprobe``);
    more finds more of the true neighbours, at a cost that grows in proportion."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    q = vectors.shape[0]
    rows, scores = _empty(q, k)
    if q == 0:
        return Hits(rows, scores)
    if nprobe is not None and nprobe < 1:
        raise ConfigError(f"nprobe must be >= 1, got {nprobe}")
    for seg in segments:
        if seg.rows == 0:
            continue
        if seg.approximate:
            found, sims = _embedding_candidates_reranked(seg, vectors, k, nprobe)
        else:
            sims, found = seg.embedding_index.search(vectors, min(k, seg.rows))
            found = seg.to_global(found)
        rows, scores = _merge(rows, scores, found, sims.astype(np.float64), k)
    return Hits(rows, scores)


def default_nprobe(nlist: int) -> int:
    return min(nlist, max(MIN_NPROBE, round(nlist * NPROBE_SHARE)))


def _embedding_candidates_reranked(seg: Segment, vectors: np.ndarray, k: int,
                                   nprobe: int | None) -> tuple[np.ndarray, np.ndarray]:
    from index.scan_kernels import HALF_TO_FLOAT, candidate_cosines

    index = seg.embedding_index
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = min(ivf.nlist, nprobe or default_nprobe(ivf.nlist))
    _, found = index.search(vectors, min(seg.rows, EMBEDDING_CANDIDATE_FACTOR * k))
    sims = np.empty(found.shape, dtype=np.float32)
    candidate_cosines(np.asarray(seg.vectors).view(np.uint16), HALF_TO_FLOAT, vectors, found,
                      sims)
    return seg.to_global(found), sims
