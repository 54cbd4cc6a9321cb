"""Version 2 of the post-hoc mark: keyed synonyms, serial commas and contractions, one exact test.

Keys here have fixed secrets, so every assertion on a p-value is about one fixed draw and a
failure reproduces; the null's uniformity is checked over many such keys on real text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import numpy as np
import pytest
from scipy.stats import kstest

from fingerprint import watermark as wm
from fingerprint.watermark import choices as ch
from fingerprint.watermark.config import PosthocConfig
from fingerprint.watermark.lexicon import lexicon_available

pytestmark = pytest.mark.skipif(not lexicon_available(),
                                reason="WordNet (Debian wordnet-base) is not installed")
CHANNELS = ("synonyms", "serial_comma", "contractions")


@pytest.fixture(scope="module")
def base_key():
    return wm.generate_key()


def fixed_key(base, i: int, channels=CHANNELS):
    return dataclasses.replace(base, secret=hashlib.sha256(f"posthoc-test-{i}".encode()).digest(),
                               posthoc=PosthocConfig(channels=channels))


@pytest.fixture(scope="module")
def gpt4(alpacaeval):
    rows = [json.loads(line) for line in (alpacaeval / "outputs" / "gpt4.jsonl").open()]
    return [r["output"] for r in sorted(rows, key=lambda r: r["prompt_id"]) if r["output"]]


def units(key, text, lexicon):
    """The (context, class) pairs the detector reads in ``text``."""
    starts, words = ch.canonical_tokens(text, lexicon)
    out = set()
    for c in ch.find_choices(text, lexicon, key.posthoc.channels):
        i = np.searchsorted(starts, c.at, side="left")
        out.add((tuple(words[max(0, i - key.posthoc.context_width):i]), c.class_id))
    return out


def normalised(text, lexicon, channel):
    """``text`` with every choice of ``channel`` set to its first option (what the channel may
    change, undone), and every article read as "a"."""
    edits = [(c.start, c.end, ch.render(c, c.options[0], text))
             for c in ch.find_choices(text, lexicon, (channel,))]
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return re.sub(r"\b([Aa])n\b", r"\1", text)


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_channel_marks_and_is_detected(base_key, gpt4, channel):
    key, lexicon = fixed_key(base_key, 0, (channel,)), wm.load_lexicon()
    texts = gpt4[:150]
    marked = [wm.mark_text(key, t) for t in texts]
    assert sum(m.substitutions for m in marked) > 20
    det = wm.detect_lexical(key, [m.text for m in marked])
    assert det.p_value < 1e-12 and dict(det.channels)[channel].scored == det.pooled.scored
    assert wm.detect_lexical(key, texts).p_value > 1e-3
    for original, m in zip(texts, marked):
        # the channel changed nothing else, and the detector reads the same choices after it
        assert normalised(m.text, lexicon, channel) == normalised(original, lexicon, channel)
        assert units(key, m.text, lexicon) == units(key, original, lexicon)
        assert wm.mark_text(key, m.text).text == m.text


def test_channels_pool_into_one_exact_test_on_200_answers(base_key, gpt4):
    key = fixed_key(base_key, 1)
    marked = [wm.mark_text(key, t).text for t in gpt4[:200]]
    det = wm.detect_lexical(key, marked)
    assert det.p_value < 1e-100
    assert sum(s.scored for _, s in det.channels) == det.pooled.scored > 400
    assert sum(s.green for _, s in det.channels) == det.pooled.green
    assert wm.detect_lexical(key, marked * 3).pooled == det.pooled  # repeats count once


def test_unmarked_p_values_are_uniform_on_real_text(base_key, alpacaeval):
    """24 models x 60 answers x 5 keys: 120 pooled tests and every per-answer test, under the
    null; the same check as benchmarks/watermark_fpr.py on a small sample."""
    pooled, per = [], []
    for m, path in enumerate(sorted((alpacaeval / "outputs").glob("*.jsonl"))):
        texts = [json.loads(line)["output"] for line in path.open()][:60]
        for k in range(5):
            det = wm.detect_lexical(fixed_key(base_key, 100 + 5 * m + k), texts)
            pooled.append(det.p_value)
            per.extend(r.p_value for r in det.responses if not r.too_short)
    assert len(pooled) == 120 and len(per) > 2000
    assert kstest(pooled, "uniform").pvalue > 1e-3 and min(pooled) > 1e-5
    per = np.array(per)
    for level in (0.01, 0.05, 0.1):
        assert np.mean(per <= level) <= level + 4 * np.sqrt(level * (1 - level) / len(per))


def test_a_key_made_before_version_2_still_detects(tmp_path, base_key, gpt4):
    old = dataclasses.replace(base_key, posthoc=None)  # what keygen wrote before version 2
    path = tmp_path / "old.key"
    wm.save_key(old, path)
    data = json.loads(path.read_text())
    assert data["version"] == 1 and "posthoc" not in data
    loaded = wm.load_key(path)
    assert loaded.posthoc is None and loaded == old
    marked = [wm.mark_text(loaded, t) for t in gpt4[:400]]
    lexicon = wm.load_lexicon()
    for original, m in zip(gpt4, marked):  # version 1: synonyms only, word for word
        assert len(original.split()) == len(m.text.split())
        assert normalised(m.text, lexicon, "synonyms") == normalised(original, lexicon, "synonyms")
    assert wm.detect_lexical(loaded, [m.text for m in marked]).p_value < 1e-6
    assert wm.detect_lexical(loaded, [m.text for m in marked]).channels == ()
    new_path = tmp_path / "new.key"
    wm.save_key(base_key, new_path)
    assert json.loads(new_path.read_text())["version"] == 2
    assert wm.load_key(new_path).posthoc == PosthocConfig()


def rewrite(path, change):
    data = json.loads(path.read_text())
    body = change({k: v for k, v in data.items() if k != "checksum"})
    body["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(body))


@pytest.mark.parametrize("change, message", [
    (lambda d: {k: v for k, v in d.items() if k != "posthoc"}, "posthoc"),
    (lambda d: {**d, "version": 1}, "not in key format 1"),
    (lambda d: {**d, "posthoc": {**d["posthoc"], "channels": ["emoji"]}}, "channels"),
    (lambda d: {**d, "version": 3}, "reads versions 1, 2"),
])
def test_inconsistent_key_versions_are_refused(tmp_path, base_key, change, message):
    path = tmp_path / "k.key"
    wm.save_key(base_key, path)
    rewrite(path, change)
    with pytest.raises(wm.WatermarkKeyError, match=message) as info:
        wm.load_key(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, allowed", [
    # no list: a comma after "back" would change the reading
    ("Reach for your toes, keeping your back and legs straight.", None),
    ("In short, cats and dogs are fine.", None),
    ('Play "It Don\'t Mean a Thing" tonight, it is fun.', {'Play "It Don\'t Mean a Thing" '
                                                         "tonight, it's fun."}),
    ("It's been a long day, that is, a hard one.", None),  # "it's" = "it has"
    ("I do not know what you are.", {"I don't know what you are."}),
    ("```\nx = a, b and c  # don't\n```\nUse `do not` here.", None),
    ("We bought apples, pears, plums and figs.", {"We bought apples, pears, plums, and figs."}),
    ("We bought apples, pears, and figs.", {"We bought apples, pears and figs."}),
])
def test_choices_are_made_only_where_meaning_is_safe(base_key, text, allowed):
    seen = set()
    for i in range(24):
        seen.add(wm.mark_text(fixed_key(base_key, 1000 + i), text).text)
    assert seen - {text} == (allowed or set())


@pytest.mark.parametrize("one, other", [
    ("I can't do it intentionally", "I cannot do it purposely"),
    ("We don't need an immense one", "We do not need a vast one"),
    ("It’s usually fine, isn't it", "It is commonly fine, is not it"),
])
def test_contexts_are_read_alike_whichever_option_the_text_took(one, other):
    """The context of a choice is read from canonical words, so a choice that marking (or an
    attacker's synonym) sets before it does not change the green half of the next one."""
    lexicon = wm.load_lexicon()
    assert ch.canonical_tokens(one, lexicon)[1] == ch.canonical_tokens(other, lexicon)[1]
