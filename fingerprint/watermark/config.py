"""The parameters of the two watermarks a key carries.

They are part of the key file: detection must use exactly the parameters the text was marked
with, so a key holds them rather than each call taking them as options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from fingerprint.errors import ConfigError


class _Serialised:
    """JSON round trip of a config dataclass; reading is strict (see _exact_fields)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        return cls(**_exact_fields(cls, data))


@dataclass(frozen=True)
class WatermarkConfig(_Serialised):
    """The generation-time green-list mark (Kirchenbauer et al. 2023).

    At every step the last ``context_width`` token ids seed a keyed pseudo-random split of the
    vocabulary; a fraction ``gamma`` is "green" and gets ``delta`` added to its logits. Detection
    counts green tokens among unique (context, token) pairs; a response with fewer than
    ``min_scored`` such pairs is reported as too short (p = 1) rather than scored on noise.

    The default width is 1 (since 2026-11-29; keys record their width, so older keys of width 2
    keep working): the width at which a neural student's inherited lean is found from its
    outputs (benchmarks/radioactivity.py, two independent trainings: 5% marked training text
    p 7.8e-5 and 9.6e-4, 10% p 6.5e-10 and 1.4e-10, with fingerprint.watermark.shift), where
    width 2 showed nothing below 100% marked. Each green list is shared by every step after the
    same token, so a student sees each one often enough to learn it, while the lists are still
    thousands, not one. ``context_width=0`` is one green list for every step (the "unigram" mark
    of Zhao et al. 2023): also learnable (5%: p 0.0034), and the one whose list an attacker
    holding much marked text can most easily estimate by counting words. Inheritance is tested
    with fingerprint.watermark.shift (distinct tokens alone carry little).
    """

    context_width: int = 1
    gamma: float = 0.25
    delta: float = 2.0
    min_scored: int = 16

    def __post_init__(self) -> None:
        _check_int(self, "context_width", 0, 8)
        _check_fraction(self, "gamma")
        _check_number(self, "delta", 0.0, 50.0)
        _check_int(self, "min_scored", 1, 10**6)


@dataclass(frozen=True)
class LexicalConfig(_Serialised):
    """The post-hoc mark: keyed choices among WordNet synonyms in already generated text.

    A word of the lexicon is "green" under a keyed hash of the ``context_width`` words before it;
    marking swaps a non-green word for a green synonym where one exists. ``gamma`` is the null
    probability a word is green (0.5 makes a swap available for 3 in 4 two-word classes).
    """

    context_width: int = 1
    gamma: float = 0.5
    min_scored: int = 4

    def __post_init__(self) -> None:
        _check_int(self, "context_width", 0, 4)
        _check_fraction(self, "gamma")
        _check_int(self, "min_scored", 1, 10**6)


POSTHOC_CHANNELS = ("synonyms", "serial_comma", "contractions")


@dataclass(frozen=True)
class PosthocConfig(_Serialised):
    """The post-hoc mark, version 2 (key format 2): keyed choices on several channels.

    Each place where the text may say the same thing in one of a few ways (a lexicon synonym, a
    serial comma before "and"/"or" in a list, "do not" or "don't") is a choice; the
    ``context_width`` words before it, with the key, pick the half of its options that counts
    as "green". Every choice is green with probability exactly 1/2 under the null, whatever the
    channel, so the channels pool into one exact binomial test. ``channels`` are the ones
    marked and tested.
    """

    context_width: int = 1
    min_scored: int = 4
    channels: tuple[str, ...] = POSTHOC_CHANNELS

    def __post_init__(self) -> None:
        _check_int(self, "context_width", 1, 4)
        _check_int(self, "min_scored", 1, 10**6)
        channels = self.channels
        if (not isinstance(channels, (tuple, list)) or not channels
                or any(c not in POSTHOC_CHANNELS for c in channels)
                or len(set(channels)) != len(channels)):
            raise ConfigError(f"channels must be distinct names among "
                              f"{', '.join(POSTHOC_CHANNELS)}, got {channels!r}")
        object.__setattr__(self, "channels", tuple(channels))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": list(self.channels)}


def _exact_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """An unknown or missing field is an error, never a silent default."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown, missing = sorted(set(data) - names), sorted(names - set(data))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s): {', '.join(unknown)}")
    if missing:
        raise ConfigError(f"{cls.__name__}: field(s) missing: {', '.join(missing)}")
    return dict(data)


def _check_int(cfg: Any, name: str, low: int, high: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer between {low} and {high}, got {value!r}")


def _check_number(cfg: Any, name: str, low: float, high: float) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number between {low} and {high}, got {value!r}")


def _check_fraction(cfg: Any, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
