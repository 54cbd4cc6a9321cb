"""The keyed pseudo-random green lists.

A (context, token) pair is green when a keyed hash of it falls below ``gamma * 2**64``. The
context is hashed with keyed BLAKE2b (a PRF), giving a 64-bit seed; the token is mixed into the
seed with the splitmix64 finaliser, a bijection on 64-bit words, so a whole vocabulary's mask is a
few vectorised integer operations per generation step. For text that does not depend on the key,
each distinct pair is therefore green with probability ``gamma``, independently of the others:
the null hypothesis behind the exact binomial test in fingerprint.watermark.detect.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
TOKEN_DOMAIN = b"fp-wm-tokens-v1"
LEXICAL_DOMAIN = b"fp-wm-lexical-v1"


def threshold(gamma: float) -> np.uint64:
    """Hash values below this are green: a share ``gamma`` of all 64-bit values (to 2**-53)."""
    return np.uint64(min(int(gamma * 2.0**64), 2**64 - 1))


def context_seeds(secret: bytes, contexts: np.ndarray) -> np.ndarray:
    """One 64-bit seed per row of ``contexts`` (token ids, shape (n, width))."""
    rows = np.ascontiguousarray(contexts, dtype="<u4")
    seeds = np.empty(len(rows), dtype=np.uint64)
    for i, row in enumerate(rows):
        seeds[i] = int.from_bytes(
            hashlib.blake2b(row.tobytes(), key=secret, digest_size=8,
                            person=TOKEN_DOMAIN).digest(), "little")
    return seeds


def mix(seeds: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """splitmix64(seed xor token * golden): broadcasts seeds (n, 1) against tokens (V,)."""
    with np.errstate(over="ignore"):
        x = seeds ^ (tokens.astype(np.uint64) * _GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
        return x ^ (x >> np.uint64(31))


def last_columns(contexts: np.ndarray, width: int) -> np.ndarray:
    """The last ``width`` columns of ``contexts`` (batch, n): none for width 0, where the
    usual ``a[:, -width:]`` would give all of them."""
    contexts = np.asarray(contexts)
    return contexts[:, max(contexts.shape[1] - width, 0):] if width else contexts[:, :0]


def green_masks(secret: bytes, gamma: float, contexts: np.ndarray, vocab_size: int) -> np.ndarray:
    """Boolean (n, vocab_size): which next tokens are green after each context row."""
    seeds = context_seeds(secret, contexts)[:, None]
    return mix(seeds, np.arange(vocab_size, dtype=np.uint64)) < threshold(gamma)


def green_pairs(secret: bytes, gamma: float, windows: np.ndarray) -> np.ndarray:
    """Boolean (n,): is the last token of each window green after the tokens before it?

    Each distinct context is hashed once, however many windows share it."""
    windows = np.asarray(windows, dtype=np.uint32)
    if len(windows) == 0:
        return np.zeros(0, dtype=bool)
    contexts, inverse = unique_rows(windows[:, :-1])
    seeds = context_seeds(secret, contexts)[inverse]
    return mix(seeds, windows[:, -1]) < threshold(gamma)


def lexical_green(secret: bytes, gamma: float, context: tuple[str, ...],
                  word: str) -> tuple[bool, int]:
    """(green?, hash value) of ``word`` after the words ``context``; the value orders a class's
    green members so marking picks the same one every time."""
    data = "\x1f".join((*context, word)).encode("utf-8")
    value = int.from_bytes(hashlib.blake2b(data, key=secret, digest_size=8,
                                           person=LEXICAL_DOMAIN).digest(), "little")
    return value < int(threshold(gamma)), value


def _rows_as_bytes(rows: np.ndarray) -> np.ndarray:
    """Rows of a 2-D array as single opaque items, so np.unique compares whole rows fast."""
    rows = np.ascontiguousarray(rows, dtype="<u4")
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows, index of each input row's distinct row)."""
    rows = np.ascontiguousarray(rows, dtype="<u4")
    if rows.ndim == 2 and rows.shape[1] == 0:  # context width 0: every row is the empty one
        return (np.zeros((min(len(rows), 1), 0), dtype="<u4"),
                np.zeros(len(rows), dtype=np.int64))
    uniq, inverse = np.unique(_rows_as_bytes(rows), return_inverse=True)
    return (np.frombuffer(uniq.tobytes(), dtype="<u4").reshape(len(uniq), rows.shape[1]),
            inverse.reshape(-1))
