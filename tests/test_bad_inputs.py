"""Bad inputs end in one line naming the file, line (or item) and field, or are read correctly:
never a traceback, never a hang, never a half-written index (issue 18, section 2)."""

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from conftest import served_rows, write_jsonl
from fingerprint import read_prompts
from fingerprint.io import count_lines
from conftest import error_of, read

ROOT = Path(__file__).resolve().parents[1]
CHAT = {"request": {"messages": [{"role": "user", "content": "q"}]},
        "response": {"id": "c1", "choices": [{"message": {"content": "an answer"}}]}}


def one_line_error(result) -> str:
    """The CLI's output for a refused input: exit 1, one ``Error:`` line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# --- 1. nesting deeper than the JSON parser allows -------------------------------------------

def test_deeply_nested_json_line_names_the_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"response": "ok"}\n' + "[" * 100_000 + "\n")
    error = error_of(path)
    assert str(error).startswith(f"{path} line 2: JSON nested too deeply (100,000 levels")
    assert error.line == 2


def test_deeply_nested_json_array_names_the_line(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text('[\n{"output": "a", "instruction": "q"},\n\n' + "[" * 100_000 + "]")
    error = error_of(path)
    assert str(error).startswith(f"{path} line 4: JSON nested too deeply")


def test_deep_nesting_is_refused_by_every_prompt_reader(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "q"}\n' + '{"prompt": ' * 50_000 + "\n")
    assert error_of(path, read_prompts).line == 2


# --- 2. lone surrogates ----------------------------------------------------------------------

@pytest.mark.parametrize("line, field, char, at", [
    ('{"id": "a", "prompt": "p", "response": "bad \\ud800 here"}', "response", "\\ud800", 4),
    ('{"id": "a\\udc00", "prompt": "p", "response": "fine"}', "id", "\\udc00", 1),
    ('{"id": "a", "prompt": "p\\ud800", "response": "fine"}', "prompt", "\\ud800", 1),
    ('{"id": "a", "response": "fine", "model": "\\udfff"}', "model", "\\udfff", 0),
])
def test_lone_surrogates_are_refused_naming_line_and_field(tmp_path, line, field, char, at):
    path = tmp_path / "s.jsonl"
    path.write_text('{"response": "first"}\n' + line + "\n")
    error = error_of(path)
    assert str(error) == (f'{path} line 2: field "{field}" contains an unpaired surrogate '
                          f"{char} at character {at}")
    assert error.field == field


def test_a_surrogate_pair_is_one_character_and_fine(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"response": "smile \\ud83d\\ude00"}\n')
    (record,), _ = read(path)
    assert record.response == "smile \U0001F600"


def test_surrogates_in_prompts_only_files_and_chat_logs(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"prompt": "x\\ud800"}\n')
    assert 'line 2: field "prompt" contains an unpaired surrogate' in str(
        error_of(prompts, read_prompts))
    chat = json.loads(json.dumps(CHAT))
    chat["request"]["messages"][0]["content"] = "q\ud800"
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(chat) + "\n")
    assert 'line 1: field "request.messages" contains an unpaired surrogate' in \
        str(error_of(log))


# --- 3. a file mixing shapes -----------------------------------------------------------------

@pytest.mark.parametrize("later, field", [
    ({"id": "x", "prompt": "p", "response": "served shape"}, "request"),
    ({"instruction": "q", "output": "alpaca shape"}, "request"),
])
def test_chat_log_with_a_later_line_of_another_shape(tmp_path, later, field):
    rows = [dict(CHAT, id=f"c{i}") for i in range(6)] + [later]
    path = write_jsonl(tmp_path / "log.jsonl", rows)
    error = error_of(path)
    assert error.line == 7 and error.field == field
    assert "(expected an OpenAI chat log line, the shape of line 1)" in str(error)


def test_alpacaeval_file_with_a_later_chat_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "o"}, CHAT])
    assert str(error_of(path)) == (f'{path} line 2: field "output" is missing (expected an '
                                   f"AlpacaEval output, the shape of line 1)")


# --- numbers Python reads but no id or time can be -------------------------------------------

@pytest.mark.parametrize("line, message", [
    ('{"id": NaN, "response": "r"}', 'field "id" must be a finite number, got NaN'),
    ('{"id": 1e400, "response": "r"}', 'field "id" must be a finite number, got Infinity'),
    ('{"response": "r", "timestamp": -Infinity}',
     'field "timestamp" must be a finite number, got -Infinity'),
    ('{"id": ' + "9" * 5000 + ', "response": "r"}',
     "malformed JSON: a number with more than 4,300 digits"),
])
def test_non_finite_and_huge_numbers(tmp_path, line, message):
    path = tmp_path / "s.jsonl"
    path.write_text(line + "\n")
    assert str(error_of(path)) == f"{path} line 1: {message}"


def test_nan_in_a_field_the_toolkit_does_not_use_is_fine(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": 12345678901234567890, "response": "r", "score": NaN}\n')
    (record,), _ = read(path)
    assert record.id == "12345678901234567890"


# --- byte-level oddities ---------------------------------------------------------------------

def test_a_byte_order_mark_is_skipped(tmp_path):
    lines = tmp_path / "bom.jsonl"
    lines.write_bytes(b'\xef\xbb\xbf{"id": "b", "response": "with a BOM"}\r\n')
    array = tmp_path / "bom.json"
    array.write_bytes(b'\xef\xbb\xbf [{"output": "a", "instruction": "q"}]')
    assert [r.response for r in read(lines)[0]] == ["with a BOM"]
    assert [r.response for r in read(array)[0]] == ["a"]


def test_a_damaged_gzip_header_is_an_error_not_an_empty_file(tmp_path):
    path = tmp_path / "s.jsonl.gz"
    path.write_bytes(b"\x1f\x8b garbage")  # was read as an empty file
    assert "cannot read compressed input" in str(error_of(path))


def test_a_truncated_gzip_names_the_line_it_stopped_at(tmp_path):
    path = tmp_path / "s.jsonl.gz"
    data = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in served_rows(200)))
    path.write_bytes(data[:len(data) // 2])
    error = error_of(path)
    assert "cannot read compressed input" in str(error) and error.line > 1


def test_a_file_name_that_is_not_utf8_is_shown_escaped_and_stored(tmp_path, fingerprinter):
    from index import build_index, open_index

    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.jsonl"))
    write_jsonl(path, served_rows(3))
    (record, *_), _ = read(path)
    assert record.source.endswith("caf\\xe9.jsonl")
    build_index(tmp_path / "idx", [path], fingerprinter)
    with open_index(tmp_path / "idx") as idx:
        assert idx.info()["responses"] == 3


# --- standard input --------------------------------------------------------------------------

def test_standard_input_twice_is_refused(tmp_path, built_index):
    more = "".join(json.dumps(r) + "\n" for r in served_rows(3, 100))
    result = CliRunner().invoke(main, ["index", "add", "-", "-", "--index", str(built_index)],
                                input=more)
    assert one_line_error(result) == ("Error: <stdin>: standard input is named more than once; "
                                      "it can be read only once")


def test_standard_input_is_not_closed_by_a_read(tmp_path, monkeypatch):
    import io

    data = b'{"response": "one"}\n'
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert [r.response for r in read("-")[0]] == ["one"]
    assert not stdin.buffer.closed
    assert read("-")[0] == []  # read to its end: nothing more, and no "peek of closed file"


def test_closed_standard_input_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cli", "probe", "run", "-", "--endpoint", "http://127.0.0.1:9/v1",
         "--model", "m", "--out", str(tmp_path / "out.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.close(0))
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: <stdin>: standard input is closed"


# --- 6. a named pipe is read once, never counted ---------------------------------------------

def feed_fifo(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as f:  # blocks until a reader opens the pipe
            f.write(data)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def release_fifo(path: Path) -> None:
    """Unblock whoever still waits on the pipe, so a failing test cannot hang the session."""
    for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
        try:
            os.close(os.open(path, flags))
        except OSError:
            pass


def test_count_lines_does_not_open_a_named_pipe(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    counted: list = []
    thread = threading.Thread(target=lambda: counted.append(count_lines(fifo)), daemon=True)
    thread.start()
    thread.join(5)
    hung = thread.is_alive()
    release_fifo(fifo)
    assert not hung, "count_lines opened the named pipe and waited for a writer"
    assert counted == [None]


@pytest.mark.slow
def test_index_add_reads_a_named_pipe_once(tmp_path, built_index):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    writer = feed_fifo(fifo, "".join(json.dumps(r) + "\n" for r in served_rows(5, 100))
                       .encode())
    try:
        result = subprocess.run([sys.executable, "-m", "cli", "index", "add", str(fifo),
                                 "--index", str(built_index), "--workers", "1"],
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("index add hung on a named pipe")
    finally:
        release_fifo(fifo)
        writer.join(5)
    assert result.returncode == 0, result.stderr
    assert "indexed 5 responses" in result.stdout


# --- 4. a full disk inside SQLite ------------------------------------------------------------

def limited(max_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def add_with_file_size_limit(index: Path, inputs: Path, max_bytes: int, *options: str):
    return subprocess.run([sys.executable, "-m", "cli", "index", "add", str(inputs), "--index",
                           str(index), "--workers", "1", *options], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=limited(max_bytes))


def assert_index_unchanged(index: Path, rows: int) -> None:
    from index import open_index, verify_index

    assert verify_index(index).ok
    with open_index(index) as idx:
        assert idx.info()["responses"] == rows
    assert not list(index.rglob(".tmp-*")), "the staged segment was left behind"


@pytest.mark.slow
def test_full_disk_while_writing_metadata_is_one_line_and_loses_nothing(tmp_path, built_index):
    big = write_jsonl(tmp_path / "big.jsonl", [
        {"id": f"big-{i}", "prompt": f"p{i}", "response": f"word{i} " * 20_000}
        for i in range(30)])  # ~4 MB of text, all of it for metadata.sqlite
    result = add_with_file_size_limit(built_index, big, 1_000_000)
    assert result.returncode == 1, result.stdout
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr
    assert line.startswith("Error: ") and "metadata.sqlite: cannot write the segment's metadata" \
        in line and "Nothing was added to the index" in line
    assert_index_unchanged(built_index, 24)


@pytest.mark.slow
def test_full_disk_while_writing_a_search_index_is_one_line(tmp_path, built_index,
                                                            fingerprinter):
    rows = 400  # a flat embedding index: rows * dim float32, twice the float16 vectors file
    many = write_jsonl(tmp_path / "many.jsonl", [
        {"id": f"m{i}", "response": f"short answer {i} about thing {i % 7}"}
        for i in range(rows)])
    dim = fingerprinter.embedding_dim
    result = add_with_file_size_limit(built_index, many, rows * dim * 3, "--no-store-text")
    assert result.returncode == 1, result.stdout
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("Error: "), result.stderr
    assert "embeddings.faiss" in line and "cannot write the search indexes" in line
    assert_index_unchanged(built_index, 24)


def test_a_failed_array_write_names_its_file():
    import numpy as np

    from index import IndexWriteError
    from index.files import NpyAppender

    appender = NpyAppender("/dev/full", "<f4", (4,))  # every write: ENOSPC, a full disk
    with pytest.raises(IndexWriteError, match=r"^/dev/full: cannot write \(No space left"):
        appender.append(np.zeros((100_000, 4)))
        appender.close()
    appender.abort()


# --- every command that reads inputs says it in one line -------------------------------------

@pytest.fixture
def surrogate_file(tmp_path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "p", "response": "ok"}\n'
                    '{"id": "b", "prompt": "p\\ud800", "response": "bad \\ud800"}\n')
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", ["index add", "attribute", "reference add", "probe run",
                                     "probe select", "watermark detect"])
def test_every_reader_refuses_in_one_line(tmp_path, built_index, surrogate_file, command):
    args = {
        "index add": ["index", "add", surrogate_file, "--index", built_index],
        "attribute": ["attribute", surrogate_file, "--index", built_index],
        "reference add": ["reference", "add", surrogate_file, "--index", built_index,
                          "--name", "other"],
        "probe run": ["probe", "run", surrogate_file, "--endpoint", "http://127.0.0.1:9/v1",
                      "--model", "m", "--out", tmp_path / "out.jsonl"],
        "probe select": ["probe", "select", "--index", built_index, "-n", "2", "--out",
                         tmp_path / "probes.jsonl", "--reference", surrogate_file],
        "watermark detect": ["watermark", "detect", surrogate_file, "--key",
                             tmp_path / "k.key"],
    }[command]
    if command == "watermark detect":
        assert CliRunner().invoke(main, ["watermark", "keygen", "--out",
                                         str(tmp_path / "k.key")]).exit_code == 0
    result = CliRunner().invoke(main, [str(a) for a in args])
    line = one_line_error(result)
    assert line.startswith(f"Error: {surrogate_file} line 2: field ")
    assert "contains an unpaired surrogate \\ud800 at character" in line


# --- 5. prompts from standard input ----------------------------------------------------------

@pytest.mark.slow
def test_probe_run_reads_prompts_from_standard_input(tmp_path):
    from conftest import styled_rows
    from replay import ReplayServer

    rows = styled_rows(2, 4)
    prompts = "".join(json.dumps({"id": f"p{i}", "prompt": r["prompt"]}) + "\n"
                      for i, r in enumerate(rows))
    out = tmp_path / "answers.jsonl"
    with ReplayServer({r["prompt"]: r["response"] for r in rows}, "suspect") as server:
        result = subprocess.run(
            [sys.executable, "-m", "cli", "probe", "run", "-", "--endpoint", server.url,
             "--model", "suspect", "--out", str(out)], input=prompts, cwd=ROOT,
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "OPENAI_API_KEY": "sk-test"})
    assert result.returncode == 0, result.stderr
    assert "4 answered, 0 failed" in result.stdout
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(a["id"] for a in answers) == ["p0", "p1", "p2", "p3"]
