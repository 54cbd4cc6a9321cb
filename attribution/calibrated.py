"""Calibrated evidence: every signal placed among reference models, combined into one p-value.

For each signal, each reference model is scored exactly as the suspect is, giving draws of the
signal for models that are independent of the provider (attribution.stats.calibration explains
the null hypothesis and the p-value). What each signal is and how it is calibrated is defined
once, in attribution.signals: ``provider_share`` (the style classifier, which carries the
distillation signal), ``mean_paired_jaccard``, ``mean_paired_cosine`` (only against references
stored with embeddings) and ``near_duplicate_rate`` (exact rank p-value: independent models have
almost no near-duplicates, so no normal approximation fits its null).

Their p-values are combined with the Cauchy combination, which stays valid when signals are
dependent (they are: all come from the same responses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from attribution.classes import PROVIDER
from attribution.references import ReferenceData
from attribution.share import BOOTSTRAP_RESAMPLES, provider_shares
from attribution.signals import (MEAN_PAIRED_COSINE, MEAN_PAIRED_JACCARD, NEAR_DUPLICATE_RATE,
                                 PROVIDER_SHARE, SignalSpec)
from attribution.stats import (Calibrated, calibrate, cauchy_combination, empirical_calibration,
                              rank_floor_sentence)
from attribution.style_model import TargetAttribution
from fingerprint.minhash import has_shingles
from index.store import FingerprintIndex

# Fewer shared prompts than this and a reference's paired mean is too noisy to be a null draw.
MIN_SHARED_PROMPTS = 20
# Below this many suspect responses, say that the figures rest on little data.
FEW_SUSPECT_RESPONSES = 30

# (rows of the scored model, served rows) -> one similarity per pair
Similarity = Callable[[list[int], list[int]], np.ndarray]


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


@dataclass(frozen=True)
class SuspectPrints:
    """What calibration needs of the suspect's responses: row i of each is response i."""

    prompt_hashes: Sequence[str | None]
    signatures: np.ndarray
    style: Any  # scipy.sparse CSR
    near_duplicates: np.ndarray  # bool: the closest served response is a near-duplicate
    embeddings: np.ndarray | None = None


def calibrate_against_references(index: FingerprintIndex, references: Sequence[ReferenceData],
                                 suspect: SuspectPrints, near_duplicate_threshold: float,
                                 bootstrap: int = BOOTSTRAP_RESAMPLES,
                                 share: TargetAttribution | None = None) -> Calibration:
    """Every signal of the suspect placed among the references, and their combined p-value.

    ``share``: the provider share already found by a teacher ranking (attribution.share, over
    every provider ranked), so that the signals table shows the teacher table's figure; else it
    is found here, against ``index`` alone."""
    notes: list[str] = []
    if len(suspect.prompt_hashes) < FEW_SUSPECT_RESPONSES:
        notes.append(f"the suspect has only {len(suspect.prompt_hashes)} responses (fewer than "
                     f"{FEW_SUSPECT_RESPONSES}): its p-value and derived fraction rest on little "
                     f"data, and the p-value accounts for that by being larger")
    if share is None:
        share = provider_shares({PROVIDER: index}, references, suspect.prompt_hashes,
                                suspect.style, bootstrap)[PROVIDER]
    signals = [CalibratedSignal(PROVIDER_SHARE.name, share.share, PROVIDER_SHARE.describe(),
                                len(share.assigned), share.calibrated, share.null)]
    signals += _paired_signals(index, references, suspect, notes)
    signals.append(_near_duplicate_signal(index, references, suspect, near_duplicate_threshold))
    for s in signals:
        if s.calibrated is not None and s.calibrated.reason:
            notes.append(f"{s.name}: {s.calibrated.reason}")
    if share.p_value_method == "rank" and share.calibrated.p_value is not None:
        notes.append(f"{PROVIDER_SHARE.name}: "
                     f"{rank_floor_sentence(share.calibrated.n_references)}")
    combined = cauchy_combination([s.p_value for s in signals])
    fraction, fraction_ci = share.fraction, share.fraction_ci
    if combined is None:
        notes.append("no signal could be calibrated, so there is no p-value and no derived "
                     "fraction")
    if share.calibrated.p_value is None:
        fraction = fraction_ci = None  # too few references for its null rate, as for its p-value
    return Calibration(tuple(r.name for r in references), tuple(signals), combined, fraction,
                       fraction_ci, share.null_rate, share.assigned, tuple(notes))


