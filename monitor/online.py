"""The online monitor: one request at a time, a decision (allow / throttle / block) at once.

``Monitor.observe(account, prompt, timestamp)`` scores the request with the same per-account
test as the offline scan (``AccountScorer.score``, monitor.scoring), then asks the risk-adaptive
limiter (monitor.limiter) whether the account may send it now, and returns a ``Decision``: the
decision, the account's risk, ``retry_after`` seconds (0 when allowed), the reasons behind the
risk, the account's requests so far and whether it is flagged. Given ``groups`` (the
coordinated groups of a scan: monitor.group_limits), a member is also held to its group's shared
allowance.

Which requests are scored. Allowed, throttled and blocked requests alike: a campaign that is
throttled or blocked keeps probing, and what it sends is evidence (an account blocked at risk
0.95 reaches a flag only if its later requests are scored). Two exceptions, both bounding what a
refused client costs and neither hiding a distinct prompt from the test:
- a request that repeats the account's last refused prompt is a retry: it was scored when it was
  first refused, and scoring it again would make a client that retries look like a template
  (the ``reuse`` signal). It is counted (``retries``) and decided at the account's current risk;
- once an account is flagged the verdict is reached: its requests are counted and decided (all
  blocked under the default policy) but not scored, so a flagged campaign's flood costs a
  counter, not ~100 microseconds of features each.
Whatever an account sends, its state stays the same size (the detector's is fixed; the rest is
a header of counters).

Time. ``timestamp`` None means now (``clock()``, default ``time.time``). The test needs each
account's requests in time order, but a request can arrive late (several gateways, a retry) or
carry a skewed clock. A request earlier than the account's latest is scored in arrival order,
as the offline scan scores a late request, and the limiter takes it at the account's latest time
(a late request does not make the account look busier than it is); it is counted as ``late``. A
timestamp more than ``max_future_seconds`` ahead of the monitor's clock is not believed (it would
push the account's clock ahead and then refuse its next honest requests): the monitor's clock is
used instead, and it is counted as ``future``.

Durability (the contract). Each account's entry is held decoded in a bounded LRU cache of
``cache_accounts`` accounts (one evicted is handed to the store first) and written to the state
store (monitor.state: snapshot + journal) at every flush. A flush happens after every
``flush_every`` requests and, when requests stop, ``flush_seconds`` after the first unflushed one
(``flush_due()``, which the server calls from a timer), and it happens BEFORE the decision that
triggered it is returned. So with ``flush_every=1`` (the default) a SIGKILL loses nothing that
was acknowledged: every returned decision's effect (requests, risk, limiter state) is on disk,
and at most the one request being decided when the process died may or may not be. With
``flush_every=N`` it loses at most the requests of the last unflushed window (fewer than N,
no older than ``flush_seconds`` while the timer runs). The journal is written with ``write``;
with ``fsync=False`` (the default) the data is in the kernel's page cache when the decision is
returned, which a killed process cannot lose but a power cut can (the last seconds of
writeback); ``fsync=True`` adds an ``fdatasync`` per flush. The cost of flushing every request
is encoding the account's state and one ``write`` (figures: benchmarks/monitor_online.py). When
the journal has grown past ``snapshot_bytes`` (and past twice the store's estimated size, so
that rewriting the snapshot stays a small share of the writes) the store folds it into a new
snapshot. ``close()`` flushes and snapshots. A flush that fails (a full disk) raises
``StateWriteError`` instead of a decision; the request was applied in memory, so a client that
retries it is counted twice.

Threads: one lock around everything (``observe``, ``flush``, ``close``): scoring is CPU-bound
Python, so a second thread would not run it faster, and one lock keeps the store single-threaded
as it requires.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from monitor.account import NO_DIGEST, AccountEntry, prompt_digest, state_fingerprint
from monitor.baseline import Baseline
from monitor.detector import conversation_key
from monitor.errors import CheckError, MonitorConfigError, StateError
from monitor.group_limits import GroupLimits, load_group_times, save_group_times
from monitor.limiter import ALLOW, BLOCK, THROTTLE, LimitDecision, LimitPolicy
from monitor.scoring import AccountScorer
from monitor.state import StateStore
from monitor.statefile import MAX_ACCOUNT_BYTES

STATS = ("requests", "allow", "throttle", "block", "scored", "retries", "flagged_unscored",
         "late", "future", "flushes", "snapshots", "evictions")


@dataclass(frozen=True)
class Decision:
    """The answer to one request: ``decision`` ("allow", "throttle" or "block"), the account's
    ``risk`` in [0, 1] after it, ``retry_after`` seconds (0.0 when allowed), the ``reasons``
    behind the risk (monitor.scoring's, empty before the first checkpoint), ``requests`` the
    account has sent (this one, refused ones and retries included) and ``flagged``."""

    decision: str
    risk: float
    retry_after: float
    reasons: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    requests: int = 0
    flagged: bool = False
    group: str | None = None  # the coordinated group limited with the account, if any

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "risk": self.risk, "retry_after": self.retry_after,
                "reasons": [dict(r) for r in self.reasons], "requests": self.requests,
                "flagged": self.flagged, "group": self.group}


def load_policy(path: str | os.PathLike[str]) -> LimitPolicy:
    """A LimitPolicy from a JSON object of its fields (those left out keep their defaults);
    every error names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise MonitorConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MonitorConfigError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise MonitorConfigError(f"{path}: expected a JSON object of limit policy fields, got "
                                 f"{type(data).__name__}")
    known = {f.name for f in fields(LimitPolicy)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MonitorConfigError(f"{path}: unknown limit policy fields {unknown}; known: "
                                 f"{sorted(known)}")
    try:
        return LimitPolicy(**data)
    except MonitorConfigError as exc:
        raise MonitorConfigError(f"{path}: {exc}") from None


def _positive(name: str, value: object, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value < math.inf:
        what = "an integer >= 1" if integer else "a finite number > 0"
        raise MonitorConfigError(f"{name} must be {what}, got {value!r}")


def check_text(name: str, value: object) -> str:
    """``value`` if it is text that can be written as UTF-8, else the CheckError naming it."""
    if not isinstance(value, str):
        raise CheckError(f"{name} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CheckError(f"{name} is not valid Unicode text (a lone surrogate at character "
                         f"{exc.start})") from None
    return value


def check_request(account: object, prompt: object, timestamp: object,
                  prior_turns: object, conversation: object = None) -> None:
    """The CheckError a request's fields deserve, if any (each names its field)."""
    check_text("account", account)
    if not account:
        raise CheckError("account must be a non-empty string")
    if len(account.encode("utf-8")) > MAX_ACCOUNT_BYTES:  # type: ignore[union-attr]
        raise CheckError(f"account must be at most {MAX_ACCOUNT_BYTES} bytes of UTF-8")
    check_text("prompt", prompt)
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(
            timestamp, (int, float)) or not math.isfinite(timestamp)):
        raise CheckError(f"timestamp must be a finite number of seconds since the epoch, got "
                         f"{timestamp!r}")
    if prior_turns is not None and (isinstance(prior_turns, bool) or not isinstance(
            prior_turns, int) or prior_turns < 0):
        raise CheckError(f"prior_turns must be an integer >= 0, got {prior_turns!r}")
    if conversation is not None:
        check_text("conversation", conversation)


class Monitor:
    """The online monitor over ``baseline`` (a Baseline or its directory) with its state in
    ``state_dir`` (the module docstring gives the contract; ``stats`` counts what it did since
    it was opened, ``store.recovery`` what opening the state found). A context manager."""

    def __init__(self, baseline: Baseline | str | os.PathLike[str],
                 state_dir: str | os.PathLike[str], policy: LimitPolicy = LimitPolicy(), *,
                 flush_every: int = 1, flush_seconds: float = 1.0,
                 cache_accounts: int = 1_000, snapshot_bytes: int = 64 << 20,
                 max_future_seconds: float = 300.0, fsync: bool = False,
                 clock: Callable[[], float] = time.time, groups: GroupLimits | None = None):
        if not isinstance(policy, LimitPolicy):
            raise MonitorConfigError(f"policy must be a LimitPolicy, got {type(policy).__name__}")
        if groups is not None and not isinstance(groups, GroupLimits):
            raise MonitorConfigError(f"groups must be a GroupLimits, got {type(groups).__name__}")
        for name, value, integer in (("flush_every", flush_every, True),
                                     ("flush_seconds", flush_seconds, False),
                                     ("cache_accounts", cache_accounts, True),
                                     ("snapshot_bytes", snapshot_bytes, True),
                                     ("max_future_seconds", max_future_seconds, False)):
            _positive(name, value, integer)
        self.baseline = baseline if isinstance(baseline, Baseline) else Baseline.load(baseline)
        self.scorer = AccountScorer(self.baseline)
        self.policy = policy
        self.flush_every, self.flush_seconds = flush_every, float(flush_seconds)
        self.cache_accounts, self.snapshot_bytes = cache_accounts, snapshot_bytes
        self.max_future_seconds = float(max_future_seconds)
        self.clock = clock
        self.config_fingerprint = state_fingerprint(self.baseline)
        self.store = StateStore(state_dir, self.config_fingerprint, fsync=fsync)
        self.groups = groups if groups is not None else GroupLimits()
        try:
            self._group_tat = load_group_times(state_dir)  # monitor.group_limits
        except BaseException:
            self.store.close()
            raise
        self._groups_dirty = False
        self.stats = dict.fromkeys(STATS, 0)
        self._cache: OrderedDict[str, AccountEntry] = OrderedDict()
        self._dirty: set[str] = set()
        self._lock = threading.RLock()
        self._unflushed = 0
        self._first_unflushed = 0.0
        self._blob_bytes = 0  # the last encoded entry's size: the snapshot's size estimate
        self._closed = False

    # -- deciding --------------------------------------------------------------------------

    def observe(self, account: str, prompt: str, timestamp: float | None = None,
                prior_turns: int | None = None, conversation: str | None = None) -> Decision:
        """Score one request and decide it (see the module docstring for which requests are
        scored, how time is taken and when the decision is durable). ``prior_turns`` (answers
        already in the conversation) and ``conversation`` (its first user message: an
        opening's is its prompt) let the monitor see conversations that are never continued;
        without them that signal is not tested."""
        check_request(account, prompt, timestamp, prior_turns, conversation)
        with self._lock:
            if self._closed:
                raise StateError(f"the monitor of {self.store.directory} is closed")
            entry = self._entry(account)
            moment, limiter_time = self._times(entry, timestamp)
            retry = entry.refused != NO_DIGEST and prompt_digest(prompt) == entry.refused
            if retry:
                self.stats["retries"] += 1
                entry.retries += 1
            elif entry.state.flagged:
                self.stats["flagged_unscored"] += 1
            else:
                key = None if conversation is None else conversation_key(conversation)
                self.scorer.score([(entry.state, prompt, moment, prior_turns, key)])
                self.stats["scored"] += 1
            seen = self.scorer.assessment(account, entry.state)
            limit = self.policy.decision(seen.risk, entry.tat, limiter_time)
            group = self.groups.group_of(account)
            if group is None:
                entry.tat = limit.tat
            else:
                limit = self._with_group(entry, limit, group, limiter_time)
            entry.requests += 1
            if limit.decision == ALLOW:
                entry.refused = NO_DIGEST
            else:
                entry.refused = prompt_digest(prompt)
                if limit.decision == BLOCK:
                    entry.blocked += 1
                else:
                    entry.throttled += 1
            self.stats["requests"] += 1
            self.stats[limit.decision] += 1
            self._dirty.add(account)
            self._count_unflushed()
            return Decision(limit.decision, seen.risk, limit.retry_after,
                            tuple(dict(r) for r in seen.reasons),  # copies: the state's own
                            entry.requests, seen.flagged, group)

    def _with_group(self, entry: AccountEntry, limit: LimitDecision, group: str,
                    now: float) -> LimitDecision:
        """The account's decision combined with its group's (monitor.group_limits): allowed
        only if both allow, a refusal advancing neither allowance, the stricter refusal with
        the longer wait."""
        shared = self.policy.decision(self.groups.risk[group], self._group_tat.get(group, 0.0),
                                      now)
        if limit.decision == ALLOW and shared.decision == ALLOW:
            entry.tat = limit.tat
            self._group_tat[group] = shared.tat
            self._groups_dirty = True
            return limit
        if limit.decision != ALLOW:
            entry.tat = limit.tat
        refusals = [d for d in (limit, shared) if d.decision != ALLOW]
        worst = BLOCK if any(d.decision == BLOCK for d in refusals) else THROTTLE
        return LimitDecision(worst, entry.tat, max(d.retry_after for d in refusals))

    def _times(self, entry: AccountEntry, timestamp: float | None) -> tuple[float, float]:
        """(the time the detector records, the time the limiter decides at): see "Time" in
        the module docstring."""
        now = self.clock()
        moment = now if timestamp is None else float(timestamp)
        if moment > now + self.max_future_seconds:
            self.stats["future"] += 1
            moment = now
        if moment < entry.last:
            self.stats["late"] += 1
            return moment, entry.last
        entry.last = moment
        return moment, moment

    def _entry(self, account: str) -> AccountEntry:
        entry = self._cache.get(account)
        if entry is not None:
            self._cache.move_to_end(account)
            return entry
        blob = self.store.get(account)
        if blob is None:
            entry = AccountEntry(self.scorer.new_state())
        else:
            entry = AccountEntry.from_bytes(blob, account, self.baseline.config,
                                            self.scorer.features.dim)
        self._cache[account] = entry
        while len(self._cache) > self.cache_accounts:
            oldest, evicted = self._cache.popitem(last=False)
            if oldest in self._dirty:
                self._put(oldest, evicted)
            self.stats["evictions"] += 1
        return entry

    def _put(self, account: str, entry: AccountEntry) -> None:
        blob = entry.to_bytes()
        self._blob_bytes = len(blob)
        self.store.put(account, blob)
        self._dirty.discard(account)

    # -- persisting ------------------------------------------------------------------------

    def _count_unflushed(self) -> None:
        if self._unflushed == 0:
            self._first_unflushed = time.monotonic()
        self._unflushed += 1
        if self._unflushed >= self.flush_every or \
                time.monotonic() - self._first_unflushed >= self.flush_seconds:
            self.flush()

    def flush(self) -> int:
        """Write every changed account to the store's journal now (and snapshot if the journal
        has grown large); returns how many accounts were written."""
        with self._lock:
            for account in list(self._dirty):
                self._put(account, self._cache[account])
            count = self.store.flush()
            if self._groups_dirty:
                save_group_times(self.store.directory, self._group_tat)
                self._groups_dirty = False
            self._unflushed = 0
            self.stats["flushes"] += 1
            limit = max(self.snapshot_bytes, 2 * len(self.store) * self._blob_bytes)
            if self.store.journal_bytes > limit:
                self.store.snapshot()
                self.stats["snapshots"] += 1
            return count

    def flush_due(self) -> bool:
        """Flush if requests have waited ``flush_seconds`` unflushed (a timer calls this when
        traffic stops); True if it flushed."""
        with self._lock:
            if self._closed or not self._unflushed or \
                    time.monotonic() - self._first_unflushed < self.flush_seconds:
                return False
            self.flush()
            return True

    def warm_up(self) -> None:
        """Load what the first request would (the embedding table, the projection) by computing
        one prompt's features, touching no account: a server calls it before it says it is
        ready, so its first answer is not seconds late."""
        self.scorer.features.transform(["warm up"])

    def health(self) -> dict[str, Any]:
        """What ``GET /v1/health`` shows: counters since opening, accounts held, what opening
        the state found."""
        with self._lock:
            recovery = self.store.recovery
            return {"status": "closed" if self._closed else "ok", "stats": dict(self.stats),
                    "accounts_cached": len(self._cache), "accounts_stored": len(self.store),
                    "groups_limited": len(self.groups.risk),
                    "unflushed_requests": self._unflushed,
                    "config_fingerprint": self.config_fingerprint,
                    "recovery": {"snapshot_entries": recovery.snapshot_entries,
                                 "journal_entries": recovery.journal_entries,
                                 "torn_frames": recovery.torn_frames}}

    def close(self) -> None:
        """Flush, write a snapshot, release the state directory. Closing twice does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.flush()
                self.store.snapshot()
            finally:
                self.store.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
