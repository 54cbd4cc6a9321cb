"""API request logs as the monitor reads them: who asked what, and when.

The lines are read by fingerprint.io (every format and shape it reads: JSON Lines, gzip, stdin,
CSV, Parquet, datasets; the OpenAI chat log shape with ``request.messages`` and, for the account,
``account`` or ``request.user``), with the answer optional: the monitor judges requests. Each
becomes a ``Request``: account, prompt (the last user message), timestamp in seconds since the
epoch, id and line.

Timestamps are ISO 8601 (``2026-11-27T10:00:00Z``, ``+01:00`` offsets; a time without an offset
is taken as UTC) or numbers of seconds since the epoch (an integer, a float or a numeric string);
numbers of 1e11 and more are milliseconds (1e11 seconds would be the year 5138).

What is skipped, and counted by reason in ``RequestStats`` (a scan reports the counts and the
first lines of each): a line without a prompt, without an account, without a timestamp, or with
a timestamp that is none of the above. A log line that is not valid at all (malformed JSON, a
field of the wrong type) is an ``InputError`` naming file, line and field, as everywhere.
"""

from __future__ import annotations

import datetime
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from fingerprint.io import ReadStats, read_records
from fingerprint.records import FieldMap
from monitor.detector import conversation_key

MILLISECONDS_FROM = 1e11
EXAMPLES_KEPT = 5
SKIP_REASONS = ("no prompt", "no account", "no timestamp", "bad timestamp")


@dataclass(frozen=True)
class Request:
    """One request to the provider's API."""

    account: str
    prompt: str
    timestamp: float  # seconds since the epoch (UTC)
    id: str
    line: int = 0
    prior_turns: int | None = None  # answers in the conversation it carries (chat logs only)
    conversation: int | None = None  # its conversation's key (monitor.detector.conversation_key
    # of the first user message; chat logs only)


@dataclass
class RequestStats:
    """Requests read, and lines skipped by reason with the first few line numbers of each."""

    requests: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_KEPT:
            kept.append(line)

    def to_dict(self) -> dict[str, object]:
        return {"requests": self.requests, "skipped": dict(self.skipped),
                "skipped_lines": {k: list(v) for k, v in self.examples.items()}}


def parse_timestamp(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time or a number (see the module docstring);
    None if it is neither."""
    if text is None:
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return _iso_seconds(text)
    if not math.isfinite(value):
        return None
    return value / 1000.0 if abs(value) >= MILLISECONDS_FROM else value


def _iso_seconds(text: str) -> float | None:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def read_requests(path: str | os.PathLike[str], fields: FieldMap = FieldMap(),
                  stats: RequestStats | None = None) -> Iterator[Request]:
    """Every usable request of a log, in file order (logs are often out of time order; the
    monitor copes), counting what it skips in ``stats``."""
    stats = stats if stats is not None else RequestStats()
    read = ReadStats()
    for record in read_records(path, fields, read, require_response=False):
        reason = None
        moment = parse_timestamp(record.timestamp)
        if not record.account:
            reason = "no account"
        elif record.timestamp is None:
            reason = "no timestamp"
        elif moment is None:
            reason = "bad timestamp"
        if reason is not None:
            stats.skip(reason, record.line)
            continue
        stats.requests += 1
        yield Request(record.account, record.prompt or "", moment, record.id, record.line,
                      record.prior_turns, None if record.conversation is None
                      else conversation_key(record.conversation))
    for line in read.skipped_lines:
        stats.skip("no prompt", line)


def requests_by_account(requests: Iterable[Request]) -> dict[str, list[Request]]:
    """Each account's requests in time order (timestamp, then line: equal times keep the log's
    order), as every per-account pass over a log wants them."""
    out: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        out[r.account].append(r)
    for reqs in out.values():
        reqs.sort(key=lambda r: (r.timestamp, r.line))
    return dict(out)
