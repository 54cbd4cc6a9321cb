"""A compiled (numba) BERT WordPiece: the tokenizer's exact ids, an order of magnitude faster.

The tokenizers library spends ~0.4 ms on a 1 KB answer, more than all the rest of fingerprinting.
Here a batch of texts travels as one UTF-8 buffer with offsets (as in fingerprint.minhash_kernels)
through one compiled pass that does what a BERT tokenizer.json (BertNormalizer with clean_text,
BertPreTokenizer, WordPiece) does to ASCII:

1. special tokens written in the text ("[CLS]", "[UNK]", ...) are matched on the raw text,
   longest first, and become their own token;
2. control characters vanish, even inside a word: all of 0x00-0x1F but \\t \\n \\r, and DEL;
   \\x0b and \\x0c too, since the normaliser finds them control before it finds them whitespace;
3. words split at \\t \\n \\r and space; every printable non-alphanumeric character is a word of
   its own (Rust's ``is_ascii_punctuation``: $ ^ ` ~ | + < = > included); letters are lowercased
   if the normaliser lowercases;
4. greedy longest-match-first WordPiece, "##" pieces after the first; a word longer than
   ``max_input_chars_per_word`` characters, or with a remainder no piece matches, is one [UNK];
5. the tokenizer's truncation: a text stops at its limit, so a long one costs no more.

Unicode is not re-implemented: a run between ASCII whitespace that holds a non-ASCII character
is skipped, given to the tokenizer alone, and its ids are spliced in. That is exact
because no step of the pipeline looks across ASCII whitespace (special tokens hold none, NFD
reorders only combining marks), and cheap: in real answers such runs are ~0.2% of the words.

The vocabulary is an open-addressing (FNV-1a, linear probing) table of its ASCII entries.
``FastWordPiece.from_tokenizer`` returns None for a tokenizer configured any other way, so callers
keep the tokenizer for it. tests/test_wordpiece.py compares the ids with the tokenizer's on real
answers and on random strings.

Like fingerprint.minhash_kernels, this module (and so numba) is imported only when first needed,
and the compiled code is cached on disk.
"""

from __future__ import annotations

import json
import string
import unicodedata
from typing import Any, Sequence

import numpy as np
from numba import njit

DROP, SPACE, PUNCT, WORD = 0, 1, 2, 3
CONTINUATION = 0xFF  # hashed before a "##" piece's bytes; never an ASCII byte
NO_LIMIT = 1 << 62  # the tokenizer does not truncate

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


def byte_tables(lowercase: bool) -> tuple[np.ndarray, np.ndarray]:
    """What BertNormalizer (clean_text) and BertPreTokenizer make of each ASCII byte."""
    classes = np.full(256, WORD, dtype=np.uint8)
    mapped = np.arange(256, dtype=np.uint8)
    for c in range(128):
        ch = chr(c)
        if ch in " \t\n\r":
            classes[c] = SPACE
        elif unicodedata.category(ch) == "Cc":
            classes[c] = DROP
        elif ch in string.punctuation:
            classes[c] = PUNCT
        elif lowercase:
            mapped[c] = ord(ch.lower())
    return classes, mapped


def supported(config: dict[str, Any]) -> bool:
    """Whether the tokenizer's pipeline is the one this module re-implements."""
    normalizer = config.get("normalizer") or {}
    model = config["model"]
    return (normalizer.get("type") == "BertNormalizer" and normalizer.get("clean_text") is True
            and config.get("pre_tokenizer") == {"type": "BertPreTokenizer"}
            and model.get("type") == "WordPiece" and model.get("unk_token") in model["vocab"]
            and config.get("padding") is None
            and (config.get("truncation") or {"direction": "Right"})["direction"] == "Right"
            and not any(t["normalized"] or t["single_word"] or t["lstrip"] or t["rstrip"]
                        for t in config.get("added_tokens", [])))


def packed(parts: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """One byte buffer and len(parts)+1 offsets."""
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)), out=offsets[1:])
    # numba wants a non-empty buffer to index into
    return np.frombuffer(b"".join(parts) or b"\0", dtype=np.uint8), offsets


