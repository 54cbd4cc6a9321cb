"""Sharing, demonstrated: three providers' bundles against their raw indexes, in teacher ranking.

    python benchmarks/sharing.py --data ../shared/data/alpacaeval [--limit N | --quick] \\
        [--work DIR] [--json]

Three providers (the ChatGPT, GPT-4 and Claude families of lineage.csv, one index each, named
after the family) each export a signed bundle with keyed signatures and their style profile; a
fourth party, whose own index holds the text-davinci-003 family and the references (the other
provider families and the vendor models: independent of the candidates), verifies and imports
them. For every student and human-data model it then ranks the teachers twice with the
library's one method (attribution.rank_teachers, the provider shares of one style classifier):
with the bundles (its own index plus the partners' style profiles) and with the raw indexes side
by side (the four indexes, as ``attribute --index D --index A --index B --index C``). Printed:
both rankings per model, the agreement (top-1 equal, Spearman rank correlation of the shares,
largest share difference), top-1 against the lineage teacher, each partner's near-duplicate
count for the model (keyed signatures), bundle bytes per 1,000 responses, and the seconds to
export, verify and import each bundle. ``--limit N`` uses the first N prompts (805: all);
``--quick`` is ``--limit 120``. ``--privacy K:G,...`` repeats export, import and both rankings
for each style profile setting (``--min-feature-responses K``, ``--style-pool G``; default the
library's, 20:1) and measures what a key-holding partner reads from each profile
(``reconstruction``: the share of each answer's distinct words, and of its content words,
found in its row), then prints one line per setting: the privacy against agreement table.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import rank_teachers, stored_references  # noqa: E402
from fingerprint import Fingerprinter, read_records  # noqa: E402
from fingerprint.style import StyleVectorizer, style_tokens  # noqa: E402
from index import add_reference, build_index, open_index  # noqa: E402
from sharing import (export_bundle, generate_consortium_key, generate_signing_key,  # noqa: E402
                     import_bundle, load_partners, verify_bundle)

PARTNERS = ("chatgpt", "gpt4", "claude")  # provider families that share bundles
OWN = "text-davinci-003"  # the fourth party's own provider family
COMMON_WORDS = 200  # words outside the commonest 200 count as content words


def lineage(data: Path) -> dict[str, dict]:
    with open(data / "lineage.csv", newline="") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def served_file(data: Path, models: list[str], limit: int, out: Path) -> Path:
    """The models' answers to the first ``limit`` prompts, in the served shape."""
    with open(out, "w", encoding="utf-8") as g:
        for model in models:
            lines = (data / "outputs" / f"{model}.jsonl").read_text().splitlines()[:limit]
            for line in lines:
                row = json.loads(line)
                if row["output"].strip():
                    g.write(json.dumps({"id": f"{model}-{row['prompt_id']}", "model": model,
                                        "prompt": row["instruction"],
                                        "response": row["output"]}) + "\n")
    return out


def build(data: Path, rows: dict[str, dict], limit: int, work: Path) -> dict[str, Path]:
    """One index per partner family, and the fourth party's with the references stored."""
    fingerprinter = Fingerprinter()
    family = {}
    for model, row in rows.items():
        if row["role"] == "provider":
            family.setdefault(row["provider_family"], []).append(model)
    indexes = {}
    for name in PARTNERS + (OWN,):
        indexes[name] = work / name
        build_index(indexes[name], [served_file(data, family[name], limit,
                                                work / f"{name}.jsonl")], fingerprinter)
    references = [m for f, models in family.items() if f not in PARTNERS + (OWN,)
                  for m in models] + [m for m, r in rows.items() if r["role"] == "vendor"]
    for model in references:
        add_reference(indexes[OWN], model, [served_file(data, [model], limit,
                                                        work / f"ref-{model}.jsonl")],
                      fingerprinter)
    return indexes


def share(indexes: dict[str, Path], work: Path, min_feature_responses: int = 10,
          pool: int = 1) -> dict:
    """Keys, then each partner exports, the fourth party verifies and imports: timed."""
    work.mkdir(parents=True, exist_ok=True)
    trust, signals = work / "trust", work / "partner-signals"
    trust.mkdir()
    consortium = work / "consortium.key"
    generate_consortium_key(consortium)
    out: dict = {"consortium": consortium, "signals": signals, "bundles": {}}
    for name in PARTNERS:
        public = generate_signing_key(name, work / f"{name}.signing.key")
        (trust / f"{name}.pub").write_text(json.dumps(public.to_dict()))
        bundle = work / f"{name}.bundle"
        t0 = time.perf_counter()
        made = export_bundle(indexes[name], consortium, work / f"{name}.signing.key", bundle,
                             min_feature_responses=min_feature_responses, style_pool=pool)
        t1 = time.perf_counter()
        verify_bundle(bundle, trust, consortium_keys=(consortium,))
        t2 = time.perf_counter()
        import_bundle(bundle, trust, signals, consortium_keys=(consortium,))
        t3 = time.perf_counter()
        responses = made.manifest["counts"]["signatures"]
        size = bundle.stat().st_size
        out["bundles"][name] = {
            "responses": responses, "style_rows": made.manifest["style"]["rows"],
            "bytes": size, "bytes_per_1000_responses": round(size * 1000 / responses),
            "part_bytes": {part: entry["bytes"]  # uncompressed, before the zip
                           for part, entry in made.manifest["parts"].items()},
            "export_s": round(t1 - t0, 3), "verify_s": round(t2 - t1, 3),
            "import_s": round(t3 - t2, 3)}
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return None if np.isnan(value) else round(float(value), 4)


