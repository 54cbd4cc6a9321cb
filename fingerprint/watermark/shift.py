"""Did the suspect learn the green list? A test of frequency shift against unmarked text.

The usual detector (fingerprint.watermark.detect) counts green tokens among *distinct* (context,
token) pairs: right for text the provider marked, where nearly every pair carries the bias. A
student trained on a little marked text inherits the bias only as a shift in how *often* it uses
each pair, and a pair it uses at all is about as likely to be green as before: the distinct-pair
count barely moves (benchmarks/radioactivity.py: the neural student at 10% marked, p 0.83).

This test looks where the inheritance is. It compares the suspect's outputs with text the
provider's model wrote without the mark (``reference``: the same model's unmarked answers, which
the provider can always sample). Every distinct (context, token) window seen at least
``min_count`` times in the two together is "up" when the suspect uses it at a higher rate than
the reference does. If the suspect learned from marked text, green windows are up more often
than others. The statistic: of the up windows, how many are green.

Why the p-value is exact: under the null (the suspect never learned from text marked with this
key), the key is independent of both texts, so each distinct window is green with probability
``gamma`` independently of whether it is up (fingerprint.watermark.green); the number of green
up windows is Binomial(up, gamma), and the p-value is its exact upper tail. Which windows are up
depends on the texts only, never on the key, so choosing them costs nothing. A reference that
carries the mark itself only makes green windows look down in the suspect: power is lost, never
validity. What a small p-value does not say: how much marked text the suspect saw, or that it
saw it directly (a student of a student inherits the shift too).

Two statistics, one set of windows (``method``):
- ``sign``: of the up windows, how many are green (the count above). It throws away how far a
  window moved, and weighs a token seen 5 times like one seen 5,000 times.
- ``weighted`` (the default): each window's log rate ratio (suspect over reference), centred and
  weighted by its inverse variance (sampling variance plus the spread between windows, estimated
  from the texts), summed over the green windows: the score statistic for "green windows are
  used more, relative to the reference, than red ones". Its weights depend on the texts only,
  so under the null the statistic is a weighted sum of independent Bernoulli(gamma) variables,
  whose tail fingerprint.watermark.bernoulli_sum computes exactly on an integer grid. ``lean``
  reports the size: the weighted mean log rate ratio of green windows minus that of red ones
  (exp(lean) = how many times as often, relative to the reference, the suspect uses a green
  window as a red one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fingerprint.errors import InputError
from fingerprint.watermark.bernoulli_sum import bernoulli_sum_tail, integer_weights
from fingerprint.watermark.detect import binomial_tail, token_windows
from fingerprint.watermark.green import green_pairs, unique_rows
from fingerprint.watermark.key import WatermarkKey

MIN_COUNT = 4  # a window seen fewer times in both texts together says little about direction
METHODS = ("weighted", "sign")


@dataclass(frozen=True)
class ShiftTest:
    """``green_up`` green windows among the ``up`` windows the suspect uses more than the
    reference, of ``windows`` compared; null probability ``gamma`` each. ``p_value`` is the
    ``method``'s: the sign test's exact binomial tail or the weighted test's ``weighted_p``."""

    windows: int
    up: int
    green_up: int
    green_all: int
    gamma: float
    suspect_windows: int  # windows (with repeats) in the suspect's text
    reference_windows: int
    method: str = "sign"
    weighted_p: float = 1.0
    lean: float = 0.0  # weighted mean log rate ratio, green windows minus red ones

    @property
    def sign_p(self) -> float:
        return binomial_tail(self.green_up, self.up, self.gamma) if self.up else 1.0

    @property
    def p_value(self) -> float:
        return self.weighted_p if self.method == "weighted" else self.sign_p

    @property
    def z(self) -> float:
        """The sign test's z-score, for reading beside its exact p-value."""
        if not self.up:
            return 0.0
        sd = (self.up * self.gamma * (1 - self.gamma)) ** 0.5
        return (self.green_up - self.gamma * self.up) / sd

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows, "up": self.up, "green_up": self.green_up,
                "green_share_up": self.green_up / self.up if self.up else None,
                "green_share_all": self.green_all / self.windows if self.windows else None,
                "gamma": self.gamma, "z": round(self.z, 4), "p_value": self.p_value,
                "method": self.method, "sign_p": self.sign_p, "weighted_p": self.weighted_p,
                "lean": round(self.lean, 6),
                "suspect_windows": self.suspect_windows,
                "reference_windows": self.reference_windows}


def _windows(sequences: Sequence[Sequence[int]], width: int, what: str) -> np.ndarray:
    rows = [r for i, seq in enumerate(sequences)
            if (r := token_windows(seq, width, f"{what} sequence {i}")) is not None]
    return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.int64)


