"""The dispute report: one self-contained HTML page (and, through reports.pdf, the same as PDF).

It is written for a reader who has to decide whether to trust the claim, on screen or on paper:
the verdict in plain words first, then the figures with every reference labelled on the plots,
the method (the null hypothesis, the references, how each signal is computed and calibrated,
what the p-value does not say), the per-prompt evidence set against what the reference models
answered to the same prompts, and the provenance that lets anyone reproduce it (versions, sha256
of the inputs, how the suspect was probed, the bootstrap seed). Nothing is fetched: styles,
plots (SVG), the sorting script and the CSV download are all inside the file.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

from attribution import SIGNALS_BY_NAME, AttributionResult
from reports.evidence import (SORT_SCRIPT, evidence_csv, evidence_table_html,
                              strongest_pairs_html)
from reports.plots import fraction_plot, signal_plot
from reports.text import fmt_number, methodology, methodology_sections, partner_lines

_STYLE = """<style>
body{font:14px/1.45 system-ui,"DejaVu Sans",sans-serif;max-width:1100px;margin:2em auto;
 padding:0 1em;color:#111}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3;text-align:left}mark{background:#ffe08a}code{background:#f4f4f4}
.pair td{width:50%;white-space:pre-wrap}.refs td{white-space:pre-wrap}
#verdict{border:2px solid #333;padding:.6em 1em;font-size:1.15em;margin:1em 0}
#verdict.derived{border-color:#b00}#verdict .decision{font-weight:bold;text-transform:uppercase}
.signal{margin:1em 0 1.5em}.signal svg{max-width:100%;height:auto}
table.sortable th{cursor:pointer}table.sortable th[aria-sort]::after{content:" \\2195"}
#evidence-table td{font-size:12px}
@page{size:A4;margin:16mm 14mm;@bottom-right{content:"page " counter(page) " of "
 counter(pages);font-size:9px}}
@media print{body{max-width:none;margin:0;font-size:11px}
 .no-print{display:none}a{color:inherit;text-decoration:none}
 section.evidence-pair,.signal,#verdict,tr{break-inside:avoid}
 h2{break-after:avoid}details>summary{list-style:none}}
</style>"""


def html_report(result: AttributionResult, extra: dict[str, Any] | None = None,
                table_rows: int | None = None) -> str:
    """The whole page. ``extra``: more configuration to print (e.g. the index's library
    versions); ``table_rows``: print only that many rows of the per-answer table, strongest
    evidence first, and say where the whole table is (for paper: WeasyPrint takes about 30 s
    to lay out 800 rows, 100 pages nobody reads, while the CSV holds them all)."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Attribution report: {html.escape(result.suspect)}</title>", _STYLE,
        "</head><body><h1>Attribution report</h1>",
        _verdict(result), _scope(result), _figures(result), _teachers(result), _signals(result),
        _methodology(result), _notes(result), _evidence(result, table_rows),
        _provenance(result, extra),
        SORT_SCRIPT, "</body></html>",
    ]
    return "".join(parts)


def _verdict(result: AttributionResult) -> str:
    v = result.verdict
    decision = v.decision.replace("_", " ")
    return (f"<div id='verdict' class='{v.decision}'><span class='decision'>{decision}</span>"
            f"<p>{html.escape(v.sentence)}</p></div>")


def _scope(result: AttributionResult) -> str:
    c = result.counts
    e = html.escape
    return (f"<p>Suspect outputs <code>{e(result.suspect)}</code>: {c['responses']} responses "
            f"({c['skipped_empty']} empty skipped), {c['paired']} with a prompt the provider "
            f"served, {c['near_duplicates']} near-duplicates of served responses.<br>Index "
            f"<code>{e(result.index)}</code>: {c['indexed_responses']} served responses.</p>")


def _figures(result: AttributionResult) -> str:
    if not result.calibrated:
        return (f"<h2>Uncalibrated score {fmt_number(result.score)}</h2><p>No usable reference "
                "models: no calibrated p-value. Compare suspects against the same index only."
                "</p>")
    ci = result.derived_fraction_ci
    interval = "" if ci is None else f" (95% interval {fmt_number(ci[0])} to {fmt_number(ci[1])})"
    return "".join([
        f"<h2>p-value {fmt_number(result.p_value)}</h2>",
        f"<p>Against {len(result.references)} reference models: "
        f"{html.escape(', '.join(result.references))}.</p>",
        f"<h2>Derived fraction {fmt_number(result.derived_fraction)}{interval}</h2>",
        "<p>A lower bound on the share of the suspect's responses that are provider-like beyond "
        "what the references show; the interval resamples the suspect's responses and the "
        "references.</p>", fraction_plot(result.derived_fraction, ci),
    ])


def _teachers(result: AttributionResult) -> str:
    e = html.escape
    items = "".join(f"<li>{e(line.split(None, 1)[1])}</li>" for line in partner_lines(result))
    partners = f"<p>Partners' shared signals:</p><ul>{items}</ul>" if items else ""
    if result.teachers is None:
        return partners
    t = result.teachers
    rows = "".join(f"<tr><td>{e(s.provider)}</td><td>{fmt_number(s.share)}</td>"
                   f"<td>{fmt_number(s.p_value)}</td></tr>" for s in t.ranking)
    return (f"<h2>Likely teacher: {e(t.teacher.provider)}</h2><p>Margin "
            f"{fmt_number(t.margin)} in provider share over the runner-up.</p><table><tr>"
            f"<th>provider</th><th>provider share</th><th>p-value</th></tr>{rows}</table>"
            + partners)


