"""Candidate teachers and evidence given as data, not as an index: a partner's shared profile.

Attribution ranks teachers over providers' indexes; a partner provider (issue 16: a bundle
another company shared) has no index here, only what it chose to share: the style rows of a
sample of its responses, each with a pairing key for its prompt, and keyed MinHash signatures.
This module says what attribution needs from such a provider, in attribution's own terms, so
that the layer that reads bundles (sharing, a capability above this one) builds it and
attribution never learns what a bundle or a consortium key is.

A provider may leave rare style features out of its rows (a partner's text would be readable
from them); ``all_features`` says so, and attribution then compares every class and the
suspect on the features such profiles kept (attribution.classes.comparable_features): a class
trained without a feature that the others have would be pushed away from every suspect response
that has it, and a partner would rank last for what it withheld, not for how it writes.

``ProviderProfile`` stands where a served index's ``SegmentGroup`` stands in the style classes
(attribution.classes): it answers ``len``, ``rows_for_prompts`` (keyed by the public prompt
hashes the suspect and the references carry, which ``pair_key`` turns into the profile's own
keys) and ``style(rows)``. ``Partner`` is what ``attribute_file`` calls for the near-duplicate
check against the partner's signatures; ``PartnerEvidence`` is its answer, with the origin
(which partner, which bundle, how old) that every figure drawn from it must carry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from fingerprint.records import ResponseRecord


@dataclass(frozen=True)
class ProviderProfile:
    """A provider known by its style rows only; row i of ``style_rows`` answers the prompt
    whose pairing key is ``prompt_keys[i]`` (None: no prompt)."""

    name: str
    source: str  # where it came from, shown where an index path would be (e.g. a bundle dir)
    style_rows: Any  # scipy.sparse CSR (rows, style_features), the fingerprint.style space
    prompt_keys: tuple[str | None, ...]
    pair_key: Callable[[str], str]  # a public prompt hash -> this profile's pairing key
    style_config: dict[str, int]  # style_version, style_features, normalizer_version
    origin: dict[str, Any] = field(default_factory=dict)  # org, bundle_id, created, age_days
    # False: the provider left rare features out of its rows (features() are those it kept);
    # every class and the suspect are then compared on those only (attribution.classes)
    all_features: bool = True
    _rows_by_key: dict[str, list[int]] | None = field(default=None, init=False, repr=False,
                                                      compare=False)
    _features: Any = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.prompt_keys)

    def rows_for_prompts(self, prompt_hashes: Iterable[str]) -> dict[str, list[int]]:
        """Public prompt hash -> this profile's rows answering it, in row order (as
        SegmentGroup.rows_for_prompts)."""
        if self._rows_by_key is None:
            rows: dict[str, list[int]] = {}
            for row, key in enumerate(self.prompt_keys):
                if key is not None:
                    rows.setdefault(key, []).append(row)
            object.__setattr__(self, "_rows_by_key", rows)  # frozen: a cache, not state
        out = {}
        for h in prompt_hashes:
            found = self._rows_by_key.get(self.pair_key(h))
            if found:
                out[h] = found
        return out

    def style(self, rows: Sequence[int]) -> Any:
        return self.style_rows[list(rows)]

    def features(self) -> Any:
        """The style features (columns) the profile shares: a provider may leave rare ones out
        (sharing: ``--min-feature-responses``), and a row it shares can only be compared with
        another on these."""
        if self._features is None:
            object.__setattr__(self, "_features", np.unique(self.style_rows.indices))  # cache
        return self._features


@dataclass(frozen=True)
class PartnerMatch:
    """A suspect response that near-duplicates one of a partner's shared signals."""

    suspect_id: str
    suspect_line: int
    signal: str  # the partner's keyed signal id (feedback can name it)
    model: str | None
    jaccard: float


@dataclass(frozen=True)
class PartnerEvidence:
    """What one partner's shared signals say about the suspect, and where they came from."""

    name: str
    origin: dict[str, Any]
    signatures: int  # the partner's shared signatures compared against
    compared: int  # suspect responses with shingles (the others cannot be compared)
    near_duplicates: int
    threshold: float
    best: float | None  # the highest estimated Jaccard of any suspect response
    matches: tuple[PartnerMatch, ...] = ()  # the strongest, best first

    @property
    def rate(self) -> float | None:
        return self.near_duplicates / self.compared if self.compared else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rate"] = self.rate
        return out


class Partner(Protocol):
    """A partner provider: its profile for teacher ranking (None: it shared none) and its
    near-duplicate check of the suspect's responses."""

    name: str
    profile: ProviderProfile | None

    def near_duplicates(self, records: Sequence[ResponseRecord],
                        threshold: float) -> PartnerEvidence | None: ...
