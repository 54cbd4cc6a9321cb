"""The offline scan: every account of a request log scored in one streaming pass.

``scan_file`` reads the log line by line (monitor.requests, so every format and shape the toolkit
reads, with the same counted skips), scores each request with the per-account test
(monitor.scoring) and returns one row per account: its risk, whether it is flagged, the p-value
of its strongest checkpoint, the reasons, and the ids of a few requests that show it.

Order. The test is sequential, so an account's requests must reach it in time order, but logs
are written out of order (several servers, retries, buffered writers) and interleave accounts.
A reorder buffer (a heap keyed by timestamp, then request id) holds each request until the
largest timestamp seen exceeds its own by more than ``reorder_seconds`` (the watermark), then
scores it. A request that arrives behind the watermark is *late*: it is still scored, at once,
in arrival order, and counted (``late`` in the stats), since dropping it would hide traffic and
holding everything would hold the whole log. So a log whose lines are displaced by less than the
window is scored exactly as the same log sorted by time (equal times are ordered by request id,
so their order in the file does not matter either).

Speed. Features (embedding, random Fourier features, MinHash) are computed for ``batch_size``
released requests at a time, on prompts stripped of their account's template one by one in
release order; scoring then walks the batch in order, so batching changes no result (beyond the
last bits of a float: the matrix product rounds by batch).

Memory: O(accounts x state) + the reorder window.
- Per account: the detector's ``AccountState`` (about 9 KB at the default configuration: the
  running sum of ``rff_features x bandwidths`` float64 features, the ring of recent MinHash
  signatures and the recent prompts' first and last words, monitor.skeleton), and at most
  ``EXAMPLES_FIRST + EXAMPLES_REUSE`` request ids.
- The requests inside the window, prompts included: traffic rate x ``reorder_seconds``. At most
  ``max_buffered`` are held: past that (a burst of traffic with one timestamp, a window too wide
  for the traffic), the earliest is scored before its window has passed and counted as ``early``,
  and a request that then arrives behind it counts as late. So memory stays bounded whatever the
  log holds.
- One batch of features (``batch_size`` rows).
"""

from __future__ import annotations

import datetime
import heapq
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fingerprint.atomic import atomic_write_bytes, output_file_problem
from fingerprint.records import FieldMap
from monitor.baseline import Baseline, fit_baseline
from monitor.detector import AccountState
from monitor.errors import ScanError
from monitor.groups import Group, find_groups
from monitor.report import check_report_path, write_report
from monitor.requests import Request, RequestStats, read_requests
from monitor.scoring import AccountScorer

EXAMPLES_FIRST = 3  # the account's first requests, in time order
EXAMPLES_REUSE = 5  # its first requests that nearly copy one of its recent prompts
BATCH_SIZE = 256
MAX_BUFFERED = 200_000


@dataclass(frozen=True)
class ScanRow:
    """One account's standing at the end of the log (see the README's "Monitor" section)."""

    account: str
    risk: float
    flagged: bool
    p_value: float | None  # the strongest tested checkpoint's; None: no checkpoint reached
    requests: int
    flagged_at: int | None  # requests seen when it was flagged on its own
    cluster: str | None  # the coordinated group it belongs to (monitor.groups), if any
    reasons: tuple[dict[str, Any], ...]
    examples: dict[str, list[str]]  # "first" and "reuse": request ids
    first_seen: str | float  # ISO 8601 UTC (seconds since the epoch if out of range)
    last_seen: str | float
    flagged_by: str | None = None  # "account" (its own test), "group" (its group's) or None
    activity: dict[str, Any] = field(default_factory=dict)  # monitor.activity: not tested

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "risk": self.risk, "flagged": self.flagged,
                "flagged_by": self.flagged_by, "p_value": self.p_value,
                "requests": self.requests, "flagged_at": self.flagged_at,
                "cluster": self.cluster,
                "reasons": list(self.reasons),
                "examples": {k: list(v) for k, v in self.examples.items()},
                "first_seen": self.first_seen, "last_seen": self.last_seen,
                "activity": dict(self.activity)}


