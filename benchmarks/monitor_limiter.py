"""The monitor's limiter against the ``limits`` package, for the monitor's use: in memory, one
key per account, many accounts, keys in random order (issue 15, "Limiting").

    flock /tmp/bench.lock .venv/bin/python benchmarks/monitor_limiter.py [--accounts 10000]
                                                   [--decisions 200000] [--repeat 3] [--json]

Every limiter decides the same pre-drawn sequence of account keys (uniform over ``--accounts``),
in one process on one core, after a warm-up of 10,000 decisions; the best of ``--repeat`` runs
is reported (fresh state each run). The toolkit's limiters keep one ``tat`` float per account in
a dict and are given a synthetic clock advancing 1 ms per request; ``limits`` reads the wall clock
itself (it cannot be given a time). Policies are alike: 20 requests of burst and 2 per second
for ours, "20 per 10 seconds" for ``limits``. Memory per account is what ``tracemalloc`` sees
allocated by the limiter's state once every account has used its whole burst (a separate pass,
as tracing slows the timing). ``limits`` is measured when installed (``pip install limits``; it
is in the ``bench`` extra, not a dependency). Prints a table, then the same figures as one JSON
object (only the JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.limiter import Gcra, LimitPolicy  # noqa: E402

EPOCH = 1_764_000_000.0
Decider = Callable[[str, int], object]


def ours_gcra() -> tuple[Decider, object]:
    gcra, tats = Gcra(rate_per_second=2.0, burst=20), {}

    def decide(key: str, i: int) -> object:
        result = gcra.decide(tats.get(key, 0.0), EPOCH + i * 1e-3)
        tats[key] = result.tat
        return result.allowed
    return decide, tats


def ours_policy(risk: float) -> Callable[[], tuple[Decider, object]]:
    def make() -> tuple[Decider, object]:
        policy, tats = LimitPolicy(rate_per_second=2.0, burst=20), {}

        def decide(key: str, i: int) -> object:
            result = policy.decision(risk, tats.get(key, 0.0), EPOCH + i * 1e-3)
            tats[key] = result.tat
            return result.decision
        return decide, tats
    return make


def limits_strategy(name: str) -> Callable[[], tuple[Decider, object]]:
    def make() -> tuple[Decider, object]:
        from limits import RateLimitItemPerSecond, storage, strategies

        store = storage.MemoryStorage()
        limiter = getattr(strategies, name)(store)
        item = RateLimitItemPerSecond(20, 10)

        def decide(key: str, i: int) -> object:
            return limiter.hit(item, key)
        return decide, store
    return make


def methods() -> dict[str, Callable[[], tuple[Decider, object]]]:
    found = {"Gcra.decide (monitor.limiter)": ours_gcra,
             "LimitPolicy.decision, risk 0.3 (monitor.limiter)": ours_policy(0.3),
             "LimitPolicy.decision, risk 0.7 (monitor.limiter)": ours_policy(0.7)}
    try:
        import limits
    except ImportError:
        return found
    for strategy in ("MovingWindowRateLimiter", "SlidingWindowCounterRateLimiter",
                     "FixedWindowRateLimiter"):
        found[f"limits {limits.__version__} {strategy}, MemoryStorage"] = \
            limits_strategy(strategy)
    return found


def timed(make: Callable[[], tuple[Decider, object]], keys: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        decide, state = make()
        for i, key in enumerate(keys[:10_000]):
            decide(key, i)
        start = time.perf_counter()
        for i, key in enumerate(keys):
            decide(key, i)
        best = min(best, time.perf_counter() - start)
        close = getattr(state, "timer", None)
        if close is not None:
            close.cancel()  # limits' MemoryStorage expiry thread
    return best


def bytes_per_account(make: Callable[[], tuple[Decider, object]], accounts: int) -> float:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    decide, state = make()
    for i in range(accounts * 20):  # every account uses its whole burst
        decide(f"acct-{i % accounts}", i)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    timer = getattr(state, "timer", None)
    if timer is not None:
        timer.cancel()
    return grown / accounts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    rng = random.Random(0)
    keys = [f"acct-{rng.randrange(args.accounts)}" for _ in range(args.decisions)]
    rows = []
    for name, make in methods().items():
        seconds = timed(make, keys, args.repeat)
        rows.append({"limiter": name, "decisions_per_second": round(args.decisions / seconds),
                     "microseconds_per_decision": round(seconds / args.decisions * 1e6, 2),
                     "bytes_per_account": round(bytes_per_account(make, args.accounts))})
    result = {"accounts": args.accounts, "decisions": args.decisions, "repeat": args.repeat,
              "rows": rows}
    if not args.json:
        print("| limiter | decisions per second | microseconds per decision | bytes per account |")
        print("|---|---|---|---|")
        for row in rows:
            print(f"| {row['limiter']} | {row['decisions_per_second']:,} | "
                  f"{row['microseconds_per_decision']} | {row['bytes_per_account']:,} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
