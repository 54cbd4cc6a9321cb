"""An attribution as a Markdown report, meant to be attached to a dispute: the figures with what
they mean, and the matched pairs side by side, with ids that lead back to the stored responses.
"""

from __future__ import annotations

import html
import json

from attribution import AttributionResult, MatchedPair
from reports.text import (fmt_fixed, fmt_number, methodology, methodology_sections,
                          partner_lines)

_PAIR_CHARS = 700


def _cell(text: str | None) -> str:
    if text is None:
        return "*(text not stored)*"
    clipped = text if len(text) <= _PAIR_CHARS else text[:_PAIR_CHARS] + " …"
    return html.escape(clipped, quote=False).replace("|", "&#124;").replace("\n", "<br>")


def markdown_report(result: AttributionResult) -> str:
    """The whole report: verdict, header, teacher ranking, figures, signals, method, notes,
    pairs (with what the references answered), provenance."""
    out = _header(result) + _teachers(result) + _figures(result) + _signals(result)
    out += ["", "## Methodology"]
    for title, text in methodology_sections(result):
        out += ["", f"**{title}.** {text}"]
    out += ["", "How each signal is computed, and how its p-value is found:", ""]
    out += [f"- `{name}`: {computed}; {calibration}" for name, computed, calibration
            in methodology(result)]
    for note in result.notes:
        out.extend(["", f"> Note: {note}"])
    out.extend(["", "## Matched pairs with the strongest evidence", ""])
    if not result.top_pairs:
        out.append("No matched pairs.")
    for n, pair in enumerate(result.top_pairs, start=1):
        out.extend(_pair(n, pair))
    out += ["## Provenance", "", "```json", json.dumps(
        {"provenance": result.provenance, "bootstrap": result.settings.get("bootstrap")},
        indent=2), "```"]
    return "\n".join(out) + "\n"


def _header(result: AttributionResult) -> list[str]:
    c = result.counts
    return [
        "# Attribution report",
        "",
        f"**Verdict: {result.verdict.sentence}**",
        "",
        f"- Suspect outputs: `{result.suspect}` ({c['responses']} responses, "
        f"{c['skipped_empty']} empty ones skipped)",
        f"- Index: `{result.index}` ({c['indexed_responses']} served responses)",
        f"- Suspect responses whose prompt is indexed (paired): {c['paired']}",
        f"- Near-duplicates of served responses: {c['near_duplicates']}",
        "",
    ]


def _partners(result: AttributionResult) -> list[str]:
    lines = partner_lines(result)
    if not lines:
        return []
    return ["", "Partners' shared signals:", ""] + [f"- {line.split(None, 1)[1]}"
                                                     for line in lines] + [""]


def _teachers(result: AttributionResult) -> list[str]:
    if result.teachers is None:
        return _partners(result)
    t = result.teachers
    rest = ("The rest of this report is against that index." if t.teacher.origin is None else
            f"It is a partner's provider, known by its shared style profile only; the rest of "
            f"this report is against your best-ranked index, `{result.index}`.")
    out = ["", f"**Likely teacher: {t.teacher.provider}** (`{t.teacher.index}`), margin "
           f"{t.margin:.3f} in provider share over the runner-up, p-value "
           f"{fmt_number(t.teacher.p_value)}. {rest}",
           "", "| provider | provider share | p-value | z |", "|---|---|---|---|"]
    out += [f"| {s.provider} | {s.share:.3f} | {fmt_number(s.p_value)} | {fmt_fixed(s.z)} |"
            for s in t.ranking]
    return out + _partners(result) + [""]


def _figures(result: AttributionResult) -> list[str]:
    if result.calibrated:
        ci = result.derived_fraction_ci
        return [
            f"- Reference models ({len(result.references)}): "
            + ", ".join(f"`{r}`" for r in result.references),
            "",
            f"**p-value: {fmt_number(result.p_value)}** (Cauchy combination of the calibrated "
            "signals). Null hypothesis: the suspect is one more independent model, like the "
            "references; its outputs are no more provider-like than theirs.",
            "",
            f"**Derived fraction: {fmt_fixed(result.derived_fraction)}**"
            + ("" if ci is None else f" (95% bootstrap CI {ci[0]:.3f} to {ci[1]:.3f})")
            + ": a lower bound on the share of the suspect's responses that are provider-like "
              "beyond what the references show.",
        ]
    out = [f"**Score: {fmt_fixed(result.score)}** (uncalibrated, no reference models; higher "
           "means more derived from the indexed responses; compare suspects against the "
           "same index rather than reading it as a probability)."]
    if result.p_value is not None:
        out += ["", f"**p-value: {fmt_number(result.p_value)}** (the watermark test; null "
                "hypothesis: the suspect's outputs do not depend on the provider's key)."]
    return out


def _signals(result: AttributionResult) -> list[str]:
    out = ["", "| signal | value | n | p-value | z | references' mean | meaning |",
           "|---|---|---|---|---|---|---|"]
    for s in result.signals:
        out.append(f"| {s.name} | {fmt_fixed(s.value)} | {s.n} | {fmt_number(s.p_value)} | "
                   f"{fmt_fixed(s.z)} | {fmt_fixed(s.null_mean)} | {s.description}"
                   + (f" ({s.reason})" if s.reason else "") + " |")
    return out


def _pair(n: int, p: MatchedPair) -> list[str]:
    cosine = "n/a" if p.cosine is None else f"{p.cosine:.3f}"
    excess = "" if p.excess is None else f" ({fmt_number(p.excess)} above the closest reference)"
    out = [
        f"### {n}. suspect `{p.suspect_id}` ~ served `{p.served_id}` ({p.relation})",
        "",
        f"Jaccard {fmt_number(p.jaccard)}{excess}, cosine {cosine}, evidence {p.evidence:.3f}",
        "",
    ]
    if p.prompt:
        out.extend([f"Prompt: {_cell(p.prompt)}", ""])
    return out + [
        "| suspect response | served response |",
        "|---|---|",
        f"| {_cell(p.suspect_text)} | {_cell(p.served_text)} |",
        "",
    ] + _reference_answers(p)


def _reference_answers(p: MatchedPair) -> list[str]:
    if not p.reference_answers:
        return []
    out = ["What the reference models answered to the same prompt:", "",
           "| reference | Jaccard to the provider | answer |", "|---|---|---|"]
    out += [f"| {a.name} | {fmt_number(a.jaccard)} | {_cell(a.text)} |"
            for a in p.reference_answers]
    return out + [""]
