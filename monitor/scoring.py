"""Scoring accounts request by request: the detector's statistics against the baseline's nulls.

``AccountScorer.observe`` adds one request's features to an account's state and, when the
account reaches a checkpoint, tests it (monitor.detector says what is tested and what the
guarantee is). ``Assessment`` is what a caller sees: risk, flagged, the p-value of the strongest
checkpoint and the reasons, each signal with its figure beside the benign median at that
checkpoint, so an analyst or an appeal reviewer can see why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from monitor.baseline import Baseline
from monitor.detector import (AccountState, conversation_key, count_turn, empirical_p, remember,
                              reuse_and_distance, risk_of)
from monitor.elicitation import elicits
from monitor.features import PromptFeatures

SIGNALS = ("shift", "reuse", "single_turn")  # as many as monitor.config.SIGNAL_COUNT
MEANINGS = {
    "shift": "MMD^2 between the account's prompts and benign prompts (RBF kernels)",
    "reuse": "share of requests that nearly copy one of the account's recent prompts",
    "single_turn": "share of requests that open a conversation no later request continued",
}


@dataclass(frozen=True)
class Assessment:
    """An account's standing after its latest request."""

    account: str
    requests: int
    risk: float
    flagged: bool
    p_value: float | None  # the strongest tested checkpoint's (None: none tested yet)
    flagged_at: int | None  # requests seen when it was flagged
    reasons: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    activity: dict[str, Any] = field(default_factory=dict)  # monitor.activity: shown, not tested

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "requests": self.requests, "risk": self.risk,
                "flagged": self.flagged, "p_value": self.p_value, "flagged_at": self.flagged_at,
                "reasons": list(self.reasons), "activity": dict(self.activity)}


