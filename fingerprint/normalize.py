"""Versioned text normalisation.

Fingerprints must not change when a served response is re-encoded, re-wrapped or re-cased on its
way into a log, so every text is normalised before shingling. The rules are frozen per version:
changing them would silently make new fingerprints incomparable with stored ones, so a change
means a new version number, which the index manifest records.

Version 1, applied in this order:
1. Unicode NFKC normalisation (compatibility forms fold: full-width letters, ligatures such as
   "ﬁ", superscripts, non-breaking spaces become their plain equivalents);
2. Unicode case folding (``str.casefold``: "Straße" and "STRASSE" both become "strasse");
3. every run of Unicode whitespace (spaces, tabs, newlines, NBSP after step 1, ...) becomes one
   ASCII space, and leading and trailing whitespace is removed.
Punctuation, digits, markdown and emoji are kept; word shingling decides what counts as a word.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Iterable

from fingerprint.errors import ConfigError

NORMALIZER_VERSIONS = frozenset({1})


def normalize(text: str, version: int = 1) -> str:
    if version != 1:
        raise ConfigError(f"unknown normalizer version {version}")
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def prompt_hash(prompt: str, version: int = 1) -> str:
    """Key that pairs a suspect's answer with the served answer to the same prompt.

    Hashing the normalised prompt means trivial re-formatting of the prompt still pairs.
    """
    return hashlib.sha256(normalize(prompt, version).encode("utf-8")).hexdigest()[:32]


def prompt_hashes(prompts: Iterable[str | None], version: int = 1) -> list[str | None]:
    """``prompt_hash`` of each prompt, None where a response came without one."""
    return [None if p is None else prompt_hash(p, version) for p in prompts]
