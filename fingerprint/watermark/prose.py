"""Where in a text a post-hoc mark may write: prose, not code.

Shared by both versions of the post-hoc mark (fingerprint.watermark.lexical, .posthoc). A word
inside Markdown code (spans and blocks) or joined to an identifier (``math.huge``,
``huge_value``) is part of a program, where a synonym or a comma would break it.
"""

from __future__ import annotations

import bisect
import re

CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_JOINED_BEFORE = frozenset("._/\\@#$-=")
_JOINED_AFTER = frozenset("_(/\\-=")
VOWELS = frozenset("aeiouAEIOU")


class CodeSpans:
    """Where the Markdown code spans and blocks of a text are, for O(log n) look-ups."""

    def __init__(self, text: str):
        spans = [m.span() for m in CODE.finditer(text)]
        self._starts = [a for a, _ in spans]
        self._ends = [b for _, b in spans]

    def __contains__(self, position: int) -> bool:
        i = bisect.bisect_right(self._starts, position) - 1
        return i >= 0 and position < self._ends[i]


def is_prose(text: str, start: int, end: int, code: CodeSpans) -> bool:
    """The word at text[start:end] is not inside code nor part of an identifier or dotted name."""
    if start in code:
        return False
    if start and text[start - 1] in _JOINED_BEFORE:
        return False
    after = text[end:end + 2]
    return not (after[:1] in _JOINED_AFTER and after[:1]
                or (after[:1] == "." and after[1:2].isalnum()))


def article_for(old: str, word: str) -> str:
    """The a/an that goes before ``word``, in the case of ``old`` (the article written)."""
    article = "an" if word[0] in VOWELS else "a"
    return (article.upper() if old.isupper() and len(old) > 1
            else article.capitalize() if old[0].isupper() else article)
