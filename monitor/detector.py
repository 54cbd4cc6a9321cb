"""The per-account test: is this account's traffic like benign traffic?

Under the null hypothesis an account is one more benign account: its prompts are drawn like the
baseline's benign accounts' (which are real users and API customers of the provider, with their
conversations, follow-ups and repetitions). Three statistics summarise an account after n
requests, each computed on its prompts without the template they share with the account's recent
ones (monitor.skeleton: an app's wrapper around its users' messages is not what is judged):

- ``shift``: MMD^2 between its prompts and benign prompts (monitor.features): how far the
  account's prompts sit from what benign traffic asks about and how it asks it;
- ``reuse``: the share of its requests whose prompt is a near-copy (estimated word 3-gram
  Jaccard >= ``reuse_jaccard``) of one of its ``reuse_history`` previous prompts: templates;
- ``single_turn``: the share of its requests that open a conversation (no earlier answer in
  the request's messages) which none of its later requests so far continues (carries it as
  history): people follow up on answers, a harvest asks one question per request and moves on.
  A follow-up is matched to the opening by the conversation's first user message, among the
  account's last ``OPEN_RING`` openings. Only where the log shows the conversation (chat logs),
  and only if the baseline's did. (Counting openings alone was weaker: a person's conversation
  that goes on is evidence of a person, and a follow-up takes its opening out of the count.)

They are tested at fixed checkpoints, n = 30, 60, 120, ... (``MonitorConfig.checkpoint_sizes``),
each against its null distribution at that n, measured on benign accounts simulated from the
baseline (monitor.baseline). A checkpoint's p-value is the Bonferroni combination of the
empirical p-values; the account is flagged at the first checkpoint whose p-value is at most
alpha / (the checkpoints the baseline can calibrate). Spending alpha evenly over them is what
keeps the share of benign accounts ever flagged at most alpha however often each is looked at:
the guarantee is a union bound over the checkpoints, and it is exactly as good as the
baseline's likeness to the benign accounts being scored (a benign population unlike the
baseline, such as a new kind of API customer, is not covered). After the last checkpoint an
account is not tested again.

``risk`` in [0, 1] is log(1/p) / log(1/level) at the strongest checkpoint so far, capped at 1:
1 means flagged, 0.5 means evidence half-way (on the log scale) to the flagging level.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor import activity
from monitor.activity import Activity
from monitor.config import MonitorConfig
from monitor.errors import StateEntryError
from monitor.skeleton import Skeleton

STATE_FORMAT = 6  # 6: activity keeps coverage and novelty; 5: openings remembered and followed
# (single_turn); 4: activity counts elicitation; 3: edges and templates as text, reasons as
# JSON (2: all as one JSON)
_HEADER = struct.Struct("<HIIIIIIiddddd")  # format, n, hits, recent_count, openings,
# followed, turns_known, flagged_at, risk, p, first_seen, last_seen, next checkpoint (as double)
OPEN_RING = 64  # an account's latest openings a follow-up is matched against
_TAIL = struct.Struct("<IIIQ")  # after the activity: edges, their bytes, the reasons' bytes,
# prompts that filled a template
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass
class AccountState:
    """What the monitor keeps per account: a few KB whatever the account's volume."""

    rff_sum: np.ndarray
    recent: np.ndarray  # (reuse_history, reuse_perm) uint32 ring of recent signatures
    n: int = 0
    reuse_hits: int = 0
    recent_count: int = 0
    openings: int = 0  # requests that open a conversation (no earlier answer in the request)
    followed: int = 0  # openings a later request continued (matched in ``open_keys``)
    turns_known: int = 0  # requests whose conversation the log shows (chat logs): its depth
    # and, for a follow-up, the conversation it continues
    open_keys: np.ndarray = field(  # (OPEN_RING,) uint64 ring: the latest openings' keys
        default_factory=lambda: np.zeros(OPEN_RING, dtype=np.uint64))
    open_followed: np.ndarray = field(  # (OPEN_RING,) bool: whether each was continued
        default_factory=lambda: np.zeros(OPEN_RING, dtype=bool))
    next_checkpoint: int = 0
    flagged_at: int = -1  # requests seen when it was flagged; -1: not flagged
    risk: float = 0.0
    p_value: float = 1.0
    first_seen: float = math.inf
    last_seen: float = -math.inf
    reasons: list[dict[str, Any]] = field(default_factory=list)
    skeleton: Skeleton = field(default_factory=Skeleton)  # recent prompts' edges (templates)
    activity: Activity = field(default_factory=Activity)  # volume and rhythm (shown, not tested)
    # the last encoded reasons: (the list encoded, its JSON); see to_bytes
    _reasons_json: tuple[list[dict[str, Any]], bytes] | None = field(
        default=None, repr=False, compare=False)

    @classmethod
    def new(cls, config: MonitorConfig, dim: int) -> "AccountState":
        return cls(np.zeros(dim, dtype=np.float64),
                   np.zeros((config.reuse_history, config.reuse_perm), dtype=np.uint32))

    @property
    def flagged(self) -> bool:
        return self.flagged_at >= 0

    @property
    def single_turn(self) -> int:
        """Openings that no later request has continued (so far)."""
        return self.openings - self.followed

    def to_bytes(self) -> bytes:
        """A compact, versioned encoding (no pickle): header, the arrays' bytes, the activity,
        sizes (``_TAIL``), then the skeleton's edges as one text, the reasons as JSON and the
        template counts as text. The reasons' JSON is kept from one call to the next while
        ``reasons`` is the same list: they change only at a checkpoint (monitor.scoring replaces
        the list, never changes it in place), and their floats are most of an encoding's cost."""
        header = _HEADER.pack(STATE_FORMAT, self.n, self.reuse_hits, self.recent_count,
                              self.openings, self.followed, self.turns_known, self.flagged_at,
                              self.risk,
                              self.p_value, self.first_seen, self.last_seen,
                              float(self.next_checkpoint))
        if self._reasons_json is None or self._reasons_json[0] is not self.reasons:
            self._reasons_json = (self.reasons, _JSON.encode(self.reasons).encode("utf-8"))
        reasons = self._reasons_json[1]
        skeleton = self.skeleton
        edges = skeleton.edges_text().encode("utf-8", "surrogatepass")
        return b"".join((header, self.rff_sum.astype("<f8", copy=False).tobytes(),
                         self.recent.astype("<u4", copy=False).tobytes(),
                         self.open_keys.astype("<u8", copy=False).tobytes(),
                         self.open_followed.astype("u1", copy=False).tobytes(),
                         self.activity.to_bytes(),
                         _TAIL.pack(len(skeleton.edges), len(edges), len(reasons),
                                    skeleton.filled),
                         edges, reasons, skeleton.templates_text().encode("utf-8")))

    @classmethod
    def from_bytes(cls, data: bytes, config: MonitorConfig, dim: int) -> "AccountState":
        recent_at = _HEADER.size + 8 * dim
        keys_at = recent_at + 4 * config.reuse_history * config.reuse_perm
        arrays = keys_at + 9 * OPEN_RING
        expected = arrays + activity.SIZE + _TAIL.size
        if len(data) < expected or data[:2] != struct.pack("<H", STATE_FORMAT):
            raise StateEntryError(f"an account's stored state has {len(data)} bytes or another "
                                  f"format; expected at least {expected} bytes of format "
                                  f"{STATE_FORMAT}")
        edge_count, edges_size, reasons_size, filled = _TAIL.unpack_from(data,
                                                                         expected - _TAIL.size)
        reasons_at = expected + edges_size
        try:
            skeleton = Skeleton.from_edges_text(
                data[expected:reasons_at].decode("utf-8", "surrogatepass"), edge_count)
            reasons_json = data[reasons_at:reasons_at + reasons_size]
            reasons = [_interned(r) for r in json.loads(reasons_json.decode("utf-8"))]
            skeleton.templates = Skeleton.templates_from_text(
                data[reasons_at + reasons_size:].decode("utf-8"))
            skeleton.filled = filled
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError,
                AttributeError):
            raise StateEntryError("an account's stored edges, reasons or templates are not "
                                  "valid text and JSON") from None
        (_, n, hits, count, openings, followed, known, flagged_at, risk, p, first, last,
         nxt) = _HEADER.unpack_from(data)
        rff = np.frombuffer(data, "<f8", dim, _HEADER.size).copy()
        recent = np.frombuffer(data, "<u4", config.reuse_history * config.reuse_perm,
                               recent_at).reshape(config.reuse_history, config.reuse_perm).copy()
        keys = np.frombuffer(data, "<u8", OPEN_RING, keys_at).astype(np.uint64)
        continued = np.frombuffer(data, "u1", OPEN_RING, keys_at + 8 * OPEN_RING).astype(bool)
        state = cls(rff, recent, n, hits, count, openings, followed, known, keys, continued,
                    int(nxt), flagged_at, risk, p, first, last, reasons, skeleton,
                    Activity.from_bytes(data[arrays:arrays + activity.SIZE]))
        state._reasons_json = (reasons, reasons_json)
        return state


