"""What an attribution says, shaped to carry calibrated p-values once they exist.

Every model-level figure is a ``Signal`` with room for its calibrated p-value; the top-level
``score`` and ``p_value`` are what a dispute quotes first, and the per-response evidence (the
matched pairs with their ids) is what backs them up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from attribution.verdict import verdict_of


@dataclass(frozen=True)
class Match:
    """A stored response and how similar it is to the suspect's response."""

    row: int
    id: str
    score: float


@dataclass(frozen=True)
class PairedComparison:
    """The suspect's answer against the provider's answer to the same prompt."""

    row: int
    id: str
    jaccard: float | None  # None: one of the two has no shingles (fingerprint.MIN_SHINGLES)
    cosine: float
    served_answers: int  # how many served answers the prompt had; the best one is reported


@dataclass(frozen=True)
class ResponseEvidence:
    """Per suspect response: best matches, the paired comparison and the evidence it yields."""

    id: str
    line: int
    prompt: str | None
    lexical_matches: tuple[Match, ...]
    semantic_matches: tuple[Match, ...]
    paired: PairedComparison | None
    lexical: float  # paired Jaccard where the prompt is indexed, else best estimated Jaccard
    semantic: float  # paired cosine where the prompt is indexed, else best cosine
    near_duplicate: bool
    evidence: float  # (lexical + semantic) / 2, clipped to [0, 1]
    provider_like: bool | None = None  # assigned to the provider by the style classifier
    has_shingles: bool = True  # False: no word characters, so no part in lexical evidence
    prompt_hash: str | None = None  # the normalised prompt's key, as the index stores it


@dataclass(frozen=True)
class Signal:
    """A model-level statistic; ``p_value`` is None unless it was calibrated on references."""

    name: str
    value: float | None
    description: str
    n: int
    p_value: float | None = None
    z: float | None = None
    references: int = 0  # how many reference models the calibration used
    null_mean: float | None = None  # the references' mean, on the signal's own scale
    reason: str | None = None  # why there is no p-value, where there is none
    reference_values: dict[str, float] = field(default_factory=dict)  # each reference's value


@dataclass(frozen=True)
class MatchedPair:
    """A suspect response beside the served response that matches it best, for the report."""

    suspect_id: str
    served_id: str
    relation: str  # "paired" (same prompt) or "nearest" (best lexical match)
    jaccard: float | None
    cosine: float | None
    evidence: float
    prompt: str | None
    suspect_text: str
    served_text: str | None
    excess: float | None = None  # Jaccard above the largest reference's on the same prompt
    reference_answers: tuple[Any, ...] = ()  # attribution.evidence.ReferenceAnswer, per reference


@dataclass(frozen=True)
class AttributionResult:
    suspect: str
    index: str
    score: float
    signals: tuple[Signal, ...]
    responses: tuple[ResponseEvidence, ...]
    top_pairs: tuple[MatchedPair, ...]
    counts: dict[str, int]
    settings: dict[str, Any]
    p_value: float | None = None
    calibrated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    references: tuple[str, ...] = ()
    derived_fraction: float | None = None
    derived_fraction_ci: tuple[float, float] | None = None
    uncalibrated_score: float | None = None
    teachers: Any = None  # attribution.teacher.TeacherRanking, when several indexes were ranked
    prompts: tuple[Any, ...] = ()  # attribution.evidence.PromptEvidence, one per response
    provenance: dict[str, Any] = field(default_factory=dict)
    partners: tuple[Any, ...] = ()  # attribution.partners.PartnerEvidence, per partner bundle

    @property
    def verdict(self) -> Any:
        """attribution.verdict.Verdict: the decision in plain words, a function of this result."""
        return verdict_of(self)

    def signal(self, name: str) -> Signal:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self, include_responses: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": self.verdict.to_dict(),
            "score": self.score,
            "p_value": self.p_value,
            "calibrated": self.calibrated,
            "derived_fraction": self.derived_fraction,
            "derived_fraction_ci95": (None if self.derived_fraction_ci is None
                                      else list(self.derived_fraction_ci)),
            "uncalibrated_score": self.uncalibrated_score,
            "references": list(self.references),
            "teachers": None if self.teachers is None else self.teachers.to_dict(),
            "suspect": self.suspect,
            "index": self.index,
            "counts": dict(self.counts),
            "signals": {s.name: {k: v for k, v in asdict(s).items() if k != "name"}
                        for s in self.signals},
            "settings": dict(self.settings),
            "notes": list(self.notes),
            "top_pairs": [asdict(p) for p in self.top_pairs],
        }
        out["provenance"] = dict(self.provenance)
        if self.partners:  # only when partners' bundles were used (attribute --bundle)
            out["partners"] = [p.to_dict() for p in self.partners]
        if include_responses:
            out["responses"] = [asdict(r) for r in self.responses]
            out["prompts"] = [{**asdict(p), "excess": p.excess} for p in self.prompts]
        return out

    def response_rows(self) -> Iterator[dict[str, Any]]:
        """One flat record per suspect response (newline-delimited output, a table): the
        suspect, the response's id, line, prompt and prompt hash, and its evidence."""
        for r in self.responses:
            yield {"suspect": self.suspect, "index": self.index, **asdict(r)}
