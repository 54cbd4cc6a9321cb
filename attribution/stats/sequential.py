"""Stopping a probe run once the evidence is decisive: two betting e-processes.

What is tested. Each probe answer gets one binary score: does the style classifier (over the
provider and the references, fitted before probing) assign it to the provider? Let p be the
suspect's rate of provider-assigned answers on the prompt distribution (probes are asked in a
seeded random order). Two one-sided tests run side by side:

- "derived": H0 ``p <= q0``, where q0 is the rate an *independent* model can reach: the larger of
  the references' largest leave-one-out rate and the Student-t upper prediction bound (level
  1 - alpha, on the logit scale used by attribution.stats.calibration) for one more reference. The
  per-response test is against q0, not the references' mean rate: independent models' rates
  spread widely, so testing against their mean would call many independent models derived.
- "not derived": H0' ``p >= q1``, where q1 is the rate of a model with a derived fraction of at
  least ``min_derived_fraction`` over the references' mean rate m: q1 = m + f (1 - m)
  (the same adjusted classify-and-count as the derived fraction in reports).

Each test is a mixture of betting martingales (Waudby-Smith & Ramdas 2023):
K_t = mean over a grid of bets c of prod_i (1 + (c / q0) (x_i - q0)) for the first, and
prod_i (1 + (c / (1 - q1)) (q1 - x_i)) for the second. Under its null each K_t is a nonnegative
supermartingale with K_0 = 1, so by Ville's inequality it ever reaches 1/alpha with probability
at most alpha: the guarantee holds however often it is looked at and whenever the run stops
(optional stopping). The decision is the first test to reach 1/alpha.

The guarantee, exactly: if the suspect's rate is at most q0, "derived" is declared with
probability <= alpha; if its rate is at least q1, "not derived" is declared with probability
<= alpha. How likely an independent model is to exceed q0 is a separate, modelled error
(the prediction bound assumes the references' logit rates are normal draws, as the p-value does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from attribution.stats.calibration import inverse_logit_share, logit_share, share_sd_floor
from fingerprint.errors import ConfigError

DERIVED = "derived"
NOT_DERIVED = "not derived"
# Bets as a fraction of the largest bet that keeps the wealth nonnegative; the log-optimal bet
# against a Bernoulli(p) when testing q is (p - q) / (1 - q) of it, so the grid covers any p.
BET_GRID = np.array([0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


@dataclass(frozen=True)
class SequentialConfig:
    alpha: float = 0.05
    min_derived_fraction: float = 0.2
    max_probes: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"alpha must be in (0, 0.5), got {self.alpha!r}")
        if not 0 < self.min_derived_fraction < 1:
            raise ConfigError("min_derived_fraction must be in (0, 1), got "
                              f"{self.min_derived_fraction!r}")
        if self.max_probes is not None and self.max_probes < 1:
            raise ConfigError("max_probes must be positive")


@dataclass(frozen=True)
class Thresholds:
    q0: float  # largest rate an independent model is taken to reach
    q1: float  # smallest rate of a model with the minimum derived fraction
    reference_mean: float
    reference_rates: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"q0": self.q0, "q1": self.q1, "reference_mean": self.reference_mean,
                "reference_rates": dict(self.reference_rates)}


def thresholds(reference_rates: Mapping[str, float], config: SequentialConfig,
               n_responses: int | None = None) -> Thresholds:
    """q0 and q1 from the references' leave-one-out rates (see the module docstring).

    ``n_responses``: how many responses each reference rate was measured on; the spread of the
    rates is then never taken below their sampling spread (attribution.stats.calibration's floor),
    so references that happen to agree (all at 0, say) do not give a q0 of 0.
    """
    rates = np.array([float(v) for v in reference_rates.values()], dtype=float)
    if rates.size < 2:
        raise ConfigError(f"the sequential test needs at least 2 references, got {rates.size}")
    from scipy import stats

    logits = np.asarray(logit_share(rates), dtype=float)
    sd = float(logits.std(ddof=1))
    if n_responses:
        sd = max(sd, share_sd_floor(float(rates.mean()), n_responses))
    bound = logits.mean() + stats.t.ppf(1 - config.alpha, rates.size - 1) * sd * \
        math.sqrt(1 + 1 / rates.size)
    upper = float(np.clip(inverse_logit_share(float(bound)), 0.0, 0.99))
    q0 = max(float(rates.max()), upper)
    mean = float(rates.mean())
    q1 = min(0.995, mean + config.min_derived_fraction * (1 - mean))
    return Thresholds(q0=float(np.clip(q0, 0.01, 0.99)), q1=max(q1, 0.01), reference_mean=mean,
                      reference_rates={k: float(v) for k, v in reference_rates.items()})


class BettingEProcess:
    """Mixture betting martingale for the mean of [0, 1] scores: H0 mean <= q (``upper``) or
    mean >= q (``lower``)."""

    def __init__(self, q: float, side: str):
        if not 0 < q < 1:
            raise ConfigError(f"null rate must be in (0, 1), got {q!r}")
        self.q = q
        self.side = side
        self.lam = BET_GRID / (q if side == "upper" else 1 - q)
        self.log_wealth = np.zeros(BET_GRID.size)

    def update(self, x: float) -> float:
        gain = (x - self.q) if self.side == "upper" else (self.q - x)
        self.log_wealth += np.log1p(self.lam * gain)
        return self.value

    @property
    def value(self) -> float:
        top = self.log_wealth.max()
        return float(math.exp(top) * np.mean(np.exp(self.log_wealth - top)))


@dataclass
class SequentialTest:
    """Feed it one score per answer; it says when (and which way) the evidence is decisive."""

    thresholds: Thresholds
    config: SequentialConfig = field(default_factory=SequentialConfig)

    def __post_init__(self) -> None:
        self.derived = BettingEProcess(self.thresholds.q0, "upper")
        self.not_derived = BettingEProcess(self.thresholds.q1, "lower")
        self.n = 0
        self.hits = 0
        self.decision: str | None = None
        self.decided_at: int | None = None

    def update(self, provider_like: bool) -> str | None:
        """The decision once made (it does not change afterwards), else None."""
        if self.decision is not None:
            return self.decision
        x = 1.0 if provider_like else 0.0
        self.n += 1
        self.hits += int(x)
        e_yes, e_no = self.derived.update(x), self.not_derived.update(x)
        if e_yes >= 1 / self.config.alpha:
            self.decision = DERIVED
        elif e_no >= 1 / self.config.alpha:
            self.decision = NOT_DERIVED
        if self.decision is not None:
            self.decided_at = self.n
        return self.decision

    @property
    def exhausted(self) -> bool:
        return self.config.max_probes is not None and self.n >= self.config.max_probes

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "probes": self.n, "decided_at": self.decided_at,
                "provider_like": self.hits,
                "rate": self.hits / self.n if self.n else None,
                "e_value_derived": self.derived.value,
                "e_value_not_derived": self.not_derived.value,
                "alpha": self.config.alpha,
                "min_derived_fraction": self.config.min_derived_fraction,
                **self.thresholds.to_dict()}


def run_sequence(scores: np.ndarray, th: Thresholds, config: SequentialConfig) -> SequentialTest:
    """The test over a whole sequence of scores, stopping at the decision (benchmarks, tests)."""
    test = SequentialTest(th, config)
    for x in scores:
        if test.update(bool(x)) is not None or test.exhausted:
            break
    return test


def crossing_times(scores: np.ndarray, q: float, side: str, alpha: float) -> np.ndarray:
    """Vectorised over runs (rows of ``scores``): the number of scores after which the e-process
    first reaches 1/alpha, or 0 if it never does (simulations and benchmarks)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    proc = BettingEProcess(q, side)
    gain = (scores - q) if side == "upper" else (q - scores)
    log_wealth = np.cumsum(np.log1p(gain[..., None] * proc.lam), axis=1)  # runs, n, grid
    top = log_wealth.max(axis=2)
    log_e = top + np.log(np.mean(np.exp(log_wealth - top[..., None]), axis=2))
    crossed = log_e >= math.log(1 / alpha)
    first = crossed.argmax(axis=1) + 1
    return np.where(crossed.any(axis=1), first, 0)
