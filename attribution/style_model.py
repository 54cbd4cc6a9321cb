"""Which model does each response sound like? A style classifier over provider and references.

A student inherits its teacher's idiosyncrasies, so the question asked of each suspect response
is: among the provider and the reference models, whose answer does it read like? A linear SVM
on TF-IDF-weighted style fingerprints answers it (one class per model or family, classes
weighted to equal size so that a provider with more data is not favoured). The share of the
suspect's responses assigned to a provider is the provider-share statistic; it is calibrated by
scoring each reference the same way with its own class left out (attribution.stats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from attribution.errors import AttributionError, TooFewClassesError
from attribution.stats import (Calibrated, calibrate, derived_fraction, empirical_calibration,
                               logit_share, share_sd_floor)

DEFAULT_C = 1.0
# How a share is placed among the references' left-out shares: "rank" (rank_p_value: valid under
# exchangeability by construction, never below 1/(R+1)) or "t" (Student-t prediction interval on
# logit share: can go lower, but anti-conservative when the null has a heavy tail or sits near 0;
# benchmarks/README.md, lineage.py).
P_VALUE_METHODS = ("rank", "t")


class StyleClassifier:
    """Multi-class linear SVM over style count matrices; class k is ``matrices[k]``.

    ``seed`` fixes liblinear's coordinate order (None: numpy's global random state)."""

    def __init__(self, C: float = DEFAULT_C, seed: int | None = None):
        self.C = C
        self.seed = seed

    def fit(self, matrices: Sequence) -> "StyleClassifier":
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.svm import LinearSVC

        stacked = sparse.vstack(list(matrices), format="csr")
        labels = np.concatenate([np.full(m.shape[0], k) for k, m in enumerate(matrices)])
        self.tfidf = TfidfTransformer(sublinear_tf=True).fit(stacked)
        self.svm = LinearSVC(C=self.C, class_weight="balanced", random_state=self.seed).fit(
            self.tfidf.transform(stacked), labels)
        self.n_classes = len(matrices)
        return self

    def decision_scores(self, matrix) -> np.ndarray:
        """The SVM's scores: (rows, classes), or (rows,) for two classes (positive: class 1)."""
        return self.svm.decision_function(self.tfidf.transform(matrix))

    def predict(self, matrix) -> np.ndarray:
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        scores = self.decision_scores(matrix)
        if self.n_classes == 2:  # binary SVMs return one column: class 1 when positive
            return (scores > 0).astype(np.int64)
        return np.asarray(scores.argmax(axis=1), dtype=np.int64)


@dataclass(frozen=True)
class TargetAttribution:
    """How provider-like the suspect is for one target (provider) among the classes."""

    target: str
    share: float  # share of the suspect's responses assigned to the target
    assigned: np.ndarray = field(repr=False)  # per suspect response: assigned to the target
    null: dict[str, float]  # per other class, left out: share of its responses assigned
    calibrated: Calibrated
    null_rate: float | None  # mean share assigned to the target among the left-out classes
    fraction: float | None  # lower bound on the derived fraction (see RelativeAttributor)
    fraction_ci: tuple[float, float] | None  # 95% bootstrap interval (responses and references)
    p_value_method: str = "rank"  # how ``calibrated`` placed the share (P_VALUE_METHODS)


