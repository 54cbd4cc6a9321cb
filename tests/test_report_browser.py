"""The dispute report as its readers see it: rendered by a real headless Chromium (the HTML) and
by a real PDF renderer (the PDF's first page turned into pixels), and the CSV read back.

The browser check loads the report in an iframe of a harness page served from 127.0.0.1 (same
origin, so the harness may inspect it), and asks the browser itself whether the verdict, the
methodology, every reference's label on the plots and the evidence table are laid out visibly
(non-empty boxes, not hidden), and whether a click on a column header sorts the table.
"""

import csv
import io
import json
import re
import shutil

import pytest
from click.testing import CliRunner

from cli import main
from conftest import browse, needs_chromium, styled_rows, write_jsonl
from fingerprint import Fingerprinter
from index import add_reference, build_index

pytestmark = pytest.mark.slow
REFERENCES = [f"model{style}" for style in range(1, 7)]

HARNESS = """<!doctype html><html><body>
<iframe id="report" src="report.html" style="width:1200px;height:900px"></iframe>
<pre id="result">pending</pre>
<script>
function visible(el) {
  if (!el) return false;
  var r = el.getBoundingClientRect(), view = el.ownerDocument.defaultView;
  var s = view.getComputedStyle(el);
  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'
    && parseFloat(s.opacity) > 0;
}
document.getElementById('report').addEventListener('load', function () {
  var doc = this.contentDocument, out = {};
  var verdict = doc.getElementById('verdict');
  out.verdict = visible(verdict) ? verdict.innerText : null;
  var method = doc.getElementById('methodology');
  out.methodology = visible(method) ? method.innerText : null;
  var share = doc.getElementById('signal-provider_share');
  out.labels = Array.from(share.querySelectorAll('svg text')).filter(visible)
    .map(function (t) { return t.textContent.trim(); });
  var table = doc.getElementById('evidence-table');
  out.table_visible = visible(table);
  out.rows = Array.from(table.tBodies[0].rows).filter(visible).length;
  var header = Array.from(table.tHead.rows[0].cells).find(function (th) {
    return th.textContent === 'Jaccard'; });
  var column = header.cellIndex;
  header.click();
  out.sorted = Array.from(table.tBodies[0].rows).map(function (row) {
    return row.cells[column].getAttribute('data-sort'); });
  document.getElementById('result').textContent = JSON.stringify(out);
});
</script></body></html>"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A calibrated attribution written as HTML, PDF and CSV through the CLI."""
    tmp = tmp_path_factory.mktemp("report")
    fingerprinter = Fingerprinter()
    index = tmp / "idx"
    build_index(index, [write_jsonl(tmp / "p.jsonl", styled_rows(0, 40))], fingerprinter)
    for name in REFERENCES:
        add_reference(index, name, [write_jsonl(tmp / f"{name}.jsonl",
                                                styled_rows(int(name[-1]), 40))], fingerprinter)
    suspect = write_jsonl(tmp / "suspect.jsonl", styled_rows(0, 30) + styled_rows(7, 40)[30:])
    outputs = {suffix: tmp / f"report.{suffix}" for suffix in ("html", "pdf", "csv")}
    args = ["attribute", str(suspect), "--index", str(index), "--json"]
    for path in outputs.values():
        args += ["--report", str(path)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output), outputs


@needs_chromium
def test_the_report_reads_in_a_real_browser(reports, tmp_path):
    data, outputs = reports
    shutil.copy(outputs["html"], tmp_path / "report.html")
    (tmp_path / "harness.html").write_text(HARNESS, encoding="utf-8")
    seen = browse(tmp_path)
    assert data["verdict"]["sentence"] in " ".join(seen["verdict"].split())
    assert "The null hypothesis" in seen["methodology"]
    assert "What the p-value does not say" in seen["methodology"]
    assert set(REFERENCES) | {"suspect"} <= set(seen["labels"])
    assert any(re.fullmatch(r"0\.\d+", label) for label in seen["labels"])  # axis ticks
    assert seen["table_visible"] and seen["rows"] == len(data["responses"]) == 40
    keys = [float(v) if v else float("-inf") for v in seen["sorted"]]
    assert keys == sorted(keys, reverse=True) and keys[0] > keys[-1]


def test_the_pdf_is_a_real_pdf_whose_first_page_shows_the_verdict(reports, tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    data, outputs = reports
    raw = outputs["pdf"].read_bytes()
    assert raw.startswith(b"%PDF-")
    document = pdfium.PdfDocument(raw)
    assert len(document) >= 2
    first = document[0]
    text = " ".join(first.get_textpage().get_text_range().split())
    assert data["verdict"]["sentence"] in text and "Attribution report" in text
    image = first.render(scale=1).to_pil().convert("L")
    image.save(tmp_path / "page1.png")
    histogram = image.histogram()
    ink = sum(histogram[:128]) / sum(histogram)
    assert 0.005 < ink < 0.5  # text and plots, neither a blank nor a black page
    whole = " ".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    for label in REFERENCES + ["Methodology", "Provenance", "Strongest evidence"]:
        assert label in whole


def test_the_csv_holds_every_answer_with_each_reference(reports):
    data, outputs = reports
    rows = list(csv.DictReader(io.StringIO(outputs["csv"].read_text(encoding="utf-8"))))
    assert len(rows) == len(data["responses"]) == 40
    assert {f"jaccard_{name}" for name in REFERENCES} <= set(rows[0])
    by_id = {p["suspect_id"]: p for p in data["prompts"]}
    for row in rows:
        expected = by_id[row["suspect_id"]]
        assert row["served_id"] == (expected["served_id"] or "")
        assert (float(row["jaccard"]) if row["jaccard"] else None) == expected["jaccard"]


def test_a_printed_copy_may_shorten_the_table_and_says_where_the_whole_is(reports):
    import hashlib

    data, outputs = reports
    page = outputs["html"].read_text(encoding="utf-8")
    digest = hashlib.sha256(outputs["csv"].read_bytes()).hexdigest()
    assert f"sha256 <code>{digest}</code>" in page  # the CSV a reader holds can be checked
    from reports import html_report

    result = _result_of(outputs)
    short = html_report(result, table_rows=5)
    table = short[short.index("id='evidence-table'"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + 5
    assert "lists the 5 answers with the strongest evidence of 40" in short
    assert f"sha256 <code>{digest}</code>" in short


def _result_of(outputs):
    from attribution import attribute_file

    index = outputs["html"].parent / "idx"
    return attribute_file(index, outputs["html"].parent / "suspect.jsonl")
