"""The compiled WordPiece (fingerprint.wordpiece) against the tokenizers library it replaces:
the ids must be identical, for the default model's tokenizer as the static backend loads it."""

import json
import string
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from fingerprint.config import DEFAULT_EMBEDDING_MODEL
from fingerprint.embed import load_backend
from fingerprint.embed_model import clip, load_tokenizer, local_model_dir, normalise_rows
from fingerprint.io import read_records
from fingerprint.wordpiece import FastWordPiece


@lru_cache(maxsize=None)
def tokenizers(max_tokens: int, lowercase: bool = True) -> tuple[Tokenizer, FastWordPiece]:
    tokenizer = load_tokenizer(local_model_dir(DEFAULT_EMBEDDING_MODEL, "static"), max_tokens)
    if not lowercase:
        config = json.loads(tokenizer.to_str())
        config["normalizer"]["lowercase"] = False
        tokenizer = Tokenizer.from_str(json.dumps(config))
    fast = FastWordPiece.from_tokenizer(tokenizer)
    assert fast is not None
    return tokenizer, fast


def assert_same_ids(texts, max_tokens, lowercase=True):
    tokenizer, fast = tokenizers(max_tokens, lowercase)
    ids, offsets = fast.encode(texts)
    assert ids.dtype == np.int32 and len(offsets) == len(texts) + 1
    for d, encoding in enumerate(tokenizer.encode_batch(texts)):
        expected = encoding.ids[1:-1]  # without [CLS] and [SEP]
        assert ids[offsets[d]:offsets[d + 1]].tolist() == expected, repr(texts[d])


@pytest.mark.parametrize("lowercase", [True, False])
def test_every_ascii_character_is_treated_like_the_tokenizer_does(lowercase):
    """Dropped (controls, DEL, \\x0b, \\x0c), space, punctuation or part of a word."""
    chars = [chr(c) for c in range(128)]
    texts = chars + [f"Ab{c}cD" for c in chars] + [f"{c}x{c}" for c in chars]
    assert_same_ids(texts, 256, lowercase)


def test_special_tokens_long_words_and_limits():
    texts = ["a [CLS] b [MASK][UNK]x[SEP]y [PAD] [cls] [C\x01LS] [[SEP]]", "x" * 100, "x" * 101,
             "x" * 60 + "\x01" + "x" * 60, "unaffable " * 40, "", " \t\n", "\x00\x7f",
             "naïve café [SEP]é\u00a0Σ 文字 " * 30, "\u200b", "“quoted”"]
    for max_tokens in (0, 1, 2, 3, 16, 256, 100_000):
        assert_same_ids(texts, max_tokens)


@pytest.mark.slow
@pytest.mark.parametrize("max_tokens", [256, 100_000])
def test_real_answers_get_the_tokenizers_ids(alpacaeval, max_tokens):
    """Every AlpacaEval answer of every model; 100,000 compares whole texts."""
    texts = [r.response for path in sorted((alpacaeval / "outputs").glob("*.jsonl"))
             for r in read_records(path)]
    assert sum(t.isascii() for t in texts) > len(texts) // 2
    assert_same_ids(clip(texts, max_tokens), max_tokens)


_ASCII = list(string.ascii_letters + string.digits + string.punctuation
              + " \t\n\r\x0b\x0c\x00\x01\x1b\x1f\x7f")
_PIECES = ["[CLS]", "[SEP]", "[UNK]", "[MASK]", "[PAD]", "[CLS", "##", "unaffable", "The",
           "é", "ß", "İ", "\u0301", "—", "’", "\u00a0", "\u2003", "\u0085", "😀", "中", "Σ",
           "\u200b", "\ufffd"]
_TEXT = st.lists(st.one_of(st.sampled_from(_ASCII), st.sampled_from(_PIECES),
                           st.text(alphabet=string.ascii_letters, min_size=95, max_size=110)),
                 max_size=60).map("".join)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=5), st.sampled_from([1, 2, 6, 16, 100_000]),
       st.booleans())
