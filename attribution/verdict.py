"""The verdict in plain words: what an attribution result says, in one sentence a reader can quote.

The text summary, the JSON and every report print this one sentence, so they cannot disagree.
It is a pure function of the result:

- ``derived``: the combined p-value is below ``ALPHA``.
- ``not_derived``: the p-value is not, and the sequential test on provider share
  (attribution.stats.sequential, "not derived" side) has reached 1/alpha on the suspect's answers:
  the suspect's provider-like rate is shown to be below that of a model with the minimum derived
  fraction.
- ``undecided``: neither, but at the provider-like rate seen so far one of the two sequential
  tests would reach 1/alpha after about N more answers (the figure assumes the rate holds; it is
  a planning figure, not a promise).
- ``not_shown``: neither, and at the rate seen no number of further answers would decide (the
  suspect sits between what independent models reach and what a derived model would show).
- ``no_verdict``: there is no p-value (too few references, nothing calibrated); the reason is
  given.

The sequential e-values are those of all the answers at once (a product of per-answer bets, so
the order the answers arrived in does not matter); an e-value at a fixed sample size is valid.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from attribution.stats.sequential import (BET_GRID, BettingEProcess, SequentialConfig,
                                          thresholds)
from attribution.signals import PROVIDER_SHARE

if TYPE_CHECKING:
    from attribution.result import AttributionResult

ALPHA = 0.05
# "N more answers would decide" is not offered beyond this: a figure that large says "no".
MAX_MORE_ANSWERS = 100_000
DECISIONS = ("derived", "not_derived", "undecided", "not_shown", "no_verdict")


@dataclass(frozen=True)
class Verdict:
    """The decision, the sentence that states it, and the figures it rests on."""

    decision: str
    sentence: str
    alpha: float = ALPHA
    p_value: float | None = None
    more_answers: int | None = None  # "undecided": answers that would decide at the rate seen
    sequential: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict_of(result: AttributionResult, alpha: float = ALPHA) -> Verdict:
    """The verdict of an attribution result (see the module docstring for each decision)."""
    p = result.p_value
    if p is None:
        reason = _why_no_p_value(result.notes)
        return Verdict("no_verdict", f"No verdict: there is no p-value ({reason}).", alpha)
    source = "" if result.calibrated else " (the watermark test alone)"
    teacher = "the provider" if result.teachers is None else \
        f"the provider {result.teachers.teacher.provider} (the likeliest teacher ranked)"
    if p < alpha:
        return Verdict("derived", f"Derived from {teacher}: p = {_fmt(p)}{source}, below "
                       f"{alpha:g}. The suspect's outputs are more like the provider's than "
                       f"independent models' are.", alpha, p)
    sequential = _sequential(result, alpha)
    shown = f"p = {_fmt(p)}{source} is not below {alpha:g}"
    if sequential is None:
        return Verdict("not_shown", f"Not shown to be derived: {shown}.", alpha, p)
    if sequential["e_value_not_derived"] >= 1 / alpha:
        fraction = sequential["min_derived_fraction"]
        return Verdict("not_derived", f"Not derived: {shown}, and the sequential test shows a "
                       f"derived fraction below {fraction:g} (e-value "
                       f"{sequential['e_value_not_derived']:.3g} >= {1 / alpha:g}).",
                       alpha, p, sequential=sequential)
    if sequential["e_value_derived"] >= 1 / alpha:
        return Verdict("undecided", f"Undecided: {shown}, but the sequential test of provider "
                       f"share alone reaches e = {sequential['e_value_derived']:.3g} >= "
                       f"{1 / alpha:g} towards derived: the signals disagree.", alpha, p,
                       sequential=sequential)
    more = sequential["more_answers"]
    if more is None:
        return Verdict("not_shown", f"Not shown to be derived: {shown}, and at the "
                       f"provider-like rate seen ({sequential['rate']:.3f}) no number of further "
                       f"answers would decide either way.", alpha, p, sequential=sequential)
    return Verdict("undecided", f"Undecided: {shown}; at the provider-like rate seen "
                   f"({sequential['rate']:.3f}) about {more:,} more answers would decide "
                   f"({sequential['leaning']}).", alpha, p, more, sequential)


def _why_no_p_value(notes: tuple[str, ...]) -> str:
    """The note that says why there is no p-value (calibration's reasons name what is
    missing), rather than whichever note came first."""
    for words in ("no signal could be calibrated", "needs at least", "reference"):
        found = [n for n in notes if words in n]
        if found:
            return found[0]
    return notes[0] if notes else "no signal could be calibrated"


def _sequential(result: AttributionResult, alpha: float) -> dict[str, Any] | None:
    """Both sequential e-values on all the suspect's answers, and the answers that would
    decide; None where provider share was not calibrated (no references' rates)."""
    try:
        share = result.signal(PROVIDER_SHARE.name)
    except KeyError:
        return None
    flags = np.array([bool(e.provider_like) for e in result.responses
                      if e.provider_like is not None], dtype=float)
    if len(share.reference_values) < 2 or not flags.size:
        return None
    config = SequentialConfig(alpha=alpha)
    th = thresholds(share.reference_values, config, n_responses=flags.size)
    rate = float(flags.mean())
    out: dict[str, Any] = {"rate": rate, "answers": int(flags.size), "q0": th.q0, "q1": th.q1,
                           "min_derived_fraction": config.min_derived_fraction}
    best: tuple[int, str] | None = None
    for side, q, key, leaning in (("upper", th.q0, "e_value_derived", "towards derived"),
                                  ("lower", th.q1, "e_value_not_derived", "towards not derived")):
        log_wealth = _log_wealth(flags, q, side)
        out[key] = _mixture(log_wealth)
        more = _answers_to_cross(log_wealth, _growth(rate, q, side), alpha)
        if more is not None and (best is None or more < best[0]):
            best = (more, leaning)
    out["more_answers"], out["leaning"] = best if best else (None, None)
    return out


def _log_wealth(flags: np.ndarray, q: float, side: str) -> np.ndarray:
    proc = BettingEProcess(q, side)
    gain = (flags - q) if side == "upper" else (q - flags)
    return np.log1p(gain[:, None] * proc.lam).sum(axis=0)


def _growth(rate: float, q: float, side: str) -> np.ndarray:
    """Expected log growth per answer of each bet, if answers are provider-like at ``rate``."""
    lam = BettingEProcess(q, side).lam
    gain_if_like, gain_if_not = (1 - q, -q) if side == "upper" else (q - 1, q)
    return rate * np.log1p(lam * gain_if_like) + (1 - rate) * np.log1p(lam * gain_if_not)


def _mixture(log_wealth: np.ndarray) -> float:
    top = float(log_wealth.max())
    return float(math.exp(top) * np.mean(np.exp(log_wealth - top)))


def _answers_to_cross(log_wealth: np.ndarray, growth: np.ndarray, alpha: float) -> int | None:
    """Fewest further answers m after which the mixture, growing at ``growth``, reaches 1/alpha."""
    if not np.any(growth > 0):
        return None
    target = math.log(1 / alpha) + math.log(BET_GRID.size)  # the mixture >= its best bet / 12
    needed = [(target - w) / g for w, g in zip(log_wealth, growth) if g > 0]
    more = max(0, math.ceil(min(needed)))
    return more if more <= MAX_MORE_ANSWERS else None


def _fmt(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"
