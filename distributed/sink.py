"""The commit, as a Ray Data ``Datasink``: the staged segments become part of the index at once.

Ray Data calls ``write`` in a task per block of stage results (each only collects the manifest
entries the workers returned), then, on the driver, ``on_write_complete`` with all of them, or
``on_write_failed`` with the first error (Ray 2.60's ``Dataset.write_datasink``: an exception
in ``on_write_complete`` also ends in ``on_write_failed``). The driver holds the index's writer
lock throughout, so the commit is index.commit's: every staged segment is checked (config, rows,
and with ``verify`` every file's sha256, since other processes or machines wrote them) and all
are renamed into place and listed in one manifest swap. On failure every segment the plan named
is removed again, staged or half-written; what a killed driver leaves, the next writer removes.

This module imports Ray: distributed.engine imports it only once Ray is known to be installed.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from ray.data import Datasink
from ray.data.block import Block, BlockAccessor
from ray.data.datasource.datasink import WriteResult

from distributed.errors import EngineError
from distributed.plan import StageTask
from distributed.transport import rebuild_error
from fingerprint.config import FingerprintConfig
from index import STAGING_PREFIX, Manifest, StagedSegment, commit
from index.manifest import SegmentEntry


class CommitSink(Datasink):
    """Collects the staged segments' entries; commits them all, or removes them all."""

    def __init__(self, root: Path, manifest: Manifest, tasks: list[StageTask],
                 config: FingerprintConfig, embedding_dim: int | None, verify: bool):
        self.root = root
        self.directory = root / "segments"
        self.manifest = manifest
        self.tasks = tasks
        self.config = config
        self.embedding_dim = embedding_dim
        self.verify = verify
        self.committed: Manifest | None = None
        self.commit_seconds = 0.0  # checks and manifest swap, on the driver

    def write(self, blocks: Iterable[Block], ctx: Any) -> list[tuple[str, str, str]]:
        out = []
        for block in blocks:
            for row in BlockAccessor.for_block(block).iter_rows(public_row_format=False):
                out.append((str(row["task"]), str(row["entry"]), str(row["error"])))
        return out

    def on_write_complete(self, write_result: WriteResult) -> None:
        results = [r for returned in write_result.write_returns for r in returned]
        order = {t.name: i for i, t in enumerate(self.tasks)}
        failed = sorted((order.get(name, len(order)), error) for name, _, error in results
                        if error)
        if failed:
            raise rebuild_error(failed[0][1])  # the earliest task's: as a local read meets it
        entries = sorted((SegmentEntry.from_dict(json.loads(e)) for _, e, _ in results),
                         key=lambda e: e.first_row)
        if sorted(e.name for e in entries) != sorted(t.name for t in self.tasks):
            raise EngineError(f"{self.root}: the workers returned segments "
                              f"{[e.name for e in entries]}, the plan named "
                              f"{[t.name for t in self.tasks]}; nothing was committed")
        staged = [StagedSegment(self.directory / f"{STAGING_PREFIX}{e.name}", e, None,
                                self.embedding_dim, self.config) for e in entries]
        start = time.perf_counter()
        self.committed = commit(self.root, self.manifest, staged, verify=self.verify)
        self.commit_seconds = time.perf_counter() - start

    def on_write_failed(self, error: Exception) -> None:
        self.discard()

    def discard(self) -> None:
        for task in self.tasks:
            shutil.rmtree(self.directory / f"{STAGING_PREFIX}{task.name}", ignore_errors=True)