class RelativeAttributor:
    """Provider and reference classes, fitted once; then any number of suspects scored.

    ``classes`` maps each model (or family) name to its style count matrix (one row per
    response). The null draws of a target are the classes in ``null_classes`` (default: every
    class but the target) scored with their own class left out. Fitting costs one classifier
    for all classes and one per class left out. ``p_value`` chooses how the suspect's share is
    placed among the null draws (``P_VALUE_METHODS``). The suspect is scored like each null
    draw: by a classifier fitted without it (it is never a class), with the other classes in.

    The derived fraction is the lower bound (share - null) / (1 - null): adjusted
    classify-and-count with the classifier's hit rate on provider-derived responses taken as 1.
    That rate cannot be measured in the same conditions as the suspect's share (the suspect is
    scored on prompts whose provider answers are in training, a held-out provider answer is not),
    and any true rate below 1 would only make the fraction larger.
    """

    def __init__(self, classes: Mapping[str, object], targets: Sequence[str], *,
                 C: float = DEFAULT_C, seed: int = 0, null_classes: Sequence[str] | None = None,
                 p_value: str = "rank", members: Mapping[str, Sequence[str]] | None = None):
        if p_value not in P_VALUE_METHODS:
            raise AttributionError(f"p-value method must be one of {P_VALUE_METHODS}, "
                                   f"got {p_value!r}")
        self.p_value = p_value
        self.names = list(classes)
        # a target is one class, or several (one per provider model: classes.PER_MODEL_CLASSES)
        self.members = {t: frozenset(members[t] if members and t in members else [t])
                        for t in targets}
        missing = sorted({c for cs in self.members.values() for c in cs} - set(classes))
        if missing:
            raise AttributionError(f"targets not among the classes: {missing}")
        if len(self.names) < 2:
            raise TooFewClassesError("relative attribution needs the provider and at least one "
                                     "reference")
        self.targets = list(targets)
        self.seed = seed
        matrices = [classes[n] for n in self.names]
        self.classifier = StyleClassifier(C).fit(matrices)
        drawn = set(self.names if null_classes is None else null_classes)
        # a class that counts for every target is no draw for any: no left-out fit for it
        drawn -= frozenset.intersection(*self.members.values()) if self.members else set()
        left_out = {n: _left_out_assignments(self.names, matrices, n, C)
                    for n in self.names if n in drawn}
        self.null: dict[str, dict[str, float]] = {
            t: {n: float(np.mean([kept[j] in self.members[t] for j in labels]))
                for n, (kept, labels) in left_out.items()
                if n not in self.members[t] and len(labels)}
            for t in self.targets}

    def assignments(self, suspect) -> np.ndarray:
        """Index into ``names`` of the class each suspect response is assigned to."""
        return self.classifier.predict(suspect)

    def attribute(self, suspect, bootstrap: int = 1000) -> dict[str, TargetAttribution]:
        labels = self.assignments(suspect)
        return {t: self._for_target(
                    t, np.isin(labels, [self.names.index(c) for c in self.members[t]]), bootstrap)
                for t in self.targets}

    def _for_target(self, target: str, assigned: np.ndarray, bootstrap: int) -> TargetAttribution:
        share = float(assigned.mean()) if assigned.size else 0.0
        null = self.null[target]
        null_rate = float(np.mean(list(null.values()))) if null else None
        if self.p_value == "rank":
            calibrated = empirical_calibration(share, list(null.values()))
        else:
            floor = share_sd_floor(null_rate, assigned.size) if null and assigned.size else 0.0
            calibrated = calibrate(share, list(null.values()), transform=logit_share,
                                   sd_floor=floor)
        fraction = ci = None
        if null_rate is not None and assigned.size:
            fraction = derived_fraction(share, null_rate, 1.0)
            if fraction is not None and bootstrap:
                ci = self._fraction_interval(assigned, np.array(list(null.values())), bootstrap)
        return TargetAttribution(target, share, assigned, dict(null), calibrated, null_rate,
                                 fraction, ci, self.p_value)

    def _fraction_interval(self, assigned: np.ndarray, null: np.ndarray,
                           bootstrap: int) -> tuple[float, float]:
        """95% percentile interval, resampling the suspect's responses *and* the references:
        the references' rate is an estimate from a handful of models, often the larger doubt.

        Both are sorted first: a resample's mean does not depend on order, but which values a
        seeded draw picks does, and the suspect's responses arrive in any order (a probe writes
        answers as they come). Sorted, the interval depends only on the data and the seed."""
        rng = np.random.default_rng(self.seed)
        assigned, null = np.sort(assigned), np.sort(null)
        shares = assigned[rng.integers(0, assigned.size, size=(bootstrap, assigned.size))]
        null_rates = null[rng.integers(0, null.size, size=(bootstrap, null.size))].mean(axis=1)
        fractions = [derived_fraction(s, n, 1.0) or 0.0
                     for s, n in zip(shares.mean(axis=1), null_rates)]
        return float(np.percentile(fractions, 2.5)), float(np.percentile(fractions, 97.5))


def _left_out_assignments(names: list[str], matrices: list, leave: str,
                          C: float) -> tuple[list[str], np.ndarray]:
    """Fit without class ``leave``; return the remaining names and its responses' labels."""
    keep = [i for i, n in enumerate(names) if n != leave]
    rows = matrices[names.index(leave)].shape[0]
    if len(keep) == 1:  # one class left: everything is assigned to it
        return [names[keep[0]]], np.zeros(rows, dtype=np.int64)
    clf = StyleClassifier(C).fit([matrices[i] for i in keep])
    return [names[i] for i in keep], clf.predict(matrices[names.index(leave)])
