"""The online monitor's cost per request and state per account (issue 15: >= 5,000 requests
scored per second on one core, <= 20 KB per active account).

    flock /tmp/bench.lock .venv/bin/python benchmarks/monitor_online.py [--baseline DIR]
        [--requests 20000] [--http-requests 2000] [--fsync-requests 500] [--json]

Traffic: the first ``--requests`` requests (in time order) of the small simulated log
(benchmarks/monitor_traffic.py, real prompt text from ../shared/data: benign individuals and
apps, campaigns), each sent with its own account, timestamp and prior turns. Without
``--baseline`` a baseline is fitted on that traffic's benign log at the default MonitorConfig
(takes a minute). The process is pinned to one core (the first it may use). Measured, each on a
fresh state directory in a temporary directory, after a warm-up of 200 requests:
- ``score``: ``AccountScorer.score`` one request at a time (the detector alone, no limiter, no
  state store): what scoring costs;
- ``observe``: ``Monitor.observe`` as ``serve`` runs it by default (state written before every
  answer, no fsync);
- ``observe, flush every 1000``: the same with a flush window;
- ``observe, fsync``: writes fdatasync'd (``--fsync``), on ``--fsync-requests`` requests;
- ``http``: one client sending ``POST /v1/check`` one after another to a MonitorServer in the
  same process (HTTP parsing and JSON on both sides included), ``--http-requests`` requests.
State per account: the bytes the store keeps per account (the encoded entry) and, with
tracemalloc, the memory a decoded cached entry takes. Then the functions that take the most
time in ``observe`` (cProfile, own time). Prints a table, then one JSON object (only the JSON
with ``--json``).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import http.client
import io
import json
import os
import pstats
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor import (AccountScorer, Baseline, LimitPolicy, Monitor, MonitorConfig,  # noqa: E402
                     MonitorServer, build_baseline)
from monitor.detector import conversation_key  # noqa: E402
from monitor.requests import parse_timestamp  # noqa: E402

WARM_UP = 200
POLICY = LimitPolicy(rate_per_second=1000.0, burst=1000)  # the limiter decides, never refuses


def traffic(out: Path) -> Path:
    import importlib.util

    path = Path(__file__).resolve().parent / "monitor_traffic.py"
    spec = importlib.util.spec_from_file_location("monitor_traffic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["monitor_traffic"] = module
    spec.loader.exec_module(module)
    module.build(module.TrafficConfig.preset("small", 7), out)
    return out


def requests_of(log: Path, count: int) -> list[tuple[str, str, float, int, str]]:
    """(account, prompt, timestamp, prior turns, first user message) of the log's first
    ``count`` requests in time order: Monitor.observe's arguments."""
    rows = []
    with gzip.open(log, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            messages = row["request"]["messages"]
            rows.append((row["account"], messages[-1]["content"],
                         parse_timestamp(row["timestamp"]),
                         sum(m["role"] == "assistant" for m in messages[:-1]),
                         messages[0]["content"]))
    rows.sort(key=lambda r: r[2])
    return rows[:count]


def timed(run, requests) -> float:
    """Microseconds per request of ``run(request)`` over ``requests`` (after a warm-up)."""
    for r in requests[:WARM_UP]:
        run(r)
    started = time.perf_counter()
    for r in requests[WARM_UP:]:
        run(r)
    return (time.perf_counter() - started) / max(1, len(requests) - WARM_UP) * 1e6


def score_alone(baseline: Baseline, requests) -> float:
    scorer = AccountScorer(baseline)
    states: dict = {}

    def run(r):
        state = states.get(r[0]) or states.setdefault(r[0], scorer.new_state())
        scorer.score([(state, r[1], r[2], r[3], conversation_key(r[4]))])
    return timed(run, requests)


def observe(baseline: Baseline, requests, **options) -> tuple[float, Monitor]:
    directory = tempfile.mkdtemp(prefix="monitor-online-")
    monitor = Monitor(baseline, directory, POLICY, **options)
    micro = timed(lambda r: monitor.observe(*r), requests)
    return micro, monitor


def over_http(baseline: Baseline, requests) -> float:
    with Monitor(baseline, tempfile.mkdtemp(prefix="monitor-http-"), POLICY) as monitor, \
            MonitorServer(monitor) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)

        def run(r):
            body = json.dumps({"account": r[0], "prompt": r[1], "timestamp": r[2],
                               "prior_turns": r[3], "conversation": r[4]})
            conn.request("POST", "/v1/check", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
        micro = timed(run, requests)
        conn.close()
        return micro


def state_sizes(monitor: Monitor) -> dict[str, float]:
    """Bytes per account in the store, and a decoded entry's memory (tracemalloc, every
    account's entry decoded once and held)."""
    from monitor.account import AccountEntry

    accounts = monitor.store.accounts()
    blobs = [monitor.store.get(a) for a in accounts]
    sizes = [len(b) for b in blobs]
    config, dim = monitor.baseline.config, monitor.scorer.features.dim
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = [AccountEntry.from_bytes(b, a, config, dim) for a, b in zip(accounts, blobs)]
    decoded = (tracemalloc.get_traced_memory()[0] - before) / len(held)
    tracemalloc.stop()
    return {"accounts": len(sizes), "stored_bytes_mean": sum(sizes) / len(sizes),
            "stored_bytes_max": max(sizes), "decoded_bytes_mean": decoded}


def profile(baseline: Baseline, requests, top: int = 12) -> list[dict[str, object]]:
    monitor = Monitor(baseline, tempfile.mkdtemp(prefix="monitor-prof-"), POLICY)
    for r in requests[:WARM_UP]:
        monitor.observe(*r)
    profiler = cProfile.Profile()
    profiler.enable()
    for r in requests[WARM_UP:]:
        monitor.observe(*r)
    profiler.disable()
    monitor.close()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    n = len(requests) - WARM_UP
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # by own time
    return [{"function": f"{Path(f).name}:{line}({name})", "own_us": tt / n * 1e6,
             "cumulative_us": ct / n * 1e6} for (f, line, name), (_, _, tt, ct, _) in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a baseline directory [default: fit one]")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--http-requests", type=int, default=2000)
    parser.add_argument("--fsync-requests", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    work = Path(tempfile.mkdtemp(prefix="monitor-online-bench-"))
    log = traffic(work / "traffic")
    if args.baseline is None:
        args.baseline = work / "baseline"
        build_baseline(log / "baseline.jsonl.gz", args.baseline, MonitorConfig())
    baseline = Baseline.load(args.baseline)
    requests = requests_of(log / "requests.jsonl.gz", args.requests)
    rows = {"score": score_alone(baseline, requests)}
    rows["observe"], monitor = observe(baseline, requests)
    sizes = state_sizes(monitor)
    monitor.close()
    rows["observe, flush every 1000"], monitor = observe(baseline, requests, flush_every=1000)
    monitor.close()
    rows["observe, fsync"], monitor = observe(baseline, requests[:args.fsync_requests],
                                              fsync=True)
    monitor.close()
    rows["http"] = over_http(baseline, requests[:args.http_requests])
    result = {"requests": len(requests), "accounts": sizes["accounts"],
              "microseconds_per_request": rows,
              "requests_per_second": {k: 1e6 / v for k, v in rows.items()},
              "state": sizes, "profile": profile(baseline, requests[:5000]),
              "config": baseline.config.to_dict()}
    if not args.json:
        print(f"{len(requests)} requests of {sizes['accounts']} accounts, one core\n")
        print("| path | microseconds per request | requests per second |\n|---|---|---|")
        for name, micro in rows.items():
            print(f"| {name} | {micro:,.0f} | {1e6 / micro:,.0f} |")
        print(f"\nstate per account: {sizes['stored_bytes_mean']:,.0f} bytes stored (max "
              f"{sizes['stored_bytes_max']:,}), {sizes['decoded_bytes_mean']:,.0f} bytes decoded (mean)\n")
        print("| function (own time) | own us | cumulative us |\n|---|---|---|")
        for row in result["profile"]:
            print(f"| {row['function']} | {row['own_us']:.1f} | {row['cumulative_us']:.1f} |")
        print()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
