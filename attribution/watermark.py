"""The watermark as attribution evidence: its exact p-value joins the fingerprint signals.

Marking and testing files is fingerprint.watermark's (``mark_file``, ``detect_file``); this
module runs its tests on a suspect's records and folds the report into an
``AttributionResult``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from attribution.errors import AttributionError
from attribution.result import AttributionResult, Signal
from attribution.signals import WATERMARK
from attribution.stats import cauchy_combination
from fingerprint.records import FieldMap, ResponseRecord
from fingerprint.watermark import WatermarkKey, WatermarkReport, detect_records, read_reference


def watermark_report(key: WatermarkKey | None, records: Sequence[ResponseRecord], suspect: str,
                     tokenizer: str | None = None,
                     reference: str | os.PathLike[str] | None = None,
                     fields: FieldMap = FieldMap()) -> WatermarkReport | None:
    """The suspect's watermark tests under ``key`` (None without a key); ``reference``, a file of
    the provider's own unmarked responses read with ``fields``, adds the shift test that finds a
    student's inherited lean (fingerprint.watermark.shift)."""
    if key is None:
        if reference is not None:
            raise AttributionError("a watermark reference is for the shift test of a watermark "
                                   "key: give the key too")
        return None
    unmarked, name = read_reference(reference, fields) if reference is not None else (None, None)
    return detect_records(key, records, suspect=suspect, tokenizer=tokenizer,
                          reference=unmarked, reference_name=name)


def join_watermark(result: AttributionResult, report: WatermarkReport) -> AttributionResult:
    """Add the watermark as a signal and fold its p-value into the attribution's.

    The watermark's p-value is exact and needs no reference models; it is combined with the
    calibrated fingerprint p-value by the Cauchy combination (valid under dependence), or stands
    alone when there is none."""
    pooled = {d.scheme: d.pooled for d in report.detections}
    main = pooled.get("tokens") or pooled["lexical"]
    detail = ", ".join(f"{s}: {p.green}/{p.scored}, p {p.p_value:.3g}" for s, p in pooled.items())
    if report.shift is not None:  # the test that finds a student, against unmarked text
        detail += (f", shift: {report.shift.green_up}/{report.shift.up} green among windows "
                   f"used more, lean {report.shift.lean:.3f}, p {report.shift.p_value:.3g}")
    signal = Signal(WATERMARK.name, main.green / main.scored if main.scored else None,
                    WATERMARK.describe(key=report.key_id, detail=detail), main.scored,
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