def _paired_signals(index: FingerprintIndex, references: Sequence[ReferenceData],
                    suspect: SuspectPrints, notes: list[str]) -> list[CalibratedSignal]:
    """Paired similarities, on the prompts each reference shares with the suspect and the
    provider: Jaccard always, cosine where the index and some references have embeddings."""
    out = [_paired_signal(MEAN_PAIRED_JACCARD, index, references, suspect.prompt_hashes,
                          _jaccard_to(index, suspect.signatures),
                          lambda ref: _jaccard_to(index, ref.signatures), notes)]
    if out[0].value is None:
        notes.append("no suspect prompt is among the indexed prompts: mean_paired_jaccard needs "
                     "them")
    with_embeddings = [r for r in references if r.embeddings is not None]
    if suspect.embeddings is not None and index.has_embeddings and not with_embeddings:
        notes.append("mean_paired_cosine: no reference was stored with embeddings (reference "
                     "add --embeddings), so it is descriptive only and not in the p-value")
    if suspect.embeddings is not None and index.has_embeddings and with_embeddings:
        if len(with_embeddings) < len(references):
            notes.append(f"{len(references) - len(with_embeddings)} of {len(references)} "
                         f"references were stored without embeddings (reference add "
                         f"--embeddings), so mean_paired_cosine is calibrated on the others")
        out.append(_paired_signal(
            MEAN_PAIRED_COSINE, index, references, suspect.prompt_hashes,
            _cosine_to(index, suspect.embeddings),
            lambda ref: None if ref.embeddings is None else _cosine_to(index, ref.embeddings),
            notes))
    return out


def _near_duplicate_signal(index: FingerprintIndex, references: Sequence[ReferenceData],
                           suspect: SuspectPrints, threshold: float) -> CalibratedSignal:
    """Share of responses whose closest served response is a near-duplicate, for the suspect and
    every reference, over the responses that have shingles (fingerprint.MIN_SHINGLES)."""
    flags = suspect.near_duplicates[has_shingles(suspect.signatures)]
    rate = float(np.mean(flags)) if len(flags) else None
    null = {}
    for ref in references:
        signatures = ref.signatures[has_shingles(ref.signatures)]
        if len(signatures):
            best = index.search_minhash(signatures, k=1).scores[:, 0]
            null[ref.name] = float(np.mean(best >= threshold))
    return CalibratedSignal(
        NEAR_DUPLICATE_RATE.name, rate, NEAR_DUPLICATE_RATE.describe(threshold=threshold),
        len(flags),
        empirical_calibration(rate, list(null.values())) if rate is not None else None, null)


def _paired_mean(index: FingerprintIndex, hashes: Sequence[str | None], restrict: set[str],
                 similarity: Similarity) -> tuple[float | None, int]:
    """Mean similarity to the provider's first answer to the same prompt, over ``restrict``
    (one answer per prompt)."""
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
    values = similarity(mine, served)
    values = values[~np.isnan(values)]  # pairs a similarity does not apply to
    if not len(values):
        return None, 0
    return float(np.mean(values)), len(values)


def _jaccard_to(index: FingerprintIndex, signatures: np.ndarray) -> Similarity:
    """Estimated Jaccard per pair; NaN where either answer has no shingles, so that two answers
    without words do not count as identical (fingerprint.MIN_SHINGLES)."""
    def similarity(mine: list[int], served: list[int]) -> np.ndarray:
        theirs = index.signatures(served)
        ours = signatures[mine]
        values = np.mean(ours == theirs, axis=1)
        return np.where(has_shingles(ours) & has_shingles(theirs), values, np.nan)
    return similarity


def _cosine_to(index: FingerprintIndex, embeddings: np.ndarray) -> Similarity:
    return lambda mine, served: np.sum(embeddings[mine] * index.embeddings(served), axis=1)


def _paired_signal(spec: SignalSpec, index: FingerprintIndex,
                   references: Sequence[ReferenceData], suspect_hashes: Sequence[str | None],
                   suspect_similarity: Similarity,
                   reference_similarity: Callable[[ReferenceData], Similarity | None],
                   notes: list[str]) -> CalibratedSignal:
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
                         f"provider (fewer than {MIN_SHARED_PROMPTS}): left out of {spec.name}")
    calibrated = calibrate(value, list(null.values())) if value is not None else None
    return CalibratedSignal(spec.name, value, spec.describe(), n, calibrated, null)
