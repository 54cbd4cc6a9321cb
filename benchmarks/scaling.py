"""How indexing and search cost grow with the index: 10k, 100k, 1M (and 10M) responses.

    .venv/bin/python benchmarks/scaling.py [--sizes 10000,100000,1000000] [--out bench-out/scaling]
                                           [--data ../shared/data/alpacaeval] [--json]

The responses are synthetic, built from real ones: every answer in the AlpacaEval folder is split
into sentences, and each synthetic response is a real response's length in sentences drawn at
random from that pool (seeded). Synthetic responses therefore share sentences with each other the
way a large served corpus shares boilerplate, which is what makes neighbour search non-trivial.
The corpus is written once for the largest size; each size indexes its first N lines.

For each size, in separate processes so that one measurement cannot warm another:
- build: ``fingerprint index build --no-store-text`` (the real CLI, default config, all cores),
  wall time and peak memory of the whole process tree (sampled every 0.1 s);
- index memory: resident memory added by loading every FAISS index of the index, per response
  (signatures and vectors stay memory-mapped on disk), and the bytes of those index files;
- query: 1,000 new synthetic responses, embedding search and MinHash search at k = 10 in batches of
  100, queries per second (fingerprinting the queries is not timed); recall@10 against exact
  search (exact inner products over all stored vectors; exact MinHash estimates over all stored
  signatures, ties at the 10th score counted as hits) on 200 of them. For MinHash, recall is also
  given on near-duplicate queries (200 stored responses with a fifth of their sentences
  replaced): the share of exact neighbours at estimated Jaccard >= 0.5 that search returns, which
  is what MinHash search is for. The plain recall@10 of MinHash is mostly about responses that
  merely share a sentence or two (estimated Jaccard around 0.05), which 1-bit codes cannot rank;
  it is reported to show how far that goes. Embedding search is also timed at each number of
  IVF lists probed in NPROBE_SWEEP, twice (the second pass finds the vector pages mapped, as a
  long-running service would), and MinHash search at each band cap in BAND_CAP_SWEEP.
- datasketch ``MinHashLSH`` (threshold 0.5, 128 permutations), the usual LSH index, holding the
  same signatures: its resident memory per response, for comparison (at the smaller sizes).
A PNG (time, memory and query latency against size) is written next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n+")
QUERIES, RECALL_QUERIES, BATCH, K = 1000, 200, 100, 10
NPROBE_SWEEP = (32, 64, 128, 256, 320, 384, 512, 1024)  # IVF lists probed; the default is also measured
BAND_CAP_SWEEP = (256, 1024, 4096)  # rows taken per banded MinHash value


# --- synthetic corpus --------------------------------------------------------------------------

def sentence_pool(data: Path) -> tuple[list[str], list[int]]:
    from fingerprint.io import read_records

    pool: list[str] = []
    lengths: list[int] = []
    for path in sorted((data / "outputs").glob("*.jsonl")):
        for record in read_records(path):
            parts = [s.strip() for s in SENTENCE.split(record.response) if s.strip()]
            if parts:
                pool.extend(parts)
                lengths.append(len(parts))
    return pool, lengths


def synthetic(pool: list[str], lengths: list[int], n: int, seed: int) -> Iterator[str]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        size = lengths[rng.integers(len(lengths))]
        yield " ".join(pool[i] for i in rng.integers(len(pool), size=size))


def write_corpus(path: Path, pool: list[str], lengths: list[int], n: int) -> None:
    if path.exists() and sum(1 for _ in open(path, "rb")) == n:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i, text in enumerate(synthetic(pool, lengths, n, seed=0)):
            f.write(json.dumps({"id": f"s{i}", "response": text}) + "\n")
    os.replace(tmp, path)


def head(source: Path, target: Path, n: int) -> None:
    if target.exists() and sum(1 for _ in open(target, "rb")) == n:
        return
    with open(source, "rb") as src, open(target, "wb") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)


# --- measuring a process tree ------------------------------------------------------------------

class PeakMemory:
    """Peak of the summed resident memory of a process and its descendants: all of it, and the
    private (anonymous) part. Resident memory also counts the pages of memory-mapped files that
    were read (the segment's signatures and vectors while its search indexes are built), which
    the kernel can drop at any time: at 10M rows they are most of the total."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self.peak_private = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.process] + self.process.children(recursive=True)
                total = private = 0
                for p in procs:
                    try:
                        info = p.memory_info()
                    except psutil.Error:
                        continue
                    total += info.rss
                    private += info.rss - info.shared  # shared: file-backed pages
                self.peak = max(self.peak, total)
                self.peak_private = max(self.peak_private, private)
            except psutil.Error:
                pass
            time.sleep(0.1)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.peak, self.peak_private


def timed_process(cmd: list[str]) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    memory = PeakMemory(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    peak, private = memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {"seconds": seconds, "peak_bytes": peak, "peak_private_bytes": private, "stdout": out}


# --- the query side (run in its own process) ---------------------------------------------------

def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def query_main(index_path: Path, queries_path: Path, corpus: Path, n: int) -> None:
    import faiss

    from fingerprint.fingerprinter import Fingerprinter
    from fingerprint.io import read_records
    from index import search as search_module
    from index.search import default_nprobe
    from index.store import open_index

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    idx = open_index(index_path)
    fingerprinter = Fingerprinter(idx.config)
    queries = [r.response for r in read_records(queries_path)]
    prints = fingerprinter.fingerprint(queries)
    near_dup_texts = near_duplicates(corpus, n, RECALL_QUERIES)
    near_dup = fingerprinter.minhasher.signatures(near_dup_texts)

    before = rss()
    index_files = 0
    for seg in idx.segments:  # load (and checksum) every search index
        seg.embedding_index  # noqa: B018
        index_files += (seg.dir / "embeddings.faiss").stat().st_size
        if seg.approximate:
            seg.bands  # noqa: B018
            index_files += (seg.dir / "minhash_bands.npy").stat().st_size
        else:
            seg.code_index  # noqa: B018
            index_files += (seg.dir / "minhash_codes.faiss").stat().st_size
    loaded = rss() - before

    timings = {name: timed_search(search, inputs) for name, search, inputs in (
        ("embedding", idx.search_embeddings, prints.embeddings),
        ("minhash", idx.search_minhash, prints.signatures))}

    sub = slice(0, RECALL_QUERIES)
    exact_e = exact_embedding_top(idx, prints.embeddings[sub])

    def embedding_recall(rows: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(rows[sub], exact_e)]))

    recall_e = embedding_recall(timings["embedding"]["rows"])
    nlists = [faiss.extract_index_ivf(s.embedding_index).nlist for s in idx.segments
              if s.approximate]
    probes = [p for p in NPROBE_SWEEP if nlists and p <= max(nlists)]
    sweep = {p: {"nprobe": p} for p in probes}
    # twice: the second pass finds mapped the vector pages the first one touched, as a
    # long-running service would
    for speed in ("queries_per_s", "warm_queries_per_s"):
        for nprobe in probes:
            timed = timed_search(lambda v, k: idx.search_embeddings(v, k, nprobe=nprobe),
                                 prints.embeddings)
            sweep[nprobe][speed] = round(timed["queries_per_s"], 1)
            sweep[nprobe]["recall_at_10"] = embedding_recall(timed["rows"])
    recall_m = minhash_recall(idx, prints.signatures[sub], timings["minhash"]["rows"][sub])
    wanted = near_duplicate_neighbours(idx, near_dup)
    recall_nd = near_duplicate_recall(wanted, idx.search_minhash(near_dup, k=K).rows)
    cap_sweep = []
    for cap in BAND_CAP_SWEEP if nlists else ():  # large segments answer through the bands
        default, search_module.BAND_CAP = search_module.BAND_CAP, cap
        try:
            timed = timed_search(idx.search_minhash, prints.signatures)
            found = idx.search_minhash(near_dup, k=K).rows
        finally:
            search_module.BAND_CAP = default
        cap_sweep.append({"band_cap": cap, "queries_per_s": round(timed["queries_per_s"], 1),
                          "near_duplicate_recall": near_duplicate_recall(wanted, found)})
    print(json.dumps({
        "index_memory_bytes": loaded, "index_file_bytes": index_files,
        "segment_types": sorted({f"{s.entry.embedding_index} + {s.entry.minhash_index}"
                                 for s in idx.segments}),
        "embedding_queries_per_s": timings["embedding"]["queries_per_s"],
        "embedding_ms_per_query": timings["embedding"]["ms_per_query"],
        "minhash_queries_per_s": timings["minhash"]["queries_per_s"],
        "minhash_ms_per_query": timings["minhash"]["ms_per_query"],
        "embedding_recall_at_10": recall_e, "minhash_recall_at_10": recall_m,
        "minhash_near_duplicate_recall": recall_nd,
        "embedding_nlist": max(nlists, default=None),
        "embedding_nprobe": (default_nprobe(max(nlists)) if nlists else None),
        "embedding_nprobe_sweep": list(sweep.values()),
        "minhash_band_cap": search_module.BAND_CAP,
        "minhash_band_cap_sweep": cap_sweep,
    }))


