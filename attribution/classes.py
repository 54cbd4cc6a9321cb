"""The classes a style classifier is trained on: the provider(s) and the reference models.

Every class should answer the same prompts, so that topic cancels out and only style tells them
apart: each class is trained on its answers to the suspect's prompts where it has enough of them,
else on an even sample of all its answers. A provider is a served index's segment group or a
partner's shared profile (attribution.partners), which answers the same questions. The number
of rows per class is bounded, which bounds the cost of fitting.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from attribution.errors import ReferenceIsProviderError, ReferenceNameError
from attribution.partners import ProviderProfile
from attribution.references import ReferenceData, check_unique_names
from index.store import SegmentGroup

PROVIDER = "(provider)"
# Rows per class used to fit the style classifier: enough for the idiosyncrasies, bounded cost.
MAX_CLASS_ROWS = 2000
MIN_CLASS_ROWS = 50
# A reference whose answers equal a provider's on this share of their common prompts (at least
# SAME_ANSWERS_MIN_PROMPTS of them, SAME_ANSWERS_SAMPLE compared) is that provider's outputs.
SAME_ANSWERS_SHARE = 0.5
SAME_ANSWERS_MIN_PROMPTS = 20
SAME_ANSWERS_SAMPLE = 500
# One style class per model a provider's index serves (its rows' ``model`` field), the provider's
# share summing its models' (benchmarks/README.md, lineage: measured by leave-one-lineage-group-
# out), instead of one class for all of them. A model with fewer than MIN_CLASS_ROWS rows, or
# rows with no model, stay in a class named by the provider's label.
PER_MODEL_CLASSES = False


def spread_rows(rows: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` rows, evenly spread: deterministic, no seed to record."""
    rows = list(rows)
    if len(rows) <= limit:
        return rows
    return [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit)]


def provider_training_rows(group: SegmentGroup | ProviderProfile,
                           suspect_hashes: Sequence[str | None]) -> list[int]:
    """Served rows to fit on: the answers to the suspect's prompts (the first answer of each),
    else an even sample of all rows."""
    by_prompt = group.rows_for_prompts(h for h in suspect_hashes if h is not None)
    paired = sorted(rows[0] for rows in by_prompt.values())
    if len(paired) >= MIN_CLASS_ROWS:
        return spread_rows(paired, MAX_CLASS_ROWS)
    return spread_rows(range(len(group)), MAX_CLASS_ROWS)


def reference_training_rows(ref: ReferenceData,
                            suspect_hashes: Sequence[str | None]) -> list[int]:
    """A reference's rows to fit on, chosen as for the provider."""
    wanted = {h for h in suspect_hashes if h is not None}
    first = ref.first_row_by_prompt()
    shared = sorted(row for h, row in first.items() if h in wanted)
    if len(shared) >= MIN_CLASS_ROWS:
        return spread_rows(shared, MAX_CLASS_ROWS)
    return spread_rows(range(len(ref)), MAX_CLASS_ROWS)


def check_references_are_not_providers(providers: Mapping[str, SegmentGroup | ProviderProfile],
                                       references: Sequence[ReferenceData]) -> None:
    """Refuse a reference that is one of the candidate teachers, by name or by its answers.

    References stand for the null hypothesis, "the suspect is one more independent model";
    providers are the alternative, "it learned from this one". A reference that is a candidate
    teacher (a provider's own outputs stored as a reference, or the same model given both as a
    provider's index and as a reference) makes the null include the alternative: the provider
    is then calibrated against itself, its p-value and derived fraction say nothing, and in a
    teacher ranking the two identical classes split the suspect's responses between them at
    random. That is refused rather than warned about, because the figures it would print are
    wrong, not merely weaker. The answers are compared on the prompts both have: independent
    models practically never give word-for-word the same answer (identical MinHash signatures)
    to most of them, so ``SAME_ANSWERS_SHARE`` of at least ``SAME_ANSWERS_MIN_PROMPTS`` common
    prompts identifies the provider's outputs.
    """
    clash = sorted(set(providers) & {r.name for r in references})
    if clash:
        raise ReferenceNameError(f"reference names equal provider labels: {clash}; rename the "
                                 f"reference (or name the provider with --name)")
    for ref in references:
        first = ref.first_row_by_prompt()
        for label, group in providers.items():
            served = group.rows_for_prompts(first)
            pairs = spread_rows(sorted((first[h], rows[0]) for h, rows in served.items()),
                                SAME_ANSWERS_SAMPLE)
            if len(pairs) < SAME_ANSWERS_MIN_PROMPTS:
                continue
            same = same_answers(ref, group, pairs)
            if same.mean() >= SAME_ANSWERS_SHARE:
                raise ReferenceIsProviderError(
                    f"reference {ref.name!r} gives the same answers as provider {label!r} on "
                    f"{int(same.sum())} of {len(pairs)} common prompts compared: it is that "
                    f"provider's outputs, and a candidate teacher among the references would put "
                    f"the alternative into the null hypothesis; leave it out of the references "
                    f"(--reference files replace the stored ones) or of the providers")


