"""IVF centroids by two-level k-means that cannot ask FAISS for an impossible clustering.

Flat k-means costs O(rows x lists) per iteration, too slow for the tens of thousands of lists a
large segment gets, so the centroids come from two levels: a coarse k-means into about
sqrt(lists) clusters, then each coarse cluster split into a share of the lists proportional to
its size. This is FAISS's ``contrib.clustering.two_level_clustering`` with ``rebalance=True``,
except for how the lists are shared out. FAISS gives a coarse cluster ``floor`` of its
cumulative share, which is 0 for a cluster of a few outlying vectors (FAISS then fails with
``clus.k > 0``) and can exceed the cluster's own points (FAISS then fails or warns). That
depends only on the data, so a build could fail on one input and not on another of the same
size (seen at 1M rows on the Ray engine, whose segments are cut differently from the local
engine's). Here every non-empty coarse cluster gets at least one list and at most one list
per vector it holds, and the total is exactly ``lists``.
"""

from __future__ import annotations

import faiss
import numpy as np

from index.errors import IndexWriteError

COARSE_POINTS_PER_CENTROID = 2000  # FAISS's own sample cap for the coarse level
# k-means iterations at each level. FAISS's default is 25; at 1M rows (4,096 lists) 15 gave
# the stored index the same recall@10 (0.796 / 0.894 / 0.956 at 64 / 128 / 256 lists probed,
# against 0.800 / 0.895 / 0.959; 200 queries, so +-0.005 is noise) in 60% of the time.
ITERATIONS = 15


def share_lists(sizes: np.ndarray, lists: int) -> np.ndarray:
    """Lists per coarse cluster: FAISS's proportional shares, then at least 1 for a non-empty
    cluster, at most its size, and exactly ``lists`` in total (moved one at a time between the
    clusters with the most spare points and those with the most lists)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if lists > int(sizes.sum()):
        raise IndexWriteError(f"cannot cut {int(sizes.sum())} training vectors into {lists} "
                              "lists")
    cumulative = np.cumsum(sizes)
    shares = cumulative * lists // cumulative[-1]
    shares[1:] -= shares[:-1].copy()
    shares = np.minimum(shares, sizes)
    shares[(sizes > 0) & (shares == 0)] = 1
    while shares.sum() < lists:
        shares[np.argmax(sizes - shares)] += 1
    while shares.sum() > lists:
        shares[np.argmax(np.where(shares > 1, shares, 0))] -= 1
    return shares


def two_level_centroids(sample: np.ndarray, coarse: int, lists: int,
                        iterations: int = ITERATIONS) -> np.ndarray:
    """``lists`` centroids of ``sample`` (float32 rows) through ``coarse`` first-level clusters,
    ``iterations`` of k-means at each level."""
    if not 0 < coarse <= lists:
        raise IndexWriteError(f"{coarse} coarse clusters for {lists} lists")
    dim = int(sample.shape[1])
    top = faiss.Kmeans(dim, coarse, niter=iterations, min_points_per_centroid=1,
                       max_points_per_centroid=COARSE_POINTS_PER_CENTROID)
    top.train(sample)
    _, assigned = top.assign(sample)
    sizes = np.bincount(assigned, minlength=coarse)
    order = assigned.argsort()  # as FAISS sorts: the same centroids wherever FAISS succeeds
    centroids, start = [], 0
    for cluster, k in enumerate(share_lists(sizes, lists)):
        members = order[start:start + sizes[cluster]]
        start += sizes[cluster]
        if k == 0:
            continue
        sub = faiss.Kmeans(dim, int(k), niter=iterations, min_points_per_centroid=1)
        sub.train(np.ascontiguousarray(sample[members]))
        centroids.append(sub.centroids)
    return np.vstack(centroids)
