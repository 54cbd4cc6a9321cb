"""What the monitor computes from one prompt: random Fourier features of its embedding (for the
account's distribution shift from benign traffic) and a small MinHash signature (for template
reuse).

Distribution shift is measured as the maximum mean discrepancy (MMD) between an account's prompts
and benign prompts under RBF kernels. With random Fourier features (Rahimi & Recht 2007) the
kernel mean of a set of prompts is the mean of their feature vectors, so an account needs only a
running sum of ``rff_features x len(bandwidths)`` numbers, and MMD^2 is the squared distance
between its mean and the benign mean. Bandwidths are multiples of the median distance between
benign prompts' embeddings (the median heuristic), fixed when the baseline is fitted.

Template reuse compares a prompt's word 3-gram MinHash (``reuse_perm`` permutations, the
toolkit's MinHasher) with the account's recent prompts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fingerprint.config import FingerprintConfig
from fingerprint.embed import Embedder
from fingerprint.minhash import MinHasher
from monitor.config import MonitorConfig
from monitor.errors import BaselineError

MEDIAN_SAMPLE = 2000  # prompts whose pairwise distances set the median distance


class PromptFeatures:
    """Prompts to (RFF rows, MinHash rows); ``weights``/``offsets``/``median`` come from a
    baseline (or from ``fit_scale`` when a baseline is being fitted)."""

    def __init__(self, config: MonitorConfig, median: float | None = None,
                 embedder: Embedder | None = None):
        self.config = config
        fp = FingerprintConfig(num_perm=config.reuse_perm, embedding_backend=config.embedding_backend)
        self.minhasher = MinHasher(fp)
        self.embedder = embedder or Embedder(fp.embedding_model, fp.embedding_max_tokens,
                                             backend=config.embedding_backend)
        self.median = median
        self._projection: tuple[np.ndarray, np.ndarray] | None = None
        self._scale = np.float32(np.sqrt(2.0 / config.rff_features))

    @property
    def dim(self) -> int:
        return self.config.rff_features * len(self.config.bandwidths)

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed(list(prompts)), dtype=np.float32)

    def fit_scale(self, embeddings: np.ndarray) -> float:
        """The median distance between (a seeded sample of) benign prompts' embeddings."""
        rng = np.random.default_rng(self.config.seed)
        take = embeddings[rng.permutation(len(embeddings))[:MEDIAN_SAMPLE]]
        squared = np.sum(take ** 2, axis=1)
        dist = squared[:, None] + squared[None, :] - 2 * take @ take.T
        upper = dist[np.triu_indices(len(take), k=1)]
        self.median = float(np.sqrt(np.median(np.maximum(upper, 0.0)))) if upper.size else 1.0
        self._projection = None
        return self.median

    def rff(self, embeddings: np.ndarray) -> np.ndarray:
        """sqrt(2/D) cos(x W / (b m) + u) for each bandwidth b, concatenated: float32 rows."""
        weights, offsets = self._weights(embeddings.shape[1])
        projected = embeddings @ weights
        projected += offsets  # in place: the same sums, one array fewer
        out = np.cos(projected)
        out *= self._scale
        return out.astype(np.float32, copy=False)

    def signatures(self, prompts: Sequence[str]) -> np.ndarray:
        return self.minhasher.signatures(list(prompts))

    def transform(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.rff(self.embed(prompts)), self.signatures(prompts)

    def _weights(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        if self._projection is None:
            if self.median is None:
                raise BaselineError("the features' scale is not fitted (no baseline)")
            rng = np.random.default_rng(self.config.seed + 1)
            blocks = [rng.standard_normal((dim, self.config.rff_features)) /
                      (b * self.median) for b in self.config.bandwidths]
            weights = np.concatenate(blocks, axis=1).astype(np.float32)
            offsets = rng.uniform(0, 2 * np.pi, weights.shape[1]).astype(np.float32)
            self._projection = (weights, offsets)
        return self._projection
