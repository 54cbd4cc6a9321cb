"""The compiled (numba) loops of fingerprint.wordpiece: vocabulary hashing, the one pass from a
batch of UTF-8 texts to WordPiece ids, splicing in the ids of non-ASCII runs, and summing table
rows per text. fingerprint.wordpiece's docstring says what they compute and why it is exact.

Imported (and so numba) only when fingerprint.wordpiece is; the compiled code is cached on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DROP, SPACE, PUNCT, WORD = 0, 1, 2, 3
CONTINUATION = 0xFF  # hashed before a "##" piece's bytes; never an ASCII byte

u64 = np.uint64
FNV_OFFSET, FNV_PRIME = u64(0xCBF29CE484222325), u64(0x100000001B3)


@njit(inline="always")
def fnv_step(h, byte):
    return (h ^ u64(byte)) * FNV_PRIME


@njit(inline="always")
def fnv_start(continuation):
    return fnv_step(FNV_OFFSET, CONTINUATION) if continuation else FNV_OFFSET


@njit(inline="always")
def home_slot(h, slots):
    return np.int64((h ^ (h >> u64(29))) & u64(slots.shape[0] - 1))


@njit(cache=True, nogil=True)
def fill_slots(keys, key_starts, key_continues, slots):
    for k in range(key_continues.shape[0]):
        h = fnv_start(key_continues[k])
        for j in range(key_starts[k], key_starts[k + 1]):
            h = fnv_step(h, keys[j])
        s = home_slot(h, slots)
        while slots[s] >= 0:
            s = (s + 1) & (slots.shape[0] - 1)
        slots[s] = k


@njit(cache=True, nogil=True)
def lookup(word, start, end, h, continuation, vocab):
    """The id of word[start:end] (a "##" piece if continuation), or -1."""
    slots, keys, key_starts, key_continues, key_ids = vocab
    s = home_slot(h, slots)
    while slots[s] >= 0:
        k = slots[s]
        a = key_starts[k]
        if key_continues[k] == continuation and key_starts[k + 1] - a == end - start:
            j = 0
            while j < end - start and keys[a + j] == word[start + j]:
                j += 1
            if j == end - start:
                return key_ids[k]
        s = (s + 1) & (slots.shape[0] - 1)
    return -1


@njit(cache=True, nogil=True)
def word_pieces(word, length, max_piece, vocab, hashes, pieces):
    """Greedy longest-match-first pieces of word[:length] into ``pieces``; -1 if unmatched."""
    count = 0
    start = 0
    while start < length:
        top = min(length, start + max_piece)
        h = fnv_start(start > 0)
        for e in range(start, top):
            h = fnv_step(h, word[e])
            hashes[e] = h  # of word[start:e + 1]
        end = top
        found = -1
        while end > start:
            found = lookup(word, start, end, hashes[end - 1], start > 0, vocab)
            if found >= 0:
                break
            end -= 1
        if found < 0:
            return -1
        pieces[count] = found
        count += 1
        start = end
    return count


@njit(cache=True, nogil=True)
def emit_word(word, length, out, pos, stop, unk, max_chars, max_piece, vocab, hashes, pieces):
    """Write the word's ids at out[pos:] (not past stop); returns the next position."""
    count = -1 if length > max_chars else word_pieces(word, length, max_piece, vocab, hashes,
                                                      pieces)
    if count < 0:
        out[pos] = unk
        return pos + 1
    for j in range(min(count, stop - pos)):
        out[pos + j] = pieces[j]
    return min(pos + count, stop)


@njit(cache=True, nogil=True)
def special_at(data, i, end, specials, special_starts):
    """The index of the longest special token spelt at data[i:], or -1."""
    best = -1
    best_length = 0
    for k in range(special_starts.shape[0] - 1):
        a = special_starts[k]
        n = special_starts[k + 1] - a
        if n > best_length and i + n <= end:
            j = 0
            while j < n and data[i + j] == specials[a + j]:
                j += 1
            if j == n:
                best = k
                best_length = n
    return best


