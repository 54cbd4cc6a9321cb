"""An attribution as the terminal shows it, and the number formats every report shares."""

from __future__ import annotations

from attribution import SIGNALS_BY_NAME, AttributionResult


def methodology(result: AttributionResult) -> list[tuple[str, str, str]]:
    """(signal, how it is computed, how it is calibrated) for each signal of the result, from
    attribution.signals, where each is defined once."""
    specs = [(s.name, SIGNALS_BY_NAME.get(s.name)) for s in result.signals]
    return [(name, spec.computed, spec.calibration or "not calibrated")
            for name, spec in specs if spec is not None]


def fmt_fixed(value: float | None) -> str:
    """Three decimals, or n/a."""
    return "n/a" if value is None else f"{value:.3f}"


def fmt_number(value: float | None) -> str:
    """Three decimals, or scientific notation where that would hide a tiny value (p-values)."""
    if value is None:
        return "n/a"
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"


def summary_text(result: AttributionResult) -> str:
    c = result.counts
    lines = [
        f"suspect   {result.suspect}: {c['responses']} responses"
        f" ({c['skipped_empty']} empty skipped), {c['paired']} with an indexed prompt",
        f"index     {result.index}: {c['indexed_responses']} served responses",
    ]
    if result.teachers is not None:
        t = result.teachers
        lines.append(f"teacher   {t.teacher.provider} (margin {t.margin:.3f} in provider share, "
                     f"p={fmt_number(t.teacher.p_value)}); ranking: "
                     + ", ".join(f"{s.provider} {s.share:.3f}" for s in t.ranking))
    if result.calibrated:
        ci = result.derived_fraction_ci
        interval = "" if ci is None else f", 95% CI {ci[0]:.3f}-{ci[1]:.3f}"
        lines += [
            f"refs      {len(result.references)}: {', '.join(result.references)}",
            f"p-value   {fmt_number(result.p_value)}  (null: the suspect is one more independent "
            f"model, like the references)",
            f"score     {fmt_fixed(result.score)}  (derived fraction, lower bound{interval})",
        ]
    else:
        lines.append(f"score     {fmt_fixed(result.score)}  (uncalibrated: mean per-response evidence; "
                     f"higher = more derived)")
        if result.p_value is not None:
            lines.append(f"p-value   {fmt_number(result.p_value)}  (the watermark test's: null: "
                         "the suspect's outputs do not depend on the key)")
    width = max(len(s.name) for s in result.signals)
    for s in result.signals:
        p = f"  p={fmt_number(s.p_value)}" if s.p_value is not None else ""
        lines.append(f"  {s.name:<{width}}  {fmt_fixed(s.value)}{p}  (n={s.n}) {s.description}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)
