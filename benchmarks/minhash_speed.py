"""MinHash fingerprinting speed from raw text, side by side in one run (issue 4's first goal).

    .venv/bin/python benchmarks/minhash_speed.py [--data ../shared/data/alpacaeval] [-n 3000]
                                                 [--json]

Every method starts from the same raw responses (real model outputs from the AlpacaEval folder),
uses the toolkit's shingling (normalise, ``\\w+`` words, word 3-grams) and 128 permutations, in a
single process. rensa is measured when installed (``pip install rensa``; it is not a dependency).
Each method is timed over the whole sample after one warm-up batch; the best of ``--repeat`` runs
is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fingerprint.config import FingerprintConfig  # noqa: E402
from fingerprint.minhash import MinHasher  # noqa: E402
from fingerprint.io import read_records  # noqa: E402
from fingerprint.shingles import word_shingles  # noqa: E402


def load_texts(data: Path, n: int) -> list[str]:
    texts: list[str] = []
    for path in sorted((data / "outputs").glob("*.jsonl")):
        texts.extend(r.response for r in read_records(path))
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


OURS = "fingerprint MinHasher, xxh32 (default)"


def methods(num_perm: int) -> dict[str, Callable[[list[str]], object]]:
    import xxhash
    from datasketch import LeanMinHash, MinHash

    fast = MinHasher(FingerprintConfig(num_perm=num_perm, hash_function="xxh32"))
    sha1 = MinHasher(FingerprintConfig(num_perm=num_perm, hash_function="sha1_32"))
    out: dict[str, Callable[[list[str]], object]] = {
        "shingling only (Python)": lambda texts: [word_shingles(t) for t in texts],
        "datasketch MinHash.update_batch (sha1)": lambda texts: [
            _datasketch_one(MinHash, t, num_perm) for t in texts],
        "datasketch MinHash.bulk + LeanMinHash (xxh32)": lambda texts: [
            LeanMinHash(m) for m in MinHash.bulk(
                [[s.encode("utf-8") for s in word_shingles(t)] for t in texts],
                num_perm=num_perm, hashfunc=xxhash.xxh32_intdigest)],
        "fingerprint MinHasher, sha1_32 (datasketch default hash)": sha1.signatures,
        OURS: fast.signatures,
    }
    try:
        from rensa import RMinHash

        def rensa_all(texts: list[str]) -> list:
            sketches = []
            for t in texts:
                m = RMinHash(num_perm=num_perm, seed=42)
                m.update(list(word_shingles(t)))
                sketches.append(m.digest())
            return sketches

        out["rensa RMinHash"] = rensa_all
    except ImportError:
        pass
    return out


def bit_identical(texts: list[str], num_perm: int) -> bool:
    """Our xxh32 signatures equal datasketch's MinHash(hashfunc=xxh32) on the same shingles."""
    import xxhash
    from datasketch import MinHash

    hasher = MinHasher(FingerprintConfig(num_perm=num_perm, hash_function="xxh32"))
    ours = hasher.signatures(texts)
    for row, text in zip(ours, texts):
        m = MinHash(num_perm=num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)
        m.update_batch([s.encode("utf-8") for s in word_shingles(text)])
        if not np.array_equal(row, m.hashvalues):
            return False
    return True


def _datasketch_one(cls, text: str, num_perm: int):
    m = cls(num_perm=num_perm)
    m.update_batch([s.encode("utf-8") for s in word_shingles(text)])
    return m


def run(data: Path, n: int, repeat: int, num_perm: int) -> dict:
    texts = load_texts(data, n)
    words = float(np.mean([len(t.split()) for t in texts]))
    results = {}
    start = time.perf_counter()
    MinHasher(FingerprintConfig(num_perm=num_perm)).signatures(texts[:1])
    first_call = time.perf_counter() - start  # numba compiles, or loads its on-disk cache
    for name, fn in methods(num_perm).items():
        fn(texts[:50])  # warm-up: imports, permutation tables
        best = min(_timed(fn, texts) for _ in range(repeat))
        results[name] = {"seconds": round(best, 3), "responses_per_s": round(len(texts) / best)}
    ours = results[OURS]["responses_per_s"]
    ratios = {f"xxh32 MinHasher / {name}": round(ours / r["responses_per_s"], 2)
              for name, r in results.items() if name != OURS}
    return {"responses": len(texts), "mean_words": round(words, 1), "num_perm": num_perm,
            "rensa_installed": "rensa RMinHash" in results, "methods": results,
            "ratios": ratios, "first_call_seconds": round(first_call, 2),
            "bit_identical_to_datasketch_xxh32": bit_identical(texts[:300], num_perm)}


def _timed(fn: Callable, texts: list[str]) -> float:
    start = time.perf_counter()
    fn(texts)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpacaeval"))
    parser.add_argument("-n", type=int, default=3000, help="responses to fingerprint")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--json", action="store_true", help="print the JSON only")
    args = parser.parse_args()
    report = run(args.data, args.n, args.repeat, args.num_perm)
    print(json.dumps(report, indent=2))
    if not args.json:
        print(f"\n{report['responses']} real responses, {report['mean_words']} words on average, "
              f"{report['num_perm']} permutations, word 3-grams, one process\n")
        print("| method | responses/s | xxh32 MinHasher is ... x faster |\n|---|---|---|")
        for name, r in report["methods"].items():
            ratio = report["ratios"].get(f"xxh32 MinHasher / {name}")
            print(f"| {name} | {r['responses_per_s']:,} | {ratio if ratio else '-'} |")
        if not report["rensa_installed"]:
            print("\nrensa is not installed: pip install rensa to compare with it")


if __name__ == "__main__":
    main()
