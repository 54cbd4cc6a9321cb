"""Style features beyond word uni/bigrams (fingerprint.style_extras), the config field that records
them, indexes written before the field existed, and one style class per provider model."""

import hashlib
import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from fingerprint import ConfigError, FingerprintConfig
from fingerprint.folding import fold
from fingerprint.style import StyleVectorizer
from fingerprint.style_extras import (char_features, edge_features, extra_features, masked,
                                      parse_extras, template_features)

ANSWER = ("Sure! Here are three ideas for the party:\n1. Games\n2. Music\n\n"
          "Let me know if you have any other questions.\n")


def bucket(feature: str, n: int = 2**18) -> int:
    hasher = HashingVectorizer(analyzer=lambda _: [feature], n_features=n, alternate_sign=False,
                               norm=None)
    return int(hasher.transform([""]).indices[0])


def test_an_opening_and_a_closing_ngram_are_found_and_counted():
    features = extra_features(fold(ANSWER), ("edges",))
    assert "<open> sure ! here are" in features
    assert "<close> any other questions ." in features  # the trailing newline is skipped
    assert len(features) == 10  # 1..5 tokens at each end
    assert edge_features(["\n", "hi", "\n"]) == ["<open> hi", "<close> hi"]
    plain = StyleVectorizer(2**18).transform([ANSWER])
    edged = StyleVectorizer(2**18, 1, "edges").transform([ANSWER])
    column = bucket("<open> sure ! here are")
    assert edged[0, column] == plain[0, column] + 1
    assert (edged - plain).sum() == 10


def test_a_template_masks_content_words_and_keeps_function_words_and_punctuation():
    tokens = ["the", "cat", "sat", "on", "the", "mat", ".", "\n"]
    assert masked(tokens) == ["the", "_", "_", "on", "the", "_", ".", "\n"]
    assert template_features(tokens)[:3] == ["<tpl> the _ _", "<tpl> _ _ on", "<tpl> _ on the"]
    # two answers on different topics with one sentence frame share every template
    a = extra_features(fold("The cat sat on the mat."), ("templates",))
    b = extra_features(fold("The dog slept on the sofa."), ("templates",))
    assert a == b and "<tpl> on the _" in a


def test_character_trigrams_see_spacing_as_one_space():
    assert char_features("a  b\n!") == ["<chr> a b", "<chr>  b ", "<chr> b !"]
    assert char_features("ab") == [] and char_features("") == []
    assert extra_features(fold("Hi!"), ("chars",)) == ["<chr> hi!"]


def test_the_kernel_with_extras_counts_what_scikit_learn_counts():
    texts = [ANSWER, "", "\n\n", "Ünïcode ＦＵＬＬ width, ok?", "a"]
    for extras in ("edges", "templates", "edges+templates", "chars", "edges+templates+chars"):
        styler = StyleVectorizer(2**12, 1, extras)
        fast, slow = styler.transform(texts), styler.reference_transform(texts)
        assert fast.shape == slow.shape and (fast != slow).nnz == 0


def test_style_extras_has_one_spelling_per_set():
    assert parse_extras("") == () and parse_extras("edges+templates") == ("edges", "templates")
    with pytest.raises(ConfigError, match="must be written 'edges\\+templates'"):
        FingerprintConfig(style_extras="templates+edges")
    with pytest.raises(ConfigError, match="unknown feature set"):
        FingerprintConfig(style_extras="openings")


def rewrite_manifest_without_style_extras(index_dir) -> None:
    """The manifest as an index built before ``style_extras`` existed wrote it (its checksum is
    sha256 of the canonical JSON body, recomputed here as the format defines it)."""
    path = index_dir / "manifest.json"
    data = json.loads(path.read_text())
    del data["config"]["style_extras"]
    body = {k: v for k, v in data.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    data["checksum"] = "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()
    path.write_text(json.dumps(data, indent=2))


def test_an_index_built_before_style_extras_still_loads_and_refuses_other_extras(built_index):
    from index import ConfigMismatchError, open_index

    rewrite_manifest_without_style_extras(built_index)
    with open_index(built_index, expected_config=FingerprintConfig()) as idx:
        assert idx.config.style_extras == ""
        assert len(idx) == 24
    with pytest.raises(ConfigMismatchError,
                       match="style_extras: index has '', got 'edges'"):
        open_index(built_index, expected_config=FingerprintConfig(style_extras="edges"))
    config = FingerprintConfig().to_dict()
    del config["style_extras"]
    assert FingerprintConfig.from_dict(config) == FingerprintConfig()
    with pytest.raises(ConfigError, match="config field\\(s\\) missing: seed"):
        FingerprintConfig.from_dict({k: v for k, v in config.items() if k != "seed"})


def test_a_provider_of_several_models_is_one_target_over_their_classes():
    """Per-model classes (attribution.classes.PER_MODEL_CLASSES): the provider's share is the
    share assigned to any of its models' classes, and its null draws are the references only."""
    from scipy import sparse

    from attribution import RelativeAttributor

    rng = np.random.default_rng(0)

    def style(column: int, rows: int = 60):
        dense = rng.poisson(0.3, size=(rows, 40)).astype(np.float32)
        dense[:, column] += 3
        return sparse.csr_matrix(dense)

    classes = {"p/v1": style(0), "p/v2": style(1), "r1": style(2), "r2": style(3),
               "r3": style(4), "r4": style(5), "r5": style(6)}
    attributor = RelativeAttributor(classes, ["p"], members={"p": ["p/v1", "p/v2"]},
                                    null_classes=["r1", "r2", "r3", "r4", "r5"])
    suspect = sparse.vstack([style(0, 30), style(1, 30), style(2, 40)])
    result = attributor.attribute(suspect, bootstrap=0)["p"]
    assert result.share == pytest.approx(0.6, abs=0.05)  # both versions count
    assert sorted(result.null) == ["r1", "r2", "r3", "r4", "r5"]
    assert result.calibrated.p_value == pytest.approx(1 / 6)  # above all five references


def test_an_index_serving_two_models_gives_one_class_per_model(tmp_path, fingerprinter):
    """attribution.classes.model_classes: each model with enough answers to the suspect's
    prompts is a class ``<label>/<model>``; a model with too few joins the label's class."""
    from attribution.classes import MIN_CLASS_ROWS, model_classes
    from fingerprint.normalize import prompt_hashes
    from index import build_index, open_index
    from conftest import served_rows, write_jsonl

    n = MIN_CLASS_ROWS + 10
    rows = [{**r, "id": f"{model}-{r['id']}", "model": model}
            for model, count in (("v1", n), ("v2", n), ("rare", 5))
            for r in served_rows(count)]
    build_index(tmp_path / "idx", [write_jsonl(tmp_path / "served.jsonl", rows)], fingerprinter)
    prompts = [r["prompt"] for r in served_rows(n)]
    with open_index(tmp_path / "idx") as idx:
        classes, members = model_classes({"prov": idx}, [], prompt_hashes(prompts))
    assert members == {"prov": ["prov/v1", "prov/v2", "prov"]}
    assert [classes[c].shape[0] for c in members["prov"]] == [n, n, 5]
