"""The exact upper tail of a weighted sum of independent Bernoulli variables.

The weighted shift test (fingerprint.watermark.shift) gives every window a score for how far the
suspect moved it, and its statistic is the sum of the green windows' scores. Under the null each
window is green with probability ``gamma``, independently (fingerprint.watermark.green), so the
statistic is a weighted sum of independent Bernoulli(gamma) variables whose weights the texts fix
and the key does not. A normal approximation is least accurate exactly where a dispute looks
(tails of 1e-5 and below, with a few heavy weights), so the scores are put on an integer grid
first (the grid is part of the statistic and is chosen without the key, so the test stays exact)
and the distribution is computed by convolution, one group of equal weights at a time.

Binomial terms below ``NEGLIGIBLE`` are left out of the convolution; each one left out adds its
bound (``NEGLIGIBLE``) to the tail, so the p-value returned is never smaller than the true one.
"""

from __future__ import annotations

import numpy as np

from fingerprint.errors import InputError

NEGLIGIBLE = 1e-40  # binomial terms below this are dropped and their bound added to the tail
CLIP = 8.0  # scores beyond this many robust scales are clipped: one window cannot decide
MAX_SUPPORT = 400_000  # the grid is coarsened so the distribution has at most this many points
MAX_WORK = 200_000_000  # ... and so the convolution (~ windows x support) stays near a second


def integer_weights(scores: np.ndarray, steps: int = 20) -> np.ndarray:
    """``scores`` on an integer grid of ``steps`` per robust scale (1.4826 times the median
    absolute score: the standard deviation for normal scores, unmoved by a few huge ones),
    clipped at ``CLIP`` scales; coarser when the support would exceed ``MAX_SUPPORT`` points or
    the convolution ``MAX_WORK`` steps (tens of thousands of windows: a grid of one step per
    scale adds rounding noise of variance 1/12 against the scores' ~1, a few per cent of
    efficiency)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(scores) or not np.isfinite(scores).all():
        if len(scores):
            raise InputError("scores", None, "must be finite")
        return np.zeros(0, dtype=np.int64)
    scale = 1.4826 * float(np.median(np.abs(scores))) or float(np.mean(np.abs(scores)))
    if scale == 0.0:
        return np.zeros(len(scores), dtype=np.int64)
    scaled = np.clip(scores / scale, -CLIP, CLIP)
    # the support is about sum(|w|) = steps * sum(|scaled|), and the work about that times the
    # number of windows: keep both bounded
    spread = max(float(np.abs(scaled).sum()), 1.0)
    steps = max(1, min(steps, int(MAX_SUPPORT / spread), int(MAX_WORK / (spread * len(scaled)))))
    return np.rint(scaled * steps).astype(np.int64)


def bernoulli_sum_tail(weights: np.ndarray, observed: int, gamma: float) -> float:
    """P(sum_j weights_j * B_j >= observed) for independent B_j ~ Bernoulli(gamma), exactly up to
    floating-point rounding, and never below the true value by more than rounding."""
    from scipy.stats import binom

    if not 0.0 < gamma < 1.0:
        raise InputError("gamma", None, f"must be in (0, 1), got {gamma!r}")
    weights = np.asarray(weights, dtype=np.int64)
    weights = weights[weights != 0]
    values, counts = np.unique(weights, return_counts=True)
    dist, low, dropped = np.ones(1), 0, 0.0  # dist[i] = P(sum = low + i)
    for value, n in zip(values.tolist(), counts.tolist()):
        pmf = binom.pmf(np.arange(n + 1), n, gamma)
        kept = np.flatnonzero(pmf >= NEGLIGIBLE)
        dropped += (n + 1 - len(kept)) * NEGLIGIBLE
        step = abs(value)
        grown = np.zeros(len(dist) + step * n)
        for i in kept.tolist():  # i of the n windows green: the sum moves by i * value
            at = i * step if value > 0 else (n - i) * step
            grown[at:at + len(dist)] += pmf[i] * dist
        dist = grown
        if value < 0:
            low += value * n
    start = int(observed) - low
    tail = float(dist[max(start, 0):].sum()) if start < len(dist) else 0.0
    return min(1.0, tail + dropped)
