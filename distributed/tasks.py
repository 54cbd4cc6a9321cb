"""What runs on the Ray workers: the scan of one input, and the staging of one segment.

Both read through fingerprint.io (the toolkit's one reader of inputs), not through Ray Data's
own ``read_json``/``read_parquet``: the same shapes, field maps, gzip detection, JSON arrays,
CSV and datasets, and the same errors naming file, line and field, as a local build. Ray Data
schedules the work (which input, which rows, which worker); the cost of that choice is that a
file is the unit of reading: one scan task reads a whole file, and a stage task whose rows start
deep in a large file parses the lines before them (JSON decoding only, a small share of the cost
of fingerprinting them).

Nothing here imports Ray: these are plain functions and a plain class that Ray Data calls, and
errors of the toolkit's own are returned as data (distributed.transport), never raised.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

from distributed.errors import EngineError
from distributed.plan import Part, StageTask, digest_ids
from distributed.transport import error_payload
from fingerprint.config import FingerprintConfig
from fingerprint.errors import FingerprintError
from fingerprint.fingerprinter import Fingerprinter
from fingerprint.io import ReadStats, read_records
from fingerprint.normalize import prompt_hashes
from fingerprint.records import FieldMap, ResponseRecord
from index import STAGING_PREFIX
from index.manifest import SegmentEntry
from index.segment_writer import SegmentWriter


def scan_shard(row: dict[str, Any], fields: FieldMap) -> dict[str, Any]:
    """Ray Data ``map`` function: the ids and lines of one input's non-empty records."""
    shard = json.loads(row["shard"])
    stats = ReadStats()
    ids: list[str] = []
    lines: list[int] = []
    try:
        for record in read_records(shard["path"], fields, stats, name=shard["name"]):
            ids.append(record.id)
            lines.append(record.line)
    except FingerprintError as error:
        return {"shard": shard["index"], "scan": "", "error": error_payload(error)}
    return {"shard": shard["index"], "scan": json.dumps({"ids": ids, "lines": lines,
                                                         "empty": stats.empty}),
            "error": ""}


class SegmentStager:
    """Ray Data callable class: one instance per actor, so the embedding model loads once per
    worker; each call stages the segment of one StageTask and returns its manifest entry."""

    def __init__(self, config: FingerprintConfig, batch_size: int, directory: str,
                 fields: FieldMap, store_text: bool, chunk_size: int):
        self.fingerprinter = Fingerprinter(config, batch_size=batch_size)
        self.directory = Path(directory)
        self.fields = fields
        self.store_text = store_text
        self.chunk_size = chunk_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        names, entries, errors = [], [], []
        for spec in batch["task"]:
            task = StageTask.from_json(str(spec))
            names.append(task.name)
            try:
                entry = self.stage(task)
            except FingerprintError as error:
                entries.append("")
                errors.append(error_payload(error))
            else:
                entries.append(json.dumps(entry.to_dict()))
                errors.append("")
        return {"task": names, "entry": entries, "error": errors}

    def stage(self, task: StageTask) -> SegmentEntry:
        """Write the task's segment under its hidden name; remove it again on any error."""
        config = self.fingerprinter.config
        target = self.directory / f"{STAGING_PREFIX}{task.name}"
        shutil.rmtree(target, ignore_errors=True)  # what an earlier attempt of this task left
        writer = SegmentWriter(target, task.name, task.first_row, config.num_perm,
                               self.fingerprinter.embedding_dim, config.style_features,
                               self.store_text)
        try:
            ids: list[str] = []
            for records in self._chunks(task.parts):
                prints = self.fingerprinter.fingerprint([r.response for r in records])
                writer.add(records, prints, prompt_hashes((r.prompt for r in records),
                                                          config.normalizer_version))
                ids.extend(r.id for r in records)
            if len(ids) != task.rows or digest_ids(ids) != task.digest:
                raise EngineError(f"{', '.join(p.name for p in task.parts)}: the records read "
                                  f"now are not those scanned a moment ago (an input changed "
                                  f"while indexing?); nothing was added to the index")
            return writer.finish(task.skipped_empty, task.skipped_duplicates)
        except BaseException:
            writer.abort()
            raise

    def _chunks(self, parts: list[Part]) -> Iterator[list[ResponseRecord]]:
        chunk: list[ResponseRecord] = []
        for part in parts:
            for record in _kept(part, self.fields):
                chunk.append(record)
                if len(chunk) >= self.chunk_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def _kept(part: Part, fields: FieldMap) -> Iterator[ResponseRecord]:
    """The records of ``part.ranges`` (ordinals among the file's non-empty records); the file
    is closed as soon as the last range is passed."""
    ranges = iter(part.ranges)
    start, end = next(ranges, (0, 0))
    records = read_records(part.path, fields, name=part.name)
    try:
        for ordinal, record in enumerate(records):
            while ordinal >= end:
                start, end = next(ranges, (-1, -1))
                if end < 0:
                    return
            if ordinal >= start:
                yield record
    finally:
        records.close()  # type: ignore[attr-defined]