def _signals(result: AttributionResult) -> str:
    e = html.escape
    blocks = []
    for s in result.signals:
        reason = f"<br><small>{e(s.reason)}</small>" if s.reason else ""
        plot = signal_plot(s)
        if s.p_value is None and not plot:
            plot = f"<p><i>{e(_why_not_calibrated(s.name, result))}</i></p>"
        blocks.append(
            f"<div class='signal' id='signal-{e(s.name)}'><h3><code>{e(s.name)}</code> "
            f"{fmt_number(s.value)}, p-value {fmt_number(s.p_value)} (n = {s.n})</h3>"
            f"<p>{e(s.description)}{reason}</p>{plot}</div>")
    return ("<h2>Signals</h2><p>Each plot places the suspect (red diamond) among the reference "
            "models (grey dots, each labelled).</p>" + "".join(blocks))


def _why_not_calibrated(name: str, result: AttributionResult) -> str:
    """Why a signal has neither a p-value nor a plot, in words rather than an empty row."""
    spec = SIGNALS_BY_NAME.get(name)
    if spec is not None and not spec.calibration:
        return ("Descriptive only: it is not calibrated against the references and takes no part "
                "in the p-value.")
    if not result.references:
        return "Not calibrated: no reference models were given or stored."
    note = next((n for n in result.notes if name in n), None)
    return f"Not calibrated: {note}." if note else "Not calibrated for this suspect."


def _methodology(result: AttributionResult) -> str:
    e = html.escape
    sections = "".join(f"<h3>{e(title)}</h3><p>{e(text)}</p>"
                       for title, text in methodology_sections(result))
    signals = "".join(f"<li><code>{e(name)}</code>: {e(computed)}; {e(calibration)}</li>"
                      for name, computed, calibration in methodology(result))
    return (f"<section id='methodology'><h2>Methodology</h2>{sections}"
            f"<h3>How each signal is computed and calibrated</h3><ul>{signals}</ul></section>")


def _notes(result: AttributionResult) -> str:
    if not result.notes:
        return ""
    return ("<h2>What could not be computed, and why</h2><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>")


def _evidence(result: AttributionResult, table_rows: int | None) -> str:
    data = evidence_csv(result).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    shown = len(result.prompts) if table_rows is None else min(table_rows, len(result.prompts))
    scope = ("" if shown == len(result.prompts) else
             f"This copy lists the {shown} answers with the strongest evidence of "
             f"{len(result.prompts)}; ")
    return (
        "<section id='evidence'><h2>Strongest evidence</h2><p>Each suspect answer beside the "
        "provider's answer to the same prompt, ordered by how far its word 3-gram Jaccard "
        "exceeds the closest reference model's on that prompt (a match that independent models "
        "also produce is not evidence); phrases shared with the provider are highlighted.</p>"
        f"{strongest_pairs_html(result)}</section>"
        f"<section id='per-prompt'><h2>Every answer</h2><p>{scope}the whole table is the CSV "
        f"report (<code>--report FILE.csv</code>), sha256 <code>{digest}</code>. "
        "<span class='no-print'>Click a column header to sort. <a download='evidence.csv' "
        f"href='data:text/csv;charset=utf-8;base64,{base64.b64encode(data).decode('ascii')}'>"
        "Download it</a>.</span></p>" + evidence_table_html(result, table_rows) + "</section>")


def _provenance(result: AttributionResult, extra: dict[str, Any] | None) -> str:
    e = html.escape
    p = result.provenance
    rows = [("generated", p.get("generated_at")), ("toolkit", p.get("toolkit_version")),
            ("python", p.get("python")),
            ("suspect file", _file(p.get("suspect"), "sha256")),
            *[("index", _file(i, "manifest_sha256")) for i in p.get("indexes", [])],
            ("bootstrap", json.dumps(result.settings.get("bootstrap"))),
            ("libraries", ", ".join(f"{k} {v}" for k, v in p.get("libraries", {}).items()
                                    if v))]
    probe = p.get("probe")
    if probe:
        rows += [("probed at", ", ".join(probe["endpoints"])),
                 ("probed model", ", ".join(probe["models"])),
                 ("request parameters", json.dumps(probe["params"])),
                 ("probe answers", f"{probe['answered']} answered, {probe['failed']} failed, "
                                   f"{probe['first_answer']} to {probe['last_answer']}")]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v) if v is not None else 'n/a')}</td></tr>"
                    for k, v in rows)
    config = json.dumps({"settings": result.settings, **(extra or {})}, indent=2)
    return (f"<section id='provenance'><h2>Provenance</h2><table>{table}</table>"
            f"<h3>Exact configuration</h3><pre>{e(config, quote=False)}</pre></section>")


def _file(entry: dict[str, Any] | None, digest: str) -> str | None:
    if not entry:
        return None
    return f"{entry.get('path')} (sha256 {entry.get(digest) or 'n/a: not a regular file'})"
