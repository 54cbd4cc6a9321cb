"""Word n-gram shingles: the sets whose Jaccard similarity MinHash estimates.

A word is a maximal run of Unicode word characters (``\\w+``) in the normalised text, so
punctuation and markdown separate words but never form shingles of their own. A shingle is ``n``
consecutive words joined by one space. A text with fewer than ``n`` words (but at least one) has a
single shingle made of all its words, so short answers still get a meaningful fingerprint.
"""

from __future__ import annotations

import re

from fingerprint.normalize import normalize

_WORD = re.compile(r"\w+")


def words(normalized_text: str) -> list[str]:
    return _WORD.findall(normalized_text)


def word_shingles(text: str, n: int = 3, normalizer_version: int = 1) -> set[str]:
    tokens = words(normalize(text, normalizer_version))
    if not tokens:
        return set()
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
