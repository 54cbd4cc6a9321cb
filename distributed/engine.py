"""``--engine ray``: build or extend an index with a Ray cluster, committed once.

Past one machine the work goes to the engine data teams already run for this (NeMo Curator and
datatrove schedule their MinHash pipelines on Ray), not to a scheduler of our own. Under the
index's writer lock, held by the driver from start to commit:

1. scan: Ray Data reads every input on the cluster (distributed.tasks.scan_shard, through
   fingerprint.io) and returns its ids; a bad record fails here with the error a local build
   gives (file, line, field);
2. plan: the driver drops duplicates exactly as a local build does and cuts the fresh records
   into contiguous tasks, each knowing its first row (distributed.plan);
3. stage: an actor pool (``map_batches`` with a callable class, ``concurrency=workers``, one
   model load per actor) fingerprints each task into a staged segment in the index directory;
4. commit: a Datasink verifies the staged segments and commits them in one manifest swap, or
   removes them (distributed.sink).

So the stored result is that of a local build of the same inputs: the same rows, in the same
order, with the same fingerprints and metadata, only split over several segments. A failed
task, a lost worker (after its retries) or a killed driver leaves the manifest, and so the
index, as it was; a rerun writes it all again (nothing half-done is reused) and so adds no
duplicate. On a multi-node cluster, the inputs and the index directory must be at the same path
on every node (a shared file system), and every node needs this package and the model.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from distributed.errors import EngineError, EngineNotInstalledError
from distributed.plan import Plan, Scan, Shard, plan_tasks, shards_of
from distributed.transport import rebuild_error
from fingerprint.fingerprinter import Fingerprinter
from fingerprint.records import FieldMap
from index import (AppendResult, ConfigMismatchError, Manifest, WriterLock, build_index,
                   open_index, remove_debris)
from index.staging import DEFAULT_CHUNK, Progress

log = logging.getLogger(__name__)

RAY_HINT = "pip install 'output-fingerprint[ray]'"
DEFAULT_RETRIES = 3  # a lost worker's task is retried on a new actor this many times


def connect(address: str | None) -> tuple[Any, bool]:
    """Ray, connected to ``address`` (``auto``, ``ray://head:10001``, or None: a local cluster
    on this machine's cores); and whether this call started the connection."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise EngineNotInstalledError(f"--engine ray needs Ray Data, which is not installed: "
                                      f"{RAY_HINT}") from None
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise EngineError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    except ImportError as exc:  # ray:// needs Ray Client (grpcio), which ray[data] lacks
        raise EngineNotInstalledError(f"--address {address} needs Ray Client ({exc}): pip "
                                      f"install 'ray[client]'") from None
    return ray, True


def add_files_on_ray(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]],
                     fingerprinter: Fingerprinter, *, fields: FieldMap = FieldMap(),
                     address: str | None = None, workers: int | None = None,
                     store_text: bool = True, skip_duplicates: bool = False,
                     chunk_size: int = DEFAULT_CHUNK, progress: Progress | None = None,
                     retries: int = DEFAULT_RETRIES, verify: bool = True,
                     timings: dict[str, float] | None = None) -> AppendResult:
    """Add every input to the index as one batch, fingerprinted on a Ray cluster.

    ``workers``: actors fingerprinting at once (default: the cluster's CPUs); ``retries``: how
    often a task lost with its worker is run again (0: the first loss fails the command);
    ``verify``: check every staged file's sha256 before the commit. The result's ``segment``
    names every new segment, comma-separated. ``timings``, if given, receives the seconds
    spent scanning, planning, staging and committing (benchmarks/distributed.py reads them)."""
    timings = timings if timings is not None else {}
    shards = shards_of(inputs)
    ray, started = connect(address)
    try:
        root = Path(path)
        with WriterLock(root):
            index = open_index(root, expected_config=fingerprinter.config)
            try:
                remove_debris(root, index.manifest)
                stored_dim = index.manifest.embedding_dim
                if stored_dim is not None and stored_dim != fingerprinter.embedding_dim:
                    raise ConfigMismatchError(str(root), [("embedding_dim", stored_dim,
                                                           fingerprinter.embedding_dim)])
                workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
                start = time.perf_counter()
                scans = _scan(ray, shards, fields)
                timings["scan"] = time.perf_counter() - start
                plan = plan_tasks(index, scans, workers=workers, skip_duplicates=skip_duplicates,
                                  first_number=len(index.segments) + 1)
                timings["plan"] = time.perf_counter() - start - timings["scan"]
                if plan.tasks:
                    _stage_and_commit(ray, root, index.manifest, plan, fingerprinter,
                                      fields=fields, workers=workers, store_text=store_text,
                                      chunk_size=chunk_size, retries=retries, verify=verify,
                                      timings=timings)
                first = len(index)
            finally:
                index.close()
        if progress is not None:
            progress(plan.read)
        names = ", ".join(t.name for t in plan.tasks) or None
        return AppendResult(names, plan.added, plan.skipped_empty, plan.skipped_duplicates,
                            first + plan.added)
    finally:
        if started:
            ray.shutdown()


