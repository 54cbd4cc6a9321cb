import dataclasses

import pytest

from fingerprint import ConfigError, FingerprintConfig


def test_defaults_are_the_documented_ones():
    c = FingerprintConfig()
    assert (c.shingle_size, c.num_perm, c.seed, c.minhash_scheme) == (3, 128, 1, "affine32")
    assert c.hash_function == "xxh32"
    assert c.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FingerprintConfig().num_perm = 64  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, words", [
    ({"num_perm": 100}, "multiple of 8"),
    ({"num_perm": 0}, "num_perm"),
    ({"shingle_size": 0}, "shingle_size"),
    ({"seed": -1}, "seed"),
    ({"minhash_scheme": "legacy"}, "minhash_scheme"),
    ({"hash_function": "md5"}, "hash_function"),
    ({"embedding_model": " "}, "embedding_model"),
    ({"num_perm": "128"}, "integer"),
    ({"normalizer_version": 9}, "normalizer_version"),
])
def test_invalid_values_are_rejected_with_the_field_name(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        FingerprintConfig(**kwargs)


def test_round_trip_and_strict_from_dict():
    c = FingerprintConfig(num_perm=64, seed=7)
    assert FingerprintConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown config field"):
        FingerprintConfig.from_dict({**c.to_dict(), "extra": 1})
    data = c.to_dict()
    del data["seed"]
    with pytest.raises(ConfigError, match="missing: seed"):
        FingerprintConfig.from_dict(data)


def test_differences_name_field_and_both_values():
    assert FingerprintConfig().differences(FingerprintConfig(num_perm=64)) == [
        ("num_perm", 128, 64)]
