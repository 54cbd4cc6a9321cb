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

The compiled loops are in fingerprint.wordpiece_kernels. Like fingerprint.minhash_kernels, they
(and so numba) are imported only when this module first is, and cached on disk.
"""

from __future__ import annotations

import json
import string
import threading
import unicodedata
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from fingerprint.wordpiece_kernels import (DROP, PUNCT, SPACE, WORD, encode, encode_sums,
                                         fill_slots, splice, sum_rows)

NO_LIMIT = 1 << 62  # the tokenizer does not truncate
RUN_CACHE = 1 << 14  # non-ASCII runs whose ids FastWordPiece keeps (a few MB at most)
RUN_CACHE_CHARS = 64  # longer runs rarely recur: tokenised each time


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
    if len(parts) == 1:  # the online monitor's case: no joining, no cumulative sum
        return (np.frombuffer(parts[0] or b"\0", dtype=np.uint8),
                np.array((0, len(parts[0])), dtype=np.int64))
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
        self._runs: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._runs_lock = threading.Lock()

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> FastWordPiece | None:
        config = json.loads(tokenizer.to_str())
        return cls(tokenizer, config) if supported(config) else None

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Text d's ids are ids[offsets[d]:offsets[d + 1]] (int32)."""
        data, offsets, ids, ids_offsets = self._buffers(texts)
        found, runs = encode(data, offsets, self.limit, self.byte_class, self.byte_map,
                             self.specials, self.special_starts, self.special_ids, self.unk,
                             self.max_chars, self.max_piece, self.vocab, ids, ids_offsets)
        if found:
            return self._splice(data, runs[:found], ids, ids_offsets)
        return ids[:ids_offsets[-1]], ids_offsets

    def row_sums(self, texts: Sequence[str], table: np.ndarray, empty_row: int) -> np.ndarray:
        """``row_sums(*self.encode(texts), table, empty_row)``, the same numbers; texts without
        a non-ASCII run take one compiled call for both steps."""
        data, offsets, ids, ids_offsets = self._buffers(texts)
        out = np.empty((len(texts), table.shape[1]), dtype=table.dtype)
        found, runs = encode_sums(data, offsets, self.limit, self.byte_class, self.byte_map,
                                  self.specials, self.special_starts, self.special_ids, self.unk,
                                  self.max_chars, self.max_piece, self.vocab, ids, ids_offsets,
                                  table, empty_row, out)
        if found:
            ids, ids_offsets = self._splice(data, runs[:found], ids, ids_offsets)
            sum_rows(ids, ids_offsets, table, empty_row, out)
        return out

    def _buffers(self, texts: Sequence[str]) -> tuple[np.ndarray, ...]:
        """The texts packed, and room for their ids and offsets."""
        parts = [t.encode() for t in texts]
        data, offsets = packed(parts)
        if len(parts) == 1:
            capacity = min(len(parts[0]), self.limit)
        else:
            capacity = int(np.minimum(np.diff(offsets), self.limit).sum())
        return (data, offsets, np.empty(max(capacity, 1), dtype=np.int32),
                np.empty(len(texts) + 1, dtype=np.int64))

    def _splice(self, data: np.ndarray, runs: np.ndarray, ids: np.ndarray,
                offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = data.tobytes()
        rows = self._run_ids([raw[a:b].decode() for a, b in runs[:, :2].tolist()])
        run_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=run_offsets[1:])
        run_ids = np.fromiter((i for r in rows for i in r), dtype=np.int32,
                              count=run_offsets[-1])
        out = np.empty(max(int(offsets[-1]) + len(run_ids), 1), dtype=np.int32)
        out_offsets = np.empty_like(offsets)
        splice(ids, offsets, runs, run_ids, run_offsets, self.limit, out, out_offsets)
        return out[:out_offsets[-1]], out_offsets

    def _run_ids(self, words: list[str]) -> list[tuple[int, ...]]:
        """Each non-ASCII run's ids, the tokenizer's for the run alone. A run recurs (a word of
        a language, an emoji) and the library takes ~15 us a call, so the ids of runs of at most
        ``RUN_CACHE_CHARS`` characters are kept, the ``RUN_CACHE`` most recently used."""
        cache = self._runs
        with self._runs_lock:
            known = {w: cache[w] for w in words if w in cache}
            for w in known:
                cache.move_to_end(w)
        missing = [w for w in dict.fromkeys(words) if w not in known]
        if missing:
            encoded = self.whole.encode_batch(missing, add_special_tokens=False)
            known.update(zip(missing, (tuple(e.ids) for e in encoded)))
            with self._runs_lock:
                for w in missing:
                    if len(w) <= RUN_CACHE_CHARS:
                        cache[w] = known[w]
                while len(cache) > RUN_CACHE:
                    cache.popitem(last=False)
        return [known[w] for w in words]


def row_sums(ids: np.ndarray, offsets: np.ndarray, table: np.ndarray,
             empty_row: int) -> np.ndarray:
    """Per text, the sum of its tokens' table rows; table[empty_row] for none."""
    out = np.empty((len(offsets) - 1, table.shape[1]), dtype=table.dtype)
    sum_rows(ids, offsets, table, empty_row, out)
    return out
