"""The watermark: keys, the generation-time and post-hoc marks, and exact detection."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import stat
from fractions import Fraction

import numpy as np
import pytest

from fingerprint import watermark as wm
from fingerprint.errors import ConfigError
from fingerprint.watermark.detect import binomial_tail
from fingerprint.watermark.lexicon import lexicon_available

needs_wordnet = pytest.mark.skipif(not lexicon_available(),
                                   reason="WordNet (Debian wordnet-base) is not installed")


@pytest.fixture(scope="module")
def key():
    return wm.generate_key()


@pytest.fixture(scope="module")
def tokenizer():
    return wm.load_tokenizer("all-MiniLM-L6-v2")


def other_tokenizer():
    """A real BPE tokenizer trained here: another vocabulary than the key's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20,
                            trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    return tok


def exact_tail(green: int, scored: int, gamma: Fraction) -> Fraction:
    return sum((Fraction(math.comb(scored, k)) * gamma**k * (1 - gamma)**(scored - k)
                for k in range(green, scored + 1)), Fraction(0))


# ---------------------------------------------------------------- keys

def test_key_round_trip_is_private_and_checked(tmp_path, key):
    path = tmp_path / "provider.key"
    wm.save_key(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = wm.load_key(path)
    assert loaded == key and loaded.key_id == key.key_id
    assert key.secret.hex() not in repr(key) and key.secret.hex() not in repr(loaded)
    with pytest.raises(wm.WatermarkKeyError, match="already exists"):
        wm.save_key(wm.generate_key(), path)
    assert wm.load_key(path) == key  # the first key is still there


@pytest.mark.parametrize("damage, message", [
    (lambda d: {**d, "secret": ("0" if d["secret"][0] != "0" else "1") + d["secret"][1:]},
     "damaged"),
    (lambda d: {**d, "tokens": {**d["tokens"], "gamma": 0.5}}, "damaged"),
    (lambda d: {**d, "version": 99}, "version 99"),
    (lambda d: {"format": "fingerprint-index", "version": 2}, "not a watermark key"),
])
def test_damaged_or_foreign_key_files_are_refused(tmp_path, key, damage, message):
    path = tmp_path / "bad.key"
    path.write_text(json.dumps(damage(key.to_dict())))
    with pytest.raises(wm.WatermarkKeyError, match=message) as info:
        wm.load_key(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"), (b"\x00\xff garbage", "not JSON"), (b"[1, 2]", "not a watermark key")])
def test_unreadable_key_files(tmp_path, content, message):
    path = tmp_path / "k.key"
    path.write_bytes(content)
    with pytest.raises(wm.WatermarkKeyError, match=message):
        wm.load_key(path)
    with pytest.raises(wm.WatermarkKeyError, match="no such key file"):
        wm.load_key(tmp_path / "missing.key")


def test_config_is_validated():
    with pytest.raises(ConfigError, match="gamma"):
        wm.WatermarkConfig(gamma=1.0)
    with pytest.raises(ValueError, match="context_width"):
        wm.WatermarkConfig(context_width=9)
    with pytest.raises(ValueError, match="delta"):
        wm.WatermarkConfig(delta=-1)


# ---------------------------------------------------------------- p-values

@pytest.mark.parametrize("green, scored, gamma", [
    (1, 1, "1/4"), (40, 100, "1/4"), (60, 100, "1/4"), (90, 200, "1/4"), (150, 300, "1/4"),
    (700, 1000, "1/2"), (200, 1000, "1/4"), (9, 10, "1/10")])
def test_binomial_tail_is_exact_far_below_1e_10(green, scored, gamma):
    exact = exact_tail(green, scored, Fraction(gamma))
    got = binomial_tail(green, scored, float(Fraction(gamma)))
    assert got == pytest.approx(float(exact), rel=1e-9, abs=0)
    if green == 150:  # z = 10: the normal tail of the z-score is off by three orders of magnitude
        from scipy.stats import norm

        z = (green - scored / 4) / math.sqrt(scored * 3 / 16)
        assert got < 1e-19 and got / norm.sf(z) > 100
    assert binomial_tail(0, 10, 0.25) == 1.0


def test_repeated_text_cannot_inflate_the_score(key, tokenizer):
    text = "Hello there. This is a fixed sentence that an unmarked model might repeat a lot."
    once = wm.detect_texts(key, [text], tokenizer)
    many = wm.detect_texts(key, [text * 40] + [text] * 30, tokenizer)
    # 40 copies in one response add only the pairs that span the joins between copies
    joins = key.tokens.context_width
    assert once.pooled.scored <= many.pooled.scored <= once.pooled.scored + joins
    assert many.pooled.green <= once.pooled.green + joins
    assert many.responses[0].scored <= once.responses[0].scored + joins
    assert many.responses[1].scored == once.responses[0].scored


def test_short_text_is_reported_with_p_1(key, tokenizer):
    det = wm.detect_texts(key, ["Too short.", ""], tokenizer)
    assert all(r.too_short and r.p_value == 1.0 for r in det.responses)
    assert det.pooled.too_short and det.p_value == 1.0


# ---------------------------------------------------------------- generation-time mark

def tiny_lm(vocab_size: int):
    """A real (randomly initialised, 1-layer) transformers causal LM: generate() runs the
    processor exactly as it would for a trained model; nothing is downloaded."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=256, n_embd=32,
                                      n_layer=1, n_head=2)).eval()


def test_logits_processor_marks_generation(key, caplog):
    import torch
    from transformers import AutoTokenizer
    from fingerprint.embed_model import resolve_model_path

    hf_tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    processor = wm.logits_processor(key, hf_tokenizer)
    model = tiny_lm(hf_tokenizer.vocab_size)
    prompt = torch.tensor([[101, 7592, 2088] * 4])
    caplog.set_level(logging.DEBUG)
    with torch.no_grad():
        marked = model.generate(prompt, do_sample=True, max_new_tokens=120, top_k=0,
                                logits_processor=[processor], pad_token_id=0)
        plain = model.generate(prompt, do_sample=True, max_new_tokens=120, top_k=0,
                               pad_token_id=0)
    marked_ids = marked[0, prompt.shape[1]:].tolist()
    plain_ids = plain[0, prompt.shape[1]:].tolist()
    on, off = wm.detect_token_ids(key, [marked_ids]), wm.detect_token_ids(key, [plain_ids])
    assert on.p_value < 1e-8 and on.pooled.green / on.pooled.scored > 0.55
    assert off.p_value > 1e-3
    assert key.secret.hex() not in caplog.text and key.secret.hex() not in repr(processor)


def test_bias_logits_adds_delta_to_exactly_the_green_tokens(key):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 500)).astype(np.float32)
    contexts = rng.integers(0, 500, size=(3, 5))
    out = wm.bias_logits(key, logits, contexts)
    mask = wm.green_masks(key, contexts, 500)
    assert np.allclose(out - logits, key.tokens.delta * mask)
    assert 0.15 < mask.mean() < 0.35
    # the mask only depends on the last context_width ids
    shifted = contexts.copy()
    shifted[:, 0] += 1
    assert (wm.green_masks(key, shifted, 500) == mask).all()
    # and detection agrees with the mask it was generated under
    for row in range(3):
        token = int(np.flatnonzero(mask[row])[0])
        seq = list(contexts[row, -key.tokens.context_width:]) + [token]
        assert wm.detect_token_ids(key, [seq]).pooled.green == 1


def test_a_key_for_another_tokenizer_is_refused(key):
    other = other_tokenizer()
    with pytest.raises(wm.TokenizerMismatchError, match="30522 tokens"):
        wm.logits_processor(key, other)
    with pytest.raises(wm.TokenizerMismatchError):
        wm.detect_texts(key, ["some text to test"], other)


# ---------------------------------------------------------------- post-hoc mark

@needs_wordnet
def test_post_hoc_mark_swaps_synonyms_only_and_is_detected(key, alpacaeval):
    # version 1 of the post-hoc mark, as a key made before version 2 (key format 1) still uses
    # it; version 2's channels are tested in tests/test_watermark_posthoc.py
    key = dataclasses.replace(key, posthoc=None)
    lexicon = wm.load_lexicon()
    texts = [json.loads(line)["output"] for line in
             (alpacaeval / "outputs" / "gpt4.jsonl").open(encoding="utf-8")]
    marked = [wm.mark_text(key, t) for t in texts]
    assert sum(m.substitutions for m in marked) > 50
    for original, m in zip(texts, marked):
        before, after = original.split(), m.text.split()
        assert len(before) == len(after)
        for a, b in zip(before, after):
            if a != b and a.lower() not in ("a", "an"):  # articles follow the swapped word
                wa, wb = (w.strip(".,;:!?()\"'") for w in (a, b))
                assert lexicon.synonyms(wa) is not None and wb in lexicon.synonyms(wa)
    # the key is fresh on every run: over 101 keys the p-value ranged 2.6e-25 to 5.7e-8 (the
    # largest failed an earlier bound of 1e-8 in one run in a few hundred), so the bound holds
    # for every key measured with a margin
    assert wm.detect_lexical(key, [m.text for m in marked]).p_value < 1e-6
    assert wm.detect_lexical(key, texts).p_value > 1e-3
    assert [wm.mark_text(key, m.text).text for m in marked[:100]] == [m.text for m in marked[:100]]


@pytest.mark.slow
@needs_wordnet
def test_post_hoc_mark_fixes_articles_and_spares_names():
    lexicon = wm.load_lexicon()
    assert lexicon.synonyms("seemingly") == ("ostensibly", "seemingly")
    assert lexicon.synonyms("mike") is not None
    swapped = 0
    for _ in range(40):  # a quarter of keys swap "seemingly" here (none: p 1e-5)
        key = wm.generate_key()
        assert wm.mark_text(key, "Mike bought a refrigerator").text.startswith("Mike ")
        out = wm.mark_text(key, "it was a seemingly easy task").text
        assert out in ("it was an ostensibly easy task", "it was a seemingly easy task")
        swapped += "ostensibly" in out
    assert 0 < swapped < 40


def test_a_missing_wordnet_is_a_clear_error(tmp_path):
    from fingerprint.watermark.lexicon import LexiconError, load_lexicon

    with pytest.raises(LexiconError, match="wordnet-base"):
        load_lexicon(tmp_path)


@pytest.mark.slow
@needs_wordnet
def test_post_hoc_mark_leaves_code_and_identifiers_alone():
    code = "```python\nvast = math.huge\nusually_ok = vast\n```"
    text = f"It is usually vast. {code}\nCall `usually()` or math.huge or usually_ok; usually."
    changed = 0
    for _ in range(20):
        out = wm.mark_text(wm.generate_key(), text).text
        assert code in out and "`usually()`" in out and "math.huge" in out
        assert "usually_ok;" in out
        changed += out != text
    assert changed > 0  # the prose around the code does get marked
