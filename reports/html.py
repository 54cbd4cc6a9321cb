"""A self-contained HTML report that lets a reader check the claim.

For every calibrated signal it plots the suspect among the reference models (inline SVG, no
plotting library, nothing fetched), shows the derived fraction with its interval, the matched
pairs side by side with the word 3-grams they share highlighted, and the exact configuration.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata

from attribution import AttributionResult, MatchedPair, Signal
from reports.text import fmt_number, methodology
from fingerprint.shingles import word_shingles

_WORD = re.compile(r"\w+")
_PAIR_CHARS = 2000


def highlight_shared(text: str, other: str, n: int = 3) -> str:
    """``text`` as HTML with every word that is part of a word n-gram also in ``other`` marked."""
    shared = word_shingles(other, n)
    words = [(m.start(), m.end(), unicodedata.normalize("NFKC", m.group()).casefold())
             for m in _WORD.finditer(text)]
    runs: list[list[int]] = []  # [first word, last word]; overlapping matches are merged
    for i in range(len(words) - n + 1):
        if " ".join(w for _, _, w in words[i:i + n]) in shared:
            if runs and i <= runs[-1][1]:
                runs[-1][1] = i + n - 1
            else:
                runs.append([i, i + n - 1])
    out, pos = [], 0
    for first, last in runs:
        out.append(html.escape(text[pos:words[first][0]]))
        out.append(f"<mark>{html.escape(text[words[first][0]:words[last][1]])}</mark>")
        pos = words[last][1]
    out.append(html.escape(text[pos:]))
    return "".join(out)


def signal_plot(signal: Signal) -> str:
    """Strip plot: each reference a grey dot (hover for its name), the suspect a red one."""
    null = signal.reference_values
    if signal.value is None or not null:
        return ""
    values = list(null.values()) + [signal.value]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    x = lambda v: 20 + 560 * (v - low) / span  # noqa: E731
    dots = "".join(f'<circle cx="{x(v):.1f}" cy="30" r="6" fill="#999" fill-opacity="0.7">'
                   f"<title>{html.escape(name)}: {fmt_number(v)}</title></circle>"
                   for name, v in null.items())
    return (f'<svg width="600" height="60" role="img" aria-label="{html.escape(signal.name)}">'
            f'<line x1="20" y1="30" x2="580" y2="30" stroke="#ccc"/>{dots}'
            f'<circle cx="{x(signal.value):.1f}" cy="30" r="8" fill="#c00">'
            f"<title>suspect: {fmt_number(signal.value)}</title></circle>"
            f'<text x="20" y="55" font-size="11">{fmt_number(low)}</text>'
            f'<text x="580" y="55" font-size="11" text-anchor="end">{fmt_number(high)}</text></svg>')


def fraction_plot(fraction: float | None, ci: tuple[float, float] | None) -> str:
    if fraction is None:
        return ""
    x = lambda v: 20 + 560 * v  # noqa: E731
    bar = "" if ci is None else (f'<line x1="{x(ci[0]):.1f}" y1="30" x2="{x(ci[1]):.1f}" y2="30" '
                                 f'stroke="#c00" stroke-width="6" stroke-opacity="0.4"/>')
    return (f'<svg width="600" height="60" role="img" aria-label="derived fraction">'
            f'<line x1="20" y1="30" x2="580" y2="30" stroke="#ccc"/>{bar}'
            f'<circle cx="{x(fraction):.1f}" cy="30" r="7" fill="#c00"/>'
            f'<text x="20" y="55" font-size="11">0</text>'
            f'<text x="580" y="55" font-size="11" text-anchor="end">1</text></svg>')


_STYLE = ("<style>body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;"
          "padding:0 1em}table{border-collapse:collapse}td,th{border:1px solid #ddd;"
          "padding:4px 8px;vertical-align:top}mark{background:#ffe08a}"
          ".pair td{width:50%;white-space:pre-wrap}code{background:#f4f4f4}</style>")


def html_report(result: AttributionResult, extra: dict | None = None) -> str:
    """``extra``: more configuration to print, e.g. the library versions that built the index."""
    c = result.counts
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Attribution report</title>",
        _STYLE, "</head><body>",
        "<h1>Attribution report</h1>",
        f"<p>Suspect outputs <code>{e(result.suspect)}</code>: {c['responses']} responses "
        f"({c['skipped_empty']} empty skipped), {c['paired']} with a prompt the provider served."
        f"<br>Index <code>{e(result.index)}</code>: {c['indexed_responses']} served responses.</p>",
        _teachers(result), _figures(result), _signals(result),
        "<h2>How each signal is computed and calibrated</h2><ul>"
        + "".join(f"<li><code>{e(name)}</code>: {e(computed)}; {e(calibration)}</li>"
                  for name, computed, calibration in methodology(result)) + "</ul>",
    ]
    if result.notes:
        parts.append("<h2>What could not be computed, and why</h2><ul>"
                     + "".join(f"<li>{e(n)}</li>" for n in result.notes) + "</ul>")
    parts.append("<h2>Strongest evidence</h2><p>Each suspect response beside the served "
                 "response closest to it; word 3-grams the two share are highlighted.</p>")
    parts.extend(_pair(n, p) for n, p in enumerate(result.top_pairs, start=1))
    parts.append("<h2>Exact configuration</h2><pre>"
                 + html.escape(json.dumps({"settings": result.settings, **(extra or {})},
                                          indent=2), quote=False)
                 + "</pre></body></html>")
    return "".join(parts)


def _teachers(result: AttributionResult) -> str:
    if result.teachers is None:
        return ""
    t = result.teachers
    e = html.escape
    rows = "".join(f"<tr><td>{e(s.provider)}</td><td>{fmt_number(s.share)}</td>"
                   f"<td>{fmt_number(s.p_value)}</td></tr>" for s in t.ranking)
    return (f"<h2>Likely teacher: {e(t.teacher.provider)}</h2><p>Margin "
            f"{fmt_number(t.margin)} in provider share over the runner-up.</p><table><tr>"
            f"<th>provider</th><th>provider share</th><th>p-value</th></tr>{rows}</table>")


def _figures(result: AttributionResult) -> str:
    if not result.calibrated:
        return (f"<h2>Uncalibrated score {fmt_number(result.score)}</h2><p>No usable reference "
                "models: no p-value. Compare suspects against the same index only.</p>")
    ci = result.derived_fraction_ci
    interval = "" if ci is None else f" (95% CI {fmt_number(ci[0])} to {fmt_number(ci[1])})"
    return "".join([
        f"<h2>p-value {fmt_number(result.p_value)}</h2>",
        "<p>Null hypothesis: the suspect is one more independent model, like the "
        f"{len(result.references)} reference models ({html.escape(', '.join(result.references))}"
        "); its outputs are no more like the provider's than theirs are. Signals are calibrated "
        "against the references and combined with the Cauchy combination test.</p>",
        f"<h2>Derived fraction {fmt_number(result.derived_fraction)}{interval}</h2>",
        "<p>A lower bound on the share of the suspect's responses that are provider-like "
        "beyond what the references show.</p>",
        fraction_plot(result.derived_fraction, ci),
    ])


def _signals(result: AttributionResult) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(s.name)}</td><td>{fmt_number(s.value)}</td><td>{fmt_number(s.p_value)}"
        f"{'<br><small>' + e(s.reason) + '</small>' if s.reason else ''}</td>"
        f"<td>{signal_plot(s)}</td><td>{e(s.description)}</td></tr>" for s in result.signals)
    return ("<h2>Signals</h2><p>Red: the suspect; grey: each reference model (hover for "
            "names).</p><table><tr><th>signal</th><th>value</th><th>p-value</th>"
            f"<th>suspect among the references</th><th>meaning</th></tr>{rows}</table>")


def _pair(n: int, p: MatchedPair) -> str:
    e = html.escape
    served = p.served_text or ""
    served_cell = (highlight_shared(served[:_PAIR_CHARS], p.suspect_text) if p.served_text
                   else "<i>text not stored</i>")
    return (f"<h3>{n}. suspect <code>{e(p.suspect_id)}</code> ~ served "
            f"<code>{e(p.served_id)}</code> ({e(p.relation)})</h3><p>Jaccard "
            f"{fmt_number(p.jaccard)}, cosine {fmt_number(p.cosine)}"
            + (f"<br>Prompt: {e(p.prompt)}" if p.prompt else "") + "</p>"
            f"<table class='pair'><tr><th>suspect</th><th>served</th></tr><tr>"
            f"<td>{highlight_shared(p.suspect_text[:_PAIR_CHARS], served)}</td>"
            f"<td>{served_cell}</td></tr></table>")