class FastWordPiece:
    """The ids a BERT-style ``tokenizers.Tokenizer`` gives texts, without the special tokens it
    adds around them, and truncated as it truncates."""

    def __init__(self, tokenizer: Any, config: dict[str, Any]):
        """``config`` is the tokenizer's, and ``supported``: from_tokenizer checks."""
        from tokenizers import Tokenizer

        model = config["model"]
        vocab = model["vocab"]
        prefix = model["continuing_subword_prefix"]
        entries = [(t.encode(), False, i) for t, i in vocab.items() if t.isascii()]
        entries += [(t[len(prefix):].encode(), True, i) for t, i in vocab.items()
                    if t.isascii() and t.startswith(prefix) and len(t) > len(prefix)]
        keys, key_starts = packed([e[0] for e in entries])
        continues = np.array([e[1] for e in entries], dtype=np.bool_)
        ids = np.array([e[2] for e in entries], dtype=np.int32)
        slots = np.full(1 << (2 * len(entries)).bit_length(), -1, dtype=np.int32)
        fill_slots(keys, key_starts, continues, slots)
        self.vocab = (slots, keys, key_starts, continues, ids)
        self.max_piece = max(len(e[0]) for e in entries)
        self.unk = vocab[model["unk_token"]]
        self.max_chars = model["max_input_chars_per_word"]
        self.byte_class, self.byte_map = byte_tables(config["normalizer"]["lowercase"])
        added = [t for t in config.get("added_tokens", []) if t["content"].isascii()]
        self.specials, self.special_starts = packed([t["content"].encode() for t in added])
        self.special_ids = np.array([t["id"] for t in added], dtype=np.int32)

        truncation = config.get("truncation")
        around = tokenizer.num_special_tokens_to_add(False)
        # the tokenizer does not truncate at all when max_length cannot hold its special tokens
        self.limit = (truncation["max_length"] - around
                      if truncation and truncation["max_length"] >= around else NO_LIMIT)
        self.whole = Tokenizer.from_str(tokenizer.to_str())  # for non-ASCII runs, untruncated
        self.whole.no_truncation()

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> FastWordPiece | None:
        config = json.loads(tokenizer.to_str())
        return cls(tokenizer, config) if supported(config) else None

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Text d's ids are ids[offsets[d]:offsets[d + 1]] (int32)."""
        data, offsets = packed([t.encode() for t in texts])
        capacity = np.minimum(np.diff(offsets), self.limit).sum()
        ids = np.empty(max(int(capacity), 1), dtype=np.int32)
        ids_offsets = np.empty(len(texts) + 1, dtype=np.int64)
        found, runs = encode(data, offsets, self.limit, self.byte_class, self.byte_map,
                             self.specials, self.special_starts, self.special_ids, self.unk,
                             self.max_chars, self.max_piece, self.vocab, ids, ids_offsets)
        if found:
            return self._splice(data, runs[:found], ids, ids_offsets)
        return ids[:ids_offsets[-1]], ids_offsets

    def _splice(self, data: np.ndarray, runs: np.ndarray, ids: np.ndarray,
                offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        words = [data[a:b].tobytes().decode() for a, b in runs[:, :2]]
        unique = list(dict.fromkeys(words))
        encoded = dict(zip(unique, (e.ids for e in self.whole.encode_batch(
            unique, add_special_tokens=False))))
        rows = [encoded[w] for w in words]
        run_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=run_offsets[1:])
        run_ids = np.fromiter((i for r in rows for i in r), dtype=np.int32,
                              count=run_offsets[-1])
        out = np.empty(max(int(offsets[-1]) + len(run_ids), 1), dtype=np.int32)
        out_offsets = np.empty_like(offsets)
        splice(ids, offsets, runs, run_ids, run_offsets, self.limit, out, out_offsets)
        return out[:out_offsets[-1]], out_offsets


def row_sums(ids: np.ndarray, offsets: np.ndarray, table: np.ndarray,
             empty_row: int) -> np.ndarray:
    """Per text, the sum of its tokens' table rows; table[empty_row] for none."""
    out = np.empty((len(offsets) - 1, table.shape[1]), dtype=table.dtype)
    sum_rows(ids, offsets, table, empty_row, out)
    return out
