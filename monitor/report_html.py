"""The monitor report's HTML: one self-contained page, no script, every text from the log escaped.

Prompts and account names come from whoever sent the requests, so they are hostile: every text
goes through ``text`` (HTML-escaped; control characters and lone surrogates shown as ``\\x..``
escapes; nothing else changed), prompts are clipped (monitor.report) and wrapped however long
their lines, and right-to-left text is isolated (``dir=auto`` blocks, ``<bdi>`` inline) so that
an override character in one prompt cannot reorder the page around it. The page carries a
Content-Security-Policy that allows no script at all: should escaping ever fail, nothing runs.
The timeline is an SVG drawn here, its labels as text (searchable, read by screen readers).
"""

from __future__ import annotations

import datetime
import html
import re
from typing import TYPE_CHECKING, Any, Sequence

from monitor.templates import find_templates

if TYPE_CHECKING:
    from monitor.report import AccountView
    from monitor.scan import ScanResult, ScanRow

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_STYLE = """<style>
body{font:14px/1.45 system-ui,"DejaVu Sans",sans-serif;max-width:1100px;margin:2em auto;
 padding:0 1em;color:#111}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3;text-align:left}code{background:#f4f4f4}
.note{border-left:4px solid #999;padding:.3em .8em;background:#fafafa}
.warning{border-left-color:#b00}
section.account{border-top:2px solid #333;margin-top:2em}
.examples{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.prompt{white-space:pre-wrap;overflow-wrap:anywhere;max-height:20em;overflow:auto;
 border:1px solid #ddd;padding:.4em;margin:.2em 0 .8em;background:#fcfcfc}
.template{overflow-wrap:anywhere}.slot{color:#b00;font-weight:bold}
svg.timeline{max-width:100%;height:auto}
</style>"""
_CSP = ("<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">")


def text(value: Any) -> str:
    """Any value as HTML text: escaped, with control characters and lone surrogates made
    visible as escapes rather than passed on."""
    raw = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    raw = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", raw)
    return html.escape(raw, quote=True)


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else text(value)
    return f"{value:.3g}"


def when(seconds: float) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return f"{seconds:g} s"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def anchor(position: int) -> str:
    return f"account-{position}"


def render_page(result: "ScanResult", views: Sequence["AccountView"], *, source: str,
                log_changed: bool, max_flagged: int) -> str:
    """The whole page: summary and what a flag means, the accounts shown, the coordinated
    groups, then one section per shown account."""
    anchors = {view.row.account: anchor(i) for i, view in enumerate(views)}
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>", _CSP,
             f"<title>Extraction monitor report: {text(source)}</title>", _STYLE,
             "</head><body><h1>Extraction monitor report</h1>",
             _summary(result, source, log_changed),
             _overview(result, views, anchors, max_flagged),
             _groups(result, anchors)]
    parts += [_account(view, anchors, result) for view in views]
    parts.append("</body></html>")
    return "".join(parts)


def _summary(result: "ScanResult", source: str, log_changed: bool) -> str:
    stats, base = result.stats, result.baseline
    tested = ", ".join(str(s) for s in base.get("tested_checkpoints", [])) or "no checkpoint"
    skipped = stats.get("skipped") or {}
    skips = "; ".join(f"{text(k)}: {v}" for k, v in sorted(skipped.items())) or "none"
    warning = ("<p class='note warning' id='log-changed'>The log read differently the second "
               "time (for the timelines and prompts below) than when it was scanned: it was "
               "changed or appended to in between. Timelines and examples may not match the "
               "figures.</p>" if log_changed else "")
    return (
        f"<section id='summary'><h2>Summary</h2><p>Log <code>{text(source)}</code>: "
        f"{stats.get('requests', 0)} requests from {len(result.rows)} accounts; "
        f"<b>{result.flagged} flagged</b> at alpha {number(base.get('alpha'))} (tested at "
        f"{tested} requests). Late requests {stats.get('late', 0)}, scored early "
        f"{stats.get('early', 0)}; lines skipped: {skips}.</p>{warning}"
        "<div class='note' id='meaning'><p><b>What a flag means.</b> The account's traffic is "
        "unlike the benign baseline's: at one of its checkpoints, its prompts (without the "
        "template they share) were farther from benign prompts, or nearly copied each other, or "
        "opened conversations more often, than the benign accounts simulated from the baseline "
        "at the same number of requests, at a level that at most a share alpha of benign "
        "accounts reaches however long they live, provided the baseline is like them.</p>"
        "<p><b>What it does not mean.</b> A flag is evidence of traffic unlike the benign "
        "baseline, not proof of distillation or of harvesting: an unusual but legitimate use "
        "(a research group, an evaluation run, an app whose users are unlike the baseline's) "
        "can be flagged, and a careful campaign can go unflagged. Read it as a lead for a "
        "person to review, with the signals, the timeline and the prompts below.</p></div>"
        "</section>")


