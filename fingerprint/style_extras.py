"""Style features beyond word unigrams and bigrams, each switched on by name in the config's
``style_extras`` (fingerprint.config), so an index records exactly which ones its fingerprints hold.

Why these two (issue 14, measured in benchmarks/README.md's lineage section):

- ``edges``: how a response opens and closes. Chat models are trained to open and close in set
  ways ("Sure! Here are ...", "Let me know if you have any other questions."), and a student
  imitates exactly those frames, whatever the topic. In the middle of a response they are one
  bigram among hundreds; as positional features they stand apart. Features: the first n tokens
  as ``<open> t1 .. tn`` and the last n as ``<close> t.. tn`` for n = 1 .. EDGE_TOKENS, newline
  tokens at either end skipped (a trailing newline is layout, not a phrase).
- ``templates``: function-word templates. Every word token that is not a function word
  (FUNCTION_WORDS: articles, pronouns, prepositions, conjunctions, auxiliaries, a few adverbs) is
  masked as ``_``; punctuation and newlines are kept; features are the masked token trigrams as
  ``<tpl> a b c``. What is left is how a model builds sentences ("the _ of the _", ", which is
  _"), which topic does not dictate and a student picks up from its teacher.

Tokens are style version 1's (fingerprint.style: the folded text's ``\\w+`` runs, every other
non-space character, every newline). The markers ``<open>``, ``<close>`` and ``<tpl>`` cannot be
tokens (``<`` is a token of its own), so no extra feature ever equals a version-1 feature before
hashing. Features are hashed into the same ``style_features`` buckets as version 1's, with the
same hash (MurmurHash3 32-bit, seed 0, scikit-learn's HashingVectorizer), and added to its counts.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from fingerprint.errors import ConfigError

STYLE_EXTRAS = ("edges", "templates", "chars")  # the canonical order of a config's "+"-joined names
EDGE_TOKENS = 5
TEMPLATE_N = 3
CHAR_N = 3
MASK = "_"

_TOKEN = re.compile(r"\w+|[^\w\s]|\n")
_WORD = re.compile(r"\w+")

FUNCTION_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each either else ever every
few for from further had has have having he her here hers herself him himself his how however
i if in into is it its itself just let may me might more most must my myself neither no nor not
now of off on once only or other our ours ourselves out over own rather same shall she should
so some such than that the their theirs them themselves then there these they this those though
through thus to too under until up upon us very was we were what when where whether which while
who whom whose why will with within without would yet you your yours yourself yourselves also
its whereas since unless although
""".split())


def parse_extras(value: str) -> tuple[str, ...]:
    """The names in a config's ``style_extras`` ("" for none, else names joined by "+" in
    STYLE_EXTRAS order): one spelling per set, so two configs with the same features compare
    equal."""
    if not isinstance(value, str):
        raise ConfigError(f"style_extras must be a string, got {value!r}")
    if value == "":
        return ()
    names = tuple(value.split("+"))
    unknown = [n for n in names if n not in STYLE_EXTRAS]
    if unknown:
        raise ConfigError(f"style_extras: unknown feature set(s) {unknown}; known: "
                          f"{', '.join(STYLE_EXTRAS)} (joined by '+')")
    canonical = "+".join(n for n in STYLE_EXTRAS if n in names)
    if value != canonical:
        raise ConfigError(f"style_extras must be written {canonical!r}, got {value!r}")
    return names


def edge_features(tokens: Sequence[str]) -> list[str]:
    """``<open> ...`` and ``<close> ...`` n-grams of a response's tokens (newlines at the ends
    skipped)."""
    start, end = 0, len(tokens)
    while start < end and tokens[start] == "\n":
        start += 1
    while end > start and tokens[end - 1] == "\n":
        end -= 1
    body = tokens[start:end]
    out = []
    for n in range(1, min(EDGE_TOKENS, len(body)) + 1):
        out.append("<open> " + " ".join(body[:n]))
        out.append("<close> " + " ".join(body[-n:]))
    return out


def masked(tokens: Sequence[str]) -> list[str]:
    """Each word token that is not a function word replaced by MASK."""
    return [t if t in FUNCTION_WORDS or not _WORD.fullmatch(t) else MASK for t in tokens]


def template_features(tokens: Sequence[str]) -> list[str]:
    """``<tpl> a b c``: the trigrams of the masked tokens."""
    m = masked(tokens)
    return ["<tpl> " + " ".join(m[i:i + TEMPLATE_N]) for i in range(len(m) - TEMPLATE_N + 1)]


def char_features(folded: str) -> list[str]:
    """``<chr> abc``: the character trigrams of the folded text, whitespace runs as one space
    (authorship attribution's most robust single feature set: it sees punctuation, spacing,
    affixes and short function words together)."""
    text = " ".join(folded.split())
    return ["<chr> " + text[i:i + CHAR_N] for i in range(len(text) - CHAR_N + 1)]


def extra_features(folded: str, names: Sequence[str]) -> list[str]:
    """Every extra feature of one folded text (fingerprint.folding.fold) for the named sets."""
    tokens = _TOKEN.findall(folded)
    out: list[str] = []
    if "edges" in names:
        out += edge_features(tokens)
    if "templates" in names:
        out += template_features(tokens)
    if "chars" in names:
        out += char_features(folded)
    return out


def extra_counts(folded: Sequence[str], names: Sequence[str], n_features: int):
    """CSR (len(folded), n_features) float32 counts of the extra features, hashed as version 1's
    features are (scikit-learn's HashingVectorizer, no alternate sign)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    hasher = HashingVectorizer(analyzer=lambda text: extra_features(text, names),
                               n_features=n_features, alternate_sign=False, norm=None,
                               dtype=np.float32)
    matrix = hasher.transform(list(folded)).tocsr()
    matrix.sort_indices()
    return matrix
