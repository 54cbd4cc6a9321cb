"""IVF centroids by two-level k-means (index.clustering): never an impossible clustering.

FAISS's two_level_clustering gives a coarse cluster of a few outlying vectors no list and then
fails on it (seen at 1M rows on the Ray engine); the toolkit shares the lists out itself.
"""

import numpy as np
import pytest
from faiss.contrib.clustering import two_level_clustering

from index.clustering import share_lists, two_level_centroids
from index.errors import IndexWriteError


def blob_with_outliers(outliers: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    bulk = rng.normal(size=(3200, 16))
    far = rng.normal(size=(outliers, 16)) * 0.01 + 40
    return np.vstack([bulk, far]).astype(np.float32)


def test_a_few_outlying_vectors_get_a_list_where_faiss_fails():
    sample = blob_with_outliers(3)
    with pytest.raises(RuntimeError, match="clus.k > 0"):
        two_level_clustering(sample, 8, 64, min_points_per_centroid=1)
    centroids = two_level_centroids(sample, 8, 64)
    assert centroids.shape == (64, 16)
    assert np.isfinite(centroids).all()
    # the outliers have a centroid of their own among the lists
    assert (np.linalg.norm(centroids - sample[-1], axis=1) < 1).sum() == 1


def test_where_faiss_succeeds_the_centroids_are_faiss_own():
    """At FAISS's own iteration count (25 at both levels; the toolkit uses fewer)."""
    sample = blob_with_outliers(0)
    expected, _ = two_level_clustering(sample, 8, 64, min_points_per_centroid=1)
    np.testing.assert_array_equal(two_level_centroids(sample, 8, 64, iterations=25), expected)


@pytest.mark.parametrize("sizes, lists", [
    ([3000, 2, 0, 500], 64), ([1, 1, 1, 1], 4), ([10, 1, 1], 12), ([5, 5], 3), ([100], 7),
])
def test_lists_are_shared_at_least_one_at_most_the_points_exactly_all(sizes, lists):
    shares = share_lists(np.array(sizes), lists)
    sizes = np.array(sizes)
    assert shares.sum() == lists
    assert (shares <= sizes).all()
    assert (shares[sizes > 0] >= 1).all()
    assert (shares[sizes == 0] == 0).all()


def test_more_lists_than_vectors_is_refused():
    with pytest.raises(IndexWriteError, match="cannot cut 3 training vectors into 4 lists"):
        share_lists(np.array([1, 2]), 4)
