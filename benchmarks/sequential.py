"""How many probes the sequential test needs, on real models with known lineage.

    python benchmarks/sequential.py --data ../shared/data/alpacaeval [--orders 50] [--json]

Classes, classifier and null rates exactly as in benchmarks/lineage.py (one RelativeAttributor,
every provider family a target, every other class a reference, no index built). For each family
F with students and each student or human-data model, every one of the 805 answers gets the
sequential test's score (assigned to F or not), and the test of attribution.stats.sequential
(q0, q1 from the other classes' leave-one-out rates) is run over the answers in ``--orders``
random orders, stopping at the first decision. The full-data verdict it is compared with is the
fixed-size version of the same two tests on all 805 answers: "derived" if the exact binomial
test rejects rate <= q0 at alpha, "not derived" if it rejects rate >= q1, else "undecided".

Printed: one JSON object (per suspect and family: the full verdict, the sequential decisions'
agreement with it, the median and 90th percentile of probes used), then a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attribution.stats import (DERIVED, NOT_DERIVED, SequentialConfig,  # noqa: E402
                                    crossing_times, thresholds)
from attribution import RelativeAttributor  # noqa: E402
from fingerprint.config import FingerprintConfig  # noqa: E402
from fingerprint.style import StyleVectorizer  # noqa: E402
from lineage import load, roles  # noqa: E402


def full_verdict(scores: np.ndarray, q0: float, q1: float, alpha: float) -> str:
    from scipy import stats

    k, n = int(scores.sum()), scores.size
    if stats.binom.sf(k - 1, n, q0) <= alpha:  # P(X >= k | q0)
        return DERIVED
    if stats.binom.cdf(k, n, q1) <= alpha:  # P(X <= k | q1)
        return NOT_DERIVED
    return "undecided"


def sequential_runs(scores: np.ndarray, q0: float, q1: float, alpha: float, orders: int,
                    seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    perms = np.stack([scores[rng.permutation(scores.size)] for _ in range(orders)])
    up = crossing_times(perms, q0, "upper", alpha)
    down = crossing_times(perms, q1, "lower", alpha)
    decisions, used = [], []
    for u, d in zip(up, down):
        if u and (not d or u <= d):
            decisions.append(DERIVED)
            used.append(int(u))
        elif d:
            decisions.append(NOT_DERIVED)
            used.append(int(d))
        else:
            decisions.append("undecided")
            used.append(int(scores.size))
    return decisions, used


def evaluate(dirs: list[Path], orders: int, alpha: float, min_fraction: float,
             seed: int) -> dict:
    started = time.time()
    lineage, texts = load(dirs)
    families, classes_models, suspects = roles(lineage)
    taught = sorted({lineage[s]["teacher"] for s in suspects} & set(families))

    config = FingerprintConfig()
    styler = StyleVectorizer(config.style_features, config.style_version,
                                   config.style_extras)
    from scipy import sparse

    style = {n: styler.transform(texts[n]) for n in lineage}
    classes = {c: sparse.vstack([style[m] for m in ms], format="csr")
               for c, ms in classes_models.items()}
    attributor = RelativeAttributor(classes, [f"provider:{f}" for f in taught])
    cfg = SequentialConfig(alpha=alpha, min_derived_fraction=min_fraction)
    rows = []
    for family in taught:
        target = f"provider:{family}"
        rows_per_ref = min(m.shape[0] for c, m in classes.items() if c != target)
        th = thresholds(attributor.null[target], cfg, rows_per_ref)
        for name in suspects:
            teacher = lineage[name]["teacher"]
            if teacher not in (family, "none-human"):
                continue
            scores = (attributor.assignments(style[name])
                      == attributor.names.index(target)).astype(float)
            verdict = full_verdict(scores, th.q0, th.q1, alpha)
            decisions, used = sequential_runs(scores, th.q0, th.q1, alpha, orders, seed)
            same = [d == verdict for d in decisions]
            rows.append({
                "family": family, "model": name,
                "kind": "student" if teacher == family else "human-data",
                "rate": float(scores.mean()), "q0": th.q0, "q1": th.q1,
                "full_verdict": verdict, "responses": int(scores.size),
                "agreement": float(np.mean(same)),
                "wrong_way": float(np.mean([d not in (verdict, "undecided") for d in decisions])),
                "probes_median": float(np.median(used)),
                "probes_p90": float(np.percentile(used, 90)),
                "decisions": {d: decisions.count(d) for d in sorted(set(decisions))},
            })
    return {"alpha": alpha, "min_derived_fraction": min_fraction, "orders": orders,
            "seed": seed, "rows": rows, "seconds": round(time.time() - started, 1)}


def table(report: dict) -> str:
    lines = ["| family | model | kind | rate | q0 | q1 | verdict (805) | same verdict | "
             "median probes | 90% probes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['family']} | {r['model']} | {r['kind']} | {r['rate']:.3f} | "
                     f"{r['q0']:.3f} | {r['q1']:.3f} | {r['full_verdict']} | "
                     f"{r['agreement']:.2f} | {r['probes_median']:.0f} | "
                     f"{r['probes_p90']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", action="append", type=Path, required=True)
    parser.add_argument("--orders", type=int, default=50, help="random probe orders per model")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-derived-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the JSON object only")
    args = parser.parse_args()
    report = evaluate(args.data, args.orders, args.alpha, args.min_derived_fraction, args.seed)
    print(json.dumps(report))
    if not args.json:
        print(table(report))


if __name__ == "__main__":
    main()
