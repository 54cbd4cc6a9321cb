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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fingerprint.errors import InputError
from fingerprint.watermark.detect import binomial_tail, token_windows
from fingerprint.watermark.green import green_pairs, unique_rows
from fingerprint.watermark.key import WatermarkKey

MIN_COUNT = 4  # a window seen fewer times in both texts together says little about direction


@dataclass(frozen=True)
class ShiftTest:
    """``green_up`` green windows among the ``up`` windows the suspect uses more than the
    reference, of ``windows`` compared; null probability ``gamma`` each."""

    windows: int
    up: int
    green_up: int
    green_all: int
    gamma: float
    suspect_windows: int  # windows (with repeats) in the suspect's text
    reference_windows: int

    @property
    def p_value(self) -> float:
        return binomial_tail(self.green_up, self.up, self.gamma) if self.up else 1.0

    @property
    def z(self) -> float:
        if not self.up:
            return 0.0
        sd = (self.up * self.gamma * (1 - self.gamma)) ** 0.5
        return (self.green_up - self.gamma * self.up) / sd

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows, "up": self.up, "green_up": self.green_up,
                "green_share_up": self.green_up / self.up if self.up else None,
                "green_share_all": self.green_all / self.windows if self.windows else None,
                "gamma": self.gamma, "z": round(self.z, 4), "p_value": self.p_value,
                "suspect_windows": self.suspect_windows,
                "reference_windows": self.reference_windows}


def _windows(sequences: Sequence[Sequence[int]], width: int, what: str) -> np.ndarray:
    rows = [r for i, seq in enumerate(sequences)
            if (r := token_windows(seq, width, f"{what} sequence {i}")) is not None]
    return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.int64)


def shift_test_ids(key: WatermarkKey, suspect: Sequence[Sequence[int]],
                   reference: Sequence[Sequence[int]], min_count: int = MIN_COUNT) -> ShiftTest:
    """The shift test on token-id sequences (answers without their prompts)."""
    if not isinstance(min_count, int) or min_count < 1:
        raise InputError("min_count", None, f"must be a positive integer, got {min_count!r}")
    width = key.tokens.context_width + 1
    mine, theirs = _windows(suspect, width, "suspect"), _windows(reference, width, "reference")
    gamma = key.tokens.gamma
    if not len(mine) or not len(theirs):
        return ShiftTest(0, 0, 0, 0, gamma, len(mine), len(theirs))
    distinct, which = unique_rows(np.concatenate([mine, theirs]))
    counts_mine = np.bincount(which[:len(mine)], minlength=len(distinct))
    counts_theirs = np.bincount(which[len(mine):], minlength=len(distinct))
    kept = (counts_mine + counts_theirs) >= min_count
    # up: a higher rate in the suspect (cross-multiplied: exact in integers)
    up = kept & (counts_mine * len(theirs) > counts_theirs * len(mine))
    green_kept = np.zeros(len(distinct), dtype=bool)
    green_kept[kept] = green_pairs(key.secret, gamma, distinct[kept])
    return ShiftTest(int(kept.sum()), int(up.sum()), int((green_kept & up).sum()),
                     int((green_kept & kept).sum()), gamma, len(mine), len(theirs))


def shift_test(key: WatermarkKey, suspect: Sequence[str], reference: Sequence[str],
               tokenizer: Any = None, min_count: int = MIN_COUNT) -> ShiftTest:
    """The shift test on texts, re-tokenised with the key's tokenizer (checked against the key;
    ``tokenizer`` defaults to loading the one the key records)."""
    from fingerprint.watermark.tokenizer import checked_tokenizer, encode

    tokenizer = checked_tokenizer(key.tokenizer, tokenizer)
    return shift_test_ids(key, encode(tokenizer, suspect), encode(tokenizer, reference),
                          min_count)
