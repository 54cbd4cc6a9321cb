"""The watermark commands end to end, through the CLI, on real and on constructed text."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from conftest import write_jsonl
from fingerprint import watermark as wm
from fingerprint.watermark.lexicon import lexicon_available


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def whole_words():
    """Lowercase whole-word ids of the default tokenizer: text made of them re-tokenises to the
    same ids, so a sequence built token by token survives the trip through text."""
    vocab = wm.load_tokenizer("all-MiniLM-L6-v2").get_vocab()
    return {i: w for w, i in vocab.items() if w.isascii() and w.isalpha() and w.islower() and len(w) > 2}


def compose(key, words: dict[int, str], length: int, marked: bool, seed: int) -> str:
    """A response built one token at a time, each a random whole word; green ones only when
    ``marked`` (the limit of delta -> infinity)."""
    rng = np.random.default_rng(seed)
    ids = list(rng.choice(list(words), size=key.tokens.context_width))
    allowed = np.zeros(30522, dtype=bool)
    allowed[list(words)] = True
    while len(ids) < length:
        choices = allowed & (wm.green_masks(key, np.array([ids]), 30522)[0] if marked else True)
        ids.append(int(rng.choice(np.flatnonzero(choices))))
    return " ".join(words[i] for i in ids)


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "provider.key"
    result = run("watermark", "keygen", "--out", path)
    assert result.exit_code == 0, result.output
    return path


def secret_of(path) -> str:
    return json.loads(path.read_text())["secret"]


def test_keygen_never_overwrites_and_never_prints_the_secret(keyfile):
    key = wm.load_key(keyfile)
    again = run("watermark", "keygen", "--out", keyfile)
    assert again.exit_code == 1 and "already exists" in again.output
    assert wm.load_key(keyfile) == key
    forced = run("watermark", "keygen", "--out", keyfile, "--force", "--gamma", "0.5")
    assert forced.exit_code == 0 and wm.load_key(keyfile).tokens.gamma == 0.5
    assert secret_of(keyfile) not in forced.output and key.secret.hex() not in again.output


def test_detect_json_pooled_and_per_response(keyfile, whole_words, tmp_path):
    key = wm.load_key(keyfile)
    marked = write_jsonl(tmp_path / "marked.jsonl", [
        {"id": f"m{i}", "response": compose(key, whole_words, 60, True, i)} for i in range(5)]
        + [{"id": "short", "response": "far too short"}])
    plain = write_jsonl(tmp_path / "plain.jsonl", [
        {"id": f"p{i}", "response": compose(key, whole_words, 60, False, i)} for i in range(5)])
    out = run("watermark", "detect", marked, "--key", keyfile, "--json", "--scheme", "tokens")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["p_value"] < 1e-100 and data["schemes"]["tokens"]["green_fraction"] > 0.99
    assert data["responses"] == 6 and [r["id"] for r in data["per_response"]][-1] == "short"
    assert all(r["tokens"]["p_value"] < 1e-20 for r in data["per_response"][:5])
    assert data["per_response"][5]["tokens"] == {**data["per_response"][5]["tokens"],
                                                  "too_short": True, "p_value": 1.0}
    assert secret_of(keyfile) not in out.output
    plain_out = json.loads(run("watermark", "detect", plain, "--key", keyfile, "--json").output)
    assert plain_out["p_value"] > 1e-3
    human = run("watermark", "detect", marked, "--key", keyfile).output
    assert "p_value" in human and "1 responses too short" in human


def leaning_student(whole_words, tmp_path):
    """(key file, reference, student, innocent): a width-0 key; the provider's unmarked text;
    a "student" that uses the key's green words a little more often than the reference does
    (the lean a student inherits); a model that never saw the key. 150 answers each."""
    keyfile = tmp_path / "w0.key"
    assert run("watermark", "keygen", "--out", keyfile, "--context-width", "0").exit_code == 0
    key = wm.load_key(keyfile)
    ids = np.array(sorted(whole_words)[:300])
    zipf = 1.0 / np.arange(1, len(ids) + 1)
    green = wm.green_masks(key, np.zeros((1, 0), dtype=np.int64), 30522)[0][ids]
    leaning = zipf * np.exp(0.5 * green)

    def responses(weights, seed, name):
        rng = np.random.default_rng(seed)
        rows = [{"id": f"{name}{i}", "response": " ".join(
            whole_words[int(w)] for w in rng.choice(ids, size=60, p=weights / weights.sum()))}
            for i in range(150)]
        return write_jsonl(tmp_path / f"{name}.jsonl", rows)

    return (keyfile, responses(zipf, 1, "reference"), responses(leaning, 2, "student"),
            responses(zipf, 3, "innocent"))


def test_detect_with_a_reference_shift_tests_a_student(whole_words, tmp_path):
    """The leaning student is found by the shift test that --reference adds; a model that never
    saw the key is not; and the file's p-value is Bonferroni's over both tests."""
    keyfile, reference, student, innocent = leaning_student(whole_words, tmp_path)
    out = run("watermark", "detect", student, "--key", keyfile, "--reference", reference,
              "--scheme", "tokens", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    shift, tokens = data["shift"], data["schemes"]["tokens"]
    assert shift["p_value"] < 1e-6 and shift["lean"] > 0.2 and shift["windows"] > 250
    assert shift["reference"].endswith("reference.jsonl")
    assert data["combination"] == "bonferroni over the 2 tests"
    assert data["p_value"] == pytest.approx(min(1.0, 2 * min(shift["p_value"],
                                                             tokens["p_value"])))
    plain = json.loads(run("watermark", "detect", innocent, "--key", keyfile, "--reference",
                           reference, "--scheme", "tokens", "--json").output)
    assert plain["shift"]["p_value"] > 1e-3 and plain["p_value"] > 1e-3
    text = run("watermark", "detect", student, "--key", keyfile, "--reference", reference).output
    assert "shift     against" in text and "Bonferroni over" in text
    assert json.loads(run("watermark", "detect", student, "--key", keyfile,
                          "--json").output)["shift"] is None

    lexical = run("watermark", "detect", student, "--key", keyfile, "--reference", reference,
                  "--scheme", "lexical")
    assert lexical.exit_code == 1 and "does not apply to scheme 'lexical'" in lexical.output
    empty = tmp_path / "nothing.jsonl"
    empty.write_text("")
    result = run("watermark", "detect", student, "--key", keyfile, "--reference", empty)
    assert result.exit_code == 1 and "nothing.jsonl" in result.output
    assert "no non-empty response to compare with" in result.output


@pytest.mark.skipif(not lexicon_available(), reason="WordNet is not installed")
def test_post_hoc_mark_then_detect_on_real_outputs(keyfile, alpacaeval, tmp_path):
    source = alpacaeval / "outputs" / "gpt4.jsonl"
    marked = tmp_path / "marked.jsonl"
    result = run("watermark", "mark", source, "--key", keyfile, "--out", marked)
    assert result.exit_code == 0, result.output
    assert "marked 805 responses" in result.output
    assert "keyed choices changed in synonyms, serial commas and contractions" in result.output
    rows = [json.loads(line) for line in marked.open()]
    assert len(rows) == 805 and set(rows[0]) == {"id", "prompt", "response", "model"}
    assert secret_of(keyfile) not in marked.read_text()
    on = json.loads(run("watermark", "detect", marked, "--key", keyfile, "--json").output)
    off = json.loads(run("watermark", "detect", source, "--key", keyfile, "--json").output)
    assert on["p_value"] < 1e-10 and off["p_value"] > 1e-3
    assert on["combination"].startswith("bonferroni") and set(on["schemes"]) == {"tokens",
                                                                                  "lexical"}
    channels = on["schemes"]["lexical"]["channels"]
    assert set(channels) == {"synonyms", "serial_comma", "contractions"}
    assert sum(c["scored"] for c in channels.values()) == on["schemes"]["lexical"]["scored"]
    text = run("watermark", "detect", marked, "--key", keyfile).output
    assert "of which synonyms " in text and "contractions " in text


def test_bad_input_is_a_clear_one_line_error(keyfile, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run("watermark", "detect", empty, "--key", keyfile)
    assert result.exit_code == 1 and "empty.jsonl" in result.output
    assert "no non-empty response" in result.output and "Traceback" not in result.output

    damaged = tmp_path / "damaged.key"
    damaged.write_text(keyfile.read_text().replace('"gamma": 0.25', '"gamma": 0.5'))
    result = run("watermark", "detect", empty, "--key", damaged)
    assert result.exit_code == 1 and "damaged.key" in result.output and "damaged" in result.output

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    other = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    other.train_from_iterator(["a small other vocabulary"], trainers.WordLevelTrainer(
        special_tokens=["[UNK]"]))
    other.save(str(tmp_path / "tokenizer.json"))
    suspect = write_jsonl(tmp_path / "s.jsonl", [{"id": "1", "response": "some words here"}])
    result = run("watermark", "detect", suspect, "--key", keyfile, "--tokenizer", tmp_path)
    assert result.exit_code == 1 and "made for the tokenizer" in result.output


def test_attribute_joins_the_watermark(keyfile, whole_words, built_index, tmp_path):
    key = wm.load_key(keyfile)
    suspect = write_jsonl(tmp_path / "suspect.jsonl", [
        {"id": f"m{i}", "response": compose(key, whole_words, 80, True, i)} for i in range(4)])
    result = run("attribute", suspect, "--index", built_index, "--json",
                 "--watermark-key", keyfile)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["signals"]["watermark"]["p_value"] < 1e-50
    assert data["p_value"] == data["signals"]["watermark"]["p_value"]  # no references here
    assert any("watermark" in n for n in data["notes"])
    human = run("attribute", suspect, "--index", built_index, "--watermark-key", keyfile).output
    assert "p-value" in human and "watermark" in human


def test_attribute_joins_the_shift_test_with_a_watermark_reference(whole_words, built_index,
                                                                   tmp_path):
    keyfile, reference, student, _ = leaning_student(whole_words, tmp_path)
    result = run("attribute", student, "--index", built_index, "--json", "--watermark-key",
                 keyfile, "--watermark-reference", reference)
    assert result.exit_code == 0, result.output
    mark = json.loads(result.output)["signals"]["watermark"]
    assert "shift: " in mark["description"] and mark["p_value"] < 1e-6
    without = json.loads(run("attribute", student, "--index", built_index, "--json",
                             "--watermark-key", keyfile).output)["signals"]["watermark"]
    assert "shift" not in without["description"] and without["p_value"] > 1e-3
    alone = run("attribute", student, "--index", built_index, "--watermark-reference", reference)
    assert alone.exit_code == 1 and "give the key too" in alone.output
    assert "Traceback" not in alone.output
