"""Which provider did the suspect most likely learn from?

Several providers' indexes (or several providers' labels) are ranked by one style classifier
over all of them plus the reference models, so that their provider shares are on one scale: the
share of the suspect's responses that read like each provider rather than like any other class.
The top provider is the likely teacher; the margin to the runner-up says how clear that is, and
its own p-value (the references scored with their class left out) says whether the suspect is
more like it than independent models are. The shares are attribution.share's, the one definition
the signals table uses too: the full attribution against the teacher reuses the teacher's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from attribution.errors import AttributionError, TooFewClassesError
from attribution.partners import ProviderProfile
from attribution.references import ReferenceData, stored_references
from attribution.share import provider_shares
from attribution.style_model import TargetAttribution
from fingerprint.config import ADDED_FIELDS, FingerprintConfig
from fingerprint.normalize import prompt_hashes
from fingerprint.records import ResponseRecord
from fingerprint.style import StyleVectorizer
from index.errors import ConfigMismatchError
from index.store import FingerprintIndex


@dataclass(frozen=True)
class TeacherScore:
    provider: str
    index: str
    share: float
    p_value: float | None
    z: float | None
    derived_fraction: float | None
    origin: dict | None = None  # a partner's profile: org, bundle_id, created, age_days


@dataclass(frozen=True)
class TeacherRanking:
    ranking: tuple[TeacherScore, ...]  # best first
    margin: float | None  # share of the first minus share of the second
    references: tuple[str, ...]
    # per provider label: the share with its null draws and interval (attribution.share)
    shares: dict[str, TargetAttribution] = field(default_factory=dict, repr=False,
                                                 compare=False)

    @property
    def teacher(self) -> TeacherScore:
        return self.ranking[0]

    def to_dict(self) -> dict:
        return {"teacher": self.teacher.provider, "index": self.teacher.index,
                "margin": self.margin, "p_value": self.teacher.p_value,
                "references": list(self.references),
                "ranking": [{k: v for k, v in s.__dict__.items()
                             if k != "origin" or v is not None} for s in self.ranking]}


def provider_labels(indexes: Sequence[FingerprintIndex],
                    names: Sequence[str] | None = None) -> list[str]:
    """``names`` (one per index, in order) if given, else each index's directory name, made
    unique (a provider is known by its index)."""
    if names:
        if len(names) != len(indexes):
            raise AttributionError(f"{len(names)} provider names for {len(indexes)} indexes: "
                                   f"give one name per index, in the same order")
        bad = sorted({n for n in names if not n.strip() or list(names).count(n) > 1})
        if bad:
            raise AttributionError(f"provider names must be non-empty and distinct: {bad}")
        return list(names)
    labels: list[str] = []
    for idx in indexes:
        base = Path(idx.path).resolve().name or str(idx.path)
        label, n = base, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
    return labels


def check_profiles(config: FingerprintConfig, labels: Sequence[str],
                   profiles: Sequence[ProviderProfile]) -> None:
    """A partner's profile must be in the indexes' style space and named apart from them."""
    for p in profiles:
        expected = {"style_version": config.style_version,
                    "style_features": config.style_features,
                    "normalizer_version": config.normalizer_version,
                    "style_extras": config.style_extras}
        # a profile written before style_extras existed holds version 1's words only
        actual = {k: p.style_config.get(k, ADDED_FIELDS.get(k)) for k in expected}
        if actual != expected:
            raise AttributionError(f"{p.source}: style config {actual} differs from your "
                                   f"index's {expected}: its style rows cannot be compared")
    names = list(labels) + [p.name for p in profiles]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise AttributionError(f"two candidate teachers are named {clash}: name your indexes "
                               f"apart from partners' providers (--name)")


def rank_teachers(indexes: Sequence[FingerprintIndex], records: Sequence[ResponseRecord],
                  references: Sequence[ReferenceData] | None = None,
                  bootstrap: int = 0, names: Sequence[str] | None = None,
                  profiles: Sequence[ProviderProfile] = ()) -> TeacherRanking:
    """Rank providers by provider share; references default to those stored in the indexes,
    providers are named by ``names`` (one per index) or their directories. ``profiles`` are
    partners' providers given as data (attribution.partners): classes like the indexes."""
    if len(indexes) + len(profiles) < 2 or not indexes:
        raise TooFewClassesError("ranking teachers needs at least two providers (indexes or "
                                 "partners' profiles), one of them an index")
    config: FingerprintConfig = indexes[0].config
    for idx in indexes[1:]:
        differences = config.differences(idx.config)
        if differences:
            raise ConfigMismatchError(str(idx.path), differences)
    if references is None:
        references = stored_references(indexes)
    labels = provider_labels(indexes, names)
    check_profiles(config, labels, profiles)
    hashes = prompt_hashes((r.prompt for r in records), config.normalizer_version)
    suspect = StyleVectorizer(config.style_features, config.style_version,
                                   config.style_extras).transform(
        [r.response for r in records])
    providers = {**dict(zip(labels, indexes)), **{p.name: p for p in profiles}}
    results = provider_shares(providers, references, hashes, suspect, bootstrap)
    sources = [(label, str(idx.path), None) for label, idx in zip(labels, indexes)] + \
        [(p.name, p.source, dict(p.origin)) for p in profiles]
    scores = [TeacherScore(label, source, results[label].share,
                           results[label].calibrated.p_value, results[label].calibrated.z,
                           results[label].fraction, origin)
              for label, source, origin in sources]
    scores.sort(key=lambda s: -s.share)
    return TeacherRanking(tuple(scores), scores[0].share - scores[1].share,
                          tuple(r.name for r in references), results)