def timed_search(search, inputs: np.ndarray) -> dict:
    """Queries in batches of BATCH after one warm-up batch (which pages in what it touches)."""
    search(inputs[:BATCH], K)
    start = time.perf_counter()
    hits = [search(inputs[i:i + BATCH], K) for i in range(0, len(inputs), BATCH)]
    seconds = time.perf_counter() - start
    return {"queries_per_s": len(inputs) / seconds, "ms_per_query": 1000 * seconds / len(inputs),
            "rows": np.concatenate([h.rows for h in hits])}


def near_duplicates(corpus: Path, n: int, count: int) -> list[str]:
    """Stored responses with a fifth of their sentences replaced by other stored sentences."""
    rng = np.random.default_rng(1)
    wanted = set(rng.choice(n, size=count, replace=False).tolist())
    texts = []
    with open(corpus, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i in wanted:
                texts.append(json.loads(line)["response"])
    donors = [s for t in texts for s in SENTENCE.split(t) if s.strip()]
    out = []
    for text in texts:
        parts = [s for s in SENTENCE.split(text) if s.strip()]
        for j in rng.choice(len(parts), size=max(1, len(parts) // 5), replace=False):
            parts[j] = donors[rng.integers(len(donors))]
        out.append(" ".join(parts))
    return out


def exact_embedding_top(idx, queries: np.ndarray) -> np.ndarray:
    best = np.full((len(queries), K), -np.inf)
    rows = np.full((len(queries), K), -1, dtype=np.int64)
    for seg in idx.segments:
        for start in range(0, seg.rows, 262_144):
            block = np.asarray(seg.vectors[start:start + 262_144], dtype=np.float32)
            sims = queries @ block.T
            cand = np.concatenate([best, sims], axis=1)
            ids = np.concatenate([rows, np.arange(start, start + len(block))[None, :]
                                  .repeat(len(queries), 0) + seg.first_row], axis=1)
            top = np.argpartition(-cand, K - 1, axis=1)[:, :K]
            best, rows = np.take_along_axis(cand, top, 1), np.take_along_axis(ids, top, 1)
    return rows


def exact_minhash_top(idx, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-K rows and estimates over every stored signature (compiled full scan)."""
    from index.scan_kernels import top_equal_counts

    rows, counts = [], []
    for seg in idx.segments:
        r = np.empty((len(signatures), K), dtype=np.int64)
        c = np.empty((len(signatures), K), dtype=np.int64)
        top_equal_counts(np.asarray(seg.signatures), signatures, K, r, c)
        rows.append(r + seg.first_row)
        counts.append(c)
    rows, counts = np.concatenate(rows, axis=1), np.concatenate(counts, axis=1)
    order = np.argsort(-counts, axis=1, kind="stable")[:, :K]
    return (np.take_along_axis(rows, order, 1),
            np.take_along_axis(counts, order, 1) / signatures.shape[1])


def minhash_recall(idx, signatures: np.ndarray, found: np.ndarray) -> float:
    """Share of returned rows whose exact estimate reaches the exact 10th best (ties are hits)."""
    _, exact = exact_minhash_top(idx, signatures)
    hits = []
    for i, rows in enumerate(found):
        rows = [int(r) for r in rows if r >= 0]
        estimates = np.mean(idx.signatures(rows) == signatures[i], axis=1) if rows else []
        hits.append(np.sum(np.asarray(estimates) >= exact[i, K - 1] - 1e-12) / K)
    return float(np.mean(hits))


def near_duplicate_neighbours(idx, signatures: np.ndarray,
                              threshold: float = 0.5) -> list[set[int]]:
    """Per query, the rows of its exact top K at estimated Jaccard >= threshold."""
    rows, estimates = exact_minhash_top(idx, signatures)
    return [set(r[e >= threshold].tolist()) for r, e in zip(rows, estimates)]


def near_duplicate_recall(wanted: list[set[int]], found: np.ndarray) -> float:
    """Share of the wanted near-duplicate rows that search returned."""
    total = sum(len(w) for w in wanted)
    hit = sum(len(w & set(f.tolist())) for w, f in zip(wanted, found))
    return hit / total if total else float("nan")


# --- datasketch MinHashLSH for comparison ------------------------------------------------------

def lsh_main(index_path: Path, n: int) -> None:
    from datasketch import LeanMinHash, MinHashLSH

    from index.store import open_index

    idx = open_index(index_path)
    signatures = np.asarray(idx.signatures(list(range(n))))
    before = rss()
    lsh = MinHashLSH(threshold=0.5, num_perm=idx.config.num_perm)
    for i, sig in enumerate(signatures):
        lsh.insert(str(i), LeanMinHash(seed=idx.config.seed, hashvalues=sig,
                                       scheme=idx.config.minhash_scheme))
    print(json.dumps({"lsh_bytes": rss() - before, "rows": n}))


# --- driver ------------------------------------------------------------------------------------

def run(sizes: list[int], out: Path, data: Path, lsh_max: int, keep_built: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    pool, lengths = sentence_pool(data)
    corpus = out / f"corpus-{max(sizes)}.jsonl"
    write_corpus(corpus, pool, lengths, max(sizes))
    queries = out / "queries.jsonl"
    with open(queries, "w", encoding="utf-8") as f:
        for i, text in enumerate(synthetic(pool, lengths, QUERIES, seed=12345)):
            f.write(json.dumps({"id": f"q{i}", "response": text}) + "\n")
    earlier = {}  # indexes kept from an earlier run (--keep-built): their build figures
    if keep_built and (out / "scaling.json").exists():
        earlier = {r["responses"]: r for r in json.loads((out / "scaling.json").read_text())
                   ["results"] if r.get("build_seconds")}
    results = list(earlier.values())  # sizes not measured again keep their rows
    fingerprint_cli = str(Path(sys.executable).with_name("fingerprint"))
    for n in sizes:
        part = out / f"corpus-{n}.jsonl"
        if n != max(sizes):
            head(corpus, part, n)
        index = out / f"index-{n}"
        if n in earlier and index.exists():
            print(f"{n}: keeping the index and build figures of the earlier run", file=sys.stderr)
            build_row = {k: v for k, v in earlier[n].items()
                         if k.startswith("build_") or k == "disk_bytes_per_response"}
            build_row["build_reused"] = True
        else:
            if index.exists():
                subprocess.run(["rm", "-rf", str(index)], check=True)
            build = timed_process([fingerprint_cli, "index", "build", str(part), "--index",
                                   str(index), "--no-store-text"])
            build_row = {"build_seconds": round(build["seconds"], 1),
                         "build_responses_per_s": round(n / build["seconds"]),
                         "build_peak_mb": round(build["peak_bytes"] / 2**20),
                         "build_peak_private_mb": round(build["peak_private_bytes"] / 2**20),
                         "disk_bytes_per_response": round(_du(index) / n)}
        query = json.loads(timed_process([sys.executable, __file__, "_query", str(index),
                                          str(queries), str(part), str(n)])["stdout"])
        row = {"responses": n, **build_row,
               "index_memory_bytes_per_response": round(query["index_memory_bytes"] / n, 1),
               "index_file_bytes_per_response": round(query["index_file_bytes"] / n, 1),
               **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in query.items()
                  if k not in ("index_memory_bytes", "index_file_bytes")}}
        if n <= lsh_max:
            lsh = json.loads(timed_process([sys.executable, __file__, "_lsh", str(index),
                                            str(n)])["stdout"])
            row["minhashlsh_bytes_per_response"] = round(lsh["lsh_bytes"] / n)
        results = [r for r in results if r["responses"] != n] + [row]
        results.sort(key=lambda r: r["responses"])
        print(json.dumps(row), file=sys.stderr)
        report = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "results": results}
        (out / "scaling.json").write_text(json.dumps(report, indent=2))  # after every size
    plot(results, out / "scaling.png")
    report["plot"] = str(out / "scaling.png")
    (out / "scaling.json").write_text(json.dumps(report, indent=2))
    return report


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["responses"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(n, [r["build_seconds"] for r in results], "o-")
    axes[0].set(title="index build time", ylabel="seconds")
    axes[1].plot(n, [r["build_peak_mb"] for r in results], "o-",
                 label="build peak RSS (process tree; includes mapped file pages)")
    private = [(r["responses"], r["build_peak_private_mb"]) for r in results
               if "build_peak_private_mb" in r]
    if private:
        axes[1].plot(*zip(*private), "^-", label="build peak, private memory")
    axes[1].plot(n, [r["index_file_bytes_per_response"] * r["responses"] / 2**20
                     for r in results], "s-", label="FAISS indexes (what search loads)")
    axes[1].set(title="memory", ylabel="MB")
    axes[1].legend(fontsize=8)
    axes[2].plot(n, [r["embedding_ms_per_query"] for r in results], "o-", label="embedding k=10")
    axes[2].plot(n, [r["minhash_ms_per_query"] for r in results], "s-", label="MinHash k=10")
    axes[2].set(title="query latency (batches of 100)", ylabel="ms per query")
    axes[2].legend(fontsize=8)
    for ax in (axes[0], axes[2]):
        ax.set_yscale("log")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("responses in the index")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_query":
        query_main(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_lsh":
        lsh_main(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", type=Path, default=Path("bench-out/scaling"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpacaeval"))
    parser.add_argument("--lsh-max", type=int, default=100_000,
                        help="largest size at which datasketch MinHashLSH is measured")
    parser.add_argument("--keep-built", action="store_true",
                        help="reuse an existing index of a size, and its build figures from the "
                             "earlier scaling.json, instead of building it again (queries only); "
                             "sizes not in --sizes keep their rows")
    parser.add_argument("--json", action="store_true", help="print the JSON only")
    args = parser.parse_args()
    report = run([int(s) for s in args.sizes.split(",")], args.out, args.data, args.lsh_max,
                 args.keep_built)
    print(json.dumps(report, indent=2))
    if not args.json:
        cols = ["responses", "build_seconds", "build_peak_mb", "build_peak_private_mb",
                "index_file_bytes_per_response",
                "disk_bytes_per_response", "embedding_queries_per_s", "embedding_recall_at_10",
                "minhash_queries_per_s", "minhash_recall_at_10",
                "minhash_near_duplicate_recall", "minhashlsh_bytes_per_response"]
        print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in report["results"]:
            print("| " + " | ".join(str(r.get(c, "-")) for c in cols) + " |")


if __name__ == "__main__":
    main()
