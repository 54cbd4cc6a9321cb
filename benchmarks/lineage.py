"""Attribution on real models with known lineage: ROC AUC per provider family, teacher top-1,
and whether the p-values keep their promise on the reference models themselves.

    python benchmarks/lineage.py --data ../shared/data/alpacaeval [--data DIR ...] [--json]
                                 [--jobs N] [--style-extras edges+templates] [--classes model]
                                 [--pooled] [--cache DIR]

Each DIR holds ``outputs/<model>.jsonl`` and ``lineage.csv`` (the columns of
``../shared/data/alpacaeval``); models from all DIRs are pooled. Nothing here names a model: roles,
teachers, families, vendors and lineage groups all come from the lineage files, so a folder of new
models needs no code change.

Method (the library's): every provider family is one class (its provider models pooled), every
vendor model one class; each response is reduced to its style fingerprint; a style classifier over
all classes assigns each suspect response to a class; a suspect's score for family F is the share
of its responses assigned to F. Its p-value places that share among the other classes' shares for
F, each scored with itself left out of the fit (the suspect is never a class, so it is scored the
same way by construction), by the library's two methods: ``t`` (Student-t prediction interval on
logit share) and ``rank`` (attribution.stats.rank_p_value). Two evaluations of the null:

- ``pooled``: each reference class scored by a fit without that class (as the library does);
- ``lolgo`` (leave-one-lineage-group-out): each reference class scored by a fit without every
  class that shares a lineage group with it (Qwen1.5-72B is scored with no Qwen1.5 model in the
  fit), so no model is scored by a classifier fitted on its own lineage. Students and human-data
  models are never classes, so their scores are the same under both; what differs is the null.

The lolgo null is always computed (the figures choices are made on); ``--pooled`` adds the pooled
one (about a third more fits). What is under test: ``--style-extras`` (fingerprint.style_extras:
openings and closings, function-word templates, added to the word features) and ``--classes
model`` (one class per provider model, a family's share the sum of its models'; under lolgo a
provider model is scored with its whole family left out). ``--cache DIR`` keeps each model's style
matrix and each fit's labels, so a configuration run again, or a report recomputed, costs no fit.
Where the time goes (2026-11-28, 2 cores): nearly all of it in the classifier fits, one LinearSVC
over ~24,000 answers and 22-30 classes each, ~60 s of one core apiece; styling every answer takes
~13 s, reading the folders ~2 s.

Positives for F: students whose teacher is F; negatives: human-data models and students of other
teachers. The length control scores each suspect by its mean answer length in words instead.
``calibration.<family>.reference_p_values`` tests each reference against the others exactly as a
suspect is tested. A family's vendor is the first word of its provider rows' ``base_model``
("OpenAI gpt-4-0314 (closed API)" -> OpenAI).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import StyleClassifier  # noqa: E402
from attribution.stats import (calibrate, logit_share, rank_floor_sentence,  # noqa: E402
                               rank_p_value, share_sd_floor)
from fingerprint.config import FingerprintConfig  # noqa: E402
from fingerprint.io import read_records  # noqa: E402
from fingerprint.style import StyleVectorizer  # noqa: E402

METHODS = ("t", "rank")
EVALUATIONS = ("pooled", "lolgo")
MAIN = ("lolgo", "rank")  # the evaluation and p-value whose figures fill the top-level keys


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
                lineage[name] = {**row, "_path": path}
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


def roles(lineage: dict[str, dict], per_model: bool = False
          ) -> tuple[dict[str, list[str]], dict[str, list[str]], list[str]]:
    """Provider families (their models), the classifier's classes (each family, or each
    provider model with ``per_model``; each vendor model) and the suspects (students and
    human-data models), all from lineage.csv's roles."""
    families: dict[str, list[str]] = {}
    for name, row in lineage.items():
        if row["role"] == "provider":
            families.setdefault(row["provider_family"], []).append(name)
    if per_model:
        classes_models = {f"provider:{f}/{m}": [m] for f, ms in families.items() for m in ms}
    else:
        classes_models = {f"provider:{f}": ms for f, ms in families.items()}
    classes_models.update({f"vendor:{n}": [n] for n, r in lineage.items() if r["role"] == "vendor"})
    suspects = [n for n, r in lineage.items() if r["role"] in ("student", "non-student")]
    return families, classes_models, suspects


