"""Inputs besides JSON Lines (issue 18, section 4): CSV and TSV (gzipped too), Parquet, the
OpenAI Batch API output shape, and field paths that index into lists. Every reader gets them:
records, prompts, and so every command."""

import gzip
import json
import sys

import pytest
from click.testing import CliRunner

from cli import main
from conftest import served_rows, write_jsonl
from fingerprint import FieldMap, read_prompts
from fingerprint.io import count_lines
from conftest import error_of, read

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


# --- CSV and TSV -----------------------------------------------------------------------------

CSV = ('id,prompt,response,model\n'
       '1,What is rain?,"Water, falling.",m1\n'
       ',Two lines?,"first line\nsecond line",\n'
       '3,Empty?,,m1\n'
       '\n'
       '4,"A ""quoted"" prompt",plain,m2\n')


def test_csv_header_names_the_fields_and_cells_are_text(tmp_path):
    path = tmp_path / "served.csv"
    path.write_text(CSV)
    records, stats = read(path)
    assert [(r.id, r.prompt, r.response, r.model, r.line) for r in records] == [
        ("1", "What is rain?", "Water, falling.", "m1", 2),
        ("served.csv:3", "Two lines?", "first line\nsecond line", None, 3),  # empty = left out
        ("4", 'A "quoted" prompt', "plain", "m2", 7),  # numbered by the line it starts on
    ]
    assert stats.empty == 1 and stats.skipped_lines == [5] and stats.shape == "served"


def test_tsv_and_gzipped_csv_and_a_bom(tmp_path):
    tsv = tmp_path / "served.tsv"
    tsv.write_text("id\tresponse\nt1\ttab separated, with a comma\n")
    gz = tmp_path / "served.csv.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbfid,response\ng1,from gzip\n"))
    assert [(r.id, r.response) for r in read(tsv)[0]] == [("t1", "tab separated, with a comma")]
    assert [(r.id, r.response) for r in read(gz)[0]] == [("g1", "from gzip")]


def test_csv_field_mapping_and_a_long_response(tmp_path):
    long = "word " * 100_000  # 500 KB: more than the csv module's default field limit
    path = tmp_path / "s.csv"
    path.write_text(f"uid,question,answer\nu1,q,{long}\n")
    (record,), _ = read(path, FieldMap(text="answer", prompt="question", id="uid"))
    assert (record.id, record.prompt, len(record.response)) == ("u1", "q", len(long))


@pytest.mark.parametrize("content, line, message", [
    ("id,response\n1,ok\n2,too,many\n", 3, "3 fields, but the header (line 1) names 2"),
    ('id,response\n1,"ok\n\n2,unterminated', 2, "malformed CSV"),
    ("id,id,response\n1,2,ok\n", 1, 'column "id" appears twice in the header'),
    ("id,prompt\n1,ok\n", 2, 'field "response" is missing'),
])
def test_csv_errors_name_the_line(tmp_path, content, line, message):
    path = tmp_path / "s.csv"
    path.write_text(content)
    error = error_of(path)
    assert str(error).startswith(f"{path} line {line}: {message}"), str(error)


def test_csv_bytes_that_are_not_utf8_are_named_by_line_and_field(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"id,response\n" + b"1,fine\n" * 5000 + b"2,caf\xe9\n")
    error = error_of(path)
    assert str(error) == f'{path} line 5002: field "response" is not valid UTF-8 (byte 0xe9 ' \
                         f'at character 3)'


