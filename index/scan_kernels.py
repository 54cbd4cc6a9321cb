"""Compiled exact scoring: MinHash scans and embedding re-ranking.

The numpy version of the MinHash scan materialises a (rows x num_perm) comparison per query;
``top_equal_counts`` counts equal values in registers, several times faster, and is what makes
exact search affordable for every segment below the approximate-index threshold;
``top_candidate_counts`` does the same over a large segment's candidates. ``candidate_cosines``
re-scores an ANN index's candidates on the stored half-precision vectors: numpy's gather, float16
conversion and einsum ran on one core and cost more than the ANN search itself. All run queries
in parallel. Imported (with numba) only when first needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# float16 bit pattern -> float32 value, for reading half-precision vectors in compiled code
HALF_TO_FLOAT = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(
    np.float32)


@njit(inline="always")
def _keep_best(best, best_rows, same, row):
    """Insert (same, row) into the descending top list; ties keep the earlier row."""
    k = best.shape[0]
    if same > best[k - 1]:
        pos = k - 1
        while pos > 0 and best[pos - 1] < same:
            best[pos] = best[pos - 1]
            best_rows[pos] = best_rows[pos - 1]
            pos -= 1
        best[pos] = same
        best_rows[pos] = row


@njit(inline="always")
def _equal_count(a, b):
    same = 0
    for j in range(a.shape[0]):
        same += a[j] == b[j]
    return same


@njit(cache=True, nogil=True, parallel=True)
def top_equal_counts(stored, queries, k, rows_out, counts_out):
    """rows_out/counts_out (q, k): best rows first; ties keep the lower row."""
    for qi in prange(queries.shape[0]):
        query = queries[qi]
        best_rows = np.full(k, -1, np.int64)
        best = np.full(k, -1, np.int64)
        for r in range(stored.shape[0]):
            _keep_best(best, best_rows, _equal_count(stored[r], query), r)
        rows_out[qi] = best_rows
        counts_out[qi] = best


@njit(cache=True, nogil=True, parallel=True)
def top_candidate_counts(stored, queries, candidates, offsets, rows_out, counts_out):
    """As top_equal_counts, over query i's candidates[offsets[i]:offsets[i + 1]] only (given in
    ascending order, so ties keep the lower row); -1 rows and counts where there are fewer."""
    k = rows_out.shape[1]
    for qi in prange(queries.shape[0]):
        query = queries[qi]
        best_rows = np.full(k, -1, np.int64)
        best = np.full(k, -1, np.int64)
        for j in range(offsets[qi], offsets[qi + 1]):
            row = candidates[j]
            _keep_best(best, best_rows, _equal_count(stored[row], query), row)
        rows_out[qi] = best_rows
        counts_out[qi] = best


@njit(cache=True, nogil=True, parallel=True)
def candidate_cosines(stored, half_to_float, queries, candidates, out):
    """out[q, j] = <stored[candidates[q, j]], queries[q]> (-inf where the candidate is -1);
    ``stored`` holds float16 vectors as their uint16 bit patterns."""
    for qi in prange(candidates.shape[0]):
        query = queries[qi]
        for j in range(candidates.shape[1]):
            row = candidates[qi, j]
            if row < 0:
                out[qi, j] = -np.inf
                continue
            vector = stored[row]
            total = np.float32(0.0)
            for c in range(vector.shape[0]):
                total += half_to_float[vector[c]] * query[c]
            out[qi, j] = total