def test_random_text_gets_the_tokenizers_ids(texts, max_tokens, lowercase):
    assert_same_ids(texts, max_tokens, lowercase)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_any_unicode_text_gets_the_tokenizers_ids(texts):
    """Non-ASCII words go to the tokenizer alone: splitting at ASCII whitespace changes nothing."""
    assert_same_ids(texts, 16)


def test_other_pipelines_are_left_to_the_tokenizer():
    config = json.loads(tokenizers(256)[0].to_str())
    config["pre_tokenizer"] = {"type": "Whitespace"}
    assert FastWordPiece.from_tokenizer(Tokenizer.from_str(json.dumps(config))) is None


def test_static_vectors_equal_the_tokenizer_only_ones_in_input_order(alpacaeval, monkeypatch):
    records = [r for path in sorted((alpacaeval / "outputs").glob("*.jsonl"))[:4]
               for r in read_records(path)]
    texts = [r.response for r in records[::20]] + ["", "🙂", "[CLS]", "\x00", "Ünïcödé " * 400]
    assert 0 < sum(t.isascii() for t in texts) < len(texts)
    backend = load_backend("static", DEFAULT_EMBEDDING_MODEL)
    tokenizer = tokenizers(64)[0]
    rows = []
    for encoding in tokenizer.encode_batch(clip(texts, 64)):
        ids = encoding.ids[1:-1] or [backend.empty_row]
        rows.append(backend.table[ids].sum(axis=0))
    expected = normalise_rows(np.array(rows))

    assert np.allclose(backend.embed(texts, 64, 32), expected, atol=1e-6)
    monkeypatch.setattr(FastWordPiece, "from_tokenizer", lambda tokenizer: None)
    backend._tokenizers.clear()
    try:
        assert np.allclose(backend.embed(texts, 64, 32), expected, atol=1e-6)
    finally:
        backend._tokenizers.clear()


def test_non_ascii_runs_kept_in_the_bounded_cache_get_the_tokenizers_ids(monkeypatch):
    """The ids of non-ASCII runs are kept (at most RUN_CACHE of them, none longer than
    RUN_CACHE_CHARS characters): the first, second and third encodings equal the tokenizer's,
    also once older runs have left the cache."""
    from fingerprint import wordpiece

    monkeypatch.setattr(wordpiece, "RUN_CACHE", 8)
    tokenizer = tokenizers(256)[0]
    fast = FastWordPiece.from_tokenizer(tokenizer)  # its own, empty cache
    texts = ["naïve café " * 3 + "文字 Σ x " + "é" * 70, "café naïve [SEP]é",
             "🙂 " * 20 + "".join(chr(0x4E00 + i) + "x " for i in range(30)), "ascii only"]
    expected = [e.ids[1:-1] for e in tokenizer.encode_batch(texts)]
    for _ in range(3):
        for batch in (texts, texts[::-1]):
            ids, offsets = fast.encode(batch)
            got = [ids[offsets[d]:offsets[d + 1]].tolist() for d in range(len(batch))]
            assert got == (expected if batch is texts else expected[::-1])
    assert 0 < len(fast._runs) <= 8 and all(len(w) <= wordpiece.RUN_CACHE_CHARS
                                            for w in fast._runs)
    backend = load_backend("static", DEFAULT_EMBEDDING_MODEL)
    sums = fast.row_sums(texts, backend.table, backend.empty_row)
    ids, offsets = fast.encode(texts)
    for d in range(len(texts)):
        row = backend.table[ids[offsets[d]:offsets[d + 1]]].astype(np.float64).sum(axis=0)
        assert np.allclose(sums[d], row, atol=1e-4)


def test_normalised_rows_are_numpys_norm_bit_for_bit():
    rows = np.random.default_rng(3).standard_normal((50, 256)).astype(np.float32)
    rows[7] = 0.0
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    assert normalise_rows(rows).tobytes() == (rows / norms).astype(np.float32).tobytes()