def window_scores(counts_mine: np.ndarray,
                  counts_theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log rate ratios, inverse-variance weights) of windows counted in two texts.

    The ratio is centred on its weighted mean (the texts' overall level is not the key's doing)
    and each weight is 1 / (sampling variance + spread between windows), the spread estimated by
    moments (the ratios' variance less their mean sampling variance): two models differ in many
    windows for reasons of their own, and without it the most frequent windows, measured most
    precisely, would drown the rest."""
    mine, theirs = counts_mine + 0.5, counts_theirs + 0.5
    ratio = np.log(mine / mine.sum()) - np.log(theirs / theirs.sum())
    variance = 1.0 / mine + 1.0 / theirs
    spread = max(0.0, float(np.var(ratio)) - float(np.mean(variance))) if len(ratio) > 1 else 0.0
    weight = 1.0 / (variance + spread)
    return ratio - float(np.sum(weight * ratio) / np.sum(weight)), weight


def _lean(ratio: np.ndarray, weight: np.ndarray, green: np.ndarray) -> float:
    if not green.any() or green.all():
        return 0.0
    mean = lambda m: float(np.sum(weight[m] * ratio[m]) / np.sum(weight[m]))  # noqa: E731
    return mean(green) - mean(~green)


@dataclass(frozen=True, eq=False)
class ComparedWindows:
    """Everything the shift test needs that the key does not change: the windows of width
    ``context_width + 1`` seen at least ``min_count`` times in the two texts together, which of
    them the suspect uses more (``up``), and their scores (``ratio``, ``weight``, and the
    integer ``weights`` of the weighted statistic). Made once by ``compare_windows``, it can be
    tested under any number of keys of that width at the cost of hashing the windows: how the
    false-positive checks test thousands of keys on the same texts."""

    context_width: int
    windows: np.ndarray  # (n, context_width + 1) distinct windows kept
    up: np.ndarray  # bool (n,)
    ratio: np.ndarray  # centred log rate ratios
    weight: np.ndarray  # inverse-variance weights
    weights: np.ndarray  # int64: ratio * weight on the weighted test's integer grid
    suspect_windows: int  # windows (with repeats) in the suspect's text
    reference_windows: int

    def test(self, key: WatermarkKey, method: str = "weighted") -> ShiftTest:
        """The shift test of these windows under ``key`` (its context width must match)."""
        if method not in METHODS:
            raise InputError("method", None,
                             f"must be one of {', '.join(METHODS)}, got {method!r}")
        if key.tokens.context_width != self.context_width:
            raise InputError("key", None, f"context width {key.tokens.context_width}, but the "
                             f"windows were compared at width {self.context_width}")
        gamma = key.tokens.gamma
        if not len(self.windows):
            return ShiftTest(0, 0, 0, 0, gamma, self.suspect_windows, self.reference_windows,
                             method)
        green = green_pairs(key.secret, gamma, self.windows)
        weighted_p = bernoulli_sum_tail(self.weights, int(self.weights[green].sum()), gamma)
        return ShiftTest(len(self.windows), int(self.up.sum()), int((green & self.up).sum()),
                         int(green.sum()), gamma, self.suspect_windows, self.reference_windows,
                         method, weighted_p, _lean(self.ratio, self.weight, green))


def compare_windows(suspect: Sequence[Sequence[int]], reference: Sequence[Sequence[int]],
                    context_width: int, min_count: int = MIN_COUNT) -> ComparedWindows:
    """The key-free half of the shift test on token-id sequences (answers without prompts)."""
    if not isinstance(context_width, int) or context_width < 0:
        raise InputError("context_width", None,
                         f"must be a non-negative integer, got {context_width!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise InputError("min_count", None, f"must be a positive integer, got {min_count!r}")
    width = context_width + 1
    mine, theirs = _windows(suspect, width, "suspect"), _windows(reference, width, "reference")
    empty = np.zeros(0)
    nothing = ComparedWindows(context_width, np.zeros((0, width), dtype=np.int64),
                              empty.astype(bool), empty, empty, empty.astype(np.int64),
                              len(mine), len(theirs))
    if not len(mine) or not len(theirs):
        return nothing
    distinct, which = unique_rows(np.concatenate([mine, theirs]))
    counts_mine = np.bincount(which[:len(mine)], minlength=len(distinct))
    counts_theirs = np.bincount(which[len(mine):], minlength=len(distinct))
    kept = (counts_mine + counts_theirs) >= min_count
    if not kept.any():
        return nothing
    # up: a higher rate in the suspect (cross-multiplied: exact in integers)
    up = (counts_mine * len(theirs) > counts_theirs * len(mine))[kept]
    ratio, weight = window_scores(counts_mine[kept], counts_theirs[kept])
    return ComparedWindows(context_width, distinct[kept], up, ratio, weight,
                           integer_weights(ratio * weight), len(mine), len(theirs))


def shift_test_ids(key: WatermarkKey, suspect: Sequence[Sequence[int]],
                   reference: Sequence[Sequence[int]], min_count: int = MIN_COUNT,
                   method: str = "weighted") -> ShiftTest:
    """The shift test on token-id sequences (answers without their prompts)."""
    if method not in METHODS:
        raise InputError("method", None, f"must be one of {', '.join(METHODS)}, got {method!r}")
    compared = compare_windows(suspect, reference, key.tokens.context_width, min_count)
    return compared.test(key, method)


def shift_test(key: WatermarkKey, suspect: Sequence[str], reference: Sequence[str],
               tokenizer: Any = None, min_count: int = MIN_COUNT,
               method: str = "weighted") -> ShiftTest:
    """The shift test on texts, re-tokenised with the key's tokenizer (checked against the key;
    ``tokenizer`` defaults to loading the one the key records)."""
    from fingerprint.watermark.tokenizer import checked_tokenizer, encode

    tokenizer = checked_tokenizer(key.tokenizer, tokenizer)
    return shift_test_ids(key, encode(tokenizer, suspect), encode(tokenizer, reference),
                          min_count, method)
