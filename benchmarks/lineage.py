"""Attribution on real models with known lineage: ROC AUC per provider family, teacher top-1.

    python benchmarks/lineage.py --data ../shared/data/alpacaeval [--data DIR ...] [--json]

Each DIR holds ``outputs/<model>.jsonl`` and ``lineage.csv`` (the columns of
``../shared/data/alpacaeval``); models from all DIRs are pooled. Nothing here names a model: roles,
teachers, families and lineage groups all come from the lineage files, so a folder of new models
needs no code change.

Method (the library's): every provider family is one class (its provider models pooled), every
vendor model one class; each response is reduced to its style fingerprint; a style classifier over
all classes assigns each suspect response to a class; a suspect's score for family F is the share
of its responses assigned to F, calibrated against the other classes scored with their own class
left out (p-value, z) and turned into a derived fraction. Positives for F: students whose teacher
is F; negatives: human-data models and students of other teachers. The length control scores each
suspect by its mean answer length in words instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import RelativeAttributor  # noqa: E402
from fingerprint.config import FingerprintConfig  # noqa: E402
from fingerprint.io import read_records  # noqa: E402
from fingerprint.style import StyleVectorizer  # noqa: E402


def load(dirs: list[Path]) -> tuple[dict[str, dict], dict[str, list[str]]]:
    lineage: dict[str, dict] = {}
    texts: dict[str, list[str]] = {}
    for d in dirs:
        with open(d / "lineage.csv", newline="") as f:
            for row in csv.DictReader(f):
                name = row["model"]
                if name in lineage:
                    raise SystemExit(f"{d / 'lineage.csv'}: model {name!r} appears twice")
                path = d / "outputs" / f"{name}.jsonl"
                if not path.is_file():
                    raise SystemExit(f"{path}: missing (listed in {d / 'lineage.csv'})")
                lineage[name] = row
                texts[name] = [r.response for r in read_records(path)]
    return lineage, texts


def roc_auc(positive: list[float], negative: list[float]) -> float | None:
    if not positive or not negative:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def tpr_at_fpr(positive: list[float], negative: list[float], fpr: float = 0.05) -> float | None:
    if not positive or not negative:
        return None
    allowed = int(np.floor(fpr * len(negative)))
    threshold = sorted(negative, reverse=True)[allowed] if allowed < len(negative) else -np.inf
    return float(np.mean([p > threshold for p in positive]))


def roles(lineage: dict[str, dict]) -> tuple[dict[str, list[str]], dict[str, list[str]],
                                             list[str]]:
    """Provider families (their models), the classifier's classes (each family, each vendor
    model) and the suspects (students and human-data models), all from lineage.csv's roles."""
    families: dict[str, list[str]] = {}
    for name, row in lineage.items():
        if row["role"] == "provider":
            families.setdefault(row["provider_family"], []).append(name)
    classes_models = {f"provider:{f}": ms for f, ms in families.items()}
    classes_models.update({f"vendor:{n}": [n] for n, r in lineage.items() if r["role"] == "vendor"})
    suspects = [n for n, r in lineage.items() if r["role"] in ("student", "non-student")]
    return families, classes_models, suspects