def members(classes_models: dict[str, list[str]], families: dict[str, list[str]]
            ) -> dict[str, frozenset[str]]:
    """Per target ("provider:<family>"): the classes whose assignments count for it (the
    family's one class, or each of its models' classes)."""
    return {f"provider:{f}": frozenset(c for c, ms in classes_models.items()
                                       if c.startswith("provider:") and set(ms) <= set(models))
            for f, models in families.items()}


def vendors(lineage: dict[str, dict], families: dict[str, list[str]]) -> dict[str, str]:
    """Each family's vendor: the first word of its provider rows' base_model, which must agree."""
    out: dict[str, str] = {}
    for family, models in families.items():
        said = {(lineage[m]["base_model"].split() or ["?"])[0] for m in models}
        if len(said) != 1:
            raise SystemExit(f"provider family {family!r}: its models' base_model name "
                             f"different vendors {sorted(said)}")
        out[family] = said.pop()
    return out


def drop_sets(lineage: dict[str, dict], classes_models: dict[str, list[str]],
              evaluations: tuple[str, ...] = EVALUATIONS) -> dict[str, dict[str, frozenset[str]]]:
    """Per evaluation, per class: the classes a fit must leave out to score it. Under lolgo a
    provider's family counts as one lineage group (a provider model is scored with none of its
    family's versions in the fit, as a suspect of a family nobody indexed would be)."""
    def groups(models: list[str]) -> set[str]:
        return {g for m in models for g in (lineage[m]["lineage_group"],
                                            "family:" + lineage[m]["provider_family"]
                                            if lineage[m]["role"] == "provider" else None) if g}

    of = {c: groups(ms) for c, ms in classes_models.items()}
    every = {"pooled": {c: frozenset([c]) for c in classes_models},
             "lolgo": {c: frozenset(d for d in classes_models if of[d] & of[c])
                       for c in classes_models}}
    return {ev: every[ev] for ev in evaluations}


_MATRICES: dict = {}


def _init(matrices: dict) -> None:
    _MATRICES.clear()
    _MATRICES.update(matrices)


def _fit_and_label(task: tuple[frozenset[str], list[str]]) -> tuple[frozenset[str], dict]:
    """Fit on every class but ``task[0]``; label the rows of each name in ``task[1]``
    (with the class names, so the caller needs no index arithmetic)."""
    drop, score = task
    names = [n for n in _MATRICES["classes"] if n not in drop]
    clf = StyleClassifier().fit([_MATRICES["classes"][n] for n in names])
    labels = {s: [names[k] for k in clf.predict(_MATRICES["rows"][s])] for s in score}
    return drop, labels


def fit_all(classes: dict, suspects: dict, drops: dict, jobs: int,
            cache: "Cache | None" = None) -> dict:
    """Every fit the evaluations need, once each: the full fit (labels the suspects) and one per
    distinct set of left-out classes (labels the classes it leaves out and is asked to score).
    A fit already in ``cache`` (same rows, same classes left out) is read, not run."""
    tasks: dict[frozenset[str], list[str]] = {frozenset(): list(suspects)}
    for per_class in drops.values():
        for c, drop in per_class.items():
            tasks.setdefault(drop, []).append(c)
    rows = {**suspects, **classes}
    work = [(d, sorted(set(s))) for d, s in tasks.items()]
    done = {d: cache.labels(d, s) for d, s in work} if cache else {}
    done = {d: labels for d, labels in done.items() if labels is not None}
    todo = [(d, s) for d, s in work if d not in done]
    if todo:
        with ProcessPoolExecutor(min(jobs, len(todo)), initializer=_init,
                                 initargs=({"classes": classes, "rows": rows},)) as pool:
            for drop, labels in pool.map(_fit_and_label, todo):
                done[drop] = labels
                if cache:
                    cache.store_labels(drop, labels)
    return done


