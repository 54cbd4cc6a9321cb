"""Embedding backends side by side: speed, agreement with fp32, attribution quality (issue 4).

    flock /tmp/bench.lock .venv/bin/python benchmarks/embedding_speed.py
        [--data ../shared/data/alpacaeval] [-n 512] [--prompts 200] [--repeat 2]
        [--reuse-cache] [--json]

Run it under ``flock /tmp/bench.lock`` so that it never overlaps another timing run on the
shared machine. Everything runs in one process, on the default thread settings of torch and
onnxruntime.

1. Builds: the onnx-int8 graph and the static table are built from the on-disk model into a
   fresh temporary cache (``--reuse-cache`` uses the normal one) and their build times recorded.
2. Speed: the same ``-n`` real responses (a fixed random sample of all the AlpacaEval answers)
   are embedded by sentence-transformers' own ``encode`` (fp32, batch 32, max_seq_length 256),
   by the toolkit's onnx-int8 backend and by its static backend, after one warm-up call each;
   the methods are interleaved and the best of ``--repeat`` rounds is reported, with each
   backend's cosine to the fp32 vectors (static has its own vector space: no cosine).
3. Attribution quality: on a fixed sample of ``--prompts`` prompts, every model's answers are
   embedded by each backend (timed). A suspect (student or human-data model) is scored for each
   provider family by its mean paired cosine, the cosine between its answer and the family's
   answer to the same prompt (averaged over the family's models and the prompts both answered).
   As in benchmarks/lineage.py (whose families come from lineage.csv), positives for a family
   are its students, negatives the other suspects; reported per family: ROC AUC; over students:
   the top-1 teacher accuracy (family with the highest score). Quality per second is
   (mean AUC - 0.5) x responses/s: the skill above chance delivered per second of embedding.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from fingerprint.config import DEFAULT_EMBEDDING_MODEL, EMBEDDING_BACKENDS  # noqa: E402
from fingerprint.embed import Embedder, load_backend  # noqa: E402
from fingerprint.embed_model import clip, load_tokenizer, resolve_model_path  # noqa: E402
from fingerprint.io import read_records  # noqa: E402
from lineage import roc_auc  # noqa: E402

MAX_TOKENS = 256
ST_NAME = "sentence-transformers encode (fp32, batch 32)"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict:
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                      if line.startswith("model name")), platform.processor())
    except OSError:
        model = platform.processor()
    return {"cpu": model, "cores": os.cpu_count(),
            "simd": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f}" in flags],
            "gpu": False}


def versions() -> dict:
    import onnxruntime
    import sentence_transformers
    import torch
    import transformers

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def sample_texts(data: Path, n: int) -> list[str]:
    texts: list[str] = []
    for path in sorted((data / "outputs").glob("*.jsonl")):
        texts.extend(r.response for r in read_records(path))
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def builds() -> dict:
    out = {}
    for backend in ("onnx-int8", "static"):
        started = time.perf_counter()
        loaded = load_backend(backend, DEFAULT_EMBEDDING_MODEL)
        say(f"{backend}: built or loaded in {time.perf_counter() - started:.1f} s")
        out[backend] = {"build_seconds": loaded.record["build_seconds"],
                        "load_seconds_this_run": round(time.perf_counter() - started, 2),
                        "cache_entry": str(loaded.entry)}
    return out


def speed(texts: list[str], repeat: int) -> dict:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model_path(DEFAULT_EMBEDDING_MODEL), device="cpu")
    st.max_seq_length = MAX_TOKENS
    clipped = clip(texts, MAX_TOKENS)
    methods: dict[str, Callable[[list[str]], np.ndarray]] = {
        ST_NAME: lambda t: st.encode(clip(t, MAX_TOKENS), batch_size=32,
                                     normalize_embeddings=True, convert_to_numpy=True),
        "fingerprint onnx-int8": Embedder(backend="onnx-int8").embed,
        "fingerprint static": Embedder(backend="static").embed,
    }
    best = {name: float("inf") for name in methods}
    vectors = {}
    for name, fn in methods.items():
        fn(texts[:8])  # warm-up
    for _ in range(repeat):
        for name, fn in methods.items():
            started = time.perf_counter()
            vectors[name] = fn(texts)
            best[name] = min(best[name], time.perf_counter() - started)
            say(f"speed: {name}: {len(texts) / (time.perf_counter() - started):.1f} responses/s")
    fp32 = vectors[ST_NAME]
    cos = np.sum(vectors["fingerprint onnx-int8"] * fp32, axis=1)
    tokens = [len(e.ids) for e in load_tokenizer(Path(resolve_model_path(
        DEFAULT_EMBEDDING_MODEL)), MAX_TOKENS).encode_batch(clipped)]
    rates = {name: len(texts) / s for name, s in best.items()}
    return {
        "responses": len(texts), "mean_tokens": round(float(np.mean(tokens)), 1),
        "share_truncated": round(float(np.mean([t == MAX_TOKENS for t in tokens])), 3),
        "max_tokens": MAX_TOKENS, "repeat": repeat,
        "methods": {name: {"seconds": round(best[name], 3),
                           "responses_per_s": round(rates[name], 1)} for name in methods},
        "ratios": {
            "onnx-int8 / sentence-transformers": round(rates["fingerprint onnx-int8"]
                                                       / rates[ST_NAME], 2),
            "static / sentence-transformers": round(rates["fingerprint static"]
                                                    / rates[ST_NAME], 1)},
        "onnx_int8_cosine_to_fp32": {"mean": round(float(cos.mean()), 4),
                                     "min": round(float(cos.min()), 4)},
    }


def load_lineage(data: Path, prompts: int) -> tuple[dict[str, dict], dict[str, dict[str, str]],
                                                     list[str]]:
    with open(data / "lineage.csv", newline="") as f:
        lineage = {row["model"]: row for row in csv.DictReader(f)}
    answers = {m: {r.id: r.response for r in read_records(data / "outputs" / f"{m}.jsonl")}
               for m in lineage}
    ids = sorted(set().union(*answers.values()), key=int)
    rng = np.random.default_rng(1)
    chosen = sorted((ids[i] for i in rng.permutation(len(ids))[:prompts]), key=int)
    return lineage, answers, chosen


def quality(data: Path, prompts: int) -> dict:
    lineage, answers, chosen = load_lineage(data, prompts)
    families: dict[str, list[str]] = {}
    for name, row in lineage.items():
        if row["role"] == "provider":
            families.setdefault(row["provider_family"], []).append(name)
    suspects = [n for n, r in lineage.items() if r["role"] in ("student", "non-student")]
    keys = [(m, p) for m in lineage for p in chosen if p in answers[m]]
    texts = [answers[m][p] for m, p in keys]
    row_of = {k: i for i, k in enumerate(keys)}

    out: dict = {"prompts": len(chosen), "answers": len(texts), "families": {
        f: ms for f, ms in families.items()}, "backends": {}}
    scores_by_backend = {}
    for backend in EMBEDDING_BACKENDS:
        embedder = Embedder(backend=backend)
        embedder.embed(texts[:8])  # warm-up
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        seconds = time.perf_counter() - started
        say(f"quality: {backend}: {len(texts)} answers in {seconds:.1f} s")
        scores = {s: {f: _paired_cosine(vectors, row_of, s, ms, chosen)
                      for f, ms in families.items()} for s in suspects}
        scores_by_backend[backend] = scores
        aucs = {}
        for f in families:
            pos = [scores[s][f] for s in suspects if lineage[s]["teacher"] == f]
            neg = [scores[s][f] for s in suspects if lineage[s]["teacher"] != f]
            if pos and neg:
                aucs[f] = roc_auc(pos, neg)
        students = [s for s in suspects if lineage[s]["role"] == "student"]
        top1 = float(np.mean([max(scores[s], key=scores[s].get) == lineage[s]["teacher"]
                              for s in students]))
        mean_auc = float(np.mean(list(aucs.values())))
        rate = len(texts) / seconds
        out["backends"][backend] = {
            "embed_seconds": round(seconds, 2), "responses_per_s": round(rate, 1),
            "dim": embedder.dim, "auc": {f: round(a, 3) for f, a in aucs.items()},
            "mean_auc": round(mean_auc, 3), "top1_teacher_accuracy": round(top1, 3),
            "quality_per_second": round((mean_auc - 0.5) * rate, 2),
            "scores": {s: {f: round(v, 4) for f, v in fs.items()} for s, fs in scores.items()},
        }
    reference = _flat(scores_by_backend["torch"])
    for backend in EMBEDDING_BACKENDS:
        out["backends"][backend]["score_correlation_with_torch"] = round(float(
            np.corrcoef(reference, _flat(scores_by_backend[backend]))[0, 1]), 4)
    out["winner"] = max(out["backends"], key=lambda b: out["backends"][b]["quality_per_second"])
    return out


def _paired_cosine(vectors: np.ndarray, row_of: dict, suspect: str, family: list[str],
                   prompts: list[str]) -> float:
    sims = [float(vectors[row_of[(suspect, p)]] @ vectors[row_of[(m, p)]])
            for m in family for p in prompts
            if (suspect, p) in row_of and (m, p) in row_of]
    return float(np.mean(sims))


def _flat(scores: dict) -> np.ndarray:
    return np.array([v for s in sorted(scores) for _, v in sorted(scores[s].items())])


def tables(report: dict) -> str:
    s = report["speed"]
    lines = [f"{s['responses']} real responses ({s['mean_tokens']} tokens on average, "
             f"{s['share_truncated']:.0%} cut at {s['max_tokens']}), best of {s['repeat']}, "
             "one process", "", "| method | responses/s | vs sentence-transformers |",
             "|---|---|---|"]
    base = s["methods"][ST_NAME]["responses_per_s"]
    for name, r in s["methods"].items():
        lines.append(f"| {name} | {r['responses_per_s']:,.1f} | "
                     f"{r['responses_per_s'] / base:.2f}x |")
    c = s["onnx_int8_cosine_to_fp32"]
    lines += ["", f"onnx-int8 cosine to fp32: mean {c['mean']:.4f}, min {c['min']:.4f}", "",
              "| artefact | first build (s) |", "|---|---|"]
    lines += [f"| {b} | {r['build_seconds']} |" for b, r in report["builds"].items()]
    q = report["quality"]
    fams = sorted({f for r in q["backends"].values() for f in r["auc"]})
    lines += ["", f"attribution by mean paired cosine: {q['prompts']} prompts, {q['answers']} "
              "answers of 24 models", "",
              "| backend | dim | embed s | responses/s | " + " | ".join(f"AUC {f}" for f in fams)
              + " | mean AUC | top-1 teacher | (AUC-0.5) x resp/s | corr. with torch |",
              "|---|---|---|---|" + "---|" * len(fams) + "---|---|---|---|"]
    for b, r in q["backends"].items():
        lines.append(f"| {b} | {r['dim']} | {r['embed_seconds']} | {r['responses_per_s']:,.1f} | "
                     + " | ".join(f"{r['auc'][f]:.3f}" for f in fams)
                     + f" | {r['mean_auc']:.3f} | {r['top1_teacher_accuracy']:.3f} | "
                     f"{r['quality_per_second']:,.2f} | {r['score_correlation_with_torch']:.3f} |")
    lines += ["", f"best quality per second: {q['winner']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpacaeval"))
    parser.add_argument("-n", type=int, default=512, help="responses for the speed test")
    parser.add_argument("--prompts", type=int, default=200, help="prompts for the quality test")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--reuse-cache", action="store_true",
                        help="use the normal cache instead of building into a fresh one")
    parser.add_argument("--json", action="store_true", help="print the JSON only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fingerprint-cache-") as fresh:
        if not args.reuse_cache:
            os.environ["FINGERPRINT_CACHE_DIR"] = fresh
        started = time.perf_counter()
        report = {"date": datetime.date.today().isoformat(), "machine": machine(),
                  "versions": versions(), "builds": builds(),
                  "speed": speed(sample_texts(args.data, args.n), args.repeat),
                  "quality": quality(args.data, args.prompts)}
        report["seconds_total"] = round(time.perf_counter() - started, 1)
    printed = json.loads(json.dumps(report))
    for r in printed["quality"]["backends"].values():
        r.pop("scores")  # per-model scores are in --json only
    print(json.dumps(report if args.json else printed, indent=2))
    if not args.json:
        print()
        print(tables(report))


if __name__ == "__main__":
    main()
