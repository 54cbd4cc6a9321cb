"""The places where a text could say the same thing another way: the post-hoc mark's channels.

Each recogniser returns ``Choice``s: where the choice is, which options it has, which one the
text took. Recognition must find the same choices whichever option was taken, or the detector
would not see what the marker did; so every rule here reads the text in a form the choices do
not change: words are counted and contexts taken from *canonical tokens*, in which "don't" and
"do not" are both ``do not``, "cannot" is ``can not``, "an" is ``a`` and every member of a
synonym class is the class's name. (Recognition is a function of the text alone, never of the
key, so whatever it finds, each choice is green with probability 1/2 under the null.)

Channels (version 2 of the post-hoc mark):

- ``synonyms``: a lowercase prose word of the WordNet lexicon (fingerprint.watermark.lexicon),
  whose options are its class.
- ``serial_comma``: the comma before "and"/"or" that ends a list ("red, green, and blue" or
  "red, green and blue"). A list is recognised as ``A, X[,] and/or Y`` where A and X are short
  (at most 5 and 4 words) and A does not open with a word that makes it an introduction ("In
  short, cats and dogs": no list there, and a comma after "cats" would change the reading).
- ``contractions``: "do not"/"don't" and the other negations, "cannot"/"can't", and "I am",
  "you are", "it is", "there is", "we will" ... with their contractions, the latter only when a
  word follows (a contraction cannot end a clause) that is not "not" (so "it is not" is always
  read as "is not") nor a participle that would make "it's" read "it has".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from fingerprint.watermark.lexicon import Lexicon
from fingerprint.watermark.prose import CodeSpans, is_prose

TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")


@dataclass(frozen=True)
class Choice:
    """``text[start:end]`` is option ``chosen`` of ``options``; ``at`` is where its context ends
    (the canonical tokens that start before ``at`` are its context). Marking writes only options
    in ``writable`` (None: any): a comma is added only where the list is certain."""

    channel: str
    start: int
    end: int
    at: int
    class_id: str
    options: tuple[str, ...]
    chosen: str
    writable: tuple[str, ...] | None = None


_NEGATABLE = ("do", "does", "did", "is", "are", "was", "were", "have", "has", "had", "would",
              "should", "could")
NEGATIONS = tuple((f"{w} not", f"{w}n't") for w in _NEGATABLE) + (
    ("will not", "won't"), ("cannot", "can't"))
PRONOUNS = (("i am", "i'm"), ("you are", "you're"), ("we are", "we're"), ("they are", "they're"),
            ("it is", "it's"), ("that is", "that's"), ("there is", "there's"),
            ("i will", "i'll"), ("you will", "you'll"), ("we will", "we'll"),
            ("they will", "they'll"))
_HAS_READING = frozenset({"been", "got", "gotten", "had"})  # "it's been" is "it has been"
_EXPAND = {short: long.split() for long, short in NEGATIONS + PRONOUNS}
_EXPAND["cannot"] = _EXPAND["can't"] = ["can", "not"]
_FORMS = {form: (long, short, i >= len(NEGATIONS))
          for i, (long, short) in enumerate(NEGATIONS + PRONOUNS) for form in (long, short)}


def _alternation(pairs: tuple[tuple[str, str], ...]) -> re.Pattern:
    forms = sorted((f for pair in pairs for f in pair), key=len, reverse=True)
    return re.compile(r"(?<![\w'’])(?:" + "|".join(f.replace("'", "['’]") for f in forms)
                      + r")(?![\w'’])", re.IGNORECASE)


_NEGATION = _alternation(NEGATIONS)
_PRONOUN = _alternation(PRONOUNS)
_NEXT_WORD = re.compile(r" ([A-Za-z]+)")

_SERIAL = re.compile(r", (?P<item>[A-Za-z][^\s,;:.!?()\[\]\n]*(?: [^\s,;:.!?()\[\]\n]+){0,7}?)"
                     r"(?P<comma>,?) (?P<conj>and|or) (?=[A-Za-z])")
# where the segment before a list's item starts; a serial comma is not a boundary, or whether
# an earlier list took one would change how this one is read
_SEGMENT_END = re.compile(r"[;:.!?()\[\]\n—]|,(?! (?:and|or) )")
_INTRO = frozenset("""in for on at to if when while after before as by with because since
although though once unless from during of however also additionally moreover furthermore
first firstly second secondly third finally lastly then now thus therefore instead yes no sure
well overall today here hence meanwhile otherwise still besides next so but yet again indeed
similarly likewise consequently ultimately alternatively anyway hello hi dear please note
remember example sincerely regards thanks and or""".split())
_NOT_IN_ITEM = frozenset({"between", "both", "either", "neither", "whether", "than", "from", "and",
                          "or"})


def canonical(token: str, lexicon: Lexicon) -> list[str]:
    """The canonical words of one TOKEN match (see the module docstring)."""
    word = token.lower().replace("’", "'")
    if word in _EXPAND:
        return list(_EXPAND[word])
    members = lexicon.synonyms(word)
    if members is not None:
        return ["~" + members[0]]
    return ["a" if word == "an" else word]


def canonical_tokens(text: str, lexicon: Lexicon) -> tuple[list[int], list[str]]:
    """(start offset, canonical word) of every canonical word of ``text``, in order."""
    starts, words = [], []
    for match in TOKEN.finditer(text):
        for word in canonical(match.group(), lexicon):
            starts.append(match.start())
            words.append(word)
    return starts, words


def word_count(segment: str) -> int:
    """Canonical words in ``segment`` (a contraction counts as the words it stands for)."""
    return sum(len(_EXPAND.get(t.lower().replace("’", "'"), (t,))) for t in TOKEN.findall(segment))


def find_choices(text: str, lexicon: Lexicon, channels: tuple[str, ...]) -> list[Choice]:
    """Every choice of the given channels in ``text``, in text order."""
    code = CodeSpans(text)
    found: list[Choice] = []
    if "synonyms" in channels:
        found.extend(_synonyms(text, lexicon, code))
    if "serial_comma" in channels:
        found.extend(_serial_commas(text, code))
    if "contractions" in channels:
        found.extend(_contractions(text, code))
    return sorted(found, key=lambda c: (c.start, c.end))


def _synonyms(text: str, lexicon: Lexicon, code: CodeSpans) -> Iterator[Choice]:
    for match in TOKEN.finditer(text):
        word = match.group()
        members = lexicon.synonyms(word)
        if members is not None and word.islower() and is_prose(text, *match.span(), code):
            yield Choice("synonyms", match.start(), match.end(), match.start(),
                         "syn:" + "|".join(members), members, word)


def _serial_commas(text: str, code: CodeSpans) -> Iterator[Choice]:
    for match in _SERIAL.finditer(text):
        item = match.group("item")
        if (match.start() in code or not 1 <= word_count(item) <= 4
                or _NOT_IN_ITEM.intersection(item.lower().split())):
            continue
        before = text[:match.start()]
        cut = max((m.end() for m in _SEGMENT_END.finditer(before, max(0, len(before) - 200))),
                  default=0)
        opening = TOKEN.findall(before[cut:])
        if not 1 <= word_count(before[cut:]) <= 5 or opening[0].lower() in _INTRO:
            continue
        if len(opening) == 1 and opening[0].lower().endswith("ly"):
            continue
        # "A, X and Y" may be "Reach for your toes, keeping your back and legs straight": a
        # comma is added only in lists of four or more ("P, A, X and Y") of short items that
        # hold no "and" of their own; removing one is safe
        listed = (cut > 0 and before[cut - 1] == "," and word_count(before[cut:]) <= 3
                  and word_count(item) <= 2 and item.split()[0].lower() not in _INTRO
                  and not {"and", "or"}.intersection(w.lower() for w in opening))
        comma = match.start("comma")
        yield Choice("serial_comma", comma, match.end("comma"), comma,
                     "ser:" + match.group("conj"), ("serial", "plain"),
                     "serial" if match.group("comma") else "plain",
                     None if listed else ("plain",))


def _contractions(text: str, code: CodeSpans) -> Iterator[Choice]:
    """Negations first; a pronoun form that overlaps one ("it is not") is not a choice, so the
    same words are read the same way whichever forms the text took."""
    negations = list(_NEGATION.finditer(text))
    taken = [m.span() for m in negations]
    pronouns = [m for m in _PRONOUN.finditer(text)
                if not any(a < m.end() and m.start() < b for a, b in taken)]
    for match in sorted(negations + pronouns, key=lambda m: m.start()):
        written = match.group().replace("’", "'")
        if (written[1:] != written[1:].lower() or not is_prose(text, *match.span(), code)
                or written[0].isupper() and not _opens_sentence(text, match.start())):
            continue
        long, short, pronoun = _FORMS[written.lower()]
        if pronoun:
            following = _NEXT_WORD.match(text, match.end())
            if following is None or following.group(1).lower() in _HAS_READING | {"not"}:
                continue
        yield Choice("contractions", match.start(), match.end(), match.start(), "con:" + long,
                     (long, short), written.lower())


def _opens_sentence(text: str, position: int) -> bool:
    """A capital here is the sentence's, not a title's ("It Don't Mean a Thing")."""
    head = text[:position].rstrip(" *#>-\"'“(_")
    return not head or head[-1] in ".!?:\n" or head[-1].isdigit() and head[-2:-1] == "."


def render(choice: Choice, option: str, text: str) -> str:
    """How ``option`` of ``choice`` is written in ``text`` (case and apostrophe as the text's)."""
    if choice.channel == "serial_comma":
        return "," if option == "serial" else ""
    if choice.channel == "synonyms":
        return option
    written = text[choice.start:choice.end]
    if option.startswith(("i ", "i'")) or written[0].isupper():
        option = option[0].upper() + option[1:]
    return option.replace("'", "’") if "’" in text and "'" not in text else option