def build_index_on_ray(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]],
                       fingerprinter: Fingerprinter, **options: Any) -> AppendResult:
    """Create an index and add the inputs on Ray (options: ``add_files_on_ray``'s); if that
    fails, the new directory is removed again, as ``index.build_index`` does."""
    return build_index(path, inputs, fingerprinter, add=add_files_on_ray, **options)


def _scan(ray: Any, shards: list[Shard], fields: FieldMap) -> list[Scan]:
    """Pass 1: every input read on the cluster, one task per input."""
    from distributed.tasks import scan_shard

    items = [{"shard": json.dumps({"index": s.index, "path": s.path, "name": s.name})}
             for s in shards]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    rows = _run(ray, lambda: dataset.map(scan_shard, fn_kwargs={"fields": fields}).take_all())
    by_index = {s.index: s for s in shards}
    failed = sorted((int(r["shard"]), r["error"]) for r in rows if r["error"])
    if failed:
        raise rebuild_error(failed[0][1])  # the first input's error, as a local read meets it
    scans = []
    for row in rows:
        data = json.loads(row["scan"])
        scans.append(Scan(by_index[int(row["shard"])], data["ids"], data["lines"],
                          int(data["empty"])))
    return scans


def _stage_and_commit(ray: Any, root: Path, manifest: Manifest, plan: Plan,
                      fingerprinter: Fingerprinter, *, fields: FieldMap, workers: int,
                      store_text: bool, chunk_size: int, retries: int, verify: bool,
                      timings: dict[str, float]) -> Manifest:
    """Passes 3 and 4: stage every task on the actor pool, then commit them all at once."""
    from distributed.sink import CommitSink
    from distributed.tasks import SegmentStager

    items = [{"task": t.to_json()} for t in plan.tasks]
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing remote args this way, but names no other for these two
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        staged = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            SegmentStager, batch_size=1, num_cpus=1,
            fn_constructor_kwargs={"config": fingerprinter.config,
                                   "batch_size": fingerprinter.batch_size,
                                   "directory": str(root / "segments"), "fields": fields,
                                   "store_text": store_text, "chunk_size": chunk_size},
            compute=_pool(ray, min(workers, len(items))),
            max_restarts=retries, max_task_retries=retries)
    sink = CommitSink(root, manifest, plan.tasks, fingerprinter.config,
                      fingerprinter.embedding_dim, verify)
    start = time.perf_counter()
    try:  # the commit's tasks only collect entries: they must not wait for the actors' CPUs
        _run(ray, lambda: staged.write_datasink(sink, ray_remote_args={"num_cpus": 0}))
    finally:
        timings["commit"] = sink.commit_seconds
        timings["stage"] = time.perf_counter() - start - sink.commit_seconds
        if sink.committed is None:
            sink.discard()  # also after an interrupt, which on_write_failed does not see
    return sink.committed


def _pool(ray: Any, workers: int) -> Any:
    """Up to ``workers`` actors, each given one task at a time: the tasks are few and large,
    and Ray Data's default would queue several on the first actor that is ready while the
    others still load their model. Starting with those that are ready (``min_size=1``), so that
    asking for more workers than the cluster has CPUs waits for none of them."""
    return ray.data.ActorPoolStrategy(min_size=1, max_size=workers, initial_size=workers,
                                      max_tasks_in_flight_per_actor=1)


def _run(ray: Any, job: Any) -> Any:
    """Run a Ray Data job; Ray's own failures (a lost worker, a task that raised something not
    the toolkit's) become one EngineError saying that nothing was committed."""
    try:
        return job()
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"the Ray job failed ({type(exc).__name__}: {first}); nothing was "
                          f"added to the index, which is as it was: run the command again"
                          ) from exc