class Cache:
    """What does not change between runs of one configuration, under a directory outside the
    repository: each model's style matrix (keyed by its outputs file's bytes and the style
    config) and each fit's labels (keyed by every input of the fit). npz and JSON, no pickle."""

    def __init__(self, root: Path, style_config: dict, fit_key: str = ""):
        self.root, self.style_config, self.fit_key = root, style_config, fit_key

    def _path(self, kind: str, *parts: object, ext: str) -> Path:
        key = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:32]
        return self.root / kind / f"{key}.{ext}"

    def style(self, path: Path, texts: list[str], styler: StyleVectorizer):
        from scipy import sparse

        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        target = self._path("style", digest, sorted(self.style_config.items()), ext="npz")
        if target.is_file():
            return sparse.load_npz(target).tocsr()
        matrix = styler.transform(texts)
        target.parent.mkdir(parents=True, exist_ok=True)
        sparse.save_npz(str(target) + ".tmp.npz", matrix)
        Path(str(target) + ".tmp.npz").replace(target)
        return matrix

    def labels(self, drop: frozenset[str], score: list[str]) -> dict | None:
        target = self._path("fits", self.fit_key, sorted(drop), ext="json")
        if not target.is_file():
            return None
        stored = json.loads(target.read_text())
        return stored if set(score) <= set(stored) else None

    def store_labels(self, drop: frozenset[str], labels: dict) -> None:
        target = self._path("fits", self.fit_key, sorted(drop), ext="json")
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(str(target) + ".tmp").write_text(json.dumps(labels))
        Path(str(target) + ".tmp").replace(target)


def p_value(method: str, share: float, null: dict[str, float], n: int) -> float | None:
    """The suspect's share among the null draws, by the library's ``t`` or ``rank`` method."""
    if method == "rank":
        return rank_p_value(share, list(null.values())) if len(null) >= 5 else None
    rate = float(np.mean(list(null.values())))
    return calibrate(share, list(null.values()), transform=logit_share,
                     sd_floor=share_sd_floor(rate, n)).p_value


def normalised(share: float, null: dict[str, float], n: int) -> float:
    """The suspect's share in the references' units: its logit share's z against the null draws
    (with the ``t`` method's floor on their spread), -inf where it cannot be placed. Picking the
    teacher by this rather than by the raw share cannot be won by naming the family every
    assistant resembles: the references resemble it too."""
    rate = float(np.mean(list(null.values()))) if null else 0.0
    z = calibrate(share, list(null.values()), transform=logit_share,
                  sd_floor=share_sd_floor(rate, n)).z
    return float("-inf") if z is None else z


def identification(students: list[dict], key: str, vendor_of: dict[str, str]) -> dict:
    """Top-1 family and vendor by ``models[*][key]`` (the family named), with the vendor
    accuracy balanced over the teachers' vendors (each vendor's students count as much as
    another's, so "always OpenAI" scores 1 / vendors, not the OpenAI share)."""
    if not students:
        return {"top1_family": None, "top1_vendor": None, "vendor_balanced": None}
    right = {}
    for m in students:
        right.setdefault(vendor_of.get(m["teacher"]), []).append(
            vendor_of[m[key]] == vendor_of.get(m["teacher"]))
    return {"top1_family": float(np.mean([m[key] == m["teacher"] for m in students])),
            "top1_vendor": float(np.mean([x for xs in right.values() for x in xs])),
            "vendor_balanced": float(np.mean([np.mean(xs) for xs in right.values()])),
            "per_vendor": {str(v): f"{sum(xs)}/{len(xs)}" for v, xs in right.items()}}


def shares_of(labels: list[str], targets: dict[str, frozenset[str]]) -> dict[str, float]:
    """Per target: the share of ``labels`` that are one of its classes."""
    return {t: float(np.mean([lab in cs for lab in labels])) if labels else 0.0
            for t, cs in targets.items()}


def nulls(fits: dict, drops: dict, classes_models: dict, targets: dict[str, frozenset[str]]
          ) -> dict[str, dict[str, dict[str, float]]]:
    """Per evaluation, per target: each other class's share assigned to it, scored with
    the evaluation's classes left out (a class whose fit left one of the target's classes out
    is no draw for it: it shares a lineage group with the target)."""
    out: dict = {}
    for ev, per_class in drops.items():
        out[ev] = {t: {c: shares_of(fits[per_class[c]][c], {t: cs})[t]
                       for c in classes_models if c not in cs and not cs & per_class[c]}
                   for t, cs in targets.items()}
    return out


