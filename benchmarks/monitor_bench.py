"""The extraction monitor on simulated API traffic made of real prompts (issue 15).

Builds (or reuses) the traffic of benchmarks/monitor_traffic.py, fits the benign baseline on its
``baseline.jsonl.gz`` (benign conversations disjoint from the evaluation traffic), scores every
account of ``requests.jsonl.gz`` request by request in time order, and reports per kind of
account: the share flagged, the requests seen when flagged (detection delay), and for hydra
groups the share of groups with at least one member flagged. Also: requests scored per second
(features and test, one process) and bytes of state per account.

Named monitor_bench.py, not monitor.py: a script of that name would shadow the package.

    .venv/bin/python benchmarks/monitor_bench.py [--traffic DIR] [--scale small|full] [--json]
                                                 [--text-only] [--baselines]

``--baselines`` also runs the anchors' detectors on the same traffic (MMD-only with 1,500- and
300-request windows, PRADA-only: benchmarks/monitor_baselines.py says how) and prints their rows
beside the monitor's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monitor_baselines  # noqa: E402
from monitor_traffic import TrafficConfig, build  # noqa: E402

from monitor import AccountScorer, MonitorConfig, fit_baseline, read_requests  # noqa: E402
from monitor.groups import find_groups  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traffic", type=Path, default=Path("/tmp/monitor-traffic"))
    parser.add_argument("--scale", choices=("small", "full"), default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--text-only", action="store_true",
                        help="hide the conversation depth from the monitor (as in a log that "
                             "does not show it): the text signals alone")
    parser.add_argument("--baselines", action="store_true",
                        help="also run MMD-only and PRADA-only (benchmarks/monitor_baselines.py)")
    args = parser.parse_args()
    if not (args.traffic / "truth.json").is_file():
        build(TrafficConfig.preset(args.scale, args.seed), args.traffic)
    truth = json.loads((args.traffic / "truth.json").read_text())
    started = time.perf_counter()
    benign = read_requests(args.traffic / "baseline.jsonl.gz")
    if args.text_only:
        benign = (dataclasses.replace(r, prior_turns=None, conversation=None) for r in benign)
    baseline = fit_baseline(benign, MonitorConfig())
    fit_seconds = time.perf_counter() - started
    states, score_seconds, requests = score(baseline, args.traffic / "requests.jsonl.gz",
                                            args.text_only)
    groups = find_groups(AccountScorer(baseline), states)
    by_group = {a for g in groups for a in g.flags}
    rows = summarise(states, truth["accounts"], by_group)
    result = {"fit_seconds": round(fit_seconds, 1), "baseline": baseline.counts,
              "tested_checkpoints": [s for s, ok in zip(baseline.config.checkpoint_sizes,
                                                        baseline.tested) if ok],
              "requests": requests, "requests_per_second": round(requests / score_seconds),
              "state_bytes_per_account": int(np.median([len(s.to_bytes())
                                                       for s in states.values()])),
              "groups": [{"members": len(g.members), "requests": g.requests,
                          "flagged": g.flagged, "p_value": g.p_value,
                          "kinds": sorted({truth["accounts"][a]["kind"] for a in g.members})}
                         for g in groups],
              "kinds": rows}
    if args.baselines:
        result["baselines"] = {run.name: {"seconds": round(run.seconds, 1),
                                          "thresholds": run.thresholds,
                                          "kinds": summarise(run.outcomes, truth["accounts"])}
                               for run in monitor_baselines.run_all(args.traffic)}
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps({k: v for k, v in result.items() if k not in ("kinds", "baselines")}))
    if args.baselines:
        for name, run in result["baselines"].items():
            print(name, json.dumps({k: v for k, v in run.items() if k != "kinds"}))
        monitor_baselines.print_table({"monitor": rows, **{name: run["kinds"] for name, run
                                                          in result["baselines"].items()}})
        return
    print(f"{'kind':<28}{'accounts':>9}{'flagged':>9}{'median delay':>14}")
    for kind, row in rows.items():
        delay = "" if row["median_delay"] is None else f"{row['median_delay']:.0f}"
        print(f"{kind:<28}{row['accounts']:>9}{row['flagged_share']:>9.3f}{delay:>14}")


def score(baseline, path: Path, text_only: bool = False):
    """Every account's final state, scoring its requests in time order."""
    by_account = defaultdict(list)
    for r in read_requests(path):
        by_account[r.account].append(
            dataclasses.replace(r, prior_turns=None, conversation=None) if text_only else r)
    scorer = AccountScorer(baseline)
    started = time.perf_counter()
    states, total = {}, 0
    for account, reqs in by_account.items():
        reqs.sort(key=lambda r: (r.timestamp, r.line))
        state = scorer.new_state()
        rff, signatures = scorer.features.transform([scorer.strip(state, r.prompt)
                                                     for r in reqs])
        for r, row, signature in zip(reqs, rff, signatures):
            scorer.observe(state, row, signature, r.timestamp, r.prior_turns, r.conversation)
        states[account] = state
        total += len(reqs)
    return states, time.perf_counter() - started, total


def summarise(states, accounts: dict, by_group: set = frozenset()) -> dict:
    """Per kind (campaigns by mixing level, hydra by group size): accounts, share flagged (on
    its own or as a member of a flagged group, ``by_group``), median requests until flagged on
    its own; hydra groups also as groups (any member flagged)."""
    sizes = defaultdict(int)
    for info in accounts.values():
        if info.get("group"):
            sizes[info["group"]] += 1
    groups, hydra = defaultdict(list), defaultdict(list)
    for account, state in states.items():
        info = accounts[account]
        kind = info["kind"]
        if kind == "campaign":
            kind = f"campaign {info['level']:.0%}"
        elif kind == "hydra":
            kind = f"hydra G={sizes[info['group']]}"
            hydra[f"{kind} (groups)"].append((info["group"],
                                              state.flagged or account in by_group))
        groups[kind].append((account, state))
    out = {}
    for kind in sorted(groups):
        members = groups[kind]
        delays = [s.flagged_at for _, s in members if s.flagged]
        out[kind] = {"accounts": len(members),
                     "flagged_share": float(np.mean([s.flagged or a in by_group
                                                     for a, s in members])),
                     "median_delay": float(np.median(delays)) if delays else None}
    for kind, flags in sorted(hydra.items()):
        any_member = defaultdict(bool)
        for group, flagged in flags:
            any_member[group] |= flagged
        out[kind] = {"accounts": len(any_member), "flagged_share": float(np.mean(
            list(any_member.values()))), "median_delay": None}
    return out


if __name__ == "__main__":
    main()
