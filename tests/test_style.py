import numpy as np
import pytest

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
