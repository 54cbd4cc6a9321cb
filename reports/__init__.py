"""An attribution in the forms people read: the terminal summary (text), a Markdown report and a
self-contained HTML report. ``write_report`` picks the form by the file's extension."""

from __future__ import annotations

import os
from pathlib import Path

from attribution import AttributionResult
from fingerprint.atomic import atomic_write_bytes
from index.manifest import read_manifest
from reports.errors import ReportError
from reports.html import fraction_plot, highlight_shared, html_report, signal_plot
from reports.markdown import markdown_report
from reports.text import fmt_fixed, fmt_number, methodology, summary_text

HTML_SUFFIXES = (".html", ".htm")
MARKDOWN_SUFFIXES = (".md", ".markdown")


def check_report_path(path: str | os.PathLike[str]) -> None:
    """Fail before minutes of fingerprinting, not after, when the report could not be written."""
    parent = Path(path).parent
    if Path(path).suffix.lower() not in HTML_SUFFIXES + MARKDOWN_SUFFIXES:
        raise ReportError(f"{path}: a report is HTML (.html, .htm) or Markdown (.md, .markdown); "
                          f"the extension chooses")
    if not parent.is_dir():
        raise ReportError(f"{path}: directory {parent} does not exist")


def write_report(result: AttributionResult, path: str | os.PathLike[str]) -> None:
    """HTML for .html/.htm (with the library versions that built the index), Markdown for
    .md/.markdown; any other extension is refused.

    A file is written atomically (a reader never sees half a report; a symlink's target is
    replaced, not the link); a device or pipe (``/dev/stdout``) is written to directly."""
    check_report_path(path)
    target = Path(path)
    if target.suffix.lower() in HTML_SUFFIXES:
        versions = read_manifest(Path(result.index)).versions
        text = html_report(result, {"index_versions": versions})
    else:
        text = markdown_report(result)
    data = text.encode("utf-8")
    try:
        if target.exists() and not target.resolve().is_file():
            with open(target, "wb") as stream:
                stream.write(data)
        else:
            atomic_write_bytes(target.resolve() if target.is_symlink() else target, data)
    except OSError as exc:
        raise ReportError(f"{target}: cannot write the report ({exc.strerror or exc})") from None


__all__ = [
    "HTML_SUFFIXES", "MARKDOWN_SUFFIXES", "ReportError", "check_report_path", "fmt_fixed", "fmt_number",
    "fraction_plot", "highlight_shared", "html_report", "markdown_report", "methodology",
    "signal_plot",
    "summary_text", "write_report",
]