def same_answers(ref: ReferenceData, group: SegmentGroup | ProviderProfile,
                 pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per (reference row, provider row): the same answer? Equal MinHash signatures for a
    served index; for a partner's profile, which shares no public signature, equal style rows
    (the hashed counts of every token and token pair: independent answers practically never
    have equal ones), compared on the features the profile shares (it may leave rare ones out:
    on the common features left, independent answers still differ)."""
    ref_rows, rows = [r for r, _ in pairs], [s for _, s in pairs]
    if isinstance(group, ProviderProfile):
        shared = group.features()
        differ = (ref.style[ref_rows][:, shared] != group.style(rows)[:, shared]).tocsr()
        return np.diff(differ.indptr) == 0
    return np.all(ref.signatures[ref_rows] == group.signatures(rows), axis=1)


def comparable_features(providers: Mapping[str, SegmentGroup | ProviderProfile]) -> Any:
    """The style features every class can be compared on, or None for all of them: when a
    partner's profile left rare features out (ProviderProfile.all_features false), the
    features every such profile kept. A class trained without a feature the others have loses
    every suspect response that has it (attribution.partners); the union of the kept features
    would still do that to the partner that kept fewer (a smaller export keeps fewer), the
    intersection treats all alike. Measured (benchmarks/README.md, sharing.py): with the union,
    top-1 equal to the raw indexes' for 9 of 14 models at 60 prompts; with the intersection,
    11 of 14."""
    partial = [p.features() for p in providers.values()
               if isinstance(p, ProviderProfile) and not p.all_features]
    if not partial:
        return None
    common = partial[0]
    for features in partial[1:]:
        common = np.intersect1d(common, features, assume_unique=True)
    return common


def only_features(matrix: Any, features: Any) -> Any:
    """``matrix`` (CSR, same shape) with every column outside ``features`` zeroed."""
    if features is None:
        return matrix
    keep = np.zeros(matrix.shape[1], dtype=bool)
    keep[features] = True
    out = matrix.tocsr(copy=True)
    out.data[~keep[out.indices]] = 0
    out.eliminate_zeros()
    return out


def style_classes(providers: Mapping[str, SegmentGroup | ProviderProfile],
                  references: Sequence[ReferenceData],
                  suspect_hashes: Sequence[str | None]) -> dict[str, Any]:
    """Class name -> style matrix: each provider's (by its label), then each reference's, on
    the comparable features (comparable_features)."""
    check_unique_names(references)
    check_references_are_not_providers(providers, references)
    classes = {label: group.style(provider_training_rows(group, suspect_hashes))
               for label, group in providers.items()}
    for ref in references:
        classes[ref.name] = ref.style[reference_training_rows(ref, suspect_hashes)]
    features = comparable_features(providers)
    return {name: only_features(matrix, features) for name, matrix in classes.items()}


def provider_model_rows(group: SegmentGroup, suspect_hashes: Sequence[str | None]
                        ) -> dict[str | None, list[int]]:
    """Per model the index serves (None: rows without one, or of a model with too few rows):
    its rows to fit on, each model's first answer to each of the suspect's prompts (else an
    even sample of the index split by model), at most MAX_CLASS_ROWS per model."""
    by_prompt = group.rows_for_prompts(h for h in suspect_hashes if h is not None)
    candidates = sorted(r for rows in by_prompt.values() for r in rows)
    if len(candidates) < MIN_CLASS_ROWS:
        candidates = spread_rows(range(len(group)), 8 * MAX_CLASS_ROWS)
    stored = group.responses(candidates)
    per_model: dict[str | None, list[int]] = {}
    seen: set[tuple[str | None, str]] = set()
    for row in candidates:
        record = stored[row]
        key = (record.model, record.prompt_hash or f"row:{row}")
        if key not in seen:
            seen.add(key)
            per_model.setdefault(record.model, []).append(row)
    out: dict[str | None, list[int]] = {}
    for model, rows in per_model.items():
        out.setdefault(model if len(rows) >= MIN_CLASS_ROWS else None, []).extend(rows)
    return {m: spread_rows(sorted(rows), MAX_CLASS_ROWS) for m, rows in out.items()}


def model_classes(providers: Mapping[str, SegmentGroup | ProviderProfile],
                  references: Sequence[ReferenceData], suspect_hashes: Sequence[str | None]
                  ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``style_classes`` with one class per provider model (PER_MODEL_CLASSES), and per
    provider label the classes that count for it. A provider serving one model (or a partner's
    profile, which names none) keeps its one class, named by its label, so its figures are
    ``style_classes``'s. A model's class is ``<label>/<model>``: a reference's name has no "/"."""
    check_unique_names(references)
    check_references_are_not_providers(providers, references)
    out: dict[str, Any] = {}
    members: dict[str, list[str]] = {}
    for label, group in providers.items():
        split = (provider_model_rows(group, suspect_hashes)
                 if isinstance(group, SegmentGroup) else {})
        if len(split) < 2:
            out[label] = group.style(provider_training_rows(group, suspect_hashes))
            members[label] = [label]
            continue
        for model, rows in split.items():
            name = label if model is None else f"{label}/{model}"
            out[name] = group.style(rows)
            members.setdefault(label, []).append(name)
    for ref in references:
        out[ref.name] = ref.style[reference_training_rows(ref, suspect_hashes)]
    features = comparable_features(providers)
    return {name: only_features(m, features) for name, m in out.items()}, members
