"""Watermark evidence for files of responses: mark a served file, test a suspect's file, and
join the watermark's p-value with the fingerprint evidence of ``attribute``.

A key can carry two marks (tokens and lexical). Testing both and quoting the smaller p-value
would be a multiple comparison, so the file-level p-value is Bonferroni's: twice the smaller one
when both were tested (valid whatever the dependence between the two tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from attribution.calibration import cauchy_combination
from attribution.result import AttributionResult, Signal
from fingerprint.atomic import atomic_write_bytes
from fingerprint.errors import FingerprintError, InputError
from fingerprint.records import FieldMap, ReadStats, ResponseRecord, read_records, source_name
from fingerprint.watermark import (Detection, WatermarkKey, detect_lexical, detect_texts,
                                   load_tokenizer, mark_text)

SCHEMES = ("both", "tokens", "lexical")


@dataclass(frozen=True)
class MarkSummary:
    responses: int
    skipped_empty: int
    candidates: int
    substitutions: int


@dataclass(frozen=True)
class WatermarkReport:
    """The tests of one suspect file; ``p_value`` is the file-level (pooled) p-value."""

    key_id: str
    suspect: str
    ids: tuple[str, ...]
    detections: tuple[Detection, ...]
    skipped_empty: int

    @property
    def p_value(self) -> float:
        return min(1.0, len(self.detections) * min(d.p_value for d in self.detections))

    def to_dict(self, include_responses: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "p_value": self.p_value,
            "combination": ("bonferroni over the marks tested" if len(self.detections) > 1
                            else "the one mark tested"),
            "key_id": self.key_id, "suspect": self.suspect,
            "responses": len(self.ids), "skipped_empty": self.skipped_empty,
            "schemes": {d.scheme: d.pooled.to_dict() for d in self.detections},
        }
        if include_responses:
            out["per_response"] = [
                {"id": rid, **{d.scheme: d.responses[i].to_dict() for d in self.detections}}
                for i, rid in enumerate(self.ids)]
        return out


def mark_file(key: WatermarkKey, source: str | os.PathLike[str], out: str | os.PathLike[str],
              fields: FieldMap = FieldMap()) -> MarkSummary:
    """Write the responses of ``source`` with the post-hoc mark to ``out`` (JSONL, the served
    shape: id, prompt, response, model). Read whole before anything is written, so bad input
    leaves no partial file; ``out`` is replaced atomically."""
    stats = ReadStats()
    records = list(read_records(source, fields, stats))
    if not records:
        raise InputError(source_name(source), None, "no non-empty response to mark")
    if Path(out).exists() and Path(out).resolve() == Path(str(source)).resolve():
        raise FingerprintError(f"{out}: the output must not overwrite the input")
    lines, candidates, swaps = [], 0, 0
    for record in records:
        marked = mark_text(key, record.response)
        candidates += marked.candidates
        swaps += marked.substitutions
        lines.append(json.dumps({"id": record.id, "prompt": record.prompt,
                                 "response": marked.text, "model": record.model},
                                ensure_ascii=False))
    atomic_write_bytes(out, ("\n".join(lines) + "\n").encode("utf-8"))
    return MarkSummary(len(records), stats.empty, candidates, swaps)


def detect_records(key: WatermarkKey, records: Sequence[ResponseRecord], *, suspect: str,
                   scheme: str = "both", tokenizer: str | None = None,
                   skipped_empty: int = 0) -> WatermarkReport:
    """Test records for the marks; "both" tests the lexical mark only where the key has one."""
    if scheme not in SCHEMES:
        raise FingerprintError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if not records:
        raise InputError(suspect, None, "no non-empty response to test for the watermark")
    texts = [r.response for r in records]
    detections = []
    if scheme in ("both", "tokens"):
        detections.append(detect_texts(key, texts, load_tokenizer(tokenizer) if tokenizer
                                       else None))
    if scheme == "lexical" or (scheme == "both" and key.lexicon_sha256 is not None):
        detections.append(detect_lexical(key, texts))
    return WatermarkReport(key.key_id, suspect, tuple(r.id for r in records), tuple(detections),
                           skipped_empty)


def detect_file(key: WatermarkKey, source: str | os.PathLike[str], *,
                fields: FieldMap = FieldMap(), scheme: str = "both",
                tokenizer: str | None = None) -> WatermarkReport:
    stats = ReadStats()
    records = list(read_records(source, fields, stats))
    return detect_records(key, records, suspect=source_name(source), scheme=scheme,
                          tokenizer=tokenizer, skipped_empty=stats.empty)


def join_watermark(result: AttributionResult, report: WatermarkReport) -> AttributionResult:
    """Add the watermark as a signal and fold its p-value into the attribution's.

    The watermark's p-value is exact and needs no reference models; it is combined with the
    calibrated fingerprint p-value by the Cauchy combination (valid under dependence), or stands
    alone when there is none."""
    pooled = {d.scheme: d.pooled for d in report.detections}
    main = pooled.get("tokens") or pooled["lexical"]
    signal = Signal("watermark", main.green / main.scored if main.scored else None,
                    f"green share of distinct pairs under key {report.key_id} ("
                    + ", ".join(f"{s}: {p.green}/{p.scored}, p {p.p_value:.3g}"
                                for s, p in pooled.items())
                    + "); exact binomial, Bonferroni over marks", main.scored,
                    p_value=report.p_value, z=main.z,
                    reason=None if not main.too_short else "too few scorable pairs")
    if result.p_value is None:
        p_value = report.p_value
        note = (f"the p-value is the watermark's alone ({report.p_value:.3g}): no calibrated "
                "fingerprint p-value to combine it with")
    else:
        p_value = cauchy_combination([result.p_value, report.p_value])
        note = (f"the p-value combines the fingerprint's ({result.p_value:.3g}) and the "
                f"watermark's ({report.p_value:.3g}) by the Cauchy combination")
    return dataclasses.replace(result, signals=result.signals + (signal,), p_value=p_value,
                               notes=result.notes + (note,))
