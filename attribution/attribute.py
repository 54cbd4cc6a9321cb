"""Attributing a suspect's outputs to the indexed (served) responses.

Two kinds of evidence are gathered for every suspect response. Paired: where the provider served
the same prompt, how close is the suspect's answer to the provider's (word 3-gram Jaccard and
embedding cosine)? This is the strongest uncalibrated evidence of a student inheriting its
teacher's wording. Unpaired: the nearest served responses by estimated Jaccard and by cosine,
whatever their prompt, which is what catches verbatim reuse of served answers (near-duplicates).

With reference models (stored in the index or given per call), every signal is calibrated
against them and combined into one p-value (attribution.calibrated), and the ``score`` is the
derived fraction: the share of the suspect's responses that are provider-like beyond what
independent models show. Without references, the ``score`` is the uncalibrated mean
per-response evidence, (lexical + semantic) / 2: compare it across suspects against the same
index, never read it as a probability.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from attribution.calibrated import Calibration, SuspectPrints, calibrate_against_references
from attribution.evidence import (PromptEvidence, prompt_evidence, reference_answers,
                                  strongest_first)
from attribution.partners import Partner, ProviderProfile
from attribution.provenance import provenance
from attribution.references import (ReferenceData, choose_references, match_note,
                                    stored_references)
from attribution.result import (AttributionResult, Match, MatchedPair, PairedComparison,
                                ResponseEvidence, Signal)
from attribution.share import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from attribution.signals import (MEAN_BEST_COSINE, MEAN_BEST_JACCARD, MEAN_PAIRED_COSINE,
                                 MEAN_PAIRED_JACCARD, NEAR_DUPLICATE_RATE)
from attribution.style_model import TargetAttribution
from attribution.teacher import TeacherRanking, rank_teachers
from attribution.watermark import join_watermark, watermark_report
from fingerprint.errors import ConfigError, InputError
from fingerprint.fingerprinter import Fingerprinter, Fingerprints
from fingerprint.io import ReadStats, read_records, source_name
from fingerprint.minhash import has_shingles
from fingerprint.normalize import prompt_hashes
from fingerprint.records import FieldMap, ResponseRecord
from fingerprint.watermark import WatermarkKey
from index.errors import ConfigMismatchError
from index.store import FingerprintIndex, fingerprinter_for, open_index

Progress = Callable[[int], None]


@dataclass(frozen=True)
class AttributionOptions:
    """How many neighbours to report, what counts as a near-duplicate, how many pairs to show."""

    k: int = 5
    near_duplicate_threshold: float = 0.5
    top_pairs: int = 10
    chunk_size: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or not 1 <= self.k <= 100:
            raise ConfigError(f"k must be an integer between 1 and 100, got {self.k!r}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ConfigError("near_duplicate_threshold must be in (0, 1], got "
                              f"{self.near_duplicate_threshold!r}")
        if not isinstance(self.top_pairs, int) or self.top_pairs < 0:
            raise ConfigError(f"top_pairs must be a non-negative integer, got {self.top_pairs!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")


def attribute_file(index_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   suspect_path: str | os.PathLike[str], *, fields: FieldMap = FieldMap(),
                   options: AttributionOptions = AttributionOptions(),
                   fingerprinter: Fingerprinter | None = None,
                   progress: Progress | None = None,
                   references: Sequence[ReferenceData] | None = None,
                   reference_files: Sequence[str | os.PathLike[str]] = (),
                   watermark_key: WatermarkKey | None = None,
                   watermark_tokenizer: str | None = None,
                   watermark_reference: str | os.PathLike[str] | None = None,
                   provider_names: Sequence[str] | None = None,
                   partners: Sequence[Partner] = (),
                   match_references: Mapping[str, str] | None = None) -> AttributionResult:
    """Read a suspect's outputs from a file and attribute them against an index.

    References: ``reference_files`` (each named after its file) if given, else ``references``,
    else those stored in the indexes; ``references=[]`` for none. With ``watermark_key`` the
    outputs are also tested for the provider's watermark, and that exact p-value joins the
    fingerprint evidence; ``watermark_reference`` adds its shift test (attribution.watermark).

    Given several indexes (one per provider), the providers are first ranked as the suspect's
    likely teacher (attribution.teacher), named by ``provider_names`` (one per index) or their
    directories; the full attribution is then made against the top one, with the ranking's
    provider share (one definition: attribution.share), and carries the ranking in ``teachers``.
    ``partners`` (attribution.partners: partners' shared bundles) join the ranking as providers
    where they shared a style profile, and each checks the suspect for near-duplicates of its
    shared signatures; the full attribution is against the best-ranked of the indexes.
    ``match_references`` ({"era": "2023"}, ...) keeps the references with those facts only.
    """
    paths = ([index_path] if isinstance(index_path, (str, os.PathLike))
             else list(index_path))
    fingerprinter = fingerprinter or fingerprinter_for(paths[0])
    stats = ReadStats()
    records = list(read_records(suspect_path, fields, stats))
    if not records:  # a score of 0 for nothing would look like a finding
        raise InputError(source_name(suspect_path), None,
                         f"no non-empty response to attribute ({stats.empty} empty skipped)")
    marks = watermark_report(watermark_key, records, str(suspect_path), watermark_tokenizer,
                             watermark_reference, fields)  # first: a bad tokenizer fails fast
    with ExitStack() as stack:
        indexes = [stack.enter_context(open_index(p)) for p in paths]
        # the same references for the ranking and the attribution
        references = choose_references(indexes, fingerprinter, references, reference_files,
                                       match=match_references)
        ranking, target, share = _ranking(indexes, records, references, provider_names,
                                          [p.profile for p in partners if p.profile is not None])
        result = attribute(target, records, fingerprinter=fingerprinter, options=options,
                           progress=progress, suspect=str(suspect_path),
                           skipped_empty=stats.empty, references=references,
                           provider_share=share)
    if marks is not None:
        result = join_watermark(result, marks)
    evidence = tuple(e for e in (p.near_duplicates(records, options.near_duplicate_threshold)
                                 for p in partners) if e is not None)
    return dataclasses.replace(result, teachers=ranking, partners=evidence,
                               notes=result.notes + _file_notes(result, ranking, references,
                                                                match_references),
                               provenance=provenance(suspect_path, paths, references,
                                                     match_references))


def _file_notes(result: AttributionResult, ranking: TeacherRanking | None,
                references: Sequence[ReferenceData],
                match: Mapping[str, str] | None) -> tuple[str, ...]:
    """What attribute_file adds to the result's notes: which references (when matched), and
    that a partner's provider is the likely teacher."""
    notes: tuple[str, ...] = ()
    matched = match_note(references, match)
    if matched is not None:
        notes += (matched,)
    if ranking is not None and ranking.teacher.origin is not None:
        notes += (f"the likely teacher is a partner's provider, {ranking.teacher.provider} "
                  f"({ranking.teacher.index}), known here by its shared style profile only; "
                  f"the full attribution is against your best-ranked index, {result.index}",)
    return notes


def _ranking(indexes: Sequence[FingerprintIndex], records: Sequence[ResponseRecord],
             references: Sequence[ReferenceData], names: Sequence[str] | None,
             profiles: Sequence[ProviderProfile]
             ) -> tuple[TeacherRanking | None, FingerprintIndex, TargetAttribution | None]:
    """The teacher ranking (None for one index and no partner), the index the full attribution
    is made against (the best-ranked index: a partner's profile has none) and its share."""
    if len(indexes) + len(profiles) < 2:
        return None, indexes[0], None
    ranking = rank_teachers(indexes, records, references, BOOTSTRAP_RESAMPLES, names, profiles)
    best = next(s for s in ranking.ranking if s.origin is None)
    return (ranking, indexes[[str(i.path) for i in indexes].index(best.index)],
            ranking.shares[best.provider])


def attribute(index: FingerprintIndex, records: Sequence[ResponseRecord], *,
              fingerprinter: Fingerprinter | None = None,
              options: AttributionOptions = AttributionOptions(),
              progress: Progress | None = None, suspect: str = "<records>",
              skipped_empty: int = 0,
              references: Sequence[ReferenceData] | None = None,
              provider_share: TargetAttribution | None = None) -> AttributionResult:
    """Attribute a suspect's responses against an open index.

    ``references`` default to the reference sets stored in the index; pass ``[]`` for none.
    ``provider_share``: a teacher ranking's share for this index (see attribute_file).
    """
    fingerprinter = fingerprinter or Fingerprinter(index.config)
    if fingerprinter.config != index.config:
        raise ConfigMismatchError(str(index.path), index.config.differences(fingerprinter.config))
    evidence: list[ResponseEvidence] = []
    signatures, styles, embeddings = [], [], []
    hashes = prompt_hashes((r.prompt for r in records), index.config.normalizer_version)
    for start in range(0, len(records), options.chunk_size):
        chunk = records[start:start + options.chunk_size]
        fps = fingerprinter.fingerprint([r.response for r in chunk])
        evidence.extend(_chunk_evidence(index, chunk, hashes[start:start + len(chunk)], fps,
                                        options))
        signatures.append(fps.signatures)
        styles.append(fps.style)
        embeddings.append(fps.embeddings)
        if progress is not None:
            progress(len(chunk))
    if references is None:
        references = stored_references([index])
    calibration = None
    if references and evidence:
        from scipy import sparse

        suspect_prints = SuspectPrints(
            hashes, np.concatenate(signatures), sparse.vstack(styles, format="csr"),
            np.array([e.near_duplicate for e in evidence]), np.concatenate(embeddings))
        calibration = calibrate_against_references(index, references, suspect_prints,
                                                   options.near_duplicate_threshold,
                                                   BOOTSTRAP_RESAMPLES, provider_share)
        evidence = [dataclasses.replace(e, provider_like=bool(flag))
                    for e, flag in zip(evidence, calibration.provider_like)]
    prompts = prompt_evidence(index, evidence, hashes, references)
    pairs = _top_pairs(index, records, evidence, prompts,
                       strongest_first(prompts, evidence)[:options.top_pairs],
                       references, hashes)
    return _summarise(index, records, evidence, options, suspect, skipped_empty, calibration,
                      prompts, pairs)


def _chunk_evidence(index: FingerprintIndex, chunk: Sequence[ResponseRecord],
                    hashes: Sequence[str | None], fps: Fingerprints,
                    options: AttributionOptions) -> list[ResponseEvidence]:
    """Per response: nearest served responses, the paired comparison, and the evidence score.
    A response without shingles (fingerprint.MIN_SHINGLES) gets no lexical matches: its empty
    signature would equal every other empty one."""
    lexical_hits = index.search_minhash(fps.signatures, options.k)
    semantic_hits = index.search_embeddings(fps.embeddings, options.k)
    served_rows = index.rows_for_prompts(h for h in hashes if h is not None)
    wanted = {row for hits in (lexical_hits, semantic_hits) for row in hits.rows.ravel()
              if row >= 0}
    wanted.update(row for rows in served_rows.values() for row in rows)
    stored = index.responses(wanted)
    usable = has_shingles(fps.signatures)
    out = []
    for i, record in enumerate(chunk):
        lexical_matches = tuple(Match(r, stored[r].id, s) for r, s in lexical_hits.for_query(i)) \
            if usable[i] else ()
        semantic_matches = tuple(Match(r, stored[r].id, s) for r, s in semantic_hits.for_query(i))
        rows = served_rows.get(hashes[i], []) if hashes[i] is not None else []
        paired = _paired(index, rows, fps.signatures[i], fps.embeddings[i], stored)
        best_jaccard = lexical_matches[0].score if lexical_matches else 0.0
        best_cosine = semantic_matches[0].score if semantic_matches else 0.0
        lexical = (paired.jaccard or 0.0) if paired else best_jaccard
        semantic = paired.cosine if paired else best_cosine
        out.append(ResponseEvidence(
            id=record.id, line=record.line, prompt=record.prompt, prompt_hash=hashes[i],
            lexical_matches=lexical_matches, semantic_matches=semantic_matches, paired=paired,
            lexical=float(lexical), semantic=float(semantic),
            near_duplicate=bool(best_jaccard >= options.near_duplicate_threshold),
            evidence=float(np.clip((lexical + semantic) / 2.0, 0.0, 1.0)),
            has_shingles=bool(usable[i])))
    return out


def _paired(index: FingerprintIndex, rows: list[int], signature: np.ndarray,
            embedding: np.ndarray, stored: dict) -> PairedComparison | None:
    """Best of the provider's answers to the same prompt (a prompt may have been served often).
    Jaccard counts only where both answers have shingles; otherwise the pair has none."""
    if not rows:
        return None
    served = index.signatures(rows)
    comparable = has_shingles(served) & bool(has_shingles(signature))
    jaccards = np.where(comparable, np.mean(served == signature, axis=1), 0.0)
    cosines = index.embeddings(rows) @ embedding
    best = int(np.argmax(jaccards + cosines))
    row = rows[best]
    return PairedComparison(row=row, id=stored[row].id,
                            jaccard=float(jaccards[best]) if comparable[best] else None,
                            cosine=float(cosines[best]), served_answers=len(rows))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _calibrated_signals(calibration: Calibration) -> list[Signal]:
    out = []
    for s in calibration.signals:
        c = s.calibrated
        out.append(Signal(s.name, s.value, s.description, s.n,
                          p_value=None if c is None else c.p_value,
                          z=None if c is None else c.z,
                          references=0 if c is None else c.n_references,
                          null_mean=(None if not s.null else float(np.mean(list(s.null.values())))),
                          reason=None if c is None else c.reason,
                          reference_values=dict(s.null)))
    return out


def _uncalibrated_signals(evidence: list[ResponseEvidence],
                          threshold: float) -> tuple[Signal, ...]:
    """Every signal's value for the suspect alone (attribution.signals says what each is)."""
    n = len(evidence)
    paired = [e for e in evidence if e.paired is not None]
    lexical = [e for e in evidence if e.has_shingles]
    jaccards = [e.paired.jaccard for e in paired if e.paired.jaccard is not None]
    values = (
        (NEAR_DUPLICATE_RATE, _mean([float(e.near_duplicate) for e in lexical]), len(lexical)),
        (MEAN_PAIRED_JACCARD, _mean(jaccards), len(jaccards)),
        (MEAN_PAIRED_COSINE, _mean([e.paired.cosine for e in paired]), len(paired)),
        (MEAN_BEST_JACCARD,
         _mean([e.lexical_matches[0].score for e in evidence if e.lexical_matches]), n),
        (MEAN_BEST_COSINE,
         _mean([e.semantic_matches[0].score for e in evidence if e.semantic_matches]), n),
    )
    return tuple(Signal(spec.name, value, spec.describe(threshold=threshold), count)
                 for spec, value, count in values)


def _calibration_notes(calibration: Calibration | None, n: int, paired: int) -> list[str]:
    """What could not be computed, and why, in the order a reader needs it."""
    notes: list[str] = []
    if calibration is not None:
        notes.extend(calibration.notes)
        if calibration.p_value is None:
            notes.append("too little reference data to calibrate: the score is the uncalibrated "
                         "one")
        elif calibration.fraction is None:
            notes.append("the references' responses are all assigned to the provider, so no "
                         "derived fraction can be estimated; the score is 0")
    else:
        notes.append("no reference models: the score is uncalibrated and there is no p-value; "
                     "add references with 'fingerprint reference add' or --reference")
    if n and not paired:
        notes.append("no suspect prompt was found among the indexed prompts: the score rests on "
                     "nearest matches only, which separate students from independent models far "
                     "less well than paired answers")
    if n == 0:
        notes.append("the suspect file holds no non-empty response")
    return notes


def _summarise(index: FingerprintIndex, records: Sequence[ResponseRecord],
               evidence: list[ResponseEvidence], options: AttributionOptions, suspect: str,
               skipped_empty: int, calibration: Calibration | None,
               prompts: tuple[PromptEvidence, ...],
               pairs: list[MatchedPair]) -> AttributionResult:
    n = len(evidence)
    paired = sum(e.paired is not None for e in evidence)
    signals = _uncalibrated_signals(evidence, options.near_duplicate_threshold)
    notes = _calibration_notes(calibration, n, paired)
    uncalibrated = float(np.mean([e.evidence for e in evidence])) if evidence else 0.0
    if calibration is not None:
        calibrated_names = {c.name for c in calibration.signals}
        signals = tuple(_calibrated_signals(calibration)) + tuple(
            s for s in signals if s.name not in calibrated_names)
    calibrated = calibration is not None and calibration.p_value is not None
    fraction = calibration.fraction if calibrated else None
    return AttributionResult(
        suspect=suspect, index=str(index.path),
        score=(fraction or 0.0) if calibrated else uncalibrated,
        p_value=calibration.p_value if calibrated else None, calibrated=calibrated,
        references=calibration.references if calibration is not None else (),
        derived_fraction=fraction,
        derived_fraction_ci=calibration.fraction_ci if calibrated else None,
        uncalibrated_score=uncalibrated,
        signals=signals, responses=tuple(evidence),
        top_pairs=tuple(pairs), prompts=prompts,
        counts={"responses": n, "skipped_empty": skipped_empty, "paired": paired,
                "near_duplicates": sum(e.near_duplicate for e in evidence),
                "indexed_responses": len(index)},
        settings={"k": options.k, "near_duplicate_threshold": options.near_duplicate_threshold,
                  "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED},
                  "config": index.config.to_dict()},
        notes=tuple(notes))


def _top_pairs(index: FingerprintIndex, records: Sequence[ResponseRecord],
               evidence: list[ResponseEvidence], prompts: Sequence[PromptEvidence],
               order: Sequence[int], references: Sequence[ReferenceData],
               hashes: Sequence[str | None]) -> list[MatchedPair]:
    """The strongest pairs (``order``), each with what the references answered to its prompt."""
    chosen = []
    for i in order:
        e = evidence[i]
        if e.paired is not None:
            chosen.append((i, e.paired.row, "paired", e.paired.jaccard, e.paired.cosine))
        elif e.lexical_matches:
            best = e.lexical_matches[0]
            cosine = next((m.score for m in e.semantic_matches if m.row == best.row), None)
            chosen.append((i, best.row, "nearest", best.score, cosine))
    stored = index.responses(row for _, row, *_ in chosen)
    return [MatchedPair(suspect_id=evidence[i].id, served_id=stored[row].id, relation=relation,
                        jaccard=None if j is None else float(j),
                        cosine=None if c is None else float(c),
                        evidence=evidence[i].evidence, prompt=records[i].prompt,
                        suspect_text=records[i].response, served_text=stored[row].response,
                        excess=prompts[i].excess if relation == "paired" else None,
                        reference_answers=reference_answers(
                            references, hashes[i], prompts[i].reference_jaccards)
                        if relation == "paired" else ())
            for i, row, relation, j, c in chosen]
