"""Turning statistics into p-values against reference models.

The null hypothesis, in plain words: *the suspect is one more independent model, like the
references*: its outputs are no more provider-like than those of a model that never saw the
provider's outputs. Reference models are scored exactly like the suspect, but each one with the
models it is compared against fitted without it (leave-one-reference-out), so each reference
gives one draw of the statistic under the null. The suspect's statistic is then placed in that
distribution with a Student-t prediction interval: with R references of mean m and standard
deviation s, ``t = (x - m) / (s * sqrt(1 + 1/R))`` has a t distribution with R - 1 degrees of
freedom when the R + 1 values are independent normal draws. This is why p-values need several
references (``MIN_REFERENCES``), and why they are conservative when some references are close
relatives of the provider (a null that includes them is wider).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MIN_REFERENCES = 5
_SHARE_EPS = 0.01


@dataclass(frozen=True)
class Calibrated:
    """A statistic placed in its null distribution; ``p_value`` is None with ``reason`` if not."""

    value: float
    null_mean: float | None
    null_sd: float | None
    z: float | None
    p_value: float | None
    n_references: int
    reason: str | None = None


def logit_share(share: float | np.ndarray) -> float | np.ndarray:
    """Shares in [0, 1] to an unbounded scale on which a normal null is a fair assumption."""
    return np.log((np.asarray(share) + _SHARE_EPS) / (1.0 - np.asarray(share) + _SHARE_EPS))


def inverse_logit_share(value: float) -> float:
    """The share whose ``logit_share`` is ``value`` (exact inverse, eps included)."""
    e = math.exp(value)
    return (e * (1.0 + _SHARE_EPS) - _SHARE_EPS) / (1.0 + e)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)


def _too_few(value: float, n: int, min_references: int) -> Calibrated:
    return Calibrated(float(value), None, None, None, None, n,
                      f"p-value needs at least {min_references} references on shared prompts; "
                      f"have {n}")


def share_sd_floor(null_rate: float, n: int) -> float:
    """Sampling sd of ``logit_share`` of a share measured on ``n`` responses (delta method).

    Every null draw is itself a share estimated from a finite sample, so the null's spread can
    never be less than this, even when all references happen to score the same (all 0, say).
    """
    p = float(np.clip(null_rate, 1.0 / (n + 2), 1.0 - 1.0 / (n + 2)))
    slope = 1.0 / (p + _SHARE_EPS) + 1.0 / (1.0 - p + _SHARE_EPS)
    return math.sqrt(p * (1.0 - p) / n) * slope


def calibrate(value: float, null_values: Sequence[float], *, transform=None,
              min_references: int = MIN_REFERENCES, sd_floor: float = 0.0) -> Calibrated:
    """One-sided p-value of ``value`` (higher = more provider-like) against the null draws.

    ``sd_floor`` bounds the null's standard deviation (on the transformed scale) from below.
    """
    null = _finite(null_values)
    n = int(null.size)
    if n < min_references:
        return _too_few(value, n, min_references)
    x = float(transform(value)) if transform else float(value)
    null_t = np.asarray(transform(null), dtype=float) if transform else null
    mean = float(null_t.mean())
    sd = max(float(null_t.std(ddof=1)), sd_floor)
    if not sd > 1e-12 * max(1.0, abs(mean)):
        return Calibrated(float(value), mean, sd, None, None, n,
                          "the references all have the same value: no spread to calibrate on")
    z = (x - mean) / sd
    from scipy import stats

    p = float(stats.t.sf(z / math.sqrt(1.0 + 1.0 / n), n - 1))
    return Calibrated(float(value), mean, sd, float(z), p, n)


def empirical_calibration(value: float, null_values: Sequence[float], *,
                          min_references: int = MIN_REFERENCES) -> Calibrated:
    """Exact rank p-value, (1 + #{null >= value}) / (R + 1): valid under exchangeability with no
    distributional assumption, but never below 1 / (R + 1)."""
    null = _finite(null_values)
    n = int(null.size)
    if n < min_references:
        return _too_few(value, n, min_references)
    p = float((1 + np.sum(null >= value)) / (n + 1))
    return Calibrated(float(value), float(null.mean()), float(null.std(ddof=1)), None, p, n)


def derived_fraction(rate_suspect: float, rate_null: float, rate_provider: float) -> float | None:
    """Adjusted classify-and-count: the share of responses that are provider-like beyond what
    independent models show, (rate_suspect - rate_null) / (TPR - rate_null), in [0, 1]."""
    gap = rate_provider - rate_null
    if gap <= 0:
        return None
    return float(np.clip((rate_suspect - rate_null) / gap, 0.0, 1.0))
