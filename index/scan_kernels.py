"""Compiled exact MinHash scan: the k stored signatures sharing most hash values with each query.

The numpy version materialises a (rows x num_perm) comparison per query; this one counts equal
values in registers, several times faster, and is what makes exact search affordable for every
segment below the approximate-index threshold. Imported (with numba) only when first needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def top_equal_counts(stored, queries, k, rows_out, counts_out):
    """rows_out/counts_out (q, k): best rows first; ties keep the lower row."""
    n, width = stored.shape
    for qi in range(queries.shape[0]):
        query = queries[qi]
        best_rows = np.full(k, -1, np.int64)
        best = np.full(k, -1, np.int64)
        for r in range(n):
            row = stored[r]
            same = 0
            for j in range(width):
                same += row[j] == query[j]
            if same > best[k - 1]:
                pos = k - 1
                while pos > 0 and best[pos - 1] < same:
                    best[pos] = best[pos - 1]
                    best_rows[pos] = best_rows[pos - 1]
                    pos -= 1
                best[pos] = same
                best_rows[pos] = r
        rows_out[qi] = best_rows
        counts_out[qi] = best