def calibration_check(null: dict[str, dict[str, float]], rows: dict[str, int],
                      method: str) -> dict:
    """Each reference tested against the others exactly as a suspect is (its own left-out share
    placed among the other references' left-out shares)."""
    out: dict = {}
    for t, draws in null.items():
        ps = {c.split(":", 1)[1]: p_value(method, v, {d: w for d, w in draws.items() if d != c},
                                          rows[c])
              for c, v in draws.items()}
        valid = [p for p in ps.values() if p is not None]
        out[t.split(":", 1)[1]] = {
            "reference_p_values": ps, "n_references": len(draws),
            "share_below_0_05": float(np.mean([p < 0.05 for p in valid])) if valid else None,
            "share_below_0_01": float(np.mean([p < 0.01 for p in valid])) if valid else None}
    return out


def share_below(ps: list[float], level: float) -> float | None:
    return float(np.mean([p < level for p in ps])) if ps else None


def summary(models: list[dict], key: str, calibration: dict) -> dict:
    """The p-value figures of one evaluation and method (``models[*][key]`` holds its p-values)."""
    students = [m for m in models if m["role"] == "student" and m["teacher"] in m[key]]
    own = [m[key][m["teacher"]] for m in students]
    human = [m for m in models if m["teacher"] == "none-human"]
    tested = [p for c in calibration.values() for p in c["reference_p_values"].values()
              if p is not None]
    return {
        "human_min_p_value": min((p for m in human for p in m[key].values() if p is not None),
                                 default=None),
        "students_p_below_0_01": float(np.mean([p is not None and p < 0.01 for p in own]))
        if own else None,
        "students_p_below_0_05": float(np.mean([p is not None and p < 0.05 for p in own]))
        if own else None,
        "reference_tests": len(tested),
        "reference_share_below_0_05": share_below(tested, 0.05),
        "reference_share_below_0_01": share_below(tested, 0.01),
        "calibration": calibration,
    }


def family_figures(models: list[dict], families: dict) -> dict:
    report = {}
    for family in families:
        pos = [m for m in models if m["teacher"] == family]
        neg = [m for m in models if m["teacher"] != family]
        if not pos or not neg:
            continue
        score = [m["scores"][family] for m in pos], [m["scores"][family] for m in neg]
        length_auc = roc_auc([m["mean_words"] for m in pos], [m["mean_words"] for m in neg])
        groups: dict[str, list[dict]] = {}
        for m in pos + neg:
            groups.setdefault(m["lineage_group"], []).append(m)
        g_pos = [float(np.mean([m["scores"][family] for m in ms])) for ms in groups.values()
                 if ms[0]["teacher"] == family]
        g_neg = [float(np.mean([m["scores"][family] for m in ms])) for ms in groups.values()
                 if ms[0]["teacher"] != family]
        report[family] = {
            "auc": roc_auc(*score), "tpr_at_5pct_fpr": tpr_at_fpr(*score),
            "auc_grouped": roc_auc(g_pos, g_neg),
            "length_control_auc": max(length_auc, 1 - length_auc),
            "length_control_auc_longer_is_positive": length_auc,
            "n_positive": len(pos), "n_negative": len(neg),
        }
    return report


