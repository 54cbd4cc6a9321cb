"""The scan's HTML report: a page an analyst or an appeal reviewer can read (``--report``).

The scan streams the log and keeps only per-account state, so it cannot show prompts or
timelines afterwards. The report is a second streaming pass over the same log that collects only
what the page shows, for the accounts it shows: the flagged accounts (highest risk first, at most
``MAX_FLAGGED``) and the ``TOP_UNFLAGGED`` unflagged accounts of highest risk above zero. Per
shown account it keeps ``BUCKETS`` request counts (the timeline), the prompts of its example
request ids (the row's ``examples``, each clipped to ``PROMPT_CHARS``) and the edges of its first
``TEMPLATE_SAMPLE`` prompts (the templates, monitor.templates). Memory is bounded by those
numbers, whatever the log holds.

Standard input cannot be read twice, so a report of '-' is refused before any work
(``check_report_path``), as are a file name that is not ``.html``/``.htm`` and a directory that
does not exist: a report is asked for before minutes of scanning, not after. The page is written
atomically. Rendering (and the escaping of every text from the log) is monitor.report_html's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from fingerprint.atomic import atomic_write_bytes, output_file_problem
from fingerprint.io import source_name
from fingerprint.records import FieldMap
from monitor.errors import MonitorReportError
from monitor.report_html import render_page
from monitor.requests import RequestStats, parse_timestamp, read_requests
from monitor.templates import Edges

if TYPE_CHECKING:
    from monitor.scan import ScanResult, ScanRow

REPORT_SUFFIXES = (".html", ".htm")
MAX_FLAGGED = 200
TOP_UNFLAGGED = 5
BUCKETS = 48
TEMPLATE_SAMPLE = 24
PROMPT_CHARS = 2000
TIME_SLACK = 0.001  # the row's times are ISO 8601 to the millisecond


@dataclass
class AccountView:
    """What the page shows of one account, filled by the second pass."""

    row: "ScanRow"
    start: float  # the account's first request (seconds since the epoch)
    end: float  # its last
    width: float  # seconds per timeline bucket (0: every request at one moment)
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    prompts: dict[str, tuple[float, str, int]] = field(default_factory=dict)  # id -> (time,
    # prompt clipped, its full length in characters)
    sample: list[Edges] = field(default_factory=list)
    outside: int = 0  # requests outside the scanned first..last seen (the log changed since)

    @classmethod
    def of(cls, row: "ScanRow") -> "AccountView":
        start, end = _seconds(row.first_seen), _seconds(row.last_seen)
        return cls(row, start, end, max(0.0, end - start) / BUCKETS)

    def add(self, timestamp: float, request_id: str, prompt: str, wanted: set[str]) -> None:
        if not self.start - TIME_SLACK <= timestamp <= self.end + TIME_SLACK:
            self.outside += 1
        slot = 0 if self.width == 0 else int((timestamp - self.start) // self.width)
        self.buckets[min(max(slot, 0), BUCKETS - 1)] += 1
        if request_id in wanted and request_id not in self.prompts:
            self.prompts[request_id] = (timestamp, prompt[:PROMPT_CHARS], len(prompt))
        if len(self.sample) < TEMPLATE_SAMPLE:
            self.sample.append(Edges.of(prompt))


@dataclass(frozen=True)
class ReportSummary:
    """What the report pass did: accounts shown, requests read, and whether the log read the
    same as in the scan."""

    path: str
    accounts: int
    requests: int
    log_changed: bool


def _seconds(moment: str | float) -> float:
    if isinstance(moment, (int, float)):
        return float(moment)
    parsed = parse_timestamp(moment)
    return 0.0 if parsed is None else parsed


def check_report_path(path: str | os.PathLike[str], log: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a report that could not be written or whose log cannot be read
    a second time."""
    target = Path(path)
    if str(log) == "-":
        raise MonitorReportError(
            f"{target}: the report reads the log a second time, and standard input ('-') can be "
            f"read only once; save the log to a file and scan that, or scan without --report")
    if target.suffix.lower() not in REPORT_SUFFIXES:
        raise MonitorReportError(f"{target}: the monitor's report is an HTML page; name it "
                                 f".html or .htm")
    problem = output_file_problem(target, "--report")
    if problem:
        raise MonitorReportError(problem)


def shown_rows(result: "ScanResult", max_flagged: int = MAX_FLAGGED,
               top_unflagged: int = TOP_UNFLAGGED) -> list["ScanRow"]:
    """The accounts that get a section: flagged ones, then the riskiest unflagged (risk > 0);
    ``result.rows`` is in risk order already."""
    flagged = [row for row in result.rows if row.flagged][:max_flagged]
    unflagged = [row for row in result.rows if not row.flagged and row.risk > 0]
    return flagged + unflagged[:top_unflagged]


def collect(log: str | os.PathLike[str], rows: Sequence["ScanRow"],
            fields: FieldMap = FieldMap()) -> tuple[dict[str, AccountView], RequestStats]:
    """The second pass: every shown account's timeline, example prompts and template sample."""
    views = {row.account: AccountView.of(row) for row in rows}
    wanted = {account: {i for ids in view.row.examples.values() for i in ids}
              for account, view in views.items()}
    stats = RequestStats()
    for request in read_requests(log, fields, stats):
        view = views.get(request.account)
        if view is not None:
            view.add(request.timestamp, request.id, request.prompt, wanted[request.account])
    return views, stats


def write_report(log: str | os.PathLike[str], result: "ScanResult",
                 path: str | os.PathLike[str], fields: FieldMap = FieldMap(), *,
                 max_flagged: int = MAX_FLAGGED,
                 top_unflagged: int = TOP_UNFLAGGED) -> ReportSummary:
    """Read ``log`` (the one ``result`` was scanned from, with the same ``fields``) a second
    time and write the HTML report to ``path`` atomically."""
    check_report_path(path, log)
    rows = shown_rows(result, max_flagged, top_unflagged)
    views, stats = collect(log, rows, fields)
    changed = stats.requests != result.stats.get("requests") or \
        any(v.outside for v in views.values())
    page = render_page(result, [views[row.account] for row in rows], source=source_name(log),
                       log_changed=changed, max_flagged=max_flagged)
    atomic_write_bytes(path, page.encode("utf-8"))
    return ReportSummary(str(path), len(rows), stats.requests, changed)
