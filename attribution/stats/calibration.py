"""Turning statistics into p-values against reference models.

The null hypothesis, in plain words: *the suspect is one more independent model, like the
references*: its outputs are no more provider-like than those of a model that never saw the
provider's outputs. Reference models are scored exactly like the suspect, but each one with the
models it is compared against fitted without it (leave-one-reference-out), so each reference gives
one draw of the statistic under the null. The suspect's statistic is then placed in that
distribution, in one of two ways. ``rank_p_value`` (what the provider share uses by default) is its
rank among the draws: valid by construction when the suspect and the references are exchangeable,
never below 1 / (R + 1). ``calibrate`` is a Student-t prediction interval: with R references of
mean m and standard deviation s, ``t = (x - m) / (s * sqrt(1 + 1/R))`` has a t distribution with
R - 1 degrees of freedom when the R + 1 values are independent normal draws. This is why p-values
need several references (``MIN_REFERENCES``), and why they are conservative when some references
are close relatives of the provider (a null that includes them is wider). On logit provider shares
it is anti-conservative: real references' shares sit near 0 with a heavy tail, and 9% of reference
models tested against the others fell below 0.05 (benchmarks/README.md, lineage.py); that is why
the provider share's p-value is the rank.
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


def rank_p_value(value: float, null_values: Sequence[float]) -> float:
    """The rank p-value of ``value`` among the references: (1 + #{references >= value}) / (1 + R).

    What it means: if the suspect and the R references are exchangeable (the suspect is one more
    independent model drawn like the references, and every one of them, the suspect included, is
    scored by the same procedure with itself left out of the fit), the chance that it comes out
    at or below ``alpha`` is at most ``alpha``, whatever the distribution of the scores: no
    normal or logit assumption. Ties count against the suspect (``>=``), which keeps it valid
    (conservative) when many references score the same, e.g. all 0.
    What it does not mean: it is not the probability that the suspect is independent, and it is
    only as good as the references: a population from another era or of another kind than the
    suspect breaks exchangeability. It can never go below 1 / (R + 1) (``rank_p_floor``): with
    26 references no suspect can reach p < 0.037, so p < 0.01 needs at least 99 references.
    """
    null = _finite(null_values)
    return float((1 + np.sum(null >= value)) / (null.size + 1))


def rank_p_floor(n_references: int) -> float:
    """The smallest p-value a rank test over ``n_references`` references can give."""
    return 1.0 / (n_references + 1)


def rank_floor_sentence(n_references: int) -> str:
    """The sentence every rank p-value is shown with: how small it can get, and what would
    allow a smaller one."""
    floor = rank_p_floor(n_references)
    needed = math.ceil(1 / 0.01) - 1
    return (f"the p-value is a rank among {n_references} references and cannot go below "
            f"1/{n_references + 1} = {floor:.3g}; p < 0.01 needs at least {needed} references "
            f"(fingerprint reference add)")


def empirical_calibration(value: float, null_values: Sequence[float], *,
                          min_references: int = MIN_REFERENCES) -> Calibrated:
    """``rank_p_value`` as a ``Calibrated``: valid under exchangeability with no distributional
    assumption, but never below 1 / (R + 1)."""
    null = _finite(null_values)
    n = int(null.size)
    if n < min_references:
        return _too_few(value, n, min_references)
    p = rank_p_value(value, null)
    return Calibrated(float(value), float(null.mean()), float(null.std(ddof=1)), None, p, n)


def derived_fraction(rate_suspect: float, rate_null: float, rate_provider: float) -> float | None:
    """Adjusted classify-and-count: the share of responses that are provider-like beyond what
    independent models show, (rate_suspect - rate_null) / (TPR - rate_null), in [0, 1]."""
    gap = rate_provider - rate_null
    if gap <= 0:
        return None
    return float(np.clip((rate_suspect - rate_null) / gap, 0.0, 1.0))
