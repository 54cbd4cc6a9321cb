"""Plots a reader can check on paper: matplotlib figures embedded as SVG.

Each calibrated signal is drawn as a strip: every reference model a labelled grey dot, the
suspect a red diamond, on an axis with ticks, so the claim "the suspect is (or is not) unlike the
references" can be read off the page without hovering. The derived fraction gets its point and
95% interval on [0, 1]. Text stays text in the SVG (``svg.fonttype: none``): it can be searched,
selected and read by a screen reader, and the report needs no font files.

matplotlib is an optional dependency (the ``[report]`` extra); without it these functions raise a
ReportError that says how to install it.
"""

from __future__ import annotations

import io
import re

from attribution import Signal
from reports.errors import ReportError

INSTALL_HINT = "pip install 'output-fingerprint[report]'"
_WIDTH_IN = 7.5
_XML_HEADER = re.compile(r"^.*?(?=<svg)", re.S)


def require_matplotlib() -> None:
    """Fail with the install hint now, not after minutes of fingerprinting."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError(f"HTML and PDF reports plot with matplotlib, which is not installed: "
                          f"{INSTALL_HINT}") from None


def _pyplot():
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> str:
    buffer = io.StringIO()
    with _rc():
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    return _XML_HEADER.sub("", buffer.getvalue(), count=1)


def _rc():
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fingerprint"})


def signal_plot(signal: Signal) -> str:
    """Strip plot of one signal: each reference labelled, the suspect in red ("" if the signal
    has no value or no reference values)."""
    null = signal.reference_values
    if signal.value is None or not null:
        return ""
    plt = _pyplot()
    points = sorted(null.items(), key=lambda item: item[1])
    with _rc():
        fig, ax = plt.subplots(figsize=(_WIDTH_IN, 0.45 + 0.22 * (len(points) + 1)))
        names = [name for name, _ in points] + ["suspect"]
        values = [v for _, v in points] + [signal.value]
        colours = ["#777777"] * len(points) + ["#cc0000"]
        markers = ["o"] * len(points) + ["D"]
        for y, (value, colour, marker) in enumerate(zip(values, colours, markers)):
            ax.scatter([value], [y], color=colour, marker=marker, s=36, zorder=3)
        ax.set_yticks(range(len(names)), labels=names, fontsize=8)
        ax.get_yticklabels()[-1].set_color("#cc0000")
        ax.axvline(signal.value, color="#cc0000", linewidth=0.8, linestyle=":")
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel(signal.name, fontsize=8)
        ax.set_ylim(-0.7, len(names) - 0.3)
        fig.tight_layout()
    return _svg(fig)


def fraction_plot(fraction: float | None, ci: tuple[float, float] | None) -> str:
    """The derived fraction on [0, 1] with its 95% interval ("" without a fraction)."""
    if fraction is None:
        return ""
    plt = _pyplot()
    with _rc():
        fig, ax = plt.subplots(figsize=(_WIDTH_IN, 0.9))
        if ci is not None:
            ax.plot(list(ci), [0, 0], color="#cc0000", linewidth=6, alpha=0.35,
                    solid_capstyle="butt", label="95% interval")
        ax.scatter([fraction], [0], color="#cc0000", marker="D", s=40, zorder=3)
        ax.set_xlim(0, 1)
        ax.set_yticks([])
        ax.set_xticks([i / 10 for i in range(11)])
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_xlabel("derived fraction (lower bound) and its 95% interval", fontsize=8)
        fig.tight_layout()
    return _svg(fig)