def evaluate(dirs: list[Path]) -> dict:
    started = time.time()
    lineage, texts = load(dirs)
    families, classes_models, suspects = roles(lineage)

    config = FingerprintConfig()
    styler = StyleVectorizer(config.style_features, config.style_version)
    from scipy import sparse

    style = {n: styler.transform(texts[n]) for n in lineage}
    classes = {c: sparse.vstack([style[m] for m in ms], format="csr")
               for c, ms in classes_models.items()}
    targets = [f"provider:{f}" for f in families]
    attributor = RelativeAttributor(classes, targets)
    fitted = time.time()

    models = []
    for name in suspects:
        result = attributor.attribute(style[name], bootstrap=200)
        row = lineage[name]
        scores = {t.split(":", 1)[1]: r.share for t, r in result.items()}
        best = max(scores, key=scores.get)
        ranked = sorted(scores.values(), reverse=True)
        models.append({
            "model": name, "role": row["role"], "teacher": row["teacher"],
            "lineage_group": row["lineage_group"], "responses": len(texts[name]),
            "mean_words": float(np.mean([len(t.split()) for t in texts[name]])),
            "scores": scores,
            "p_values": {t.split(":", 1)[1]: r.calibrated.p_value for t, r in result.items()},
            "z": {t.split(":", 1)[1]: r.calibrated.z for t, r in result.items()},
            "derived_fraction": {t.split(":", 1)[1]: r.fraction for t, r in result.items()},
            "top_teacher": best, "margin": ranked[0] - ranked[1] if len(ranked) > 1 else None,
        })

    report: dict = {"families": {}, "models": models}
    for family in families:
        pos = [m for m in models if m["teacher"] == family]
        neg = [m for m in models if m["teacher"] != family]
        if not pos or not neg:
            continue
        score = [m["scores"][family] for m in pos], [m["scores"][family] for m in neg]
        length = [m["mean_words"] for m in pos], [m["mean_words"] for m in neg]
        length_auc = roc_auc(*length)
        groups: dict[str, list[dict]] = {}
        for m in pos + neg:
            groups.setdefault(m["lineage_group"], []).append(m)
        g_pos = [float(np.mean([m["scores"][family] for m in ms])) for ms in groups.values()
                 if ms[0]["teacher"] == family]
        g_neg = [float(np.mean([m["scores"][family] for m in ms])) for ms in groups.values()
                 if ms[0]["teacher"] != family]
        report["families"][family] = {
            "auc": roc_auc(*score), "tpr_at_5pct_fpr": tpr_at_fpr(*score),
            "auc_grouped": roc_auc(g_pos, g_neg),
            "length_control_auc": max(length_auc, 1 - length_auc),
            "length_control_auc_longer_is_positive": length_auc,
            "n_positive": len(pos), "n_negative": len(neg),
        }
    students = [m for m in models if m["role"] == "student"]
    report["top1_accuracy"] = (float(np.mean([m["top_teacher"] == m["teacher"] for m in students]))
                               if students else None)
    human = [m for m in models if m["teacher"] == "none-human"]
    report["human_min_p_value"] = min((p for m in human for p in m["p_values"].values()
                                       if p is not None), default=None)
    report["method"] = {"signal": "provider share (style classifier, LinearSVC C=1 balanced)",
                        "classes": {c: ms for c, ms in classes_models.items()},
                        "style_features": config.style_features,
                        "seconds_fit": round(fitted - started, 1),
                        "seconds_total": round(time.time() - started, 1)}
    return report


def table(report: dict) -> str:
    lines = ["| family | AUC | TPR@5%FPR | AUC grouped | length-only AUC | students | others |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for f, r in report["families"].items():
        lines.append(f"| {f} | {fmt(r['auc'])} | {fmt(r['tpr_at_5pct_fpr'])} | "
                     f"{fmt(r['auc_grouped'])} | {fmt(r['length_control_auc'])} | "
                     f"{r['n_positive']} | {r['n_negative']} |")
    lines.append("")
    lines.append(f"top-1 teacher accuracy over students: {fmt(report['top1_accuracy'])}; "
                 f"smallest p-value of a human-data model: {fmt(report['human_min_p_value'])}")
    lines.append("")
    lines.append("| model | teacher | top teacher | " + " | ".join(
        f"{f} share (p)" for f in report["families"]) + " |")
    lines.append("|---|---|---|" + "---|" * len(report["families"]))
    for m in report["models"]:
        cells = [f"{m['scores'][f]:.2f} ({fmt(m['p_values'][f])})" for f in report["families"]]
        lines.append(f"| {m['model']} | {m['teacher']} | {m['top_teacher']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", action="append", type=Path, required=True,
                        help="a folder with outputs/*.jsonl and lineage.csv (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the JSON report only")
    args = parser.parse_args()
    report = evaluate(args.data)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps({k: v for k, v in report.items() if k != "models"}, indent=2))
        print(table(report))


if __name__ == "__main__":
    main()
