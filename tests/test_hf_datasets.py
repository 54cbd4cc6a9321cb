"""Hugging Face datasets as inputs (issue 18, section 4): a directory that save_to_disk wrote
(a Dataset, or a DatasetDict read from its train split or from a split's directory) or an
hf:// Hub id, read by every reader through read_records / read_prompts, rows as records exactly
like JSON objects, errors naming the dataset, split, row and field."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli import main
from conftest import served_rows
from fingerprint import FieldMap, InputError, read_prompts, read_records
from fingerprint.io import count_lines, input_format
from conftest import error_of, read

MISSING_ID = "hf://fingerprint-tests/no-such-dataset"


@pytest.fixture(scope="module")
def hf():
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    return datasets


def save(hf, path, rows=None, **splits):
    """A Dataset of ``rows`` saved at ``path``, or a DatasetDict of ``splits``."""
    if rows is not None:
        hf.Dataset.from_list(rows).save_to_disk(str(path))
    else:
        hf.DatasetDict({k: hf.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(
            str(path))
    return path


def rows_of(n, start=0):
    return [{"id": f"r{i}", "prompt": f"q{i}", "response": f"answer {i}"}
            for i in range(start, start + n)]


# --- saved datasets --------------------------------------------------------------------------

def test_a_saved_dataset_is_read_like_json_objects(hf, tmp_path):
    import datetime

    path = save(hf, tmp_path / "served", [
        {"prompt": "p1", "response": "first", "model": "m", "timestamp": datetime.datetime(
            2026, 11, 1, 12, 30)},
        {"prompt": "p2", "response": "  ", "model": None, "timestamp": None},
        {"prompt": "p3", "response": "third", "model": "m", "timestamp": None}])
    assert input_format(path) == "hf" and count_lines(path) == 3
    records, stats = read(path)
    assert [(r.id, r.prompt, r.response, r.model, r.timestamp, r.source, r.line)
            for r in records] == [
        ("served:1", "p1", "first", "m", "2026-11-01T12:30:00", str(path), 1),
        ("served:3", "p3", "third", "m", None, str(path), 3)]
    assert (stats.records, stats.empty, stats.skipped_lines, stats.shape) == (2, 1, [2], "served")
    # named with a trailing slash, as shell completion writes a directory: the same ids
    assert [r.id for r in read(f"{path}/")[0]] == ["served:1", "served:3"]


def test_nested_columns_shapes_and_field_paths_into_lists(hf, tmp_path):
    chat = save(hf, tmp_path / "chat", [{
        "request": {"messages": [{"role": "user", "content": "q"}]},
        "response": {"id": "c1", "model": "gpt-x",
                     "choices": [{"message": {"content": "from a dataset"}}]}}])
    (record,), stats = read(chat)
    assert (stats.shape, record.id, record.prompt, record.response) == \
        ("openai-chat", "c1", "q", "from a dataset")
    fields = FieldMap(text="response.choices.0.message.content",
                      prompt="request.messages.0.content", id="response.id")
    (record,), stats = read(chat, fields)
    assert (stats.shape, record.id, record.prompt, record.response) == \
        ("served", "c1", "q", "from a dataset")
    error = error_of(chat, lambda p: read(p, FieldMap(text="response.choices.1.message")))
    assert str(error) == f'{chat} row 1: field "response.choices.1.message" is missing'


def test_a_dataset_dict_is_read_from_train_or_from_a_split_directory(hf, tmp_path):
    path = save(hf, tmp_path / "dd", train=rows_of(3), test=rows_of(2, start=10))
    assert [r.id for r in read(path)[0]] == ["r0", "r1", "r2"]
    assert count_lines(path) == 3
    assert [(r.id, r.source) for r in read(path / "test")[0]] == \
        [("r10", str(path / "test")), ("r11", str(path / "test"))]
    assert [p.text for p in read_prompts(path / "test")] == ["q10", "q11"]


def test_a_dataset_dict_without_train_names_its_splits_and_how_to_choose(hf, tmp_path):
    path = save(hf, tmp_path / "dd", validation=rows_of(2), test=rows_of(1))
    error = error_of(path)
    assert str(error) == (f"{path}: a DatasetDict with the splits 'validation', 'test' and no "
                          f"'train' to read by default; to choose a split, name its "
                          f"directory, e.g. {path / 'validation'}")
    assert [r.id for r in read(path / "validation")[0]] == ["r0", "r1"]


def test_a_bad_row_names_the_dataset_split_row_and_field(hf, tmp_path):
    rows = rows_of(3000)  # three batches: numbering runs on across them
    rows[2500]["response"] = None
    path = save(hf, tmp_path / "dd", train=rows_of(1), test=rows)
    error = error_of(path / "test")
    assert str(error) == f'{path / "test"} split test row 2501: field "response" must be a ' \
                         f'string, got null'
    assert (error.line, error.field) == (2501, "response")
    records = read_records(path / "test")  # streamed: every row before the bad one arrives
    assert sum(1 for _ in zip(range(2500), records)) == 2500
    with pytest.raises(InputError):
        next(records)
    numbers = save(hf, tmp_path / "numbers", train=[{"id": "a", "response": 7}])
    assert str(error_of(numbers)) == \
        f'{numbers} split train row 1: field "response" must be a string, got a number'


def test_prompts_only_dataset(hf, tmp_path):
    path = save(hf, tmp_path / "prompts", [{"id": "p1", "prompt": "first"},
                                           {"id": "p2", "prompt": "second"},
                                           {"id": "p3", "prompt": "first"}])
    assert [(p.id, p.text) for p in read_prompts(path)] == [("p1", "first"), ("p2", "second")]


def test_streamed_datasets_are_read_as_saved_ones(hf, tmp_path):
    """The Hub path streams an IterableDataset; its rows come through the same Arrow batches."""
    from fingerprint.hf_datasets import iter_rows

    dataset = hf.Dataset.from_list(rows_of(2500))
    streamed = list(iter_rows(hf, dataset.to_iterable_dataset(), "x", "row"))
    assert streamed == list(iter_rows(hf, dataset, "x", "row"))
    assert streamed[2499] == (2500, {"id": "r2499", "prompt": "q2499", "response": "answer 2499"})


def test_a_directory_that_is_not_a_readable_dataset(hf, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert str(error_of(plain)) == f"{plain}: is a directory, not an input file"
    broken = save(hf, tmp_path / "broken", rows_of(2))
    for arrow in broken.glob("*.arrow"):
        arrow.unlink()
    error = str(error_of(broken))
    assert error.startswith(f"{broken}: not a readable saved dataset: ") and "\n" not in error
    assert count_lines(broken) is None


# --- Hub ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["hf://a/b/c", "hf://", "hf://owner/name@train[:10]",
                                  "hf://owner/name@", "hf://-x/y"])
def test_a_malformed_hub_id_shows_the_form(text):
    from fingerprint.hf_datasets import parse_hub_id

    with pytest.raises(InputError) as info:
        parse_hub_id(text, text)
    assert str(info.value) == (f"{text}: not a Hugging Face Hub id: write hf://owner/name, "
                               f"optionally with :config and @split (hf://owner/name:config@split)")


def test_hub_id_parts():
    from fingerprint.hf_datasets import HubId, parse_hub_id

    assert [parse_hub_id(t, t) for t in ("hf://owner/name", "hf://imdb@test",
                                         "hf://wikimedia/wikipedia:20231101.en@train")] == [
        HubId("owner/name"), HubId("imdb", None, "test"),
        HubId("wikimedia/wikipedia", "20231101.en", "train")]
    assert input_format("hf://owner/name") == "hf" and count_lines("hf://owner/name") is None


def test_offline_with_no_cache_a_hub_id_fails_with_one_line_naming_it(hf, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "cli", "index", "build", f"{MISSING_ID}@test",
                           "--index", str(tmp_path / "idx")], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"Error: {MISSING_ID}@test: cannot load "
                                  f"'fingerprint-tests/no-such-dataset' from the Hugging Face "
                                  f"Hub: "), done.stderr
    assert "offline (HF_HUB_OFFLINE)" in done.stderr
    assert not (tmp_path / "idx").exists()  # a failed build leaves no index behind


# --- without the datasets library ------------------------------------------------------------

def test_without_datasets_the_error_says_what_to_install(tmp_path, monkeypatch):
    saved = tmp_path / "saved"
    saved.mkdir()  # named as a saved dataset is named: by the files save_to_disk writes
    (saved / "dataset_dict.json").write_text('{"splits": ["train"]}')
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    for name in (str(saved), MISSING_ID):
        assert str(error_of(name)) == (f"{name}: reading a Hugging Face dataset needs the "
                                       f"datasets library: pip install 'output-fingerprint[hf]'")
    assert count_lines(saved) is None


def test_import_fingerprint_loads_neither_datasets_nor_torch(hf, tmp_path):
    path = save(hf, tmp_path / "s", rows_of(2))
    code = ("import sys, fingerprint, index, attribution, probing, replay, reports, cli; "
            "before = [m for m in ('datasets', 'torch') if m in sys.modules]; "
            f"n = len(list(fingerprint.read_records({str(path)!r}))); "
            "print(json.dumps([before, n, 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[], 2, False]  # reading one decodes nothing into torch


# --- through the CLI -------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_builds_from_a_dataset_and_attributes_a_dataset_dict_suspect(hf, tmp_path):
    rows = served_rows(12)
    served = save(hf, tmp_path / "served", rows)
    suspect = save(hf, tmp_path / "suspect", train=[
        {"id": f"s{i}", "prompt": r["prompt"], "response": r["response"]}
        for i, r in enumerate(rows[:6])], test=rows_of(2))
    reference = save(hf, tmp_path / "other_model", [
        {"id": f"o{i}", "prompt": r["prompt"], "response": f"An unrelated answer {i} about "
                                                          f"something else entirely."}
        for i, r in enumerate(rows)])
    runner = CliRunner()
    index = str(tmp_path / "i")
    result = runner.invoke(main, ["index", "build", str(served), "--index", index, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == 12
    result = runner.invoke(main, ["reference", "add", f"{reference}/", "--index", index,
                                  "--name", "other", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == 12
    result = runner.invoke(main, ["attribute", str(suspect), "--index", index, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["responses"] == 6  # the train split
    result = runner.invoke(main, ["attribute", str(suspect), "--index", index, "--json",
                                  "--reference", str(reference)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["responses"] == 6


def test_cli_errors_name_the_split_row_and_field(hf, tmp_path, built_index):
    rows = rows_of(3)
    rows[1]["response"] = None
    bad = save(hf, tmp_path / "bad", validation=rows)
    runner = CliRunner()
    result = runner.invoke(main, ["index", "build", str(bad / "validation"), "--index",
                                  str(tmp_path / "i")])
    assert result.exit_code == 1
    assert result.output == (f'Error: {bad / "validation"} split validation row 2: field '
                             f'"response" must be a string, got null\n')
    assert not (tmp_path / "i").exists()
    result = runner.invoke(main, ["attribute", str(bad), "--index", str(built_index)])
    assert result.exit_code == 1
    assert result.output == (f"Error: {bad}: a DatasetDict with the splits 'validation' and no "
                             f"'train' to read by default; to choose a split, name its "
                             f"directory, e.g. {bad / 'validation'}\n")


def test_cli_reference_option_keeps_a_hub_id_whole(hf, tmp_path, served_file):
    """--reference was a click.Path: it refused a dataset's directory and made hf:// 'hf:/'."""
    runner = CliRunner()
    index = str(tmp_path / "i")
    assert runner.invoke(main, ["index", "build", str(served_file), "--index", index]) \
        .exit_code == 0
    result = runner.invoke(main, ["attribute", str(served_file), "--index", index,
                                  "--reference", MISSING_ID])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {MISSING_ID}: cannot load "), result.output