def _strongest(row: "ScanRow") -> str:
    if not row.reasons:
        return ""
    best = min(row.reasons, key=lambda r: r.get("p_value", 1.0))
    return (f"{text(best.get('signal'))} {number(best.get('value'))} (benign median "
            f"{number(best.get('benign_median'))})")


def _overview(result: "ScanResult", views: Sequence["AccountView"], anchors: dict[str, str],
              max_flagged: int) -> str:
    if not views:
        return ("<section id='accounts'><h2>Accounts</h2><p>No account was flagged and none "
                "showed any evidence (every risk is 0): nothing to review.</p></section>")
    rows = "".join(
        f"<tr><td><a href='#{anchors[v.row.account]}'><bdi>{text(v.row.account)}</bdi></a></td>"
        f"<td>{number(v.row.risk)}</td><td>{'yes' if v.row.flagged else 'no'}</td>"
        f"<td>{number(v.row.p_value)}</td><td>{v.row.requests}</td>"
        f"<td>{number(v.row.flagged_at)}</td>"
        f"<td>{'-' if v.row.cluster is None else '<bdi>' + text(v.row.cluster) + '</bdi>'}</td>"
        f"<td>{_strongest(v.row)}</td></tr>" for v in views)
    more = ""
    if result.flagged > max_flagged:
        more = (f"<p class='note'>{result.flagged - max_flagged} more flagged accounts are not "
                f"shown here: the risk file lists every account.</p>")
    return ("<section id='accounts'><h2>Accounts shown</h2><p>Every flagged account (highest "
            "risk first), then the unflagged accounts of highest risk.</p>"
            "<table id='accounts-table'><tr><th>account</th><th>risk</th><th>flagged</th>"
            "<th>p-value</th><th>requests</th><th>flagged at</th><th>group</th>"
            f"<th>strongest signal</th></tr>{rows}</table>{more}</section>")


def _groups(result: "ScanResult", anchors: dict[str, str]) -> str:
    groups: dict[str, list["ScanRow"]] = {}
    for row in result.rows:
        if row.cluster is not None:
            groups.setdefault(str(row.cluster), []).append(row)
    if not groups:
        return ""
    blocks = []
    for name, members in sorted(groups.items(), key=lambda g: (-max(r.risk for r in g[1]),
                                                               g[0])):
        flagged = sum(r.flagged for r in members)
        test = next((g for g in result.groups if g.id == name), None)
        tested = ("" if test is None else
                  f"; tested as one account: p-value {number(test.p_value)} over "
                  f"{test.requests} requests, {'flagged' if test.flagged else 'not flagged'}")
        items = "".join(f"<li>{_account_link(r, anchors)}: risk {number(r.risk)}, "
                        f"{r.requests} requests{', flagged' if r.flagged else ''}</li>"
                        for r in members)
        blocks.append(f"<div class='group'><h3>Group <bdi>{text(name)}</bdi>: {len(members)} "
                      f"accounts, {flagged} flagged{tested}</h3><ul>{items}</ul></div>")
    return ("<section id='groups'><h2>Coordinated groups</h2><p>Accounts linked by the "
            "templates they fill (at least two shared), each group tested as one account: its "
            "members' requests pooled.</p>" + "".join(blocks) + "</section>")


