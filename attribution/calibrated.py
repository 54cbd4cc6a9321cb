"""Calibrated evidence: every signal placed among reference models, combined into one p-value.

For each signal, each reference model is scored exactly as the suspect is, giving draws of the
signal for models that are independent of the provider (attribution.calibration explains the
null hypothesis and the p-value). The signals:

- ``provider_share``: share of the suspect's responses that a style classifier over the provider
  and the references assigns to the provider (attribution.style_model). This is what carries the
  distillation signal: students inherit their teacher's idiosyncrasies.
- ``mean_paired_cosine``: the same in embedding cosine, against the references stored with
  embeddings (``reference add --embeddings``; without them it stays uncalibrated).
- ``mean_paired_jaccard``: mean word 3-gram Jaccard to the provider's answer to the same prompt.
- ``near_duplicate_rate``: share of responses with a near-duplicate among the served responses.
  Independent models have almost none, so its null is mostly zeros and no normal approximation
  fits it: its p-value is the exact rank among the references, (1 + #{refs >= x}) / (R + 1).

Their p-values are combined with the Cauchy combination, which stays valid when signals are
dependent (they are: all come from the same responses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from attribution.calibration import (Calibrated, calibrate, cauchy_combination,
                                     empirical_calibration)
from attribution.references import ReferenceData
from attribution.style_model import RelativeAttributor
from index.store import FingerprintIndex

PROVIDER = "(provider)"
# Fewer shared prompts than this and a reference's paired mean is too noisy to be a null draw.
MIN_SHARED_PROMPTS = 20
# Rows per class used to fit the style classifier: enough for the idiosyncrasies, bounded cost.
MAX_CLASS_ROWS = 2000
MIN_CLASS_ROWS = 50
# Below this many suspect responses, say that the figures rest on little data.
FEW_SUSPECT_RESPONSES = 30


@dataclass(frozen=True)
class CalibratedSignal:
    name: str
    value: float | None
    description: str
    n: int
    calibrated: Calibrated | None
    null: dict[str, float]

    @property
    def p_value(self) -> float | None:
        return None if self.calibrated is None else self.calibrated.p_value


@dataclass(frozen=True)
class Calibration:
    references: tuple[str, ...]
    signals: tuple[CalibratedSignal, ...]
    p_value: float | None
    fraction: float | None
    fraction_ci: tuple[float, float] | None
    null_rate: float | None
    provider_like: np.ndarray  # per suspect response: assigned to the provider
    notes: tuple[str, ...]


def _spread(rows: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` rows, evenly spread: deterministic, no seed to record."""
    rows = list(rows)
    if len(rows) <= limit:
        return rows
    return [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit)]


def provider_training_rows(index: FingerprintIndex,
                           suspect_hashes: Sequence[str | None]) -> list[int]:
    """Served rows to fit the style classifier on: the answers to the suspect's prompts (so that
    every class answers the same prompts and topic cancels out), else an even sample."""
    by_prompt = index.rows_for_prompts(h for h in suspect_hashes if h is not None)
    paired = sorted(rows[0] for rows in by_prompt.values())
    if len(paired) >= MIN_CLASS_ROWS:
        return _spread(paired, MAX_CLASS_ROWS)
    return _spread(range(len(index)), MAX_CLASS_ROWS)


def reference_training_rows(ref: ReferenceData,
                            suspect_hashes: Sequence[str | None]) -> list[int]:
    """A reference's rows to fit on, chosen as for the provider."""
    wanted = {h for h in suspect_hashes if h is not None}
    first = ref.first_row_by_prompt()
    shared = sorted(row for h, row in first.items() if h in wanted)
    if len(shared) >= MIN_CLASS_ROWS:
        return _spread(shared, MAX_CLASS_ROWS)
    return _spread(range(len(ref)), MAX_CLASS_ROWS)


def _paired_mean(index: FingerprintIndex, hashes: Sequence[str | None], restrict: set[str],
                 similarity) -> tuple[float | None, int]:
    """Mean similarity to the provider's first answer to the same prompt, over ``restrict``
    (one answer per prompt). ``similarity(rows, served_rows)`` gives one value per pair."""
    by_prompt = index.rows_for_prompts(h for h in hashes if h in restrict)
    seen: set[str] = set()
    mine, served = [], []
    for i, h in enumerate(hashes):
        if h in restrict and h in by_prompt and h not in seen:
            seen.add(h)
            mine.append(i)
            served.append(by_prompt[h][0])
    if not mine:
        return None, 0
    return float(np.mean(similarity(mine, served))), len(mine)


def _jaccard_to(index: FingerprintIndex, signatures: np.ndarray):
    return lambda mine, served: np.mean(signatures[mine] == index.signatures(served), axis=1)


def _cosine_to(index: FingerprintIndex, embeddings: np.ndarray):
    return lambda mine, served: np.sum(embeddings[mine] * index.embeddings(served), axis=1)


