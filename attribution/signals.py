"""Every signal an attribution reports, defined once: its name, what it means, how it is computed
and how it is calibrated against the reference models.

The scoring code (attribution.attribute, attribution.calibrated) and every report take names and
descriptions from here, so a signal reads the same in the JSON, the terminal and the report.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SignalSpec:
    """A model-level statistic of a suspect's responses."""

    name: str
    description: str  # what the value is, in one line (may hold {placeholders} describe fills)
    computed: str  # how it is computed from the responses
    calibration: str  # how its p-value is found among the references ("" when it has none)

    def describe(self, **values: object) -> str:
        """The description with its placeholders (``threshold``, ``key``...) filled in."""
        return self.description.format(**values)


PROVIDER_SHARE = SignalSpec(
    "provider_share",
    "share of responses a style classifier over provider and references assigns to the provider",
    "a linear SVM on TF-IDF-weighted style fingerprints, one class for the provider (one per "
    "provider when several are ranked as teachers) and one per reference, trained on their "
    "answers to the suspect's prompts (attribution.share)",
    "each reference scored the same way with its own class left out; the p-value is the "
    "share's rank among theirs, (1 + references at least as high) / (1 + references): valid "
    "when the suspect and the references are exchangeable, never below 1/(references + 1)")
MEAN_PAIRED_JACCARD = SignalSpec(
    "mean_paired_jaccard",
    "mean word 3-gram Jaccard to the provider's answer to the same prompt",
    "MinHash estimate of the word 3-gram Jaccard, averaged over the responses whose prompt the "
    "provider served; pairs where either answer has no word at all take no part",
    "each reference's mean on the prompts it shares with the suspect and the provider; "
    "Student-t prediction interval")
MEAN_PAIRED_COSINE = SignalSpec(
    "mean_paired_cosine",
    "mean embedding cosine to the provider's answer to the same prompt",
    "embedding cosine, averaged over the responses whose prompt the provider served",
    "as mean_paired_jaccard, against the references stored with embeddings")
NEAR_DUPLICATE_RATE = SignalSpec(
    "near_duplicate_rate",
    "share of responses whose closest served response (any prompt) has estimated Jaccard >= "
    "{threshold}",
    "the closest served response by MinHash search over the whole index; responses with no word "
    "at all (emoji, symbols) take no part: every empty shingle set looks identical",
    "exact rank among the references, (1 + #{references >= value}) / (R + 1)")
MEAN_BEST_JACCARD = SignalSpec(
    "mean_best_jaccard",
    "mean estimated Jaccard of the closest served response, any prompt",
    "MinHash search over the whole index", "")
MEAN_BEST_COSINE = SignalSpec(
    "mean_best_cosine",
    "mean embedding cosine of the closest served response, any prompt",
    "embedding search over the whole index", "")
WATERMARK = SignalSpec(
    "watermark",
    "green share of distinct pairs under key {key} ({detail}); exact binomial, Bonferroni over "
    "marks",
    "the keyed green lists of fingerprint.watermark, each distinct pair scored once",
    "exact binomial tail (no references needed); Bonferroni over the marks tested")

SIGNALS = (PROVIDER_SHARE, MEAN_PAIRED_JACCARD, MEAN_PAIRED_COSINE, NEAR_DUPLICATE_RATE,
           MEAN_BEST_JACCARD, MEAN_BEST_COSINE, WATERMARK)


SIGNALS_BY_NAME = {spec.name: spec for spec in SIGNALS}


def signal_spec(name: str) -> SignalSpec:
    return SIGNALS_BY_NAME[name]
