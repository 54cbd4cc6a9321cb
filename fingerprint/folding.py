"""Texts folded once for every fingerprint that reads words: Unicode NFKC, then case folding, as
code points.

The MinHash words (fingerprint.shingles: ``\\w+`` runs of the normalised text) and the style
tokens (fingerprint.style) are both read from ``NFKC(text).casefold()``: the normaliser's
whitespace collapsing cannot change a run of word characters, so one folded form serves both.
A batch is folded in Python (C-speed string methods) into one array of code points with offsets,
which the compiled kernels (minhash_kernels.folded_signatures, style_kernels.style_counts) read
with ``char_classes``: a table, made from Python's own regular expressions over every code
point, of what ``\\w``, ``\\s`` and ``\\n`` match. So the kernels apply the regular expressions'
rules without re-implementing Unicode's categories.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SPACE, WORD, OTHER, NEWLINE = 0, 1, 2, 3
CODE_POINTS = 0x110000


def fold(text: str) -> str:
    """NFKC, then case folding (normaliser and style version 1's first two steps)."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class FoldedTexts:
    """A batch of folded texts: text r is ``codes[offsets[r]:offsets[r + 1]]`` (uint32 code
    points; a lone surrogate kept as itself)."""

    codes: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


def fold_texts(texts: Sequence[str]) -> FoldedTexts:
    folded = [fold(text) for text in texts]
    offsets = np.zeros(len(folded) + 1, dtype=np.int64)
    np.cumsum([len(f) for f in folded], out=offsets[1:])
    codes = np.frombuffer("".join(folded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if codes.size == 0:
        codes = np.zeros(1, np.uint32)  # numba wants a non-empty buffer to index into
    return FoldedTexts(codes, offsets)


@functools.cache
def char_classes() -> np.ndarray:
    """Code point -> SPACE (``\\s`` but not a newline: separates), WORD (``\\w``), NEWLINE
    (``\\n``) or OTHER (anything else: punctuation, markdown, emoji), for every code point, found
    by the regular expressions themselves (about 0.2 s, once per process)."""
    every = "".join(map(chr, range(CODE_POINTS)))
    table = np.full(CODE_POINTS, OTHER, dtype=np.uint8)
    table[[m.start() for m in re.finditer(r"\s", every)]] = SPACE
    table[[m.start() for m in re.finditer(r"\w", every)]] = WORD
    table[ord("\n")] = NEWLINE
    return table
