"""Compiled (numba) inner loops of the xxh32 MinHash: tokenise, shingle, hash and permute in one pass.

From raw text, Python-level shingling costs more than all the hashing (a 3-gram set per response
is ~30 string objects per 100 bytes). Here a whole batch travels as one UTF-8 byte buffer with
offsets: each document is split into words and joined by single spaces in a scratch buffer, every
word n-gram is then a contiguous slice whose xxh32 is computed in place, and the 32-bit hash goes
straight through datasketch's affine32 permutations into the running minimum. No shingle string or
set is ever built; duplicates need no removal because the minimum ignores them.

The word rule is the one in fingerprint.shingles (``\\w+`` over the normalised text). ASCII text
reaches the kernel raw (for ASCII, NFKC is the identity, casefold is lowercasing and ``\\w`` is
``[A-Za-z0-9_]``, which the byte table applies); other text is normalised and split in Python and
arrives as words joined by spaces, which the same table splits identically.

fingerprint.minhash imports this module (and so numba) only when a kernel is first needed, so
``import fingerprint`` stays light; the compiled code is cached on disk (``cache=True``), so only
the first process pays for compiling.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# byte -> 0 if it separates words, otherwise the byte itself (ASCII letters lowercased). Bytes of
# multi-byte UTF-8 sequences (>= 0x80) only ever reach the kernel inside words (see module doc).
WORD_BYTES = np.array([0 if c < 0x80 and not (chr(c).isalnum() or c == 0x5F)
                       else (ord(chr(c).lower()) if c < 0x80 else c) for c in range(256)],
                      dtype=np.uint8)

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


@njit(cache=True, nogil=True)
def text_signatures(data, offsets, word_bytes, ngram, a, b, out):
    k = a.shape[0]
    longest = 0
    for d in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    clean = np.empty(longest + 1, np.uint8)
    starts = np.empty(longest // 2 + 2, np.int64)
    ends = np.empty(longest // 2 + 2, np.int64)
    sig = np.empty(k, np.uint32)
    for d in range(offsets.shape[0] - 1):
        i = offsets[d]
        stop = offsets[d + 1]
        words = 0
        size = 0
        while i < stop:
            if word_bytes[data[i]] == 0:
                i += 1
                continue
            if words > 0:
                clean[size] = 32
                size += 1
            starts[words] = size
            while i < stop and word_bytes[data[i]] != 0:
                clean[size] = word_bytes[data[i]]
                size += 1
                i += 1
            ends[words] = size
            words += 1
        for j in range(k):
            sig[j] = 0xFFFFFFFF
        span = ngram if words >= ngram else words
        for s in range(words - span + 1 if words > 0 else 0):
            h = fmix32(xxh32(clean, starts[s], ends[s + span - 1]))
            for j in range(k):
                sig[j] = min(sig[j], np.uint32(h * a[j] + b[j]))
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