def test_prompts_from_csv(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("id,prompt\np1,first\n,second\np3,first\n")
    assert [(p.id, p.text) for p in read_prompts(path)] == [("p1", "first"),
                                                            ("prompts.csv:3", "second")]


def test_format_is_chosen_by_extension(tmp_path):
    from fingerprint.io import input_format

    assert [input_format(n) for n in ("a.csv", "a.TSV", "a.csv.gz", "a.parquet", "a.jsonl",
                                      "a.json.gz", "-", "csv")] == \
        ["csv", "tsv", "csv", "parquet", "json", "json", "json", "json"]
    path = tmp_path / "s.csv"
    path.write_text(CSV)
    assert count_lines(path) == 6  # lines less the header


# --- Parquet ---------------------------------------------------------------------------------

def write_parquet(path, rows, **kwargs):
    pq.write_table(pa.Table.from_pylist(rows), path, **kwargs)
    return path


def test_parquet_rows_nested_columns_and_times(tmp_path):
    import datetime

    when = datetime.datetime(2026, 11, 1, 12, 30)
    path = write_parquet(tmp_path / "served.parquet", [
        {"id": 7, "prompt": "p", "response": "r", "model": "m", "timestamp": when},
        {"id": 8, "prompt": None, "response": "", "model": None, "timestamp": None}])
    records, stats = read(path)
    assert [(r.id, r.prompt, r.response, r.timestamp, r.line) for r in records] == \
        [("7", "p", "r", "2026-11-01T12:30:00", 1)]
    assert stats.empty == 1 and count_lines(path) == 2
    nested = write_parquet(tmp_path / "log.parquet", [{
        "request": {"messages": [{"role": "user", "content": "q"}]},
        "response": {"id": "c1", "choices": [{"message": {"content": "from parquet"}}]}}])
    (record,), stats = read(nested)
    assert (stats.shape, record.prompt, record.response) == ("openai-chat", "q", "from parquet")


def test_parquet_is_read_a_batch_at_a_time_and_errors_name_the_row(tmp_path):
    rows = [{"id": f"r{i}", "response": f"answer {i}"} for i in range(3000)]
    rows[2500]["response"] = None
    path = write_parquet(tmp_path / "big.parquet", rows, row_group_size=1000)
    error = error_of(path)
    assert str(error) == f'{path} row 2501: field "response" must be a string, got null'
    assert error.line == 2501
    rows[2500]["response"] = "fixed"
    assert len(read(write_parquet(path, rows))[0]) == 3000


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text('{"response": "json, not parquet"}\n')
    assert str(error_of(path)).startswith(f"{path}: not a readable Parquet file")


def test_without_pyarrow_the_error_says_what_to_install(tmp_path, monkeypatch):
    path = write_parquet(tmp_path / "s.parquet", [{"response": "r"}])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert str(error_of(path)) == (f"{path}: reading Parquet needs pyarrow: "
                                   f"pip install 'output-fingerprint[parquet]'")


# --- the OpenAI Batch API output shape -------------------------------------------------------

def batch_line(custom_id, content="an answer", status=200):
    body = ({"id": f"chatcmpl-{custom_id}", "object": "chat.completion", "created": 1700,
             "model": "gpt-x", "choices": [{"index": 0, "message": {"role": "assistant",
                                                                    "content": content}}]}
            if status == 200 else {"error": {"message": "Rate limit reached", "type": "x"}})
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id,
            "response": {"status_code": status, "request_id": "req", "body": body},
            "error": None}


def test_batch_output_records(tmp_path):
    path = write_jsonl(tmp_path / "batch_output.jsonl",
                       [batch_line("task-1"), batch_line("task-2", "second")])
    records, stats = read(path)
    assert stats.shape == "openai-batch"
    assert [(r.id, r.prompt, r.response, r.model, r.timestamp) for r in records] == [
        ("task-1", None, "an answer", "gpt-x", "1700"), ("task-2", None, "second", "gpt-x",
                                                           "1700")]


def test_batch_failed_requests_are_errors_naming_line_and_status(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [batch_line("t1"), batch_line("t2", status=429)])
    error = error_of(path)
    assert str(error).startswith(f'{path} line 2: request "t2" failed with status 429 '
                                 f'(Rate limit reached); failed requests carry no response')
    assert error.field == "response.status_code"
    expired = {"id": "batch_req_3", "custom_id": "t3", "response": None,
               "error": {"code": "batch_expired", "message": "not completed in time"}}
    path = write_jsonl(tmp_path / "c.jsonl", [batch_line("t1"), expired])
    assert 'line 2: request "t3" failed (batch_expired: not completed in time)' in \
        str(error_of(path))


def test_batch_output_has_no_prompts_to_ask(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [batch_line("t1")])
    assert 'line 1: field "prompt" is missing' in str(error_of(path, read_prompts))


# --- field paths into lists ------------------------------------------------------------------

def test_field_paths_index_into_lists(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [
        {"response": {"choices": [{"message": {"content": "zero"}},
                                  {"message": {"content": "one"}}]},
         "request": {"messages": [{"content": "q"}]}, "uid": "u"}])
    fields = FieldMap(text="response.choices.1.message.content",
                      prompt="request.messages.0.content", id="uid")
    (record,), _ = read(path, fields)
    assert (record.id, record.prompt, record.response) == ("u", "q", "one")
    for missing in ("response.choices.2.message.content", "response.choices.x.message",
                    "response.choices.-1.message.content"):
        error = error_of(path, lambda p, m=missing: read(p, FieldMap(text=m)))
        assert str(error) == f'{path} line 1: field "{missing}" is missing'


# --- through the CLI -------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_builds_from_csv_and_attributes_a_parquet_suspect(tmp_path):
    import csv

    rows = served_rows(12)
    served = tmp_path / "served.csv"
    with open(served, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    runner = CliRunner()
    result = runner.invoke(main, ["index", "build", str(served), "--index", str(tmp_path / "i")])
    assert result.exit_code == 0, result.output
    assert "indexed 12 responses" in result.output
    suspect = write_parquet(tmp_path / "suspect.parquet",
                            [{"id": f"s{i}", "prompt": r["prompt"], "response": r["response"]}
                             for i, r in enumerate(rows[:6])])
    result = runner.invoke(main, ["attribute", str(suspect), "--index", str(tmp_path / "i"),
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["responses"] == 6