def evaluate(dirs: list[Path], jobs: int = 1, style_extras: str = "", per_model: bool = False,
             evaluations: tuple[str, ...] = ("lolgo",), cache_dir: Path | None = None) -> dict:
    """Kept whole: one pass from the lineage files to the report, each step a call.
    ``style_extras`` and ``per_model`` are the configuration under test (fingerprint.style_extras;
    one class per provider model), ``evaluations`` the nulls computed (MAIN's always)."""
    seconds: dict[str, float] = {}
    started = clock = time.time()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.time() - clock, 1)
        clock = time.time()

    evaluations = tuple(ev for ev in EVALUATIONS if ev in evaluations or ev == MAIN[0])
    lineage, texts = load(dirs)
    families, classes_models, suspects = roles(lineage, per_model)
    vendor_of = vendors(lineage, families)
    config = FingerprintConfig(style_extras=style_extras)
    styler = StyleVectorizer(config.style_features, config.style_version, config.style_extras)
    style_config = {k: getattr(config, k) for k in ("style_version", "style_features",
                                                    "style_extras")}
    cache = None
    if cache_dir is not None:
        inputs = sorted((n, hashlib.sha256(r["_path"].read_bytes()).hexdigest())
                        for n, r in lineage.items())
        cache = Cache(cache_dir, style_config, json.dumps(
            [inputs, sorted(style_config.items()), sorted(classes_models.items())]))
    lap("load")
    from scipy import sparse

    style = {n: cache.style(lineage[n]["_path"], texts[n], styler) if cache
             else styler.transform(texts[n]) for n in lineage}
    classes = {c: sparse.vstack([style[m] for m in ms], format="csr")
               for c, ms in classes_models.items()}
    lap("style")
    targets = members(classes_models, families)
    drops = drop_sets(lineage, classes_models, evaluations)
    fits = fit_all(classes, {s: style[s] for s in suspects}, drops, jobs, cache)
    lap("fits")
    null = nulls(fits, drops, classes_models, targets)
    rows = {c: m.shape[0] for c, m in classes.items()}

    models = []
    for name in suspects:
        row = lineage[name]
        scores = {t.split(":", 1)[1]: v
                  for t, v in shares_of(fits[frozenset()][name], targets).items()}
        best = max(scores, key=scores.get)
        ranked = sorted(scores.values(), reverse=True)
        p = {f"{ev}/{me}": {f: p_value(me, scores[f], null[ev][f"provider:{f}"], len(texts[name]))
                            for f in scores}
             for ev in evaluations for me in METHODS}
        z = {f: normalised(scores[f], null[MAIN[0]][f"provider:{f}"], len(texts[name]))
             for f in scores}
        best_z = max(z, key=lambda f: (z[f], scores[f]))
        models.append({
            "model": name, "role": row["role"], "teacher": row["teacher"],
            "lineage_group": row["lineage_group"], "responses": len(texts[name]),
            "mean_words": float(np.mean([len(t.split()) for t in texts[name]])),
            "scores": scores, "p_values": p["/".join(MAIN)], "p_values_by_variant": p,
            "top_teacher": best, "top_vendor": vendor_of[best],
            "margin": ranked[0] - ranked[1] if len(ranked) > 1 else None,
            "normalised_scores": z, "top_teacher_normalised": best_z,
            "top_vendor_normalised": vendor_of[best_z],
        })

    variants = {}
    for ev in evaluations:
        for me in METHODS:
            key = f"{ev}/{me}"
            for m in models:
                m["_p"] = m["p_values_by_variant"][key]
            variants[key] = summary(models, "_p", calibration_check(null[ev], rows, me))
    for m in models:
        del m["_p"]
    students = [m for m in models if m["role"] == "student"]
    report: dict = {"families": family_figures(models, families), "models": models}
    report["top1_accuracy"] = (float(np.mean([m["top_teacher"] == m["teacher"] for m in students]))
                               if students else None)
    report["top1_vendor_accuracy"] = (float(np.mean(
        [m["top_vendor"] == vendor_of.get(m["teacher"]) for m in students])) if students else None)
    raw = identification(students, "top_teacher", vendor_of)
    norm = identification(students, "top_teacher_normalised", vendor_of)
    report["identification"] = {
        "raw": raw, "normalised": norm,
        "normalised_by": f"z of the logit share against the {MAIN[0]} null's references",
        "vendor_majority_share": max((float(np.mean([vendor_of.get(m["teacher"]) == v
                                                     for m in students]))
                                      for v in set(vendor_of.values())), default=None)}
    report["top1_accuracy_normalised"] = norm["top1_family"]
    report["top1_vendor_accuracy_normalised"] = norm["top1_vendor"]
    main = variants["/".join(MAIN)]
    report.update({k: main[k] for k in ("human_min_p_value", "students_p_below_0_01",
                                        "calibration")})
    report["p_value_floor"] = {f: rank_floor_sentence(c["n_references"])
                               for f, c in main["calibration"].items()}
    report["variants"] = variants
    report["method"] = {"signal": "provider share (style classifier, LinearSVC C=1 balanced)",
                        "main_variant": "/".join(MAIN), "vendors": vendor_of,
                        "classes": {c: ms for c, ms in classes_models.items()},
                        "left_out_for_lolgo": {c: sorted(d) for c, d in drops["lolgo"].items()
                                               if len(d) > 1},
                        "fits": len(fits), "style_features": config.style_features,
                        "style_extras": config.style_extras,
                        "classes_per": "provider model" if per_model else "provider family",
                        "evaluations": list(evaluations), "seconds": seconds,
                        "seconds_total": round(time.time() - started, 1)}
    return report


