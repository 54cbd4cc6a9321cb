"""The synonym lexicon of the post-hoc mark, built from WordNet's own data files.

A swap must not change what the text says, so the lexicon is deliberately narrow: a word is in
it only if WordNet knows it in exactly one sense across all parts of speech (no "bank" that
could be a river's), it is a plain lowercase word of three letters or more, not a stop word, not
an inflected form of another word (so "minutes" is never read as the lemma of "the minutes of a
meeting"), and its synset carries no usage label (slang, disparaging, ...). Words of one synset
that pass form a class; classes of one word are dropped. Because every word has one sense, every
word is in at most one class, and marking and detection agree on it.

The data comes from Debian's ``wordnet-base`` package (WordNet 3.0) in /usr/share/wordnet, or
the directory in FINGERPRINT_WORDNET_DIR; the lexicon's digest is recorded in each key so that a
different WordNet cannot silently detect nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from fingerprint.errors import LexiconError

LEXICON_VERSION = 1
DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
_POS = ("noun", "verb", "adj", "adv")
_CLASS_POS = ("noun", "adj", "adv")  # verbs inflect too much to swap surface forms safely
_WORD = re.compile(r"[a-z]{3,}")
# WordNet's morphological rules (morphy): suffix -> base ending, per part of speech.
_DETACH = {"noun": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
                    ("shes", "sh"), ("men", "man"), ("ies", "y")],
           "verb": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
                    ("ing", "e"), ("ing", "")],
           "adj": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")]}


@dataclass(frozen=True)
class Lexicon:
    classes: tuple[tuple[str, ...], ...]
    word_class: Mapping[str, int]
    sha256: str
    source: str

    def synonyms(self, word: str) -> tuple[str, ...] | None:
        index = self.word_class.get(word)
        return None if index is None else self.classes[index]


def wordnet_dir() -> Path:
    return Path(os.environ.get("FINGERPRINT_WORDNET_DIR", DEFAULT_WORDNET_DIR))


def load_lexicon(directory: str | os.PathLike[str] | None = None) -> Lexicon:
    """The lexicon from WordNet at ``directory`` (default: wordnet_dir()), built once per
    process."""
    return _build(Path(directory) if directory is not None else wordnet_dir())


def lexicon_available(directory: str | os.PathLike[str] | None = None) -> bool:
    path = Path(directory) if directory is not None else wordnet_dir()
    return all((path / f"{kind}.{pos}").is_file() for pos in _POS for kind in ("index", "data"))


@functools.lru_cache(maxsize=4)
def _build(directory: Path) -> Lexicon:
    if not lexicon_available(directory):
        raise LexiconError(
            f"{directory}: WordNet's data files (index.noun, data.noun, ...) are not there; "
            "install Debian's wordnet-base (apt-get install wordnet-base) or set "
            "FINGERPRINT_WORDNET_DIR")
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    senses: dict[str, int] = {}
    tagged: set[str] = set()
    for pos in _POS:
        for fields in _records(directory / f"index.{pos}"):
            senses[fields[0]] = senses.get(fields[0], 0) + int(fields[2])
            if int(fields[5 + int(fields[3])]) > 0:
                tagged.add(fields[0])
    lemmas = set(senses)
    inflected = {fields[0] for pos in _POS if (directory / f"{pos}.exc").is_file()
                 for fields in _records(directory / f"{pos}.exc")}

    def usable(word: str) -> bool:
        return (_WORD.fullmatch(word) is not None and senses.get(word) == 1 and word in tagged
                and word not in ENGLISH_STOP_WORDS and word not in inflected
                and not _inflects_another(word, lemmas))

    classes: set[tuple[str, ...]] = set()
    for pos in _CLASS_POS:
        for fields in _records(directory / f"data.{pos}"):
            count = int(fields[3], 16)
            words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]) for i in range(count)]
            pointers = int(fields[4 + 2 * count])
            symbols = fields[5 + 2 * count:5 + 2 * count + 4 * pointers:4]
            if ";u" in symbols:
                continue
            members = tuple(sorted({w for w in words if usable(w)}))
            if len(members) >= 2:
                classes.add(members)
    ordered = tuple(sorted(classes))
    word_class = {w: i for i, members in enumerate(ordered) for w in members}
    digest = hashlib.sha256(json.dumps([LEXICON_VERSION, ordered]).encode()).hexdigest()
    return Lexicon(ordered, word_class, digest, str(directory))


def _records(path: Path):
    """Whitespace-split lines, skipping the licence header (lines starting with spaces)."""
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line[:1] != " " and line.strip():
                yield line.split()


def _inflects_another(word: str, lemmas: set[str]) -> bool:
    for rules in _DETACH.values():
        for suffix, ending in rules:
            if word.endswith(suffix):
                base = word[:-len(suffix)] + ending
                if base != word and base in lemmas:
                    return True
    return False
