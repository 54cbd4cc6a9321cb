"""The scan's HTML report (``monitor scan --report``, monitor.report): a second streaming pass
over the log that shows each flagged account's timeline, signals, templates, example prompts
and coordinated group; hostile prompts stay text; what cannot work is refused before the scan.

The real pipeline runs on the simulated traffic of tests/monitor_fixtures.py;
the hostile-text cases use a hand-made log and scan result, so what they feed the page is known
to the byte. The browser test renders the page in a real headless Chromium (conftest.browse)."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import pytest

from conftest import browse, needs_chromium, write_jsonl
from monitor import MonitorReportError, check_report_path, scan_file, write_report
from monitor.report import BUCKETS, TEMPLATE_SAMPLE, collect, shown_rows
from monitor.report_html import text
from monitor.scan import ScanResult, ScanRow, iso_time
from monitor.templates import Edges, find_templates
from monitor_fixtures import invoke, one_error_line, served_log, write_lines

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline_dir, log_lines, tiny_baseline

T0 = 1_795_000_000
HOSTILE = ("<script>parent.document.title='pwned';window.top.ran=1</script>"
           "<img src=x onerror=\"window.top.ran=2\"> \u202eevil override\u202c after")
REASONS = ({"signal": "shift", "value": 0.0412, "benign_median": 0.0051, "p_value": 0.0004,
            "checkpoint": 30, "meaning": "MMD^2 between the account's prompts and benign"},
           {"signal": "reuse", "value": 0.9, "benign_median": 0.02, "p_value": 0.0002,
            "checkpoint": 30, "meaning": "share of near-copies"})


def hand_made(tmp_path: Path, account: str = "camp<b>1</b>") -> tuple[Path, ScanResult]:
    """A log of a templated campaign (one hostile prompt among its first requests), an
    unflagged account of the same group, a benign account never shown, and their scan rows."""
    rows = [{"id": f"c{i}", "account": account, "timestamp": T0 + 60 * i,
             "prompt": f"You are a translator. Translate into French: sentence {i} about cats. "
                       f"Reply with JSON only."} for i in range(40)]
    rows.insert(3, {"id": "evil", "account": account, "timestamp": T0 + 30, "prompt": HOSTILE})
    rows.append({"id": "long", "account": account, "timestamp": T0 + 45,
                 "prompt": "A" * 5000 + " end"})
    rows += [{"id": f"h{i}", "account": "helper", "timestamp": T0 + 500 * i,
              "prompt": f"question {i} about bread"} for i in range(8)]
    rows += [{"id": f"b{i}", "account": "bystander", "timestamp": T0 + 9 * i,
              "prompt": f"private message {i} of a benign user"} for i in range(5)]
    log = write_jsonl(tmp_path / "log.jsonl", rows)
    result = ScanResult(
        [ScanRow(account, 1.0, True, 0.0004, 42, 30, "g7", REASONS,
                 {"first": ["c0", "evil", "long"], "reuse": ["c1", "c2", "gone"]},
                 iso_time(T0), iso_time(T0 + 60 * 39)),
         ScanRow("helper", 0.4, False, 0.2, 8, None, "g7", REASONS[:1],
                 {"first": ["h0", "h1", "h2"], "reuse": []}, iso_time(T0),
                 iso_time(T0 + 3500)),
         ScanRow("bystander", 0.0, False, None, 5, None, None, (),
                 {"first": ["b0", "b1", "b2"], "reuse": []}, iso_time(T0), iso_time(T0 + 36))],
        {"requests": len(rows), "late": 0, "early": 0, "skipped": {}},
        {"alpha": 0.003, "tested_checkpoints": [30, 60]})
    return log, result


def section(page: str, anchor: str) -> str:
    start = page.index(f"id='{anchor}'")
    end = page.find("<section class='account'", start + 1)
    return page[start:end if end > 0 else len(page)]


# the real pipeline ------------------------------------------------------------------------------

@pytest.mark.slow
def test_scan_with_report_through_the_cli_shows_every_flagged_account(log_lines, baseline_dir,
                                                                      tmp_path):
    log = write_lines(tmp_path / "requests.jsonl", [line for _, line in log_lines])
    risk, page_path = tmp_path / "risk.jsonl", tmp_path / "monitor.html"
    scanned = invoke("monitor", "scan", log, "--baseline", baseline_dir, "--out", risk,
                     "--report", page_path)
    assert scanned.exit_code == 0, scanned.output
    assert f"report      {page_path}" in scanned.stdout
    rows = [json.loads(line) for line in risk.read_text().splitlines()]
    flagged = [r for r in rows if r["flagged"]]
    assert flagged
    page = page_path.read_text(encoding="utf-8")
    assert f"<b>{len(flagged)} flagged</b> at alpha 0.003 (tested at 30, 60 requests)" in page
    assert "not proof of distillation" in page and "id='log-changed'" not in page
    prompts = {}
    for _, line in log_lines:
        record = json.loads(line)
        prompts[record["id"]] = record["request"]["messages"][-1]["content"]
    shown = [r for r in rows if r["flagged"]] + \
        [r for r in rows if not r["flagged"] and r["risk"] > 0][:5]
    assert page.count("<section class='account'") == len(shown)
    for position, row in enumerate(shown):
        part = section(page, f"account-{position}")
        assert f"Account <bdi>{html.escape(row['account'])}</bdi>" in part
        counted = re.search(r"<p class='timeline-text'>(\d+) requests from", part)
        assert counted and int(counted.group(1)) == row["requests"]  # every request in a bar
        assert part.count("<rect ") >= 1 and "<svg class='timeline'" in part
        for reason in row["reasons"]:
            assert f"<code>{reason['signal']}</code>" in part
        for request_id in row["examples"]["first"] + row["examples"]["reuse"]:
            assert f"Request <code><bdi>{html.escape(request_id)}</bdi></code>, " in part
            assert html.escape(prompts[request_id][:2000]).replace("\x0b", "\\x0b") in part
    # the group's wrappers: an account flagged for reuse shows the skeleton its prompts share
    reusing = [i for i, r in enumerate(shown) if r["examples"]["reuse"]]
    assert any("class='template'" in section(page, f"account-{i}") for i in reusing)


@pytest.mark.slow
def test_the_second_pass_keeps_only_what_the_page_shows(log_lines, baseline_dir, tmp_path):
    from monitor import Baseline

    log = write_lines(tmp_path / "requests.jsonl", [line for _, line in log_lines])
    result = scan_file(log, Baseline.load(baseline_dir))
    rows = shown_rows(result, max_flagged=3, top_unflagged=2)
    views, stats = collect(log, rows)
    assert stats.requests == result.stats["requests"]
    assert list(views) == [r.account for r in rows] and len(rows) <= 5 < len(result.rows)
    for view in views.values():
        wanted = set(view.row.examples["first"]) | set(view.row.examples["reuse"])
        assert set(view.prompts) == wanted  # every example found, nothing else kept
        assert len(view.sample) == min(TEMPLATE_SAMPLE, view.row.requests)
        assert len(view.buckets) == BUCKETS and sum(view.buckets) == view.row.requests
        assert view.outside == 0


# hostile text -----------------------------------------------------------------------------------

def test_hostile_prompts_and_names_are_text_and_nothing_can_run(tmp_path):
    log, result = hand_made(tmp_path, account="camp<b>1</b>\u202e\x07")
    write_report(log, result, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "onerror=" not in page.replace("onerror=&quot;", "")  # only as escaped text
    assert html.escape(HOSTILE) in page
    assert "Account <bdi>camp&lt;b&gt;1&lt;/b&gt;\u202e\\x07</bdi>" in page
    # the reader refuses a lone surrogate in a log; one from a caller's own row is shown
    assert text("a\ud800<") == "a\\ud800&lt;"
    assert "default-src 'none'" in page  # no script may run even if escaping failed
    assert "<div class='prompt' dir='auto'>" in page  # right-to-left text isolated
    assert "(3004 more characters not shown)" in page  # 5004 characters, 2000 shown
    assert "gone</bdi></code>: not found when the log was read again" in page
    assert "private message" not in page  # an account not shown leaves no prompt on the page


def test_templates_timeline_and_group_of_a_flagged_account(tmp_path):
    log, result = hand_made(tmp_path, account="camp")
    summary = write_report(log, result, tmp_path / "r.html")
    assert (summary.accounts, summary.log_changed) == (2, False)  # bystander: risk 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    camp, helper = section(page, "account-0"), section(page, "account-1")
    assert ("<code>You are a translator. Translate into French: sentence</code> <span "
            "class='slot'>[...]</span> <code>about cats. Reply with JSON only.</code>: filled "
            "by 23 of them") in camp  # the first 24 in the log: the hostile one fills none
    assert "<p class='timeline-text'>42 requests from 2026-11-18 " in camp
    assert "stroke='#c00'" in camp and "stroke='#c00'" not in helper  # flagged: its moment
    assert "No template" in helper
    assert "Coordinated group <bdi>g7</bdi>, with <a href='#account-1'><bdi>helper</bdi>" in camp
    groups = page[page.index("id='groups'"):page.index("<section class='account'")]
    assert "Group <bdi>g7</bdi>: 2 accounts, 1 flagged" in groups
    assert "<td><code>reuse</code></td><td>0.9</td><td>0.02</td><td>0.0002</td>" in camp


def test_find_templates_needs_a_shared_skeleton_of_four_words():
    wrapped = [Edges.of(f"Customer says: {m} Please answer politely.") for m in
               ("my order is late", "where is my parcel", "refund please")]
    free = [Edges.of(t) for t in ("what is the capital of France", "what is the time",
                                  "tell me a joke")]
    found = find_templates(wrapped + free)
    assert [(t.prefix, t.suffix, t.prompts) for t in found] == [
        (("Customer", "says:"), ("Please", "answer", "politely."), 3)]
    assert find_templates(free) == []  # "what is the": three words, not a template
    assert find_templates([Edges.of("same words here now")] * 3) == []  # nothing varies


def test_a_log_changed_between_the_passes_is_said_on_the_page(tmp_path):
    log, result = hand_made(tmp_path)
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "new", "account": "camp<b>1</b>", "timestamp": T0 + 99_999,
                            "prompt": "appended after the scan"}) + "\n")
    assert write_report(log, result, tmp_path / "r.html").log_changed
    assert "id='log-changed'" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_a_failed_report_leaves_the_old_page_and_no_temporary_file(tmp_path):
    log, result = hand_made(tmp_path)
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"id": "broken", "account": \n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.html").write_text("the previous report")
    with pytest.raises(Exception, match=r"log.jsonl line 56: malformed JSON"):
        write_report(log, result, out / "r.html")
    assert (out / "r.html").read_text() == "the previous report"
    assert os.listdir(out) == ["r.html"]


# what a user can get wrong: refused before the scan ---------------------------------------------

def test_report_with_standard_input_is_refused_before_any_work(tmp_path):
    risk = tmp_path / "risk.jsonl"
    result = invoke("monitor", "scan", "-", "--baseline", tmp_path / "no-baseline", "--out", risk,
                    "--report", tmp_path / "r.html")
    line = one_error_line(result)  # not the missing baseline: checked first
    assert line == (f"Error: {tmp_path / 'r.html'}: the report reads the log a second time, and "
                    f"standard input ('-') can be read only once; save the log to a file and "
                    f"scan that, or scan without --report")
    assert not risk.exists() and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("name, message", [
    ("report.txt", "the monitor's report is an HTML page; name it .html or .htm"),
    ("missing/report.html", "directory {dir} does not exist"),
])
def test_a_report_path_that_cannot_be_written_is_refused_before_the_scan(name, message,
                                                                         tiny_baseline,
                                                                         tmp_path):
    log = served_log(tmp_path / "log.jsonl")
    risk, report = tmp_path / "risk.jsonl", tmp_path / name
    line = one_error_line(invoke("monitor", "scan", log, "--baseline", tiny_baseline, "--out",
                                 risk, "--report", report))
    assert line == f"Error: {report}: " + message.format(dir=report.parent)
    assert not risk.exists()  # refused before the scan, not after it
    (tmp_path / "dir.html").mkdir()
    with pytest.raises(MonitorReportError, match="is a directory"):
        check_report_path(tmp_path / "dir.html", log)


def test_a_scan_without_flags_writes_a_page_that_says_so(tiny_baseline, tmp_path):
    log = served_log(tmp_path / "log.jsonl")
    result = invoke("monitor", "scan", log, "--baseline", tiny_baseline, "--out",
                    tmp_path / "risk.jsonl", "--report", tmp_path / "r.html", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] == str(tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<b>0 flagged</b>" in page and "nothing to review" in page


# a real browser ---------------------------------------------------------------------------------

HARNESS = """<!doctype html><html><head><title>harness</title></head><body>
<iframe id="report" src="report.html" style="width:1200px;height:900px"></iframe>
<pre id="result">pending</pre>
<script>
function visible(el) {
  if (!el) return false;
  var r = el.getBoundingClientRect(), s = el.ownerDocument.defaultView.getComputedStyle(el);
  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
}
document.getElementById('report').addEventListener('load', function () {
  var doc = this.contentDocument, out = {};
  var account = doc.getElementById('account-0');
  out.section = visible(account) ? account.querySelector('h2').innerText : null;
  var svg = account.querySelector('svg.timeline');
  out.timeline = visible(svg);
  out.bars = Array.from(svg.querySelectorAll('rect')).filter(visible).length;
  out.labels = Array.from(svg.querySelectorAll('text')).map(function (t) {
    return t.textContent; });
  out.prompts = Array.from(account.querySelectorAll('.prompt')).filter(visible)
    .map(function (p) { return p.innerText; });
  out.scripts = doc.querySelectorAll('script').length;
  out.images = doc.querySelectorAll('img').length;
  setTimeout(function () {
    out.ran = window.ran || null;
    out.title = document.title;
    document.getElementById('result').textContent = JSON.stringify(out);
  }, 500);
});
</script></body></html>"""


@pytest.mark.slow
@needs_chromium
def test_the_report_renders_in_a_real_browser_and_a_script_prompt_stays_text(tmp_path):
    log, result = hand_made(tmp_path)
    write_report(log, result, tmp_path / "report.html")
    (tmp_path / "harness.html").write_text(HARNESS, encoding="utf-8")
    seen = browse(tmp_path)
    assert seen["section"] == "Account camp<b>1</b>"  # the name as text, not markup
    assert seen["timeline"] and seen["bars"] >= 20
    assert "flagged" in seen["labels"] and any(label.endswith("UTC") for label in seen["labels"])
    assert any(p.startswith("<script>parent.document.title='pwned'") for p in seen["prompts"])
    assert any("<img src=x onerror=" in p for p in seen["prompts"])
    assert seen["scripts"] == 0 and seen["images"] == 0
    assert seen["ran"] is None and seen["title"] == "harness"  # nothing in a prompt ran