SCREEN_SCORES = ("share", "margin", "softmax", "rankmean")


def decision_score(scores: np.ndarray, target: list[int], kind: str) -> float:
    """A suspect's score for a target from the classifier's (responses, classes) decision
    scores. ``share`` (the library's statistic): share of responses whose best class is the
    target's; ``margin``: mean of (the target's best score - the best other class's);
    ``softmax``: mean softmax mass of the target's classes; ``rankmean``: mean of 1 / (1 +
    the number of other classes scored above the target)."""
    other = np.ones(scores.shape[1], dtype=bool)
    other[target] = False
    mine, theirs = scores[:, target].max(axis=1), scores[:, other]
    if kind == "share":
        return float(np.mean(mine > theirs.max(axis=1)))
    if kind == "margin":
        return float(np.mean(mine - theirs.max(axis=1)))
    if kind == "softmax":
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return float(np.mean(e[:, target].sum(axis=1) / e.sum(axis=1)))
    return float(np.mean(1.0 / (1 + (theirs > mine[:, None]).sum(axis=1))))


def screen(dirs: list[Path], style_extras: str = "", per_model: bool = False,
           cache_dir: Path | None = None, score: str = "share") -> dict:
    """The figures that need only the full fit (AUC per family, top-1 family and vendor): the
    students and human-data models are never classes, so these are the lolgo run's own figures;
    the nulls' fits (p-values, the reference check) are skipped. One fit instead of ~19.
    ``score`` other than "share" scores suspects from the decision scores instead of the labels
    (SCREEN_SCORES; the library's statistic is the share)."""
    started = time.time()
    lineage, texts = load(dirs)
    families, classes_models, suspects = roles(lineage, per_model)
    vendor_of = vendors(lineage, families)
    config = FingerprintConfig(style_extras=style_extras)
    styler = StyleVectorizer(config.style_features, config.style_version, config.style_extras)
    style_config = {k: getattr(config, k) for k in ("style_version", "style_features",
                                                    "style_extras")}
    cache = Cache(cache_dir, style_config) if cache_dir else None
    from scipy import sparse

    style = {n: cache.style(lineage[n]["_path"], texts[n], styler) if cache
             else styler.transform(texts[n]) for n in lineage}
    classes = {c: sparse.vstack([style[m] for m in ms], format="csr")
               for c, ms in classes_models.items()}
    targets = members(classes_models, families)
    if score == "share":
        _init({"classes": classes, "rows": {s: style[s] for s in suspects}})
        labels = _fit_and_label((frozenset(), suspects))[1]
    else:
        names = list(classes)
        clf = StyleClassifier().fit([classes[n] for n in names])
        columns = {t: [names.index(c) for c in ms] for t, ms in targets.items()}
    models = []
    for name in suspects:
        if score == "share":
            scores = {t.split(":", 1)[1]: v for t, v in shares_of(labels[name], targets).items()}
        else:
            decisions = clf.decision_scores(style[name])
            scores = {t.split(":", 1)[1]: decision_score(decisions, columns[t], score)
                      for t in targets}
        best = max(scores, key=scores.get)
        models.append({"model": name, "role": lineage[name]["role"],
                       "teacher": lineage[name]["teacher"],
                       "lineage_group": lineage[name]["lineage_group"], "scores": scores,
                       "mean_words": float(np.mean([len(t.split()) for t in texts[name]])),
                       "top_teacher": best, "top_vendor": vendor_of[best]})
    students = [m for m in models if m["role"] == "student"]
    return {"families": family_figures(models, families),
            "top1_accuracy": float(np.mean([m["top_teacher"] == m["teacher"] for m in students])),
            "top1_vendor_accuracy": float(np.mean([m["top_vendor"] == vendor_of.get(m["teacher"])
                                                   for m in students])),
            "models": models, "method": {"screen": True, "score": score,
                                         "style_extras": style_extras,
                                         "classes_per": "provider model" if per_model
                                         else "provider family",
                                         "seconds_total": round(time.time() - started, 1)}}