@dataclass(frozen=True)
class ScanResult:
    """Every account's row (highest risk first, then smallest p-value, then name), what was read
    and skipped, and what the baseline could test."""

    rows: list[ScanRow]
    stats: dict[str, Any]
    baseline: dict[str, Any] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)  # coordinated accounts, largest first

    @property
    def flagged(self) -> int:
        return sum(row.flagged for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"accounts": len(self.rows), "flagged": self.flagged, "stats": dict(self.stats),
                "baseline": dict(self.baseline),
                "groups": [group.to_dict() for group in self.groups],
                "rows": [row.to_dict() for row in self.rows]}

    def write_jsonl(self, path: str | os.PathLike[str]) -> None:
        """One JSON line per account, written atomically: the file is the old one or the whole
        new one, never a part."""
        lines = [json.dumps(row.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
                 for row in self.rows]
        atomic_write_bytes(path, "".join(lines).encode("utf-8"))


class ReorderBuffer:
    """Requests held until the watermark passes them (the module docstring says why)."""

    def __init__(self, reorder_seconds: float, max_buffered: int = MAX_BUFFERED):
        self.window = reorder_seconds
        self.max_buffered = max_buffered
        self.heap: list[tuple[float, str, int, Request]] = []
        self.arrivals = 0
        self.newest = -math.inf  # largest timestamp seen
        self.forced = -math.inf  # latest timestamp released early (the buffer was full)
        self.late = 0
        self.early = 0

    @property
    def watermark(self) -> float:
        return max(self.newest - self.window, self.forced)

    def push(self, request: Request) -> list[Request]:
        """The requests ``request`` releases, in the order they are to be scored."""
        if request.timestamp < self.watermark:
            self.late += 1
            return [request]
        heapq.heappush(self.heap, (request.timestamp, request.id, self.arrivals, request))
        self.arrivals += 1
        self.newest = max(self.newest, request.timestamp)
        released = []
        limit = self.newest - self.window
        while self.heap and self.heap[0][0] < limit:
            released.append(heapq.heappop(self.heap)[3])
        while len(self.heap) > self.max_buffered:
            moment, _, _, oldest = heapq.heappop(self.heap)
            self.early += 1
            self.forced = max(self.forced, moment)
            released.append(oldest)
        return released

    def drain(self) -> list[Request]:
        """What is still held, in order (the log has ended)."""
        released = [entry[3] for entry in sorted(self.heap)]
        self.heap.clear()
        return released


class AccountTable:
    """Every account's state and example ids; scores released requests a batch at a time."""

    def __init__(self, baseline: Baseline, batch_size: int = BATCH_SIZE):
        self.scorer = AccountScorer(baseline)
        self.batch_size = batch_size
        self.states: dict[str, AccountState] = {}
        self.examples: dict[str, tuple[list[str], list[str]]] = {}
        self.pending: list[Request] = []

    def add(self, requests: list[Request]) -> None:
        self.pending.extend(requests)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), self.batch_size):
            self._score(self.pending[start:start + self.batch_size])
        self.pending.clear()

    def _score(self, batch: list[Request]) -> None:
        items = []
        for request in batch:
            state = self.states.get(request.account)
            if state is None:
                state = self.states[request.account] = self.scorer.new_state()
                self.examples[request.account] = ([], [])
            items.append((state, request.prompt, request.timestamp, request.prior_turns,
                          request.conversation))
        for request, reused in zip(batch, self.scorer.score(items)):
            first, reuse = self.examples[request.account]
            if len(first) < EXAMPLES_FIRST:
                first.append(request.id)
            if reused and len(reuse) < EXAMPLES_REUSE:
                reuse.append(request.id)

    def rows(self, groups: list[Group] = ()) -> list[ScanRow]:
        """Every account's row; a member flagged with its group (monitor.groups says which)
        takes the larger of its own risk and the group's, the group's test added to its
        reasons."""
        group_of = {account: group for group in groups for account in group.members}
        by_group = {account for group in groups for account in group.flags}
        rows = []
        for account, state in self.states.items():
            seen = self.scorer.assessment(account, state)
            first, reuse = self.examples[account]
            group = group_of.get(account)
            risk, reasons, flagged_by = seen.risk, seen.reasons, None
            if seen.flagged:
                flagged_by = "account"
            if account in by_group:
                risk = max(risk, group.risk)
                reasons = seen.reasons + (group_reason(group),)
                flagged_by = flagged_by or "group"
            rows.append(ScanRow(account, risk, flagged_by is not None, seen.p_value,
                                seen.requests, seen.flagged_at,
                                None if group is None else group.id, reasons,
                                {"first": list(first), "reuse": list(reuse)},
                                iso_time(state.first_seen), iso_time(state.last_seen),
                                flagged_by, seen.activity))
        rows.sort(key=lambda r: (-r.risk, 1.0 if r.p_value is None else r.p_value, r.account))
        return rows