def _interned(reason: dict[str, Any]) -> dict[str, Any]:
    """A decoded reason whose keys and text values are the interpreter's shared copies: the
    same few names and meanings recur in every account (~1 KB each otherwise)."""
    return {sys.intern(k): sys.intern(v) if isinstance(v, str) else v
            for k, v in reason.items()}


def nearest_matches(recent: np.ndarray, count: int, signature: np.ndarray) -> int | None:
    """The most values ``signature`` shares with one of the ``count`` (at most the ring's
    size) signatures in ``recent``; None if there are none. Reuse and the nearest distance
    both come from this one comparison with the ring."""
    if count == 0:
        return None
    ring = recent[:min(count, len(recent))]
    return int(np.add.reduce(ring == signature, axis=1).max())  # per earlier prompt, equal values


def is_reuse(recent: np.ndarray, count: int, signature: np.ndarray, threshold: float) -> bool:
    """Whether ``signature`` nearly copies one of the ``count`` signatures in ``recent``:
    whether the share of equal values, ``matches / perm`` as a float, reaches ``threshold`` for
    one of them. Counted in integers against the fewest matches whose share reaches it (the
    same booleans, without a float mean per request)."""
    return reuse_and_distance(recent, count, signature, threshold)[0]


def reuse_and_distance(recent: np.ndarray, count: int, signature: np.ndarray,
                       threshold: float) -> tuple[bool, float | None]:
    """(is_reuse, the nearest distance) from one comparison with the ring. The distance is 1 -
    the largest share of equal values with one of the ``count`` recent signatures (the
    estimated Jaccard distance to the nearest); None if there are none."""
    matches = nearest_matches(recent, count, signature)
    if matches is None:
        return False, None
    perm = recent.shape[1]
    return matches >= least_matches(threshold, perm), 1.0 - matches / perm