def table(report: dict) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}" if v >= 0.001 or v == 0 else f"{v:.1e}"

    lines = ["| family | AUC | TPR@5%FPR | AUC grouped | length-only AUC | students | others |",
             "|---|---|---|---|---|---|---|"]
    for f, r in report["families"].items():
        lines.append(f"| {f} | {fmt(r['auc'])} | {fmt(r['tpr_at_5pct_fpr'])} | "
                     f"{fmt(r['auc_grouped'])} | {fmt(r['length_control_auc'])} | "
                     f"{r['n_positive']} | {r['n_negative']} |")
    ident = report.get("identification")
    lines += ["", f"top-1 teacher family over students: {fmt(report['top1_accuracy'])}; "
                  f"vendor: {fmt(report['top1_vendor_accuracy'])}"]
    if ident:
        lines += [f"vendor balanced over teachers' vendors: {fmt(ident['raw']['vendor_balanced'])}"
                  f" ({ident['raw']['per_vendor']}); \"always the commonest vendor\" would "
                  f"score {fmt(ident['vendor_majority_share'])} raw",
                  f"normalised against the references ({ident['normalised_by']}): family "
                  f"{fmt(ident['normalised']['top1_family'])}, vendor "
                  f"{fmt(ident['normalised']['top1_vendor'])}, balanced "
                  f"{fmt(ident['normalised']['vendor_balanced'])} "
                  f"({ident['normalised']['per_vendor']})"]
    lines += ["",
              "| evaluation / p-value | references below 0.05 | below 0.01 | tests | "
              "human-data min p | students p < 0.05 | students p < 0.01 |",
              "|---|---|---|---|---|---|---|"]
    for key, v in report["variants"].items():
        lines.append(f"| {key} | {fmt(v['reference_share_below_0_05'])} | "
                     f"{fmt(v['reference_share_below_0_01'])} | {v['reference_tests']} | "
                     f"{fmt(v['human_min_p_value'])} | {fmt(v['students_p_below_0_05'])} | "
                     f"{fmt(v['students_p_below_0_01'])} |")
    lines += ["", *(f"{f}: {s}" for f, s in report["p_value_floor"].items()), ""]
    fams = list(report["families"])
    lines.append("| model | teacher | top teacher | normalised | " + " | ".join(
        f"{f} share (p {report['method']['main_variant']})" for f in fams) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(fams))
    for m in report["models"]:
        cells = [f"{m['scores'][f]:.2f} ({fmt(m['p_values'][f])})" for f in fams]
        lines.append(f"| {m['model']} | {m['teacher']} | {m['top_teacher']} | "
                     f"{m.get('top_teacher_normalised', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", action="append", type=Path, required=True,
                        help="a folder with outputs/*.jsonl and lineage.csv (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the JSON report only")
    parser.add_argument("--jobs", type=int, default=2,
                        help="classifier fits run at once (processes; default 2)")
    parser.add_argument("--style-extras", default="",
                        help="style feature sets added to the word uni/bigrams, '+'-joined: "
                             "edges, templates (fingerprint.style_extras; default none)")
    parser.add_argument("--classes", choices=("family", "model"), default="family",
                        help="one classifier class per provider family (default) or per "
                             "provider model (a family's share sums its models')")
    parser.add_argument("--pooled", action="store_true",
                        help="also the pooled null (each reference left out alone: ~7 more "
                             "fits); the lolgo null is always computed")
    parser.add_argument("--cache", type=Path, default=None,
                        help="directory for style matrices and fits reused between runs "
                             "(outside the repository, e.g. /tmp/lineage-cache)")
    parser.add_argument("--screen", action="store_true",
                        help="only the figures the full fit gives (AUC, top-1): one fit, no "
                             "p-values; prints JSON")
    parser.add_argument("--screen-score", choices=SCREEN_SCORES, default="share",
                        help="with --screen: how a suspect is scored from the fit (default "
                             "share, the library's statistic)")
    args = parser.parse_args()
    if args.screen:
        print(json.dumps(screen(args.data, args.style_extras, args.classes == "model",
                                args.cache, args.screen_score), indent=2))
        return
    if args.screen_score != "share":
        parser.error("--screen-score needs --screen")
    report = evaluate(args.data, args.jobs, args.style_extras, args.classes == "model",
                      ("pooled", "lolgo") if args.pooled else ("lolgo",), args.cache)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps({k: v for k, v in report.items() if k not in ("models", "variants")},
                         indent=2))
        print(table(report))


if __name__ == "__main__":
    main()
