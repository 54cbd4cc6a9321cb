"""Scoring a suspect's outputs against an index: signals (each defined once, in signals), the
reference models they are calibrated on, the teacher ranking, and the result. The pure
statistics are attribution.stats. Knows no HTTP, no CLI and no report formats."""

from attribution.attribute import AttributionOptions, attribute, attribute_file
from attribution.calibrated import Calibration, SuspectPrints, calibrate_against_references
from attribution.classes import PROVIDER, check_references_are_not_providers, style_classes
from attribution.errors import (AttributionError, ReferenceIsProviderError, ReferenceMatchError,
                                ReferenceNameError, TooFewClassesError)
from attribution.evidence import PromptEvidence, ReferenceAnswer, prompt_evidence, strongest_first
from attribution.references import (ReferenceData, choose_references, load_reference_files,
                                    match_note, matched_references,
                                    reference_from_file, reference_from_group,
                                    reference_from_records, stored_references)
from attribution.result import (AttributionResult, Match, MatchedPair, PairedComparison,
                                ResponseEvidence, Signal)
from attribution.share import provider_shares
from attribution.signals import SIGNALS, SIGNALS_BY_NAME, SignalSpec, signal_spec
from attribution.style_model import RelativeAttributor, StyleClassifier, TargetAttribution
from attribution.teacher import TeacherRanking, TeacherScore, rank_teachers
from attribution.partners import Partner, PartnerEvidence, PartnerMatch, ProviderProfile
from attribution.provenance import library_versions, provenance
from attribution.verdict import ALPHA, Verdict, verdict_of
from attribution.watermark import join_watermark

__all__ = [
    "ALPHA", "PromptEvidence", "ReferenceAnswer", "Verdict", "library_versions", "prompt_evidence",
    "provenance", "strongest_first", "verdict_of",
    "Partner", "PartnerEvidence", "PartnerMatch", "ProviderProfile",
    "PROVIDER", "SIGNALS", "SIGNALS_BY_NAME", "AttributionError", "AttributionOptions",
    "AttributionResult", "Calibration", "Match", "MatchedPair", "PairedComparison",
    "ReferenceData", "ReferenceIsProviderError", "ReferenceMatchError", "ReferenceNameError",
    "match_note", "matched_references", "RelativeAttributor",
    "ResponseEvidence", "Signal", "SignalSpec", "StyleClassifier", "SuspectPrints",
    "TargetAttribution", "TeacherRanking", "TeacherScore", "TooFewClassesError", "attribute",
    "attribute_file", "calibrate_against_references", "check_references_are_not_providers",
    "choose_references", "join_watermark", "load_reference_files", "provider_shares",
    "rank_teachers", "reference_from_file", "reference_from_group", "reference_from_records",
    "signal_spec", "stored_references", "style_classes",
]