@functools.lru_cache(maxsize=64)
def least_matches(threshold: float, perm: int) -> int:
    """The fewest of ``perm`` equal values whose share (``np.mean`` of the equalities: the count
    divided by ``perm`` in float64) is at least ``threshold``; ``perm + 1`` if none is."""
    shares = np.arange(perm + 1, dtype=np.float64) / perm
    reach = np.flatnonzero(shares >= threshold)
    return int(reach[0]) if reach.size else perm + 1


def remember(state: AccountState, signature: np.ndarray) -> None:
    state.recent[state.recent_count % len(state.recent)] = signature
    state.recent_count += 1


def conversation_key(first_user_message: str) -> int:
    """A conversation's 64-bit key: the hash of its first user message, which an opening sends
    as its prompt and every follow-up carries again as history."""
    digest = hashlib.blake2b(first_user_message.encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little")


def count_turn(state: AccountState, prior_turns: int | None, conversation: int | None) -> None:
    """Count one request's place in its conversation: an opening (``prior_turns`` 0) is
    remembered under ``conversation``; a follow-up continues the latest of the remembered,
    not yet continued openings with its key, if there is one (one follow-up per opening
    counts). A follow-up without a key leaves the account's conversations unknown: it is not
    counted in ``turns_known``, so ``single_turn`` is not tested on this account."""
    if prior_turns is None or (prior_turns > 0 and conversation is None):
        return
    state.turns_known += 1
    keys, continued = state.open_keys, state.open_followed
    if prior_turns == 0:
        slot = state.openings % OPEN_RING
        keys[slot] = conversation if conversation is not None else 0
        continued[slot] = False
        state.openings += 1
        return
    latest, best, best_age = (state.openings - 1) % OPEN_RING, -1, OPEN_RING
    for slot in np.flatnonzero(keys == np.uint64(conversation)).tolist():  # usually 0 or 1
        age = (latest - slot) % OPEN_RING
        if slot < state.openings and not continued[slot] and age < best_age:  # slots never
            best, best_age = slot, age  # written hold key 0
    if best >= 0:
        continued[best] = True
        state.followed += 1


def empirical_p(null: np.ndarray, value: float) -> float:
    """(1 + #{null >= value}) / (len(null) + 1), ``null`` sorted ascending."""
    above = len(null) - int(np.searchsorted(null, value, side="left"))
    return (1 + above) / (len(null) + 1)


def risk_of(p_value: float, level: float) -> float:
    return min(1.0, math.log(1 / p_value) / math.log(1 / level))
