"""Detecting the mark: exact binomial tests on unique (context, token) pairs.

Under the null (the text was written without the key) each distinct (context, token) pair is
green with probability gamma, independently (fingerprint.watermark.green). Counting each pair
once matters: a response that repeats a phrase, or many responses that share boilerplate, would
otherwise count the same coin flip many times and produce tiny p-values from unmarked text. The
p-value is the exact binomial upper tail, computed by the regularised incomplete beta function,
which keeps its relative accuracy far below 1e-10 (a normal approximation does not).

The pooled test over all of a suspect's outputs deduplicates across responses too (Sander et al.
2024): it is the test for "this model was trained on marked text" when only its outputs are seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fingerprint.errors import InputError
from fingerprint.watermark.green import green_pairs, unique_rows
from fingerprint.watermark.key import WatermarkKey


@dataclass(frozen=True)
class Score:
    """One test: ``green`` of ``scored`` distinct pairs, null probability ``gamma`` each."""

    scored: int
    green: int
    gamma: float
    min_scored: int

    @property
    def too_short(self) -> bool:
        """Fewer pairs than the key's minimum: reported with p = 1, not tested."""
        return self.scored < self.min_scored

    @property
    def p_value(self) -> float:
        return 1.0 if self.too_short else binomial_tail(self.green, self.scored, self.gamma)

    @property
    def z(self) -> float:
        """The usual z-score, for reading alongside the exact p-value (0 when too short)."""
        if self.too_short:
            return 0.0
        sd = (self.scored * self.gamma * (1 - self.gamma)) ** 0.5
        return (self.green - self.gamma * self.scored) / sd

    def to_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "green": self.green,
                "green_fraction": self.green / self.scored if self.scored else None,
                "z": round(self.z, 4), "p_value": self.p_value, "too_short": self.too_short}


@dataclass(frozen=True)
class Detection:
    """A scheme's pooled test and one test per response (in input order); ``channels``: the
    pooled test's share of each channel of the post-hoc mark (version 2), for reading only."""

    scheme: str
    pooled: Score
    responses: tuple[Score, ...]
    channels: tuple[tuple[str, Score], ...] = ()

    @property
    def p_value(self) -> float:
        return self.pooled.p_value


def binomial_tail(green: int, scored: int, gamma: float) -> float:
    """P(X >= green) for X ~ Binomial(scored, gamma), exactly (to floating-point accuracy)."""
    from scipy.special import betainc

    if green <= 0:
        return 1.0
    if green > scored:
        return 0.0
    return float(betainc(green, scored - green + 1, gamma))


def token_windows(sequence: Sequence[int], width: int, what: str) -> np.ndarray | None:
    """Every run of ``width`` consecutive ids of one sequence (rows; None if it is shorter);
    ids outside [0, 2**32) are an InputError naming ``what``."""
    ids = np.asarray(sequence, dtype=np.int64)
    if len(ids) < width:
        return None
    if ids.min() < 0 or ids.max() >= 2**32:
        raise InputError(what, None, "token ids must be in [0, 2**32)")
    return np.lib.stride_tricks.sliding_window_view(ids, width)


def detect_token_ids(key: WatermarkKey, sequences: Sequence[Sequence[int]]) -> Detection:
    """Test token-id sequences (the answer's tokens, without the prompt) for the green-list mark."""
    cfg = key.tokens
    width = cfg.context_width + 1
    windows, owners = [], []
    for i, seq in enumerate(sequences):
        rows = token_windows(seq, width, f"sequence {i}")
        if rows is not None:
            windows.append(rows)
            owners.append(np.full(len(rows), i, dtype=np.int64))
    return _tests("tokens", key.secret, cfg.gamma, cfg.min_scored, windows, owners,
                  len(sequences))


def detect_texts(key: WatermarkKey, texts: Sequence[str], tokenizer: Any = None) -> Detection:
    """Re-tokenise texts with the key's tokenizer (checked against the key) and test them.

    ``tokenizer`` defaults to loading the one the key records; pass it when it lives elsewhere.
    """
    from fingerprint.watermark.tokenizer import checked_tokenizer, encode

    tokenizer = checked_tokenizer(key.tokenizer, tokenizer)
    return detect_token_ids(key, encode(tokenizer, texts))


def _tests(scheme: str, secret: bytes, gamma: float, min_scored: int,
           windows: list[np.ndarray], owners: list[np.ndarray], n: int) -> Detection:
    """Pooled test over distinct windows; per-response tests over each response's own."""
    if not windows:
        empty = Score(0, 0, gamma, min_scored)
        return Detection(scheme, empty, tuple(empty for _ in range(n)))
    rows, owner = np.concatenate(windows), np.concatenate(owners)
    distinct, which = unique_rows(rows)
    green = green_pairs(secret, gamma, distinct)
    pooled = Score(len(distinct), int(green.sum()), gamma, min_scored)
    per = np.unique(owner * len(distinct) + which)
    resp, row = per // len(distinct), per % len(distinct)
    scored = np.bincount(resp, minlength=n)
    greens = np.bincount(resp, weights=green[row], minlength=n).astype(np.int64)
    return Detection(scheme, pooled, tuple(Score(int(s), int(g), gamma, min_scored)
                                           for s, g in zip(scored, greens)))
