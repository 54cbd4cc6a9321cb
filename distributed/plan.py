"""What the Ray engine will write, decided on the driver before any fingerprint is computed.

The engine works in two passes over the inputs (distributed.engine). The first, a cheap scan on
the cluster, returns every input's record ids and lines. Here the driver runs them, in input
order, through the same duplicate filter a local build uses (index.DuplicateFilter): the same
records are skipped, and a duplicate without ``--skip-duplicates`` stops the batch with the same
error naming file and line. What is left is cut into contiguous stage tasks, each of which
becomes one segment; since the rows each task will hold are known now, every task knows its
first row, so the staged segments continue the index's row numbering exactly as one local
segment would, and the driver can commit them together.

A task names the records it keeps by their ordinal among a file's non-empty records (not by
line: the rows of a dataset's splits are numbered per split), and carries a digest of their ids:
a worker that reads something else (a file changed between the passes) refuses to stage it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from dataclasses import asdict, dataclass
from typing import Iterable, NamedTuple, Sequence

from distributed.errors import EngineError
from fingerprint.io import source_name
from index import DuplicateFilter, SegmentGroup

# Rows fingerprinted and checked for duplicates against the index at a time.
CHECK_CHUNK = 4096
# A task (and so a segment) holds at most this many rows; more tasks than workers also keep a
# lost task's retry short.
ROWS_PER_TASK = 250_000


@dataclass(frozen=True)
class Shard:
    """One input as a worker opens it (``path``: absolute, workers do not share the driver's
    working directory) and as records name it (``name``: as the user gave it)."""

    index: int
    path: str
    name: str


@dataclass(frozen=True)
class Scan:
    """The first pass over one shard: ids and lines of its non-empty records, in order."""

    shard: Shard
    ids: list[str]
    lines: list[int]
    empty: int


@dataclass(frozen=True)
class Part:
    """The records of one shard a task keeps: ``[start, end)`` ranges of ordinals."""

    path: str
    name: str
    ranges: list[tuple[int, int]]


@dataclass(frozen=True)
class StageTask:
    """One segment to stage: its name, rows, where they come from and their ids' digest."""

    name: str
    first_row: int
    rows: int
    parts: list[Part]
    skipped_empty: int
    skipped_duplicates: int
    digest: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "StageTask":
        data = json.loads(text)
        parts = [Part(p["path"], p["name"], [(int(a), int(b)) for a, b in p["ranges"]])
                 for p in data.pop("parts")]
        return cls(parts=parts, **data)


@dataclass(frozen=True)
class Plan:
    tasks: list[StageTask]
    read: int  # records read, empty ones included
    added: int
    skipped_empty: int
    skipped_duplicates: int


class _Seen(NamedTuple):
    """What the duplicate filter reads of a record, and where the record is."""

    id: str
    source: str
    line: int
    shard: int
    ordinal: int


def shards_of(inputs: Sequence[str | os.PathLike[str]]) -> list[Shard]:
    """The inputs as shards; standard input cannot be read by workers on other processes."""
    shards = []
    for i, path in enumerate(inputs):
        if str(path) == "-":
            raise EngineError("--engine ray cannot read standard input (workers open the "
                              "inputs themselves); save it to a file, or use --engine local")
        where = os.path.abspath(path) if os.path.exists(path) else os.fspath(path)
        shards.append(Shard(i, str(where), source_name(path)))
    return shards


def digest_ids(ids: Iterable[str]) -> str:
    h = hashlib.sha256()
    for ident in ids:
        h.update(ident.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def plan_tasks(group: SegmentGroup, scans: Sequence[Scan], *, skip_duplicates: bool,
               workers: int, first_number: int, rows_per_task: int = ROWS_PER_TASK) -> Plan:
    """Stage tasks over the fresh records of ``scans`` (in input order), following ``group``'s
    last row; ``first_number`` numbers the first new segment. Skipped records are counted on
    the first segment, so the index's totals are those of a local build."""
    duplicates = DuplicateFilter(group, skip_duplicates)
    fresh = _Fresh()
    for scan in sorted(scans, key=lambda s: s.shard.index):
        for start in range(0, len(scan.ids), CHECK_CHUNK):
            ids = scan.ids[start:start + CHECK_CHUNK]
            if duplicates.all_fresh(ids):
                fresh.extend(ids, scan.shard.index, range(start, start + len(ids)))
                continue
            chunk = [_Seen(i, scan.shard.name, line, scan.shard.index, start + n) for n, (i, line)
                     in enumerate(zip(ids, scan.lines[start:start + CHECK_CHUNK]))]
            kept = duplicates.fresh(chunk)  # type: ignore[arg-type]  # reads id/source/line
            duplicates.skipped += len(chunk) - len(kept)
            for row in kept:
                fresh.extend([row.id], row.shard, [row.ordinal])  # type: ignore[attr-defined]
    empty = sum(s.empty for s in scans)
    read = sum(len(s.ids) + s.empty for s in scans)
    if not fresh.ids:
        return Plan([], read, 0, empty, duplicates.skipped)
    shards = {s.shard.index: s.shard for s in scans}
    total = len(fresh.ids)
    count = min(total, max(workers, math.ceil(total / rows_per_task)))
    bounds = [total * k // count for k in range(count + 1)]
    first_row = len(group)
    tasks = []
    for k in range(count):
        lo, hi = bounds[k], bounds[k + 1]
        tasks.append(StageTask(
            name=f"seg-{first_number + k:06d}-{uuid.uuid4().hex[:8]}",
            first_row=first_row + lo, rows=hi - lo,
            parts=_parts(fresh.shards[lo:hi], fresh.ordinals[lo:hi], shards),
            skipped_empty=empty if k == 0 else 0,
            skipped_duplicates=duplicates.skipped if k == 0 else 0,
            digest=digest_ids(fresh.ids[lo:hi])))
    return Plan(tasks, read, total, empty, duplicates.skipped)


class _Fresh:
    """The kept records in input order, as three parallel lists (a million small objects
    would cost the driver about a second): id, shard index and ordinal in the shard."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.shards: list[int] = []
        self.ordinals: list[int] = []

    def extend(self, ids: Sequence[str], shard: int, ordinals: Iterable[int]) -> None:
        self.ids.extend(ids)
        self.shards.extend([shard] * len(ids))
        self.ordinals.extend(ordinals)


def _parts(shard_of: list[int], ordinals: list[int], shards: dict[int, Shard]) -> list[Part]:
    """Consecutive rows of one shard become one part; consecutive ordinals one range."""
    parts: list[Part] = []
    current = None
    for shard, ordinal in zip(shard_of, ordinals):
        if shard != current:  # by shard, not path: a file given twice is two shards
            current = shard
            parts.append(Part(shards[current].path, shards[current].name, []))
        ranges = parts[-1].ranges
        if ranges and ranges[-1][1] == ordinal:
            ranges[-1] = (ranges[-1][0], ordinal + 1)
        else:
            ranges.append((ordinal, ordinal + 1))
    return parts
