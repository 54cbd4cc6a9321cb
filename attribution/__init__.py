"""The app layer: attributing a suspect's outputs to an index, reports, and the CLI."""

from attribution.attribute import AttributionOptions, attribute, attribute_file
from attribution.report import markdown_report, summary_text
from attribution.result import (AttributionResult, Match, MatchedPair, PairedComparison,
                                ResponseEvidence, Signal)

__all__ = [
    "AttributionOptions", "AttributionResult", "Match", "MatchedPair", "PairedComparison",
    "ResponseEvidence", "Signal", "attribute", "attribute_file", "markdown_report",
    "summary_text",
]