def group_reason(group: Group) -> dict[str, Any]:
    return {"signal": "group", "group": group.id, "members": len(group.members),
            "requests": group.requests, "p_value": group.p_value,
            "meaning": "its coordinated group (accounts filling the same templates), tested as "
                       "one account, is unlike benign traffic"}


def iso_time(seconds: float) -> str | float:
    """ISO 8601 UTC with milliseconds; the number itself for a time no calendar date holds."""
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return seconds
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scan_file(path: str | os.PathLike[str], baseline: Baseline, fields: FieldMap = FieldMap(),
              *, reorder_seconds: float = 300.0, progress: Callable[[int], None] | None = None,
              batch_size: int = BATCH_SIZE, max_buffered: int = MAX_BUFFERED) -> ScanResult:
    """Score every account of the log at ``path`` against ``baseline``, streaming (the module
    docstring gives the order and the memory). ``progress(n)`` is told the log lines read since
    its last call."""
    if not (isinstance(reorder_seconds, (int, float)) and math.isfinite(reorder_seconds)
            and reorder_seconds >= 0):
        raise ScanError(f"reorder_seconds must be a finite number >= 0, got {reorder_seconds!r}")
    for name, value in (("batch_size", batch_size), ("max_buffered", max_buffered)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ScanError(f"{name} must be an integer >= 1, got {value!r}")
    stats = RequestStats()
    buffer = ReorderBuffer(float(reorder_seconds), max_buffered)
    table = AccountTable(baseline, batch_size)
    line = 0
    for request in read_requests(path, fields, stats):
        if progress is not None and request.line > line:
            progress(request.line - line)
            line = request.line
        table.add(buffer.push(request))
    table.add(buffer.drain())
    table.flush()
    groups = find_groups(table.scorer, table.states)
    rows = table.rows(groups)
    summary = {**stats.to_dict(), "late": buffer.late, "early": buffer.early,
               "accounts": len(rows), "reorder_seconds": float(reorder_seconds)}
    config = baseline.config
    tested = [size for size, ok in zip(config.checkpoint_sizes, baseline.tested) if ok]
    return ScanResult(rows, summary, {"alpha": config.alpha, "tested_checkpoints": tested,
                                      "counts": dict(baseline.counts)}, groups)


def scan_log(path: str | os.PathLike[str], baseline_dir: str | os.PathLike[str],
             out: str | os.PathLike[str], fields: FieldMap = FieldMap(), *,
             reorder_seconds: float = 300.0,
             progress: Callable[[int], None] | None = None,
             report: str | os.PathLike[str] | None = None) -> ScanResult:
    """What ``fingerprint monitor scan`` does: load the baseline (a baseline directory, or a
    benign request log, read with ``fields``, to fit one from with the default MonitorConfig,
    kept in memory only), check that ``out`` (and ``report``) can be written (before the scan,
    not after it), scan, write one JSON line per account to ``out`` atomically, then the HTML
    report (monitor.report: a second pass)."""
    if report is not None:
        check_report_path(report, path)
    target = Path(out)
    problem = output_file_problem(target, "--out")
    if problem:
        raise ScanError(problem)
    source = Path(baseline_dir)
    fitted_from = None
    if source.is_file():
        fitted_from = RequestStats()
        baseline = fit_baseline(read_requests(source, fields, fitted_from))
    elif source.is_dir():
        baseline = Baseline.load(source)
    else:
        raise ScanError(f"{source}: no such baseline directory or benign log")
    result = scan_file(path, baseline, fields, reorder_seconds=reorder_seconds,
                       progress=progress)
    if fitted_from is not None:  # what the benign log gave, as 'baseline build' prints it
        result.baseline["fitted_from"] = {"log": str(source), **fitted_from.to_dict()}
    result.write_jsonl(target)
    if report is not None:
        write_report(path, result, report, fields)
    return result
