"""An attribution in the forms people read: the terminal summary (text), a Markdown report, a
self-contained HTML report, the same as PDF, and the per-prompt evidence as CSV.
``write_report`` picks the form by the file's extension."""

from __future__ import annotations

import os
from pathlib import Path

from attribution import AttributionResult
from fingerprint.atomic import atomic_write_bytes
from index.manifest import read_manifest
from reports.errors import ReportError
from reports.evidence import evidence_csv, evidence_rows, highlight_shared
from reports.html import html_report
from reports.markdown import markdown_report
from reports.pdf import html_to_pdf, require_weasyprint
from reports.plots import fraction_plot, require_matplotlib, signal_plot
from reports.text import fmt_fixed, fmt_number, methodology, methodology_sections, summary_text

HTML_SUFFIXES = (".html", ".htm")
MARKDOWN_SUFFIXES = (".md", ".markdown")
PDF_SUFFIXES = (".pdf",)
CSV_SUFFIXES = (".csv",)
# Rows of the per-answer table a PDF prints (strongest evidence first; the CSV has them all).
PRINTED_TABLE_ROWS = 100
REPORT_SUFFIXES = HTML_SUFFIXES + MARKDOWN_SUFFIXES + PDF_SUFFIXES + CSV_SUFFIXES


def check_report_path(path: str | os.PathLike[str]) -> None:
    """Fail before minutes of fingerprinting, not after, when the report could not be written."""
    parent = Path(path).parent
    if Path(path).suffix.lower() not in REPORT_SUFFIXES:
        raise ReportError(f"{path}: a report is HTML (.html, .htm), PDF (.pdf), Markdown (.md, "
                          f".markdown) or the per-prompt evidence as CSV (.csv); the extension "
                          f"chooses")
    if not parent.is_dir():
        raise ReportError(f"{path}: directory {parent} does not exist")
    if Path(path).suffix.lower() in HTML_SUFFIXES + PDF_SUFFIXES:
        require_matplotlib()
    if Path(path).suffix.lower() in PDF_SUFFIXES:
        require_weasyprint()


def render_report(result: AttributionResult, suffix: str) -> bytes:
    """The report's bytes in the format an extension names (see ``check_report_path``)."""
    suffix = suffix.lower()
    if suffix in HTML_SUFFIXES + PDF_SUFFIXES:
        versions = read_manifest(Path(result.index)).versions
        if suffix in PDF_SUFFIXES:
            return html_to_pdf(html_report(result, {"index_versions": versions},
                                           table_rows=PRINTED_TABLE_ROWS))
        return html_report(result, {"index_versions": versions}).encode("utf-8")
    if suffix in CSV_SUFFIXES:
        return evidence_csv(result).encode("utf-8")
    return markdown_report(result).encode("utf-8")


def write_report(result: AttributionResult, path: str | os.PathLike[str]) -> None:
    """Write the report the extension names; any other extension is refused.

    A file is written atomically (a reader never sees half a report; a symlink's target is
    replaced, not the link); a device or pipe (``/dev/stdout``) is written to directly."""
    check_report_path(path)
    target = Path(path)
    data = render_report(result, target.suffix)
    try:
        if target.exists() and not target.resolve().is_file():
            with open(target, "wb") as stream:
                stream.write(data)
        else:
            atomic_write_bytes(target.resolve() if target.is_symlink() else target, data)
    except OSError as exc:
        raise ReportError(f"{target}: cannot write the report ({exc.strerror or exc})") from None


__all__ = [
    "CSV_SUFFIXES", "HTML_SUFFIXES", "MARKDOWN_SUFFIXES", "PDF_SUFFIXES", "REPORT_SUFFIXES",
    "ReportError", "check_report_path", "evidence_csv", "evidence_rows", "fmt_fixed",
    "fmt_number", "fraction_plot", "highlight_shared", "html_report", "html_to_pdf",
    "markdown_report", "methodology", "methodology_sections", "render_report", "signal_plot",
    "summary_text", "write_report",
]