def _account_link(row: "ScanRow", anchors: dict[str, str]) -> str:
    name = f"<bdi>{text(row.account)}</bdi>"
    return f"<a href='#{anchors[row.account]}'>{name}</a>" if row.account in anchors else name


def _account(view: "AccountView", anchors: dict[str, str], result: "ScanResult") -> str:
    row = view.row
    status = ("not flagged" if not row.flagged else
              "flagged with its coordinated group" if row.flagged_by == "group" else
              f"flagged at its request {row.flagged_at}")
    return (f"<section class='account' id='{anchors[row.account]}'>"
            f"<h2>Account <bdi>{text(row.account)}</bdi></h2>"
            f"<p>Risk {number(row.risk)}, {status}, p-value {number(row.p_value)}; "
            f"{row.requests} requests from {text(row.first_seen)} to {text(row.last_seen)}."
            f"</p>{_group_line(row, anchors, result)}<h3>Timeline</h3>{timeline(view)}"
            f"{_activity(row)}"
            f"<h3>Signals</h3>{_signals(row)}<h3>Templates</h3>{_templates(view)}"
            f"<h3>Example prompts</h3>{_examples(view)}</section>")


def _activity(row: "ScanRow") -> str:
    """Volume and rhythm: shown to read a flag, never part of the test."""
    a = row.activity or {}
    if not a:
        return ""
    return (f"<p class='activity'>Activity (not tested: volume alone is no evidence): "
            f"{number(a.get('requests_per_hour'))} requests per hour, at most "
            f"{number(a.get('peak_per_minute'))} in one minute, burstiness "
            f"{number(a.get('burstiness'))} (1: random times; above: bursts), active in "
            f"{number(a.get('hours_active'))} hours of the day (UTC); "
            f"{number(a.get('elicitation'))} of its requests ask for reasoning steps or a fixed "
            f"format; {number(a.get('coverage'))} landed in a region of the embedding space it "
            f"had not visited (coverage growth), and its prompts sit {number(a.get('novelty'))} "
            f"from the nearest of its recent ones on average (0: copies, 1: nothing shared; "
            f"PRADA's distance).</p>")


def _group_line(row: "ScanRow", anchors: dict[str, str], result: "ScanResult") -> str:
    if row.cluster is None:
        return ""
    members = [r for r in result.rows if r.cluster == row.cluster and r.account != row.account]
    listed = ", ".join(_account_link(r, anchors) for r in members) or "no other account"
    return (f"<p class='group-line'>Coordinated group <bdi>{text(row.cluster)}</bdi>, with "
            f"{listed}.</p>")


def _signals(row: "ScanRow") -> str:
    if not row.reasons:
        return "<p>No checkpoint tested yet: no signal to show.</p>"
    cells = "".join(
        f"<tr><td><code>{text(r.get('signal'))}</code></td><td>{number(r.get('value'))}</td>"
        f"<td>{number(r.get('benign_median'))}</td><td>{number(r.get('p_value'))}</td>"
        f"<td>{number(r.get('checkpoint'))}</td><td>{text(r.get('meaning', ''))}</td></tr>"
        for r in row.reasons)
    return ("<table class='signals'><tr><th>signal</th><th>this account</th><th>benign median"
            "</th><th>p-value</th><th>at request</th><th>meaning</th></tr>" + cells + "</table>")


