"""Human-readable forms of an attribution: a terminal summary and a Markdown report.

The report is meant to be attached to a dispute, so it shows the figures with what they mean and
the matched pairs side by side, with ids that lead back to the stored responses.
"""

from __future__ import annotations

import html

from attribution.result import AttributionResult

_PAIR_CHARS = 700


def _fmt(value: float | None) -> str:
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
            f"score     {_fmt(result.score)}  (derived fraction, lower bound{interval})",
        ]
    else:
        lines.append(f"score     {_fmt(result.score)}  (uncalibrated: mean per-response evidence; "
                     f"higher = more derived)")
        if result.p_value is not None:
            lines.append(f"p-value   {fmt_number(result.p_value)}  (the watermark test's: null: "
                         "the suspect's outputs do not depend on the key)")
    width = max(len(s.name) for s in result.signals)
    for s in result.signals:
        p = f"  p={fmt_number(s.p_value)}" if s.p_value is not None else ""
        lines.append(f"  {s.name:<{width}}  {_fmt(s.value)}{p}  (n={s.n}) {s.description}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def _cell(text: str | None) -> str:
    if text is None:
        return "*(text not stored)*"
    clipped = text if len(text) <= _PAIR_CHARS else text[:_PAIR_CHARS] + " …"
    return html.escape(clipped, quote=False).replace("|", "&#124;").replace("\n", "<br>")


def markdown_report(result: AttributionResult) -> str:
    c = result.counts
    out = [
        "# Attribution report",
        "",
        f"- Suspect outputs: `{result.suspect}` ({c['responses']} responses, "
        f"{c['skipped_empty']} empty ones skipped)",
        f"- Index: `{result.index}` ({c['indexed_responses']} served responses)",
        f"- Suspect responses whose prompt is indexed (paired): {c['paired']}",
        f"- Near-duplicates of served responses: {c['near_duplicates']}",
        "",
    ]
    if result.teachers is not None:
        t = result.teachers
        out += ["", f"**Likely teacher: {t.teacher.provider}** (`{t.teacher.index}`), margin "
                f"{t.margin:.3f} in provider share over the runner-up, p-value "
                f"{fmt_number(t.teacher.p_value)}. The rest of this report is against that index.",
                "", "| provider | provider share | p-value | z |", "|---|---|---|---|"]
        out += [f"| {s.provider} | {s.share:.3f} | {fmt_number(s.p_value)} | {_fmt(s.z)} |"
                for s in t.ranking]
        out.append("")
    if result.calibrated:
        ci = result.derived_fraction_ci
        out += [
            f"- Reference models ({len(result.references)}): "
            + ", ".join(f"`{r}`" for r in result.references),
            "",
            f"**p-value: {fmt_number(result.p_value)}** (Cauchy combination of the calibrated "
            "signals). Null hypothesis: the suspect is one more independent model, like the "
            "references; its outputs are no more provider-like than theirs.",
            "",
            f"**Derived fraction: {_fmt(result.derived_fraction)}**"
            + ("" if ci is None else f" (95% bootstrap CI {ci[0]:.3f} to {ci[1]:.3f})")
            + ": a lower bound on the share of the suspect's responses that are provider-like "
              "beyond what the references show.",
        ]
    else:
        out.append(f"**Score: {_fmt(result.score)}** (uncalibrated, no reference models; higher "
                   "means more derived from the indexed responses; compare suspects against the "
                   "same index rather than reading it as a probability).")
        if result.p_value is not None:
            out += ["", f"**p-value: {fmt_number(result.p_value)}** (the watermark test; null "
                    "hypothesis: the suspect's outputs do not depend on the provider's key)."]
    out += ["", "| signal | value | n | p-value | z | references' mean | meaning |",
            "|---|---|---|---|---|---|---|"]
    for s in result.signals:
        out.append(f"| {s.name} | {_fmt(s.value)} | {s.n} | {fmt_number(s.p_value)} | "
                   f"{_fmt(s.z)} | {_fmt(s.null_mean)} | {s.description}"
                   + (f" ({s.reason})" if s.reason else "") + " |")
    for note in result.notes:
        out.extend(["", f"> Note: {note}"])
    out.extend(["", "## Matched pairs with the strongest evidence", ""])
    if not result.top_pairs:
        out.append("No matched pairs.")
    for n, p in enumerate(result.top_pairs, start=1):
        cosine = "n/a" if p.cosine is None else f"{p.cosine:.3f}"
        out.extend([
            f"### {n}. suspect `{p.suspect_id}` ~ served `{p.served_id}` ({p.relation})",
            "",
            f"Jaccard {p.jaccard:.3f}, cosine {cosine}, evidence {p.evidence:.3f}",
            "",
        ])
        if p.prompt:
            out.extend([f"Prompt: {_cell(p.prompt)}", ""])
        out.extend([
            "| suspect response | served response |",
            "|---|---|",
            f"| {_cell(p.suspect_text)} | {_cell(p.served_text)} |",
            "",
        ])
    return "\n".join(out) + "\n"
