import gzip
import io
import json
import sys

import pytest

from fingerprint import FieldMap, InputError, ReadStats, read_records
from conftest import write_jsonl


def read(path, fields=FieldMap()):
    stats = ReadStats()
    return list(read_records(path, fields, stats)), stats


def test_served_shape_with_all_fields(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [
        {"id": 7, "prompt": "p", "response": "r", "model": "m", "timestamp": 1700000000,
         "account": "a"}])
    (record,), stats = read(path)
    assert (record.id, record.prompt, record.response, record.model, record.timestamp,
            record.account, record.line) == ("7", "p", "r", "m", "1700000000", "a", 1)
    assert stats.shape == "served"


def test_missing_id_gets_a_stable_file_and_line_id(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"response": "a"}, {"response": "b"}])
    records, _ = read(path)
    assert [r.id for r in records] == ["s.jsonl:1", "s.jsonl:2"]
    assert records[0].prompt is None


def test_openai_chat_log_shape(tmp_path):
    line = {"request": {"model": "gpt-x", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second "},
                                     {"type": "text", "text": "question"}]}], "user": "acct-9"},
        "response": {"id": "chatcmpl-1", "created": 1700, "model": "gpt-x-0301",
                     "choices": [{"message": {"role": "assistant", "content": "the answer"}}]}}
    (record,), stats = read(write_jsonl(tmp_path / "log.jsonl", [line]))
    assert stats.shape == "openai-chat"
    assert (record.id, record.prompt, record.response, record.model, record.timestamp,
            record.account) == ("chatcmpl-1", "second question", "the answer", "gpt-x-0301",
                                "1700", "acct-9")


def test_alpacaeval_shape_jsonl_and_json_array(tmp_path):
    rows = [{"prompt_id": 3, "instruction": "Q?", "output": "A.", "generator": "g"},
            {"prompt_id": 4, "instruction": "Q2?", "output": ""}]
    records, stats = read(write_jsonl(tmp_path / "a.jsonl", rows))
    assert stats.shape == "alpacaeval" and stats.empty == 1 and stats.skipped_lines == [2]
    assert (records[0].id, records[0].prompt, records[0].response, records[0].model) == \
        ("3", "Q?", "A.", "g")
    array = tmp_path / "model_outputs.json"
    array.write_text(json.dumps(rows, indent=2))
    records2, _ = read(array)
    assert [r.response for r in records2] == ["A."]


def test_field_mapping_with_dotted_names(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"uid": "x", "q": "p", "out": {"text": "r"}}])
    (record,), _ = read(path, FieldMap(text="out.text", prompt="q", id="uid"))
    assert (record.id, record.prompt, record.response) == ("x", "p", "r")


def test_gzip_is_read_transparently(tmp_path):
    path = tmp_path / "s.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"id": "1", "response": "hello"}) + "\n")
    (record,), _ = read(path)
    assert record.response == "hello"


def test_stdin_dash(monkeypatch):
    data = (json.dumps({"id": "1", "response": "from stdin"}) + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    (record,), _ = read("-")
    assert record.response == "from stdin" and record.source == "<stdin>"


def test_whitespace_only_responses_are_counted_skips(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"response": " \n\t "}, {"response": "x"},
                                              {"response": ""}])
    records, stats = read(path)
    assert len(records) == 1 and stats.empty == 2 and stats.records == 1


@pytest.mark.parametrize("content, line, message", [
    (b'{"response": "ok"}\n{"response": "broken"\n', 2, "malformed JSON"),
    (b'{"response": "ok"}\n{"id": "2"}\n', 2, 'field "response" is missing'),
    (b'{"response": 5}\n', 1, 'field "response" must be a string, got a number'),
    (b'{"response": "ok"}\n"text"\n', 2, "expected a JSON object, got a string"),
    (b'{"response": "ok"}\n{"response": "caf\xe9"}\n', 2, "not valid UTF-8"),
    (b'{"response": "ok", "id": {"a": 1}}\n', 1, 'field "id" must be a string or number'),
])
def test_bad_lines_name_file_line_and_field(tmp_path, content, line, message):
    path = tmp_path / "s.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value).startswith(f"{path} line {line}: {message}")
    assert info.value.line == line


def test_json_array_errors_name_the_item(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text('[{"output": "a", "instruction": "q"}, 5]')
    with pytest.raises(InputError, match=r"outputs.json item 2: expected a JSON object"):
        read(path)


def test_explicit_field_is_required(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"response": "r"}])
    with pytest.raises(InputError, match='field "prompt" is missing'):
        read(path, FieldMap(prompt="prompt"))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "nope.jsonl")


def test_five_megabyte_response_is_read_whole(tmp_path):
    big = ("lorem ipsum dolor sit amet " * 200_000)[:5_000_000]
    (record,), _ = read(write_jsonl(tmp_path / "big.jsonl", [{"response": big}]))
    assert len(record.response) == 5_000_000
