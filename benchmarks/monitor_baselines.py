"""The two anchors of issue 15 as stand-alone detectors, run on the monitor benchmark's traffic so
their figures sit beside the monitor's: MMD-only (Liu, Guo & Dong 2026) and PRADA-only (Juuti et
al. 2019). Neither sees an evaluation label: MMD's thresholds come from the benign baseline log,
PRADA's from the benign calibration log.

    python benchmarks/monitor_baselines.py [--traffic DIR] [--json]

Imported by monitor_bench.py (``--baselines``): ``mmd_only`` and ``prada_only`` each take benign
requests (for thresholds) and the evaluation accounts' requests and return a ``BaselineRun`` whose
``outcomes`` give per account ``flagged`` and ``flagged_at`` (requests seen when first flagged),
the shape monitor_bench.summarise reads.

Shared: a prompt is the request's last user message as the monitor reads it (no template
stripping: the anchors have none), embedded with the toolkit's Embedder, static backend (as
monitor/features.py does; unit vectors of 256 numbers). An account's requests are taken in time
order (timestamp, then line).

MMD-only, as the anchor does it:
- benign baseline accounts are shuffled (seeded) and dealt, whole, to a reference part while
  it stays within ``REFERENCE_SHARE`` of the requests (an account that would overfill it goes to
  the null part: one big app must not take the null part's windows); the rest is the null part. ``REFERENCE_SAMPLE``
  requests drawn from the reference part are the reference sample Y.
- kernel: the mean of RBF kernels exp(-d^2 / (2 (b m)^2)) for b in ``BANDWIDTHS``, m the median
  distance between reference prompts (median heuristic). Statistic: the unbiased MMD^2 between
  a window X and Y (the two within-sample means without their diagonals, minus twice the cross
  mean).
- an account is tested at ``test_points(W)``: once at W/5 and at W/2 requests (whole history, the
  early tests on accounts shorter than W), then every W/2 requests on its last W. Each tested
  size s (W/5, W/2, W) has its own threshold: the null part's accounts are concatenated (each in
  time order, in the shuffled order) and cut into disjoint windows of s; the threshold is the
  value exceeded by at most 0.3% of those windows (the k-th largest, k = floor(0.003 n) + 1): with
  fewer than 334 windows it is their maximum, so the 0.3% is then not measured, only not
  contradicted. ``BaselineRun.thresholds`` gives each size's window count.
- a flag is a statistic above the threshold of its size; an account is flagged at its first.
  Per-window FPR is what the anchor controls; an account tested at many points has a larger
  per-account FPR (the benchmark reports per account).

PRADA-only (no classes here: one set per account):
- for each query after the first, its minimum L2 distance to the account's earlier queries (the
  last ``PRADA_CAP`` of them, for memory; PRADA keeps all, and adds a query to its set only when
  that distance exceeds mean - std of the distances so far; here every query joins the set, as the
  brief asks);
- after each query once there are ``PRADA_MIN`` (100) distances: the Shapiro-Wilk W of all
  distances so far (the last ``SHAPIRO_MAX`` at most: scipy's p-values stop at 5,000 and the
  anchor's adaptation caps there too); flagged when W < delta;
- delta: each calibration account's smallest W over its life; delta is chosen so that at most
  0.3% of the calibration accounts (all of them, tested or too short to test) would be flagged:
  the k-th smallest minimum, k = floor(0.003 accounts) + 1, flag strictly below it. Accounts with
  fewer than 101 requests are never tested.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import shapiro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fingerprint.config import FingerprintConfig
from fingerprint.embed import Embedder
from monitor import Request, read_requests, requests_by_account

ALPHA = 0.003  # the anchor's benign FPR: per window (MMD), per account (PRADA here)
BANDWIDTHS = (0.5, 1.0, 2.0)  # RBF bandwidths, times the median distance
REFERENCE_SHARE = 0.25  # most of the baseline requests whose accounts form the reference part
REFERENCE_SAMPLE = 2000  # reference prompts the kernel means are taken over
MEDIAN_SAMPLE = 2000  # reference prompts whose pairwise distances give the median
PRADA_MIN = 100  # distances before PRADA's first test (PRADA's setting)
PRADA_CAP = 1000  # earlier queries per account a new one is compared with
SHAPIRO_MAX = 5000  # most recent distances the Shapiro-Wilk test reads
WINDOWS = (1500, 300)  # MMD windows: the anchor's, and one for earlier detection


@dataclass(frozen=True)
class Outcome:
    """One account under one baseline."""

    flagged: bool
    flagged_at: int | None = None  # requests seen when first flagged
    tests: int = 0  # tests run until flagged (or in all)
    extreme: float | None = None  # MMD: largest statistic / threshold; PRADA: smallest W


@dataclass
class BaselineRun:
    """Per-account outcomes, the thresholds and what they rest on, and the time taken."""

    name: str
    outcomes: dict[str, Outcome]
    thresholds: dict = field(default_factory=dict)
    seconds: float = 0.0


class Embeddings:
    """Prompts to float32 unit vectors, each distinct prompt embedded once (campaign covers and
    apps reuse benign conversations, so the evaluation log repeats text)."""

    def __init__(self, embedder: Embedder | None = None):
        fp = FingerprintConfig(embedding_backend="static")
        self.embedder = embedder or Embedder(fp.embedding_model, fp.embedding_max_tokens,
                                             backend="static")
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(p for p in prompts if p not in self.cache))
        for start in range(0, len(missing), 4096):
            chunk = missing[start:start + 4096]
            rows = np.asarray(self.embedder.embed(chunk), dtype=np.float32)
            self.cache.update(zip(chunk, rows))
        if not prompts:
            return np.zeros((0, 256), dtype=np.float32)
        return np.stack([self.cache[p] for p in prompts])


# MMD-only ---------------------------------------------------------------------------------------

def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.sum(a ** 2, axis=1)[:, None] + np.sum(b ** 2, axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


class MmdReference:
    """The reference sample Y, the kernel's bandwidths, and the parts of MMD^2 that depend on Y
    alone (its within mean) or on one window row at a time (its mean kernel to Y)."""

    def __init__(self, reference: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.y = reference[rng.permutation(len(reference))[:REFERENCE_SAMPLE]]
        take = self.y[:MEDIAN_SAMPLE]
        upper = squared_distances(take, take)[np.triu_indices(len(take), k=1)]
        self.median = float(np.sqrt(np.median(upper)))
        self.gammas = [1.0 / (2.0 * (b * self.median) ** 2) for b in BANDWIDTHS]
        self.yy = self.within_sum(self.y) / (len(self.y) * (len(self.y) - 1))

    def kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = squared_distances(a, b)
        return sum(np.exp(-g * d) for g in self.gammas) / len(self.gammas)

    def within_sum(self, x: np.ndarray) -> float:
        """Sum of k(x_i, x_j) over i != j."""
        return float(self.kernel(x, x).sum()) - len(x)  # k(x, x) = 1 on the diagonal

    def cross(self, x: np.ndarray) -> np.ndarray:
        """Each row's mean kernel to Y (in chunks, to bound memory)."""
        return np.concatenate([self.kernel(x[i:i + 2048], self.y).mean(axis=1)
                               for i in range(0, len(x), 2048)]) if len(x) else np.zeros(0)

    def mmd2(self, x: np.ndarray, cross: np.ndarray) -> float:
        n = len(x)
        return self.within_sum(x) / (n * (n - 1)) + self.yy - 2.0 * float(cross.mean())


