"""The per-prompt evidence of a report: the strongest pairs beside what the references answered,
the full per-prompt table (sortable in the browser) and the same table as CSV.

A match is evidence only where independent models do not produce it too, so every strongest pair
shows the reference models' answers to the same prompt, each with its Jaccard to the provider's
answer and the word 3-grams it shares with it highlighted, and the pairs are ordered by the
suspect's Jaccard in excess of the largest reference's (attribution.evidence).
"""

from __future__ import annotations

import csv
import html
import io
import re
import unicodedata
from typing import Any

from attribution import AttributionResult, MatchedPair, strongest_first
from fingerprint.shingles import word_shingles
from reports.text import fmt_number

_WORD = re.compile(r"\w+")
PAIR_CHARS = 2000
TABLE_PROMPT_CHARS = 140
FIXED_COLUMNS = ("suspect_id", "prompt", "served_id", "jaccard", "cosine", "reference_max_jaccard",
                 "closest_reference", "excess_jaccard", "near_duplicate", "provider_like")


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


def evidence_rows(result: AttributionResult) -> list[dict[str, Any]]:
    """One row per suspect answer, strongest evidence first (as the pairs are ordered): its
    paired comparison and every reference's on that prompt."""
    names = list(result.references)
    rows = []
    for i in strongest_first(result.prompts, result.responses):
        p = result.prompts[i]
        closest = max(p.reference_jaccards, key=p.reference_jaccards.get) \
            if p.reference_jaccards else None
        row = {"suspect_id": p.suspect_id, "prompt": p.prompt, "served_id": p.served_id,
               "jaccard": p.jaccard, "cosine": p.cosine,
               "reference_max_jaccard": p.reference_max, "closest_reference": closest,
               "excess_jaccard": p.excess, "near_duplicate": p.near_duplicate,
               "provider_like": p.provider_like}
        row.update({f"jaccard_{name}": p.reference_jaccards.get(name) for name in names})
        rows.append(row)
    return rows


def evidence_csv(result: AttributionResult) -> str:
    """The per-prompt table as CSV (RFC 4180, a header row; empty cells where a value does not
    exist, e.g. no Jaccard for an answer whose prompt the provider did not serve)."""
    rows = evidence_rows(result)
    columns = list(FIXED_COLUMNS) + [f"jaccard_{n}" for n in result.references]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def strongest_pairs_html(result: AttributionResult) -> str:
    if not result.top_pairs:
        return "<p>No matched pairs.</p>"
    return "".join(_pair(n, p) for n, p in enumerate(result.top_pairs, start=1))


def _pair(n: int, p: MatchedPair) -> str:
    e = html.escape
    served = p.served_text or ""
    served_cell = (highlight_shared(served[:PAIR_CHARS], p.suspect_text) if p.served_text
                   else "<i>text not stored</i>")
    excess = "" if p.excess is None else f", {fmt_number(p.excess)} above the closest reference"
    head = (f"<h3>{n}. suspect <code>{e(p.suspect_id)}</code> ~ served "
            f"<code>{e(p.served_id)}</code> ({e(p.relation)})</h3><p>Jaccard "
            f"{fmt_number(p.jaccard)}{excess}, cosine {fmt_number(p.cosine)}"
            + (f"<br>Prompt: {e(p.prompt)}" if p.prompt else "") + "</p>")
    table = (f"<table class='pair'><tr><th>suspect</th><th>provider (served)</th></tr><tr>"
             f"<td>{highlight_shared(p.suspect_text[:PAIR_CHARS], served)}</td>"
             f"<td>{served_cell}</td></tr></table>")
    return f"<section class='evidence-pair'>{head}{table}{_references(p, served)}</section>"


def _references(p: MatchedPair, served: str) -> str:
    if p.relation != "paired":
        return ("<p class='refs'>Nearest match to another prompt: the references' answers are "
                "compared by prompt, so none are shown.</p>")
    if not p.reference_answers:
        return "<p class='refs'>No reference model answered this prompt.</p>"
    e = html.escape
    cells = "".join(
        f"<tr><td><b>{e(a.name)}</b><br>Jaccard to the provider: {fmt_number(a.jaccard)}</td>"
        f"<td>{highlight_shared(a.text[:PAIR_CHARS], served) if a.text else '<i>not stored</i>'}"
        f"</td></tr>" for a in p.reference_answers)
    return ("<details class='refs' open><summary>What the reference models answered "
            "(phrases shared with the provider highlighted)</summary>"
            f"<table class='refs'>{cells}</table></details>")


def evidence_table_html(result: AttributionResult, limit: int | None = None) -> str:
    """Every suspect answer (or the ``limit`` with the strongest evidence), sortable by any
    column (a click on its header)."""
    e = html.escape
    head = ("<tr><th>suspect id</th><th>prompt</th><th>served id</th><th>Jaccard</th>"
            "<th>cosine</th><th>closest reference (Jaccard)</th><th>excess Jaccard</th>"
            "<th>near-duplicate</th><th>provider-like</th></tr>")
    body = []
    for row in evidence_rows(result)[:limit]:
        prompt = row["prompt"] or ""
        if len(prompt) > TABLE_PROMPT_CHARS:
            prompt = prompt[:TABLE_PROMPT_CHARS] + " …"
        closest = ("" if row["closest_reference"] is None else
                   f"{e(row['closest_reference'])} ({fmt_number(row['reference_max_jaccard'])})")
        body.append(
            f"<tr><td>{e(row['suspect_id'])}</td><td>{e(prompt)}</td>"
            f"<td>{e(row['served_id'] or '')}</td>{_num(row['jaccard'])}{_num(row['cosine'])}"
            f"<td data-sort='{_key(row['reference_max_jaccard'])}'>{closest}</td>"
            f"{_num(row['excess_jaccard'])}<td>{_flag(row['near_duplicate'])}</td>"
            f"<td>{_flag(row['provider_like'])}</td></tr>")
    return (f"<table id='evidence-table' class='sortable'><thead>{head}</thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _num(value: float | None) -> str:
    return f"<td data-sort='{_key(value)}'>{fmt_number(value)}</td>"


def _key(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _flag(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


# Sorting without a library: a click on a header sorts by that column (numbers by data-sort).
SORT_SCRIPT = """<script>
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var down = th.getAttribute('aria-sort') !== 'descending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', down ? 'descending' : 'ascending');
    var key = function (row) {
      var cell = row.cells[col], v = cell.getAttribute('data-sort');
      return v === null ? cell.textContent : (v === '' ? -Infinity : parseFloat(v));
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), order = x < y ? -1 : x > y ? 1 : 0;
      return down ? -order : order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
</script>"""
