"""The Ray engine against the local one: throughput, memory per worker, commit cost (issue 17).

    .venv/bin/python benchmarks/distributed.py [--rows 1000000] [--workers 1,2] [--shards 8]
                                               [--address ADDRESS] [--out bench-out/distributed]
                                               [--data ../shared/data/alpacaeval] [--json]

The corpus is benchmarks/scaling.py's (real AlpacaEval answers resampled sentence by sentence,
seeded), written once and cut into ``--shards`` JSON Lines files, the unit Ray reads in
parallel. Each build indexes all of it without texts (``--no-store-text``, as scaling.py does)
into a new index:

- local: ``index.build_index`` with a process pool of as many workers as the largest of
  ``--workers`` (the default engine, all cores);
- ray, for each number of workers: ``distributed.build_index_on_ray`` on a cluster started once
  for the benchmark (``ray.init(num_cpus=max workers)``), or on ``--address`` (an existing
  cluster: that is the multi-node command), so that cluster start-up is not counted, but each
  build's actor start-up and model loads are.

Measured per build: wall seconds and responses per second (total and per worker); the engine's
own split (scan, plan, stage, commit); peak resident memory of the driver and of each worker
process (Ray actors titled ``SegmentStager``, the local pool's spawned processes), sampled every
0.1 s. Commit cost is measured apart at two sizes (a tenth of the rows and all of them): a
committed segment is hard-linked as a staged one into a new empty index and committed, with and
without the sha256 check of its files: the swap (rename, manifest) should not grow with rows;
the check reads every byte, so it does.

The estimate for N nodes is paper arithmetic from the measured per-worker rates: scan and
stage time = rows / (nodes x cores per node x per-worker rate) (the scan is spread over the
input files, so there must be many), plus the driver's plan time per row (the duplicate check,
one process) and the commit (swap + check, measured per byte). It assumes the workers scale as
they did from 1 to 2 here and a file system that keeps up; it is not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file's name is the toolkit's package's: its directory must not come first on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

NODES = (1, 4, 16, 64)
ESTIMATE_ROWS = 100_000_000  # a provider's day, for the estimate


class WorkerMemory:
    """Peak resident memory per process: this one (the driver), and every worker (a process
    whose command line names the Ray stager, or a spawned child of this process)."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.driver = 0
        self.workers: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            self.driver = max(self.driver, self.me.memory_info().rss)
            children = {p.pid for p in self.me.children(recursive=True)}
            for p in psutil.process_iter(["pid", "cmdline"]):
                try:
                    cmd = " ".join(p.info["cmdline"] or ())
                    if "SegmentStager" in cmd or (p.pid in children and "spawn" in cmd):
                        self.workers[p.pid] = max(self.workers.get(p.pid, 0),
                                                  p.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(0.1)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        peaks = sorted(self.workers.values())
        return {"driver_peak_mb": round(self.driver / 2**20),
                "worker_peak_mb": round(max(peaks) / 2**20) if peaks else None,
                "worker_processes": len(peaks)}


def corpus(data: Path, out: Path, rows: int, shards: int) -> list[Path]:
    """``shards`` files holding ``rows`` synthetic responses (scaling.py's generator)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scaling", HERE / "scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)

    out.mkdir(parents=True, exist_ok=True)
    whole = out / f"corpus-{rows}.jsonl"
    if not whole.exists():
        pool, lengths = scaling.sentence_pool(data)
        scaling.write_corpus(whole, pool, lengths, rows)
    paths = [out / f"shard-{rows}-{i:03d}.jsonl" for i in range(shards)]
    if not all(p.exists() for p in paths):
        with ExitStack() as stack, open(whole, encoding="utf-8") as f:
            files = [stack.enter_context(open(p, "w", encoding="utf-8")) for p in paths]
            for i, line in enumerate(f):
                files[i * shards // rows].write(line)
    return paths


def build(kind: str, inputs: list[Path], index: Path, workers: int, rows: int) -> dict:
    from distributed import build_index_on_ray
    from fingerprint import FingerprintConfig, Fingerprinter
    from index import build_index

    shutil.rmtree(index, ignore_errors=True)
    fingerprinter = Fingerprinter(FingerprintConfig())
    timings: dict[str, float] = {}
    memory = WorkerMemory()
    start = time.perf_counter()
    if kind == "local":
        result = build_index(index, inputs, fingerprinter, store_text=False, workers=workers)
    else:
        result = build_index_on_ray(index, inputs, fingerprinter, store_text=False,
                                    workers=workers, timings=timings)
    seconds = time.perf_counter() - start
    out = {"engine": kind, "workers": workers, "rows": result.added, "seconds": round(seconds, 2),
           "per_second": round(result.added / seconds), "segments": result.segment.count(",") + 1,
           "per_worker_per_second": round(result.added / seconds / workers),
           **{f"{k}_seconds": round(v, 3) for k, v in timings.items()}, **memory.stop()}
    if result.added != rows:
        raise SystemExit(f"{kind} with {workers} workers stored {result.added} of {rows} rows")
    return out


def commit_cost(segment_index: Path, scratch: Path) -> dict:
    """Commit one stored segment again, as a staged one, into an empty index: with and without
    the check of every file's sha256."""
    from index import StagedSegment, commit, create_index, open_index

    with open_index(segment_index) as idx:
        entry, config, dim = idx.manifest.segments[0], idx.config, idx.manifest.embedding_dim
    source = segment_index / "segments" / entry.name
    out = {"rows": entry.rows, "bytes": entry.bytes}
    for verify in (False, True):
        target = scratch / f"commit-{entry.rows}-{verify}"
        shutil.rmtree(target, ignore_errors=True)
        manifest = create_index(target, config)
        staged_dir = target / "segments" / f".tmp-{entry.name}"
        staged_dir.mkdir()
        for f in source.iterdir():
            os.link(f, staged_dir / f.name)
        start = time.perf_counter()
        commit(target, manifest, [StagedSegment(staged_dir, entry, None, dim, config)],
               verify=verify)
        out["verify_seconds" if verify else "swap_seconds"] = round(time.perf_counter() - start, 4)
        shutil.rmtree(target)
    return out


def estimate(ray_runs: list[dict], commits: list[dict], cores_per_node: int) -> list[dict]:
    """Hours for ESTIMATE_ROWS on N nodes, from the measured per-worker rate (see above)."""
    best = max(ray_runs, key=lambda r: r["workers"])
    rate = best["rows"] / best["stage_seconds"] / best["workers"]
    scan_rate = best["rows"] / best["scan_seconds"] / best["workers"]  # spread over files
    driver_per_row = best["plan_seconds"] / best["rows"]  # the duplicate check: the driver's
    big = max(commits, key=lambda c: c["rows"])
    verify_per_byte = big["verify_seconds"] / big["bytes"]
    bytes_per_row = big["bytes"] / big["rows"]
    out = []
    for nodes in NODES:
        stage = ESTIMATE_ROWS / (nodes * cores_per_node * rate)
        stage += ESTIMATE_ROWS / (nodes * cores_per_node * scan_rate)
        driver = ESTIMATE_ROWS * driver_per_row
        check = ESTIMATE_ROWS * bytes_per_row * verify_per_byte
        total = stage + driver + check + big["swap_seconds"]
        out.append({"nodes": nodes, "cores_per_node": cores_per_node, "rows": ESTIMATE_ROWS,
                    "scan_and_stage_hours": round(stage / 3600, 2),
                    "driver_hours": round(driver / 3600, 2),
                    "commit_check_hours": round(check / 3600, 2),
                    "total_hours": round(total / 3600, 2),
                    "responses_per_second": round(ESTIMATE_ROWS / total)})
    return out


def table(report: dict) -> str:
    lines = [("engine  workers  responses/s  per worker  seconds  scan+plan  commit  "
              "driver MB  worker MB")]
    for r in report["builds"]:
        scan = r.get("scan_seconds", 0) + r.get("plan_seconds", 0)
        lines.append(f"{r['engine']:<7} {r['workers']:>7} {r['per_second']:>12,} "
                     f"{r['per_worker_per_second']:>11,} {r['seconds']:>8.1f} "
                     f"{scan:>10.2f} {r.get('commit_seconds', 0):>7.3f} "
                     f"{r['driver_peak_mb']:>10} {r['worker_peak_mb'] or '-':>10}")
    lines.append("")
    lines.append("commit      rows        bytes   swap s  sha256 check s")
    for c in report["commit"]:
        lines.append(f"        {c['rows']:>9,} {c['bytes']:>12,} {c['swap_seconds']:>8.4f} "
                     f"{c['verify_seconds']:>15.3f}")
    lines.append("")
    lines.append(f"estimate for {ESTIMATE_ROWS:,} responses (paper arithmetic, not measured)")
    for e in report["estimate"]:
        lines.append(f"  {e['nodes']:>3} nodes x {e['cores_per_node']} cores: "
                     f"{e['total_hours']:>6.2f} h ({e['responses_per_second']:,}/s; scan and stage "
                     f"{e['scan_and_stage_hours']} h, driver plan {e['driver_hours']} h, check "
                     f"{e['commit_check_hours']} h)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster (e.g. auto after 'ray start --head')")
    parser.add_argument("--cores-per-node", type=int, default=32)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "alpacaeval")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "distributed")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    workers = sorted(int(w) for w in args.workers.split(","))
    small_rows = max(args.rows // 10, 1000)
    inputs = corpus(args.data, args.out, args.rows, args.shards)
    small = corpus(args.data, args.out, small_rows, args.shards)
    import logging

    import ray

    # The local builds first, before Ray starts: a local cluster's own processes (raylet, GCS,
    # idle workers) take about a fifth of a core even when idle, which is Ray's cost, not the
    # local engine's.
    builds = [build("local", inputs, args.out / "idx-local", max(workers), args.rows)]
    build("local", small, args.out / "idx-small", max(workers), small_rows)
    ray.init(address=args.address, num_cpus=None if args.address else max(workers),
             include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        builds += [build("ray", inputs, args.out / f"idx-ray-{w}", w, args.rows) for w in workers]
    finally:
        ray.shutdown()
    commits = [commit_cost(args.out / "idx-small", args.out),
               commit_cost(args.out / "idx-local", args.out)]
    ray_runs = [b for b in builds if b["engine"] == "ray"]
    local = builds[0]
    report = {"rows": args.rows, "shards": args.shards, "cpus": os.cpu_count(), "builds": builds,
              "ray_vs_local": round(max(ray_runs, key=lambda r: r["workers"])["per_second"]
                                    / local["per_second"], 3),
              "commit": commits, "estimate": estimate(ray_runs, commits, args.cores_per_node),
              "multi_node": ("ray start --head --port 6379 (head); ray start --address "
                             "HEAD:6379 (each worker node); then on the head, with inputs and "
                             "output on a shared file system: .venv/bin/python "
                             "benchmarks/distributed.py --address auto --workers 32,64 "
                             "--out /shared/bench")}
    (args.out / "distributed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report) if args.json else json.dumps(report, indent=2) + "\n\n" + table(report))


if __name__ == "__main__":
    main()