def test_points(window: int, length: int) -> list[tuple[int, int]]:
    """(requests seen, window size) at which an account of ``length`` requests is tested."""
    early = [(window // 5, window // 5), (window // 2, window // 2)]
    late = [(n, window) for n in range(window, length + 1, window // 2)]
    return [(n, s) for n, s in early + late if n <= length]


def split_benign(accounts: dict[str, list[Request]], seed: int):
    """Whole accounts, shuffled, into (reference requests, null accounts in the shuffled order)."""
    names = sorted(accounts)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    total, taken, reference, null = sum(len(v) for v in accounts.values()), 0, [], []
    for name in order:
        if taken + len(accounts[name]) <= REFERENCE_SHARE * total:
            reference.extend(accounts[name])
            taken += len(accounts[name])
        else:
            null.append(accounts[name])
    return reference, null


def upper_threshold(values: Sequence[float], alpha: float = ALPHA) -> float | None:
    """The value at most ``alpha`` of ``values`` exceed (the k-th largest, k = floor(alpha n)+1)."""
    if not values:
        return None
    return float(sorted(values, reverse=True)[int(alpha * len(values))])


def mmd_only(benign: Iterable[Request], accounts: dict[str, list[Request]], window: int = 1500,
             embed: Embeddings | None = None, seed: int = 0) -> BaselineRun:
    """MMD-only (module docstring): thresholds from the benign log's windows, then every
    account (its requests in time order) tested at ``test_points``."""
    started = time.perf_counter()
    embed = embed or Embeddings()
    reference, null = split_benign(requests_by_account(benign), seed)
    ref = MmdReference(embed([r.prompt for r in reference]), seed)
    stream = embed([r.prompt for reqs in null for r in reqs])
    stream_cross = ref.cross(stream)
    thresholds = {}
    for size in sorted({window // 5, window // 2, window}):
        stats = [ref.mmd2(stream[i:i + size], stream_cross[i:i + size])
                 for i in range(0, len(stream) - size + 1, size)]
        thresholds[size] = {"threshold": upper_threshold(stats), "windows": len(stats)}
    outcomes = {}
    for account, reqs in accounts.items():
        x = embed([r.prompt for r in reqs])
        outcomes[account] = mmd_account(ref, x, ref.cross(x), window, thresholds)
    return BaselineRun(f"MMD W={window}", outcomes, {
        "reference_requests": len(ref.y), "reference_part_requests": len(reference),
        "null_part_requests": len(stream), "null_part_accounts": len(null),
        "median_distance": round(ref.median, 4), "by_size": thresholds},
        time.perf_counter() - started)


def mmd_account(ref: MmdReference, x: np.ndarray, cross: np.ndarray, window: int,
                thresholds: dict) -> Outcome:
    tests, extreme = 0, None
    for seen, size in test_points(window, len(x)):
        limit = thresholds[size]["threshold"]
        if limit is None:
            continue
        ratio = ref.mmd2(x[seen - size:seen], cross[seen - size:seen]) / limit
        tests, extreme = tests + 1, ratio if extreme is None else max(extreme, ratio)
        if ratio > 1:
            return Outcome(True, seen, tests, extreme)
    return Outcome(False, None, tests, extreme)


# PRADA-only -------------------------------------------------------------------------------------

def min_distances(x: np.ndarray, cap: int = PRADA_CAP, block: int = 256) -> np.ndarray:
    """For each query after the first, its minimum L2 distance to the ``cap`` queries before it."""
    out = np.empty(max(len(x) - 1, 0), dtype=np.float64)
    for start in range(1, len(x), block):
        stop = min(start + block, len(x))
        low = max(0, start - cap)
        d = squared_distances(x[start:stop], x[low:stop])
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(low, stop)[None, :]
        d[(cols >= rows) | (cols < rows - cap)] = np.inf
        out[start - 1:stop - 1] = np.sqrt(d.min(axis=1))
    return out


def shapiro_path(distances: np.ndarray, delta: float | None = None) -> Outcome:
    """The tests after each query once PRADA_MIN distances are in: the first W below ``delta``
    (never, without a delta) flags; ``extreme`` is the smallest W seen."""
    lowest, tests = None, 0
    for n in range(PRADA_MIN, len(distances) + 1):
        recent = distances[max(0, n - SHAPIRO_MAX):n]
        w = 1.0 if np.ptp(recent) == 0 else float(shapiro(recent).statistic)
        lowest, tests = w if lowest is None else min(lowest, w), tests + 1
        if delta is not None and w < delta:
            return Outcome(True, n + 1, tests, lowest)  # n distances: n + 1 requests seen
    return Outcome(False, None, tests, lowest)


def prada_only(calibration: Iterable[Request], accounts: dict[str, list[Request]],
               embed: Embeddings | None = None) -> BaselineRun:
    """PRADA-only (module docstring): delta from the calibration accounts, then every account."""
    started = time.perf_counter()
    embed = embed or Embeddings()
    benign = requests_by_account(calibration)
    lowest = sorted(shapiro_path(min_distances(embed([r.prompt for r in reqs]))).extreme
                    for reqs in benign.values() if len(reqs) > PRADA_MIN)
    allowed = int(ALPHA * len(benign))  # calibration accounts a delta may flag
    delta = lowest[allowed] if len(lowest) > allowed else None
    outcomes = {}
    for account, reqs in accounts.items():
        if delta is None or len(reqs) <= PRADA_MIN:
            outcomes[account] = Outcome(False)
            continue
        outcomes[account] = shapiro_path(min_distances(embed([r.prompt for r in reqs])), delta)
    return BaselineRun("PRADA", outcomes, {
        "delta": delta, "calibration_accounts": len(benign), "tested_accounts": len(lowest),
        "allowed_flags": allowed, "lowest_w": [round(w, 4) for w in lowest[:5]]},
        time.perf_counter() - started)


def run_all(traffic: Path, accounts: dict[str, list[Request]] | None = None,
            windows: Sequence[int] = WINDOWS, seed: int = 0) -> list[BaselineRun]:
    """Every baseline on one traffic directory (``accounts``: the evaluation log's, grouped by
    ``by_account``; read from ``requests.jsonl.gz`` when not given)."""
    if accounts is None:
        accounts = requests_by_account(read_requests(traffic / "requests.jsonl.gz"))
    embed = Embeddings()
    runs = [mmd_only(read_requests(traffic / "baseline.jsonl.gz"), accounts, w, embed, seed)
            for w in windows]
    runs.append(prada_only(read_requests(traffic / "calibration.jsonl.gz"), accounts, embed))
    return runs


def tested_by_kind(outcomes: dict[str, Outcome], accounts: dict) -> dict[str, dict]:
    """Per kind of account (campaigns by level): accounts tested at least once, flagged among
    them, and the median of the most extreme statistic (MMD: largest statistic / threshold; PRADA:
    smallest W). A benign FPR over accounts a baseline never tests says little of the baseline."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for account, outcome in outcomes.items():
        info = accounts[account]
        kind = f"campaign {info['level']:.0%}" if info["kind"] == "campaign" else info["kind"]
        groups[kind].append(outcome)
    out = {}
    for kind, members in sorted(groups.items()):
        tested = [o for o in members if o.tests]
        out[kind] = {"accounts": len(members), "tested": len(tested),
                     "flagged": sum(o.flagged for o in members),
                     "median_extreme": round(float(np.median([o.extreme for o in tested])), 4)
                     if tested else None}
    return out


def main() -> None:
    from monitor_bench import summarise

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traffic", type=Path, default=Path("/tmp/monitor-traffic"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    truth = json.loads((args.traffic / "truth.json").read_text())["accounts"]
    result = {run.name: {"seconds": round(run.seconds, 1), "thresholds": run.thresholds,
                         "tested": tested_by_kind(run.outcomes, truth),
                         "kinds": summarise(run.outcomes, truth)}
              for run in run_all(args.traffic)}
    if args.json:
        print(json.dumps(result))
        return
    for name, run in result.items():
        print(name, json.dumps({"seconds": run["seconds"], "thresholds": run["thresholds"]}))
    print_table({name: run["kinds"] for name, run in result.items()})


def print_table(columns: dict[str, dict]) -> None:
    """One row per kind, per detector: the share flagged and the median requests until flagged."""
    kinds = list(dict.fromkeys(k for rows in columns.values() for k in rows))
    print(f"{'kind':<28}{'accounts':>9}" + "".join(f"{name:>24}" for name in columns))
    for kind in kinds:
        first = next(rows[kind] for rows in columns.values() if kind in rows)
        cells = []
        for rows in columns.values():
            row = rows.get(kind)
            delay = "" if row is None or row["median_delay"] is None \
                else f" @{row['median_delay']:.0f}"
            cells.append("" if row is None else f"{row['flagged_share']:.3f}{delay}")
        print(f"{kind:<28}{first['accounts']:>9}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
