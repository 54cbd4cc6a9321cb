"""The HTML report as PDF, for a dispute that runs on paper.

WeasyPrint lays the page out with the report's print styles (A4, numbered pages, pairs and plots
kept whole on a page); the plots are vector SVG, so they stay sharp at any zoom. WeasyPrint runs
no JavaScript, which the report needs only for sorting the per-prompt table on screen.
WeasyPrint is an optional dependency (the ``[report]`` extra).
"""

from __future__ import annotations

import logging

from reports.errors import ReportError
from reports.plots import INSTALL_HINT


def require_weasyprint() -> None:
    """Fail with the install hint now, not after minutes of fingerprinting."""
    _weasyprint()


def html_to_pdf(page: str) -> bytes:
    """The PDF of a self-contained HTML page (nothing is fetched: no base URL is given)."""
    weasyprint = _weasyprint()
    quiet = logging.getLogger("weasyprint")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns about screen-only CSS (cursor) it ignores
    try:
        return weasyprint.HTML(string=page).write_pdf()
    finally:
        quiet.setLevel(level)


def _weasyprint():
    try:
        import weasyprint
    except ImportError:
        raise ReportError(f"PDF reports are written with WeasyPrint, which is not installed: "
                          f"{INSTALL_HINT}") from None
    except OSError as exc:  # its system libraries (Pango) are missing
        raise ReportError(f"WeasyPrint cannot load its system libraries ({exc}); install Pango "
                          f"(Debian: apt-get install libpango-1.0-0 libpangoft2-1.0-0)") from None
    return weasyprint