def _templates(view: "AccountView") -> str:
    sample = len(view.sample)
    found = find_templates(view.sample)
    if not found:
        return (f"<p>No template: no two of its first {sample} prompts in the log share a "
                f"prefix and suffix of 4 words or more.</p>")
    items = "".join(
        f"<li class='template'><code>{text(' '.join(t.prefix))}</code> <span class='slot'>"
        f"[...]</span> <code>{text(' '.join(t.suffix))}</code>: filled by {t.prompts} of "
        f"them</li>" for t in found)
    return (f"<p>The skeletons its first {sample} prompts in the log share (words before and "
            f"after what varies, [...]):</p><ul>{items}</ul>")


def _examples(view: "AccountView") -> str:
    columns = []
    for key, title in (("first", "Its first requests"),
                       ("reuse", "Requests that nearly copy a recent one")):
        ids = view.row.examples.get(key, [])
        cards = "".join(_prompt(view, i) for i in ids) or "<p>None.</p>"
        columns.append(f"<div class='column'><h4>{title}</h4>{cards}</div>")
    return f"<div class='examples'>{''.join(columns)}</div>"


def _prompt(view: "AccountView", request_id: str) -> str:
    found = view.prompts.get(request_id)
    head = f"<p>Request <code><bdi>{text(request_id)}</bdi></code>"
    if found is None:
        return head + ": not found when the log was read again.</p>"
    moment, prompt, length = found
    more = f" ({length - len(prompt)} more characters not shown)" if length > len(prompt) else ""
    return (f"{head}, {when(moment)}{more}</p><div class='prompt' dir='auto'>{text(prompt)}"
            f"</div>")


def timeline(view: "AccountView", width: int = 640, height: int = 140) -> str:
    """Requests per bucket of the account's active span as bars, its flagging moment as a red
    line (in the bucket where the requests counted reach ``flagged_at``), axes as text."""
    counts = view.buckets
    top = max(counts) or 1
    left, plot_h = 44, height - 40
    bar = (width - left - 8) / len(counts)
    bars = "".join(
        f"<rect x='{left + i * bar:.1f}' y='{8 + plot_h - c / top * plot_h:.1f}' "
        f"width='{max(bar - 1, 1):.1f}' height='{c / top * plot_h:.1f}' fill='#4a6fa5'/>"
        for i, c in enumerate(counts) if c)
    mark = ""
    if view.row.flagged and view.row.flagged_at:
        total, slot = 0, len(counts) - 1
        for i, c in enumerate(counts):
            total += c
            if total >= view.row.flagged_at:
                slot = i
                break
        x = left + (slot + 0.5) * bar
        side = "start" if x < width * 0.8 else "end"  # the label stays inside the picture
        mark = (f"<line x1='{x:.1f}' x2='{x:.1f}' y1='8' y2='{8 + plot_h}' stroke='#c00' "
                f"stroke-dasharray='4 2'/><text x='{x + (3 if side == 'start' else -3):.1f}' "
                f"y='18' fill='#c00' font-size='11' text-anchor='{side}'>flagged</text>")
    span = view.width * len(counts)
    label = (f"{sum(counts)} requests from {when(view.start)} to {when(view.start + span)}, "
             f"{len(counts)} bars of {_duration(view.width)} each")
    axis = (f"<line x1='{left}' x2='{width - 8}' y1='{8 + plot_h}' y2='{8 + plot_h}' "
            f"stroke='#333'/><text x='{left - 4}' y='14' text-anchor='end' font-size='11'>"
            f"{top}</text><text x='{left - 4}' y='{8 + plot_h}' text-anchor='end' "
            f"font-size='11'>0</text><text x='{left}' y='{height - 6}' font-size='11'>"
            f"{when(view.start)}</text><text x='{width - 8}' y='{height - 6}' "
            f"text-anchor='end' font-size='11'>{when(view.start + span)}</text>")
    return (f"<svg class='timeline' xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} "
            f"{height}' width='{width}' height='{height}' role='img'><title>{label}</title>"
            f"{axis}{bars}{mark}</svg><p class='timeline-text'>{label}.</p>")


def _duration(seconds: float) -> str:
    if seconds <= 0:
        return "no time (every request at one moment)"
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} seconds"
