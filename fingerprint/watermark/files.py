"""Watermarks on files of responses: mark a served file, test a suspect's file.

A key can carry two marks (tokens and lexical), and with the provider's unmarked text as a
reference the token mark is also shift-tested (fingerprint.watermark.shift: how a student's
inherited lean shows). Quoting the smallest of several p-values would be a multiple comparison,
so the file-level p-value is Bonferroni's: the smallest times the number of tests (valid
whatever the dependence between them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from fingerprint.atomic import atomic_write_bytes
from fingerprint.errors import FingerprintError, InputError
from fingerprint.io import ReadStats, read_records, source_name
from fingerprint.records import FieldMap, ResponseRecord
from fingerprint.watermark.detect import Detection, detect_texts
from fingerprint.watermark.key import WatermarkKey
from fingerprint.watermark.lexical import detect_lexical, mark_text
from fingerprint.watermark.shift import ShiftTest, shift_test
from fingerprint.watermark.tokenizer import load_tokenizer

SCHEMES = ("both", "tokens", "lexical")


@dataclass(frozen=True)
class MarkSummary:
    """``candidates`` choices the mark could set, ``substitutions`` of them changed; version 1 of
    the post-hoc mark (a key of format 1) counts lexicon words only."""

    responses: int
    skipped_empty: int
    candidates: int
    substitutions: int
    posthoc_version: int = 2


@dataclass(frozen=True)
class WatermarkReport:
    """The tests of one suspect file; ``p_value`` is the file-level (pooled) p-value.
    ``shift``: the shift test against ``reference`` (the provider's unmarked text), if given."""

    key_id: str
    suspect: str
    ids: tuple[str, ...]
    detections: tuple[Detection, ...]
    skipped_empty: int
    shift: ShiftTest | None = None
    reference: str | None = None

    @property
    def p_values(self) -> tuple[float, ...]:
        """Every test's p-value: each mark's pooled test, then the shift test."""
        shift = () if self.shift is None else (self.shift.p_value,)
        return tuple(d.p_value for d in self.detections) + shift

    @property
    def p_value(self) -> float:
        """Bonferroni over the tests: the smallest p-value times the number of tests."""
        return min(1.0, len(self.p_values) * min(self.p_values))

    def to_dict(self, include_responses: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "p_value": self.p_value,
            "combination": (f"bonferroni over the {len(self.p_values)} tests"
                            if len(self.p_values) > 1 else "the one test"),
            "key_id": self.key_id, "suspect": self.suspect,
            "responses": len(self.ids), "skipped_empty": self.skipped_empty,
            "schemes": {d.scheme: _pooled(d) for d in self.detections},
            "shift": None if self.shift is None else {"reference": self.reference,
                                                      **self.shift.to_dict()},
        }
        if include_responses:
            out["per_response"] = [
                {"id": rid, **{d.scheme: d.responses[i].to_dict() for d in self.detections}}
                for i, rid in enumerate(self.ids)]
        return out


def _pooled(detection: Detection) -> dict[str, Any]:
    out = detection.pooled.to_dict()
    if detection.channels:
        out["channels"] = {name: {"scored": s.scored, "green": s.green}
                           for name, s in detection.channels}
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
    return MarkSummary(len(records), stats.empty, candidates, swaps,
                       1 if key.posthoc is None else 2)


def detect_records(key: WatermarkKey, records: Sequence[ResponseRecord], *, suspect: str,
                   scheme: str = "both", tokenizer: str | None = None,
                   skipped_empty: int = 0, reference: Sequence[str] | None = None,
                   reference_name: str | None = None) -> WatermarkReport:
    """Test records for the marks; "both" tests the lexical mark only where the key has one.
    ``reference`` (the provider's unmarked responses) adds the token mark's shift test."""
    if scheme not in SCHEMES:
        raise FingerprintError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if not records:
        raise InputError(suspect, None, "no non-empty response to test for the watermark")
    if reference is not None and scheme == "lexical":
        raise FingerprintError("a reference adds the shift test of the token mark; it does not "
                               "apply to scheme 'lexical'")
    if reference is not None and not reference:
        raise InputError(reference_name or "reference", None,
                         "no non-empty response to compare with")
    texts = [r.response for r in records]
    loaded = load_tokenizer(tokenizer) if tokenizer else None
    detections = []
    if scheme in ("both", "tokens"):
        detections.append(detect_texts(key, texts, loaded))
    if scheme == "lexical" or (scheme == "both" and key.lexicon_sha256 is not None):
        detections.append(detect_lexical(key, texts))
    shift = None if reference is None else shift_test(key, texts, reference, loaded)
    return WatermarkReport(key.key_id, suspect, tuple(r.id for r in records), tuple(detections),
                           skipped_empty, shift, reference_name)


def read_reference(path: str | os.PathLike[str],
                   fields: FieldMap = FieldMap()) -> tuple[list[str], str]:
    """(texts, name) of a file of the provider's own unmarked responses, the shift test's
    reference, read with the suspect's ``fields``."""
    return [r.response for r in read_records(path, fields, ReadStats())], source_name(path)


def detect_file(key: WatermarkKey, source: str | os.PathLike[str], *,
                fields: FieldMap = FieldMap(), scheme: str = "both",
                tokenizer: str | None = None,
                reference: str | os.PathLike[str] | None = None) -> WatermarkReport:
    """Test the responses of ``source`` for the marks; ``reference``, a file of the provider's
    own unmarked responses read with the same ``fields``, adds the shift test."""
    stats = ReadStats()
    records = list(read_records(source, fields, stats))
    unmarked, name = read_reference(reference, fields) if reference is not None else (None, None)
    return detect_records(key, records, suspect=source_name(source), scheme=scheme,
                          tokenizer=tokenizer, skipped_empty=stats.empty, reference=unmarked,
                          reference_name=name)
