"""The post-hoc mark, version 2: keyed choices on several channels, one exact test.

Version 1 (fingerprint.watermark.lexical) swaps WordNet synonyms only: about one word in 400 of
AlpacaEval answers, too sparse for strong evidence on a few hundred answers. Version 2 adds the
choices a reader does not notice (fingerprint.watermark.choices): the serial comma and
contractions, and keeps the synonyms.

Keying: for a choice with k options after the canonical context c (the ``context_width``
canonical words before it), keyed BLAKE2b of (c, class, option) orders the options and a keyed
coin picks the size s of the green half, floor(k/2) or ceil(k/2); the first s options are green.
Text written without the key took an option that is green with probability exactly
E[s]/k = 1/2, for every channel and class size, and distinct (context, class) pairs get
independent green halves. So the count of green choices over distinct (context, class) pairs
(the first occurrence's option counts; later ones are the same coin) is Binomial(n, 1/2) under
the null: the channels pool into one exact binomial test with no combination penalty, and the
per-channel counts are reported beside it. Marking sets every choice it may write to its first
green option, so marked text has (nearly) every choice green.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

from fingerprint.watermark.choices import (
    TOKEN,
    Choice,
    canonical_tokens,
    find_choices,
    render,
)
from fingerprint.watermark.detect import Detection, Score
from fingerprint.watermark.key import WatermarkKey
from fingerprint.watermark.lexicon import Lexicon
from fingerprint.watermark.prose import article_for

POSTHOC_DOMAIN = b"fp-wm-posthoc-v2"
GAMMA = 0.5  # exactly, by construction (module docstring)


@dataclass(frozen=True)
class MarkedChoices:
    """The marked text; ``candidates`` choices found, ``substitutions`` of them changed."""

    text: str
    candidates: int
    substitutions: int


def green_options(secret: bytes, context: tuple[str, ...], class_id: str,
                  options: tuple[str, ...]) -> tuple[str, ...]:
    """The green options of one choice, first the one marking writes."""
    def value(part: str) -> int:
        data = json.dumps([list(context), class_id, part]).encode("utf-8")
        return int.from_bytes(hashlib.blake2b(data, key=secret, digest_size=8,
                                              person=POSTHOC_DOMAIN).digest(), "little")

    order = sorted(options, key=value)
    k = len(order)
    size = k // 2 + (k % 2) * (value("\x00size") & 1)
    return tuple(order[:size])


def _context(starts: list[int], words: list[str], at: int, width: int) -> tuple[str, ...]:
    end = bisect.bisect_left(starts, at)
    return tuple(words[max(0, end - width):end])


def mark_choices(key: WatermarkKey, text: str, lexicon: Lexicon) -> MarkedChoices:
    """Set every choice of ``text`` to its first green option (right to left, so offsets hold)."""
    cfg = key.posthoc
    starts, words = canonical_tokens(text, lexicon)
    choices = find_choices(text, lexicon, cfg.channels)
    edits: list[tuple[int, int, str, bool]] = []  # (start, end, new text, a choice changed?)
    for choice in choices:
        green = green_options(key.secret, _context(starts, words, choice.at, cfg.context_width),
                              choice.class_id, choice.options)
        target = [o for o in green if choice.writable is None or o in choice.writable]
        if choice.chosen in green or not target:
            continue
        edits.append((choice.start, choice.end, render(choice, target[0], text), True))
        if choice.channel == "synonyms":
            edits.extend(_article(text, choice, target[0]))
    out, last, changed = text, len(text) + 1, 0
    for start, end, new, counts in sorted(edits, reverse=True):
        if end > last:  # overlapping edits do not arise by construction; never corrupt text
            continue
        out, last, changed = out[:start] + new + out[end:], start, changed + counts
    return MarkedChoices(out, len(choices), changed)


def _article(text: str, choice: Choice, word: str) -> list[tuple[int, int, str, bool]]:
    """a/an before a swapped word, when only spaces stand between them."""
    head = text[:choice.start]
    stripped = head.rstrip(" ")
    if stripped == head:
        return []
    previous = None
    for match in TOKEN.finditer(stripped, max(0, len(stripped) - 4)):
        previous = match
    if previous is None or previous.end() != len(stripped) or \
            previous.group().lower() not in ("a", "an"):
        return []
    new = article_for(previous.group(), word)
    return [] if new == previous.group() else [(previous.start(), previous.end(), new, False)]


def detect_choices(key: WatermarkKey, texts: Sequence[str], lexicon: Lexicon) -> Detection:
    """Per text and pooled over all texts: green choices among distinct (context, class) pairs."""
    cfg = key.posthoc
    pooled: dict[tuple[tuple[str, ...], str], tuple[str, bool]] = {}
    per_text = []
    for text in texts:
        own: dict[tuple[tuple[str, ...], str], bool] = {}
        for channel, context, class_id, options, chosen in _units(text, lexicon, cfg.channels,
                                                                  cfg.context_width):
            unit = (context, class_id)
            if unit in own:
                continue
            own[unit] = chosen in green_options(key.secret, context, class_id, options)
            pooled.setdefault(unit, (channel, own[unit]))
        per_text.append(Score(len(own), sum(own.values()), GAMMA, cfg.min_scored))
    channels = tuple(
        (name, Score(sum(1 for c, _ in pooled.values() if c == name),
                     sum(1 for c, g in pooled.values() if c == name and g), GAMMA,
                     cfg.min_scored))
        for name in cfg.channels)
    total = Score(len(pooled), sum(g for _, g in pooled.values()), GAMMA, cfg.min_scored)
    return Detection("lexical", total, tuple(per_text), channels)


_UNITS: dict[tuple, tuple] = {}


def _units(text: str, lexicon: Lexicon, channels: tuple[str, ...], width: int) -> tuple:
    """(channel, context, class, options, chosen) of each choice of ``text``. Finding them does
    not depend on the key, so they are kept (for up to 50,000 texts) for the next key: testing
    one file under many keys (benchmarks, the false-positive check) costs one reading of it."""
    cache_key = (lexicon.sha256, channels, width, text)
    found = _UNITS.get(cache_key)
    if found is None:
        starts, words = canonical_tokens(text, lexicon)
        found = tuple((c.channel, _context(starts, words, c.at, width), c.class_id, c.options,
                       c.chosen) for c in find_choices(text, lexicon, channels))
        if len(_UNITS) >= 50_000:
            _UNITS.clear()
        _UNITS[cache_key] = found
    return found