def compare(data: Path, rows: dict[str, dict], indexes: dict[str, Path], shared: dict,
            limit: int) -> list[dict]:
    """Both rankings for every student and human-data model (module docstring)."""
    suspects = [m for m, r in rows.items() if r["role"] in ("student", "non-student")]
    names = [OWN, *PARTNERS]
    out = []
    with open_index(indexes[OWN]) as own:
        references = stored_references([own])
        partners = load_partners([shared["signals"]], [shared["consortium"]], own.config)
        profiles = [p.profile for p in partners]
        raw = [open_index(indexes[n]) for n in PARTNERS]
        try:
            for model in suspects:
                records = list(read_records(data / "outputs" / f"{model}.jsonl"))[:limit]
                t0 = time.perf_counter()
                bundled = rank_teachers([own], records, references, 0, [OWN], profiles)
                t1 = time.perf_counter()
                direct = rank_teachers([own, *raw], records, references, 0, names)
                t2 = time.perf_counter()
                a = {s.provider: s.share for s in bundled.ranking}
                b = {s.provider: s.share for s in direct.ranking}
                near = {p.name: p.near_duplicates(records, 0.5).near_duplicates
                        for p in partners}
                out.append({
                    "model": model, "role": rows[model]["role"],
                    "teacher": rows[model]["teacher"],
                    "bundles": [[s.provider, round(s.share, 4)] for s in bundled.ranking],
                    "raw": [[s.provider, round(s.share, 4)] for s in direct.ranking],
                    "top1_equal": bundled.teacher.provider == direct.teacher.provider,
                    "spearman": spearman([a[n] for n in names], [b[n] for n in names]),
                    "max_share_difference": max(abs(a[n] - b[n]) for n in names),
                    "near_duplicates": near,
                    "rank_s": {"bundles": round(t1 - t0, 3), "raw": round(t2 - t1, 3)}})
        finally:
            for idx in raw:
                idx.close()
    return out


def common_words(indexes: dict[str, Path], top: int = COMMON_WORDS) -> set[str]:
    """The ``top`` commonest words over the partners' served answers: what is not content."""
    from collections import Counter

    counts: Counter = Counter()
    for name in PARTNERS:
        with open_index(indexes[name]) as idx:
            stored = idx.responses(list(range(len(idx))))
            for r in stored.values():
                counts.update(t for t in style_tokens(r.response or "") if t.isalnum())
    return {w for w, _ in counts.most_common(top)}


def reconstruction(indexes: dict[str, Path], shared: dict, common: set[str]) -> dict:
    """A key-holding partner's attack: per exported response, which of its distinct words
    it reads from its (pooled) row, the row's columns back in bucket order (the key undoes
    the permutation) and each word hashed to its bucket. Shares over all responses, words
    and content words (outside the ``common`` commonest); a pooled row's words count as read
    for each of its responses (an upper bound: the attacker cannot tell whose they are)."""
    from sharing.profile import pool_members

    with open_index(indexes[OWN]) as own:
        partners = {p.name: p for p in load_partners([shared["signals"]],
                                                     [shared["consortium"]], own.config)}
        vectorizer = StyleVectorizer(own.config.style_features, own.config.style_version,
                                   own.config.style_extras)
    words = read = content = content_read = 0
    for name in PARTNERS:
        profile = partners[name].profile
        with open_index(indexes[name]) as idx:
            rows = list(range(len(idx)))
            stored = idx.responses(rows)
            by_row = {r: h for h, hs in idx.prompt_hashes().items() for r in hs}
        member = (pool_members([by_row.get(r) for r in rows], shared["pool"])
                  if shared["pool"] > 1 else np.arange(len(rows)))  # unpooled: index order
        for r in rows:
            distinct = sorted({t for t in style_tokens(stored[r].response or "")
                               if t.isalnum()})
            if not distinct:
                continue
            have = set(profile.style_rows[int(member[r])].indices.tolist())
            found = [b in have for b in vectorizer.transform(distinct).indices]
            words += len(distinct)
            read += sum(found)
            content += sum(w not in common for w in distinct)
            content_read += sum(f and w not in common for w, f in zip(distinct, found))
    return {"words": words, "words_read": round(read / words, 4),
            "content_words": content, "content_words_read": round(content_read / content, 4)}