def _paired_signal(name: str, description: str, index: FingerprintIndex,
                   references: Sequence[ReferenceData], suspect_hashes: Sequence[str | None],
                   suspect_similarity, reference_similarity, notes: list[str]) -> CalibratedSignal:
    """A paired signal for the suspect and, as null draws, for every reference that has it."""
    prompts = {h for h in suspect_hashes if h is not None}
    value, n = _paired_mean(index, suspect_hashes, prompts, suspect_similarity)
    null: dict[str, float] = {}
    for ref in references:
        similarity = reference_similarity(ref)
        if similarity is None:
            continue
        ref_value, ref_n = _paired_mean(index, ref.prompt_hashes, prompts, similarity)
        if ref_value is not None and ref_n >= MIN_SHARED_PROMPTS:
            null[ref.name] = ref_value
        else:
            notes.append(f"reference {ref.name} shares {ref_n} prompts with the suspect and the "
                         f"provider (fewer than {MIN_SHARED_PROMPTS}): left out of {name}")
    calibrated = calibrate(value, list(null.values())) if value is not None else None
    return CalibratedSignal(name, value, description, n, calibrated, null)


def calibrate_against_references(index: FingerprintIndex, references: Sequence[ReferenceData],
                                 suspect_hashes: Sequence[str | None],
                                 suspect_signatures: np.ndarray, suspect_style,
                                 suspect_near_duplicates: np.ndarray,
                                 near_duplicate_threshold: float,
                                 bootstrap: int = 1000,
                                 suspect_embeddings: np.ndarray | None = None) -> Calibration:
    notes: list[str] = []
    if len(suspect_hashes) < FEW_SUSPECT_RESPONSES:
        notes.append(f"the suspect has only {len(suspect_hashes)} responses (fewer than "
                     f"{FEW_SUSPECT_RESPONSES}): its p-value and derived fraction rest on little "
                     f"data, and the p-value accounts for that by being larger")
    names = tuple(r.name for r in references)
    if len(set(names)) != len(names):
        raise ValueError(f"reference names must be unique, got {list(names)}")

    # provider share: the style classifier
    classes = {PROVIDER: index.style(provider_training_rows(index, suspect_hashes))}
    for ref in references:
        classes[ref.name] = ref.style[reference_training_rows(ref, suspect_hashes)]
    share = RelativeAttributor(classes, [PROVIDER]).attribute(suspect_style, bootstrap)[PROVIDER]
    signals = [CalibratedSignal(
        "provider_share", share.share,
        "share of responses a style classifier over provider and references assigns to the "
        "provider", len(share.assigned), share.calibrated, share.null)]

    # paired similarities, on the prompts each reference shares with the suspect and the provider
    signals.append(_paired_signal(
        "mean_paired_jaccard", "mean word 3-gram Jaccard to the provider's answer to the same "
        "prompt", index, references, suspect_hashes, _jaccard_to(index, suspect_signatures),
        lambda ref: _jaccard_to(index, ref.signatures), notes))
    if signals[-1].value is None:
        notes.append("no suspect prompt is among the indexed prompts: mean_paired_jaccard needs "
                     "them")
    with_embeddings = [r for r in references if r.embeddings is not None]
    if suspect_embeddings is not None and index.has_embeddings and with_embeddings:
        if len(with_embeddings) < len(references):
            notes.append(f"{len(references) - len(with_embeddings)} of {len(references)} "
                         f"references were stored without embeddings (reference add "
                         f"--embeddings), so mean_paired_cosine is calibrated on the others")
        signals.append(_paired_signal(
            "mean_paired_cosine", "mean embedding cosine to the provider's answer to the same "
            "prompt", index, references, suspect_hashes, _cosine_to(index, suspect_embeddings),
            lambda ref: None if ref.embeddings is None else _cosine_to(index, ref.embeddings),
            notes))

    # near-duplicate rate
    rate = float(np.mean(suspect_near_duplicates)) if len(suspect_near_duplicates) else None
    null = {}
    for ref in references:
        if len(ref):
            best = index.search_minhash(ref.signatures, k=1).scores[:, 0]
            null[ref.name] = float(np.mean(best >= near_duplicate_threshold))
    signals.append(CalibratedSignal(
        "near_duplicate_rate", rate,
        f"share of responses with a served near-duplicate (Jaccard >= "
        f"{near_duplicate_threshold})", len(suspect_near_duplicates),
        empirical_calibration(rate, list(null.values())) if rate is not None else None, null))

    for s in signals:
        if s.calibrated is not None and s.calibrated.reason:
            notes.append(f"{s.name}: {s.calibrated.reason}")
    combined = cauchy_combination([s.p_value for s in signals])
    fraction, fraction_ci = share.fraction, share.fraction_ci
    if combined is None:
        notes.append("no signal could be calibrated, so there is no p-value and no derived "
                     "fraction")
    if share.calibrated.p_value is None:
        fraction = fraction_ci = None  # too few references for its null rate, as for its p-value
    return Calibration(names, tuple(signals), combined, fraction, fraction_ci,
                       share.null_rate, share.assigned, tuple(notes))