class AccountScorer:
    """Updates account states with requests' features and tests them at checkpoints."""

    def __init__(self, baseline: Baseline, features: PromptFeatures | None = None):
        self.baseline = baseline
        self.config = baseline.config
        self.features = features or baseline.features()
        self.sizes = self.config.checkpoint_sizes
        self._medians: dict[tuple[str, int], float] = {}
        self._calibrated = {(name, k): name in baseline.signals_at(k)
                            for name in SIGNALS for k in range(len(self.sizes))}
        # alpha spent evenly over the checkpoints the baseline can calibrate (fixed before any
        # account is seen, so the union bound holds)
        self.level = self.config.alpha / max(1, sum(baseline.tested))

    def new_state(self) -> AccountState:
        return AccountState.new(self.config, self.features.dim)

    def strip(self, state: AccountState, prompt: str) -> str:
        """The prompt as the account is judged on it: without the template it shares with the
        account's recent prompts (monitor.skeleton). Call it on every prompt, in order, before
        computing the features that ``observe`` takes."""
        return state.skeleton.strip(prompt)

    def score(self, requests: Sequence[tuple[AccountState, str, float, int | None,
                                             int | None]]) -> list[bool]:
        """Score requests, given in the order they are to be judged, each as (its account's
        state, prompt, timestamp, prior turns or None, its conversation's key or None: see
        monitor.detector.conversation_key); states are updated in place, and an account may
        appear several times. An opening's key is its prompt's when not given; a follow-up's
        must be given for ``single_turn`` to be tested. Returns, per request, whether it nearly
        copied one of its account's recent prompts (for the examples a reviewer is shown).

        The one entry point for callers: templates are stripped one by one in order (each
        depends on the account's earlier prompts), features computed for the whole batch at
        once (the costly part), then each request observed in order, so a batch gives what
        one-by-one scoring gives."""
        texts = []
        for state, prompt, _, _, _ in requests:
            state.activity.elicited += elicits(prompt)
            texts.append(self.strip(state, prompt))
        if not texts:
            return []
        rff, signatures = self.features.transform(texts)
        reused = []
        for (state, prompt, timestamp, prior_turns, key), row, signature in zip(
                requests, rff, signatures):
            hits = state.reuse_hits
            if key is None and prior_turns == 0:
                key = conversation_key(prompt)
            self.observe(state, row, signature, timestamp, prior_turns, key)
            reused.append(state.reuse_hits > hits)
        return reused

    def observe(self, state: AccountState, rff_row: np.ndarray, signature: np.ndarray,
                timestamp: float, prior_turns: int | None = None,
                conversation: int | None = None) -> None:
        """Add one request (its features computed, its template stripped) to ``state``;
        ``conversation`` is monitor.detector.conversation_key of its conversation's first user
        message (an opening's: its prompt's)."""
        state.n += 1
        count_turn(state, prior_turns, conversation)
        state.rff_sum += rff_row
        reused, nearest = reuse_and_distance(state.recent, state.recent_count, signature,
                                             self.config.reuse_jaccard)
        state.reuse_hits += reused
        if nearest is not None:
            state.activity.near(nearest)
        remember(state, signature)
        state.activity.visit(rff_row)
        state.activity.observe(timestamp)
        state.first_seen = min(state.first_seen, timestamp)
        state.last_seen = max(state.last_seen, timestamp)
        k = state.next_checkpoint
        if k < len(self.sizes) and state.n >= self.sizes[k]:
            state.next_checkpoint += 1
            if self.baseline.tested[k]:
                self._test(state, k)

    def assessment(self, account: str, state: AccountState) -> Assessment:
        tested = state.p_value < 1.0 or bool(state.reasons)
        return Assessment(account, state.n, state.risk, state.flagged,
                          state.p_value if tested else None,
                          state.flagged_at if state.flagged else None, tuple(state.reasons),
                          state.activity.summary(state.n, state.first_seen, state.last_seen))

    def _test(self, state: AccountState, k: int) -> None:
        """The checkpoint test: Bonferroni over the signals' empirical p-values. ``single_turn``
        takes part only where the account's log and the baseline's both show conversations
        (the count is then fixed before any evidence is seen: by the log format)."""
        p, reasons = self.checkpoint_test(Totals.of(state), k, SIGNALS)
        if p <= state.p_value:
            state.p_value = p
            state.risk = max(state.risk, risk_of(p, self.level))
            state.reasons = reasons
        if p <= self.level and not state.flagged:
            state.flagged_at = state.n

    def _median(self, name: str, k: int, null: np.ndarray) -> float:
        """The benign median of a signal at checkpoint k, computed once (a median of the null
        at every test cost more than the rest of the test)."""
        key = (name, k)
        if key not in self._medians:
            self._medians[key] = float(np.median(null))
        return self._medians[key]

    def checkpoint_test(self, totals: "Totals", k: int, signals: Sequence[str]
                        ) -> tuple[float, list[dict[str, Any]]]:
        """The Bonferroni p-value over ``signals`` of ``totals`` against checkpoint k's nulls,
        and each signal's figure beside the benign median. A signal takes part where the
        baseline calibrated it at k (its null is not NaN) and, for ``single_turn``, where every
        request's conversation is known; with none, the p-value is 1 and there are no
        reasons."""
        n = self.sizes[k]
        nulls = {"shift": self.baseline.null_shift[:, k], "reuse": self.baseline.null_reuse[:, k],
                 "single_turn": self.baseline.null_single_turn[:, k]}
        names = self.usable(totals, k, signals)
        if not names:
            return 1.0, []
        values = {name: self._value(totals, name) for name in names}
        ps = {name: empirical_p(nulls[name], values[name]) for name in names}
        p = min(1.0, len(ps) * min(ps.values()))
        return p, [{"signal": name, "value": values[name],
                    "benign_median": self._median(name, k, nulls[name]), "p_value": ps[name],
                    "checkpoint": n, "meaning": MEANINGS[name]} for name in names]


    def usable(self, totals: "Totals", k: int, signals: Sequence[str]) -> list[str]:
        """Which of ``signals`` checkpoint k can test on ``totals``: those the baseline holds a
        null for at k, ``single_turn`` only if every request's conversation is known."""
        return [name for name in SIGNALS if name in signals and self._calibrated[name, k]
                and (name != "single_turn" or totals.turns_known == totals.n)]

    def _value(self, totals: "Totals", signal: str) -> float:
        if signal == "shift":
            return float(np.sum((totals.rff_sum / totals.n - self.baseline.mean) ** 2))
        if signal == "reuse":
            return totals.reuse_hits / totals.n
        return totals.single_turn / totals.n


@dataclass(frozen=True)
class Totals:
    """The sums a checkpoint test reads: one account's, or a group's pooled."""

    n: int
    rff_sum: np.ndarray
    reuse_hits: int
    single_turn: int  # openings not continued
    turns_known: int

    @classmethod
    def of(cls, state: AccountState) -> "Totals":
        return cls(state.n, state.rff_sum, state.reuse_hits, state.single_turn,
                   state.turns_known)

    @classmethod
    def pooled(cls, states: Sequence[AccountState]) -> "Totals":
        return cls(sum(s.n for s in states), np.sum([s.rff_sum for s in states], axis=0),
                   sum(s.reuse_hits for s in states), sum(s.single_turn for s in states),
                   sum(s.turns_known for s in states))