def summary(models: list[dict], shared: dict, limit: int, seconds: float) -> dict:
    students = [m for m in models if m["role"] == "student"]
    right = {kind: sum(m[kind][0][0] == m["teacher"] for m in students)
             for kind in ("bundles", "raw")}
    rhos = [m["spearman"] for m in models if m["spearman"] is not None]
    return {"prompts": limit, "models": len(models), "students": len(students),
            "top1_equal": sum(m["top1_equal"] for m in models),
            "mean_spearman": round(float(np.mean(rhos)), 4) if rhos else None,
            "max_share_difference": max(m["max_share_difference"] for m in models),
            "students_top1_right": right, "bundles": shared["bundles"],
            "seconds": round(seconds, 1)}


def table(report: dict) -> str:
    lines = [f"prompts {report['prompts']}: top-1 equal for {report['top1_equal']} of "
             f"{report['models']} models; mean Spearman {report['mean_spearman']}; largest share "
             f"difference {report['max_share_difference']:.2e}; students' top-1 right: bundles "
             f"{report['students_top1_right']['bundles']}, raw "
             f"{report['students_top1_right']['raw']} of {report['students']}", "",
             "| model | teacher | ranking with bundles | ranking with raw indexes | top-1 equal "
             "| Spearman | near-duplicates per partner |", "|---|---|---|---|---|---|---|"]
    for m in report["rows"]:
        rank = lambda r: ", ".join(f"{p} {s:.3f}" for p, s in r)  # noqa: E731
        near = ", ".join(f"{p} {n}" for p, n in m["near_duplicates"].items())
        lines.append(f"| {m['model']} | {m['teacher']} | {rank(m['bundles'])} | "
                     f"{rank(m['raw'])} | {'yes' if m['top1_equal'] else 'NO'} | "
                     f"{m['spearman']} | {near} |")
    lines += ["", "| bundle | responses | style rows | bytes | bytes per 1,000 responses | "
              "signatures.bin / style.bin, unzipped | export s | verify s | import s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, b in report["bundles"].items():
        parts = b["part_bytes"]
        lines.append(f"| {name} | {b['responses']} | {b['style_rows']} | {b['bytes']} | "
                     f"{b['bytes_per_1000_responses']} | {parts.get('signatures.bin', 0)} / "
                     f"{parts.get('style.bin', 0)} | {b['export_s']} | {b['verify_s']} | "
                     f"{b['import_s']} |")
    return "\n".join(lines)


def privacy_table(runs: list[dict]) -> str:
    lines = ["| --min-feature-responses | --style-pool | top-1 equal | mean Spearman | largest "
             "share difference | students' top-1 right (bundles / raw) | words read | content "
             "words read | style.bin bytes (3 bundles) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        right = r["students_top1_right"]
        lines.append(f"| {r['min_feature_responses']} | {r['pool']} | {r['top1_equal']} of "
                     f"{r['models']} | {r['mean_spearman']} | {r['max_share_difference']:.3f} | "
                     f"{right['bundles']} / {right['raw']} of {r['students']} | "
                     f"{r['attack']['words_read']:.1%} | {r['attack']['content_words_read']:.1%}"
                     f" | {sum(b['part_bytes'].get('style.bin', 0) for b in r['bundles'].values())}"
                     f" |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder with outputs/*.jsonl and lineage.csv")
    parser.add_argument("--limit", type=int, default=805, help="first N prompts (805: all)")
    parser.add_argument("--quick", action="store_true", help="--limit 120")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--privacy", default="20:1",
                        help="style profile settings to compare, K:G[,K:G...] "
                             "(--min-feature-responses K, --style-pool G; default 20:1, the "
                             "library's default)")
    parser.add_argument("--json", action="store_true", help="print the JSON report only")
    args = parser.parse_args()
    limit = 120 if args.quick else args.limit
    settings = [tuple(int(v) for v in s.split(":")) for s in args.privacy.split(",")]
    start = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = lineage(args.data)
        indexes = build(args.data, rows, limit, work)
        common = common_words(indexes)
        for k, g in settings:
            shared = share(indexes, work / f"k{k}-g{g}", k, g)
            shared["pool"] = g
            models = compare(args.data, rows, indexes, shared, limit)
            runs.append({**summary(models, shared, limit, time.perf_counter() - start),
                         "min_feature_responses": k, "pool": g,
                         "attack": reconstruction(indexes, shared, common), "rows": models})
    if args.json:
        print(json.dumps(runs if len(runs) > 1 else runs[0], indent=2))
        return
    for run in runs:
        print(f"--min-feature-responses {run['min_feature_responses']} --style-pool "
              f"{run['pool']}")
        print(json.dumps({k: v for k, v in run.items() if k != "rows"}, indent=2))
        print(table(run))
    print(privacy_table(runs))


if __name__ == "__main__":
    main()
