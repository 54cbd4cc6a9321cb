"""The post-hoc mark: keyed synonym choices in text that was generated without a watermark.

For providers who cannot touch decoding. Each lexicon word (fingerprint.watermark.lexicon) is
"green" or not under a keyed hash of the words before it; marking replaces a non-green word by
the first green synonym in keyed order and fixes a preceding a/an. Only lowercase words are
swapped: a capitalised one is too often a name ("Mike", "Beefy's") to be read as a common word;
nor are words in code (Markdown code spans and blocks, or joined to an identifier like
``math.huge`` or ``huge_value``), where a synonym would break the program.
Detection scores each distinct (context, word) pair whose word is in the lexicon: green with
probability gamma under the null, so the same exact binomial test as the token mark applies.

Words are read left to right and the context is taken from the text as it is being written, so
the marker and the detector see the same contexts. "an" is read as "a" in contexts, because
fixing the article after a swap must not change the context the swap was chosen in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fingerprint.watermark.detect import Detection, Score
from fingerprint.watermark.green import lexical_green
from fingerprint.watermark.key import WatermarkKey
from fingerprint.watermark.lexicon import Lexicon, LexiconError, load_lexicon
from fingerprint.watermark.prose import CodeSpans, article_for, is_prose

_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class MarkedText:
    """The marked text, how many lexicon words it has and how many were swapped."""

    text: str
    candidates: int
    substitutions: int


def lexicon_for(key: WatermarkKey) -> Lexicon:
    """The lexicon, refused if it is not the one the key was made with."""
    lexicon = load_lexicon()
    if key.lexicon_sha256 is None:
        raise LexiconError("this key was made without a synonym lexicon (WordNet was not "
                           "installed at keygen): make a new key to use the post-hoc mark")
    if lexicon.sha256 != key.lexicon_sha256:
        raise LexiconError(f"the synonym lexicon built from {lexicon.source} (sha256 "
                           f"{lexicon.sha256[:16]}) is not the one this key was made with "
                           f"({key.lexicon_sha256[:16]}): use the WordNet data of the machine "
                           "that made the key (FINGERPRINT_WORDNET_DIR)")
    return lexicon


def mark_text(key: WatermarkKey, text: str, lexicon: Lexicon | None = None) -> MarkedText:
    """Mark ``text`` post-hoc with the key's version of the mark (2: fingerprint.watermark.posthoc;
    a key made before it, 1: synonyms only, below)."""
    lexicon = lexicon or lexicon_for(key)
    if key.posthoc is not None:
        from fingerprint.watermark.posthoc import mark_choices

        marked = mark_choices(key, text, lexicon)
        return MarkedText(marked.text, marked.candidates, marked.substitutions)
    cfg = key.lexical
    pieces: list[str] = []
    context: list[str] = []
    last_word_piece = -1
    position = candidates = swaps = 0
    code = CodeSpans(text)
    for match in _WORD.finditer(text):
        pieces.append(text[position:match.start()])
        word = match.group()
        lower = word.lower()
        members = lexicon.synonyms(lower)
        ctx = tuple(context[len(context) - cfg.context_width:]) if cfg.context_width else ()
        if members is not None and word.islower() and is_prose(text, *match.span(), code):
            candidates += 1
            if not lexical_green(key.secret, cfg.gamma, ctx, lower)[0]:
                chosen = _first_green(key, ctx, members)
                if chosen is not None:
                    swaps += 1
                    lower = word = chosen
                    _fix_article(pieces, last_word_piece, word)
        pieces.append(word)
        last_word_piece = len(pieces) - 1
        context.append(_context_form(lower))
        position = match.end()
    pieces.append(text[position:])
    return MarkedText("".join(pieces), candidates, swaps)


def detect_lexical(key: WatermarkKey, texts: Sequence[str],
                   lexicon: Lexicon | None = None) -> Detection:
    """Test texts for the post-hoc mark: per text and pooled over distinct pairs of all texts,
    with the key's version of the mark (see mark_text)."""
    lexicon = lexicon or lexicon_for(key)
    if key.posthoc is not None:
        from fingerprint.watermark.posthoc import detect_choices

        return detect_choices(key, texts, lexicon)
    cfg = key.lexical
    pooled: dict[tuple[str, ...], bool] = {}
    per_text: list[set[tuple[str, ...]]] = []
    for text in texts:
        words = [w.lower() for w in _WORD.findall(text)]
        seen: set[tuple[str, ...]] = set()
        for i, word in enumerate(words):
            if word in lexicon.word_class:
                start = max(0, i - cfg.context_width) if cfg.context_width else i
                seen.add((*(_context_form(w) for w in words[start:i]), word))
        for unit in seen:
            if unit not in pooled:
                pooled[unit] = lexical_green(key.secret, cfg.gamma, unit[:-1], unit[-1])[0]
        per_text.append(seen)
    scores = tuple(Score(len(s), int(np.sum([pooled[u] for u in s])), cfg.gamma, cfg.min_scored)
                   for s in per_text)
    total = Score(len(pooled), sum(pooled.values()), cfg.gamma, cfg.min_scored)
    return Detection("lexical", total, scores)


def _first_green(key: WatermarkKey, ctx: tuple[str, ...], members: tuple[str, ...]) -> str | None:
    greens = []
    for member in members:
        green, value = lexical_green(key.secret, key.lexical.gamma, ctx, member)
        if green:
            greens.append((value, member))
    return min(greens)[1] if greens else None


def _fix_article(pieces: list[str], index: int, word: str) -> None:
    """a/an before a swapped word, if only spaces stand between them."""
    if index < 0 or pieces[-1].strip(" ") or pieces[index].lower() not in ("a", "an"):
        return
    pieces[index] = article_for(pieces[index], word)


def _context_form(word: str) -> str:
    return "a" if word == "an" else word