@njit(cache=True, nogil=True)
def encode(data, offsets, limit, byte_class, byte_map, specials, special_starts, special_ids,
           unk, max_chars, max_piece, vocab, out, out_offsets):
    """Ids of each text data[offsets[d]:offsets[d + 1]] into out[out_offsets[d]:out_offsets[d +
    1]], up to ``limit`` of them, except for its non-ASCII runs. Returns how many runs there are
    and, for each, (start, end) in data, its text and the position in out it goes before.

    Kept whole: it is one compiled pass over the bytes whose loop state (position, the word
    being read, the start of a run, the non-ASCII runs found) every step reads and writes;
    split into helpers, numba would pass all of it in and out of each call."""
    longest = 1
    for d in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    size = min(longest, max_chars) + 1
    word = np.empty(size, np.uint8)
    hashes = np.empty(size, np.uint64)
    pieces = np.empty(size, np.int32)
    special_first = np.zeros(256, np.bool_)
    for k in range(special_starts.shape[0] - 1):
        special_first[specials[special_starts[k]]] = True
    runs = np.empty((16, 4), np.int64)
    found = 0
    pos = 0
    for d in range(offsets.shape[0] - 1):
        out_offsets[d] = pos
        i = offsets[d]
        end = offsets[d + 1]
        stop = pos + min(limit, end - i)  # every token uses at least one byte
        length = 0  # of the word being read; only its first `size` bytes are kept
        run_start = True
        while i < end and pos < stop:
            c = data[i]
            if run_start and byte_class[c] != SPACE:
                run_start = False
                j = i
                ascii = True
                while j < end and byte_class[data[j]] != SPACE:
                    ascii = ascii and data[j] < 0x80
                    j += 1
                if not ascii:
                    if found == runs.shape[0]:
                        grown = np.empty((2 * found, 4), np.int64)
                        grown[:found] = runs
                        runs = grown
                    runs[found, 0] = i
                    runs[found, 1] = j
                    runs[found, 2] = d
                    runs[found, 3] = pos
                    found += 1
                    i = j
                    continue
            k = special_at(data, i, end, specials, special_starts) if special_first[c] else -1
            kind = PUNCT if k >= 0 else byte_class[c]
            if kind == WORD:
                if length < size:
                    word[length] = byte_map[c]
                length += 1
            elif kind != DROP:
                if length > 0:
                    pos = emit_word(word, length, out, pos, stop, unk, max_chars, max_piece,
                                    vocab, hashes, pieces)
                    length = 0
                if k >= 0 and pos < stop:
                    out[pos] = special_ids[k]
                    pos += 1
                    i += special_starts[k + 1] - special_starts[k] - 1
                elif kind == PUNCT and pos < stop:
                    word[0] = c
                    pos = emit_word(word, 1, out, pos, stop, unk, max_chars, max_piece, vocab,
                                    hashes, pieces)
                run_start = kind == SPACE
            i += 1
        if length > 0 and pos < stop:
            pos = emit_word(word, length, out, pos, stop, unk, max_chars, max_piece, vocab,
                            hashes, pieces)
    out_offsets[offsets.shape[0] - 1] = pos
    return found, runs


@njit(cache=True, nogil=True)
def splice(ids, offsets, runs, run_ids, run_offsets, limit, out, out_offsets):
    """``ids`` with run r's ids (run_ids[run_offsets[r]:run_offsets[r + 1]]) inserted where
    ``runs`` says, truncated to ``limit`` per text."""
    pos = 0
    r = 0
    for d in range(offsets.shape[0] - 1):
        out_offsets[d] = pos
        stop = pos + limit
        for j in range(offsets[d], offsets[d + 1] + 1):
            while r < runs.shape[0] and runs[r, 2] == d and runs[r, 3] == j:
                for k in range(run_offsets[r], min(run_offsets[r + 1],
                                                   run_offsets[r] + stop - pos)):
                    out[pos] = run_ids[k]
                    pos += 1
                r += 1
            if j < offsets[d + 1] and pos < stop:
                out[pos] = ids[j]
                pos += 1
    out_offsets[offsets.shape[0] - 1] = pos


@njit(cache=True, nogil=True)
def sum_rows(ids, offsets, table, empty_row, out):
    """out[d] = sum of table[ids] over text d's ids; table[empty_row] where that sum is 0."""
    for d in range(offsets.shape[0] - 1):
        row = out[d]
        row[:] = 0
        for j in range(offsets[d], offsets[d + 1]):
            token = table[ids[j]]
            for c in range(row.shape[0]):
                row[c] += token[c]
        if not np.any(row):
            row[:] = table[empty_row]


@njit(cache=True, nogil=True)
def encode_sums(data, offsets, limit, byte_class, byte_map, specials, special_starts, special_ids,
                unk, max_chars, max_piece, vocab, out, out_offsets, table, empty_row, sums):
    """``encode``, then, if no text has a non-ASCII run, ``sum_rows`` into ``sums``: one call
    instead of two for the usual text (a call into compiled code costs microseconds)."""
    found, runs = encode(data, offsets, limit, byte_class, byte_map, specials, special_starts,
                         special_ids, unk, max_chars, max_piece, vocab, out, out_offsets)
    if found == 0:
        sum_rows(out, out_offsets, table, empty_row, sums)
    return found, runs
