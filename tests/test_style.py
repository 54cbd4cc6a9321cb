import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerprint import ConfigError, FingerprintConfig
from fingerprint.style import StyleVectorizer, style_features, style_tokens


def test_tokens_keep_punctuation_markdown_and_newlines():
    assert style_tokens("**Sure!** Here:\n1. One") == [
        "*", "*", "sure", "!", "*", "*", "here", ":", "\n", "1", ".", "one"]


def test_features_are_unigrams_and_bigrams():
    assert style_features("It is important") == ["it", "is", "important", "it is",
                                                 "is important"]


def test_vectors_count_hashed_features_deterministically():
    vec = StyleVectorizer(2**18)
    m = vec.transform(["Overall, it is important.", "overall, IT IS important.", "Other text"])
    assert m.shape == (3, 2**18) and m.dtype == np.float32
    assert (m[0] != m[1]).nnz == 0  # case folded
    assert m[0].sum() == len(style_features("Overall, it is important."))
    again = StyleVectorizer(2**18).transform(["Overall, it is important."])
    assert (again != m[0]).nnz == 0


@pytest.mark.parametrize("value", [1000, 2**25, 2**9])
def test_style_features_must_be_a_power_of_two_in_range(value):
    with pytest.raises(ConfigError, match="style_features"):
        FingerprintConfig(style_features=value)


# the compiled kernel against scikit-learn's HashingVectorizer (the definition) ------------------

def same_matrix(a, b) -> bool:
    """Equal shape, rows, sorted bucket indices and counts, stored entry for stored entry."""
    return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


EDGE_TEXTS = [
    "", " ", "\n", "\n\n\t \r\n", "a", "_", "__init__", "ß STRASSE Straße", "ﬁnance ＡＢＣ",
    "x" * 5000, "Ünïcödé, naïve café — ok? ¿Sí! «quoted»", "数学の問題を解いてください。",
    "emoji 😀👍🏽 and flags 🇫🇷", "e\u0301 combining \u0301 marks", "tab\tsep\u00a0nbsp\u2028ls",
    "**Sure!** Here:\n1. One\n2. Two\n\n| a | b |\n|---|---|", "١٢٣ arabic digits ٤",
    "\u200b zero width \ufeff bom", "x\x00nul\x1fcontrol", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters",
]


def test_the_kernel_counts_what_scikit_learn_counts_on_edge_cases():
    vec = StyleVectorizer(2**18)
    assert same_matrix(vec.transform(EDGE_TEXTS), vec.reference_transform(EDGE_TEXTS))
    small = StyleVectorizer(2**10)  # many collisions: counts of one bucket add up
    assert same_matrix(small.transform(EDGE_TEXTS), small.reference_transform(EDGE_TEXTS))


def test_the_kernel_counts_what_scikit_learn_counts_on_real_answers(alpacaeval):
    import json

    texts = []
    for path in sorted((alpacaeval / "outputs").iterdir())[:12]:
        rows = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else \
            [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        texts += [row["output"] for row in rows[:60]]
    assert len(texts) >= 600 and any(not t.isascii() for t in texts)
    vec = StyleVectorizer(2**18)
    assert same_matrix(vec.transform(texts), vec.reference_transform(texts))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=80), max_size=6))
def test_the_kernel_counts_what_scikit_learn_counts_on_any_unicode(texts):
    vec = StyleVectorizer(2**12)
    if not texts:  # scikit-learn refuses an empty batch; the kernel gives no rows
        assert vec.transform(texts).shape == (0, 2**12)
        return
    assert same_matrix(vec.transform(texts), vec.reference_transform(texts))


def test_the_kernels_murmur3_is_scikit_learns_for_every_tail_length():
    from sklearn.utils import murmurhash3_32

    from fingerprint.style_kernels import murmur3_32

    rng = np.random.default_rng(0)
    for length in range(0, 40):
        data = rng.integers(0, 256, size=length, dtype=np.uint8)
        buf = np.concatenate([np.zeros(3, np.uint8), data, np.zeros(1, np.uint8)])
        assert murmur3_32(buf, 3, 3 + length) == murmurhash3_32(data.tobytes(), seed=0)


def test_both_ways_of_ordering_a_rows_buckets_give_scikit_learns_counts():
    """The kernel reads buckets off a bitmap when the batch's longest text is long enough to
    make that cheaper than sorting, and sorts otherwise: both orders must be the same."""
    vec = StyleVectorizer(2**18)  # 4,096 bitmap words: scanned when the longest text >= 256
    short = ["Hi!", "a b a b", "Yes.\nNo.", "¿Qué? ¡Sí!"]  # sorted
    long = short + ["word " * 100 + "end."]  # scanned
    for batch in (short, long):
        assert same_matrix(vec.transform(batch), vec.reference_transform(batch))
