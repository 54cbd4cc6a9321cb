"""Compiled (numba) inner loops of the xxh32 MinHash: tokenise, shingle, hash and permute in one pass.

From raw text, Python-level shingling costs more than all the hashing (a 3-gram set per response
is ~30 string objects per 100 bytes). Here a whole batch travels as the folded code points of
fingerprint.folding with offsets: each document's words (runs of code points the table says
``\\w`` matches, the rule of fingerprint.shingles) are written as UTF-8 joined by single spaces in
a scratch buffer, every word n-gram is then a contiguous slice whose xxh32 is computed in place,
and the 32-bit hash goes straight through datasketch's affine32 permutations into the running
minimum. No shingle string or set is ever built; duplicates need no removal because the minimum
ignores them. (Until 2026-11-28 non-ASCII texts were normalised and split in Python, at ~400 us a
text; folding every text once, for MinHash and style together, is what made that go.)

fingerprint.minhash imports this module (and so numba) only when a kernel is first needed, so
``import fingerprint`` stays light; the compiled code is cached on disk (``cache=True``), so only
the first process pays for compiling.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fingerprint.style_kernels import put_utf8

# 32-bit arithmetic is done in uint64 and masked: numba types mixed unsigned arithmetic as
# floats otherwise, and the masking compiles to plain 32-bit operations.
u64 = np.uint64
mask = u64(0xFFFFFFFF)
p1, p2, p3 = u64(0x9E3779B1), u64(0x85EBCA77), u64(0xC2B2AE3D)  # XXH32 primes
p4, p5 = u64(0x27D4EB2F), u64(0x165667B1)
f1, f2 = u64(0x85EBCA6B), u64(0xC2B2AE35)  # MurmurHash3 fmix32


@njit(inline="always")
def rotl(x, r):
    return ((x << u64(r)) | (x >> u64(32 - r))) & mask


@njit(inline="always")
def read32(buf, i):
    return (u64(buf[i]) | (u64(buf[i + 1]) << u64(8)) | (u64(buf[i + 2]) << u64(16))
            | (u64(buf[i + 3]) << u64(24)))


@njit(cache=True, nogil=True)
def xxh32(buf, start, end):
    """XXH32 with seed 0 of buf[start:end] (the reference algorithm, 32-bit arithmetic)."""
    n = end - start
    i = start
    if n >= 16:
        v1 = (p1 + p2) & mask
        v2 = p2
        v3 = u64(0)
        v4 = (u64(0x100000000) - p1) & mask
        while i <= end - 16:
            v1 = (rotl((v1 + read32(buf, i) * p2) & mask, 13) * p1) & mask
            v2 = (rotl((v2 + read32(buf, i + 4) * p2) & mask, 13) * p1) & mask
            v3 = (rotl((v3 + read32(buf, i + 8) * p2) & mask, 13) * p1) & mask
            v4 = (rotl((v4 + read32(buf, i + 12) * p2) & mask, 13) * p1) & mask
            i += 16
        h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & mask
    else:
        h = p5
    h = (h + u64(n)) & mask
    while i + 4 <= end:
        h = (rotl((h + read32(buf, i) * p3) & mask, 17) * p4) & mask
        i += 4
    while i < end:
        h = (rotl((h + u64(buf[i]) * p5) & mask, 11) * p1) & mask
        i += 1
    h ^= h >> u64(15)
    h = (h * p2) & mask
    h ^= h >> u64(13)
    h = (h * p3) & mask
    h ^= h >> u64(16)
    return h

@njit(inline="always")
def fmix32(h):
    """MurmurHash3's finalizer, which datasketch's affine32 scheme applies to every hash."""
    h ^= h >> u64(16)
    h = (h * f1) & mask
    h ^= h >> u64(13)
    h = (h * f2) & mask
    h ^= h >> u64(16)
    return np.uint32(h)


@njit(cache=True, nogil=True)
def xxh32_many(data, offsets, out):
    for d in range(offsets.shape[0] - 1):
        out[d] = np.uint32(xxh32(data, offsets[d], offsets[d + 1]))


@njit(inline="always")
def minhash_words(clean, starts, ends, words, ngram, a, b, sig):
    """The MinHash of the word n-grams of ``words`` words (spans starts/ends in ``clean``, one
    space between consecutive words, so an n-gram is one contiguous slice) into ``sig``. Fewer
    than ``ngram`` words: one shingle of all of them; none: the empty signature."""
    for j in range(a.shape[0]):
        sig[j] = 0xFFFFFFFF
    span = ngram if words >= ngram else words
    for s in range(words - span + 1 if words > 0 else 0):
        h = fmix32(xxh32(clean, starts[s], ends[s + span - 1]))
        for j in range(a.shape[0]):
            sig[j] = min(sig[j], np.uint32(h * a[j] + b[j]))


@njit(cache=True, nogil=True)
def folded_signatures(codes, offsets, classes, ngram, a, b, out):
    """Signatures of folded texts (fingerprint.folding): each text's words (runs of WORD code
    points) are written as UTF-8 into a scratch buffer joined by single spaces, exactly
    ``" ".join(words(normalize(text)))``, and its n-grams hashed in place."""
    longest = 1
    for d in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    clean = np.empty(5 * longest + 8, np.uint8)  # 4 bytes a code point at most, plus spaces
    starts = np.empty(longest // 2 + 2, np.int64)
    ends = np.empty(longest // 2 + 2, np.int64)
    sig = np.empty(a.shape[0], np.uint32)
    for d in range(offsets.shape[0] - 1):
        i = offsets[d]
        stop = offsets[d + 1]
        words = 0
        size = 0
        while i < stop:
            if classes[codes[i]] != 1:
                i += 1
                continue
            if words > 0:
                clean[size] = 32
                size += 1
            starts[words] = size
            while i < stop and classes[codes[i]] == 1:
                size = put_utf8(clean, size, codes[i])
                i += 1
            ends[words] = size
            words += 1
        minhash_words(clean, starts, ends, words, ngram, a, b, sig)
        out[d, :] = sig


def xxh32_strings(strings: list[str]) -> np.ndarray:
    """xxh32 (seed 0) of each string's UTF-8 bytes, as uint32."""
    data, offsets = pack([s.encode("utf-8") for s in strings])
    out = np.empty(len(strings), dtype=np.uint32)
    xxh32_many(data, offsets, out)
    return out


def pack(parts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """One byte buffer and len(parts)+1 offsets."""
    if len(parts) == 1 and parts[0]:  # one text (the online monitor's): no joining or summing
        return np.frombuffer(parts[0], dtype=np.uint8), np.array((0, len(parts[0])), np.int64)
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)), out=offsets[1:])
    data = np.frombuffer(b"".join(parts), dtype=np.uint8) if parts else np.zeros(0, np.uint8)
    if data.size == 0:
        data = np.zeros(1, np.uint8)  # numba wants a non-empty buffer to index into
    return data, offsets
