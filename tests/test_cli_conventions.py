"""Everyday command-line conventions (issue 18, section 4): logging with -v/-q and
FINGERPRINT_LOG_LEVEL, progress bars forced on or off, a message while a first-use cache is built,
--json on every command that produces a result (compact unless --indent), attribute --nl, the
index given as --index everywhere, help that shows no default where the value is detected, one
provider share, no candidate teacher among the references, providers named by --name, and the
README's advice against shadowed imports. Every test runs the real command (CliRunner, or a
subprocess where a terminal or the console script matters) and parses what it printed."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import main
from cli.logs import QUIET_KEY, log_level
from cli.options import PROGRESS_KEY, progress_disabled
from conftest import served_rows, styled_answer, styled_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return result


def ok(*args, env=None):
    result = invoke(*args, env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> tuple[Path, Path]:
    """An index of 24 served responses, and its served file."""
    root = tmp_path_factory.mktemp("small")
    served = write_jsonl(root / "served.jsonl", served_rows(24))
    ok("index", "build", served, "--index", root / "idx")
    return root / "idx", served


@pytest.fixture(scope="module")
def providers(tmp_path_factory) -> dict[str, Path]:
    """Two providers' indexes (styles 0 and 1), five references stored with the first, and a
    student answering 4 in 5 prompts in provider-b's style."""
    root = tmp_path_factory.mktemp("providers")
    paths = {}
    for name, style in (("provider-a", 0), ("provider-b", 1)):
        paths[name + ".jsonl"] = write_jsonl(root / f"{name}.jsonl", styled_rows(style, 40))
        ok("index", "build", paths[name + ".jsonl"], "--index", root / name)
        paths[name] = root / name
    for style in range(2, 7):
        ref = write_jsonl(root / f"model{style}.jsonl", styled_rows(style, 40))
        ok("reference", "add", ref, "--index", root / "provider-a", "--name", f"model{style}")
    paths["student"] = write_jsonl(root / "student.jsonl", [
        {"prompt": r["prompt"], "response": styled_answer(1 if i % 5 else 7, i)}
        for i, r in enumerate(styled_rows(1, 40))])
    return paths


# 1. Logging ------------------------------------------------------------------------------------

def test_log_level_flags_win_over_the_environment_variable():
    assert log_level(0, 0, None) == logging.INFO
    assert log_level(0, 0, "debug") == logging.DEBUG
    assert log_level(0, 0, "ERROR") == logging.ERROR
    assert log_level(1, 0, "ERROR") == logging.DEBUG  # the flag wins
    assert log_level(0, 1, "DEBUG") == logging.WARNING
    assert log_level(0, 2, None) == logging.ERROR
    with pytest.raises(click.UsageError):
        log_level(1, 1, None)


def test_a_bad_log_level_variable_is_a_usage_error(small_index):
    result = invoke("index", "info", small_index[0], env={"FINGERPRINT_LOG_LEVEL": "LOUD"})
    assert result.exit_code == 2
    assert "FINGERPRINT_LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR" in \
        result.stderr


def test_library_log_records_reach_stderr_at_the_chosen_level(tmp_path):
    """The index logs each commit at DEBUG: shown with -v or FINGERPRINT_LOG_LEVEL=DEBUG, not
    by default nor with -q (which wins over the variable), never on stdout."""
    served = write_jsonl(tmp_path / "served.jsonl", served_rows(3))
    runs = {}
    for name, flags, level in (("default", [], None), ("verbose", ["-v"], None),
                               ("by_env", [], "DEBUG"), ("overruled", ["-q"], "DEBUG")):
        runs[name] = ok(*flags, "index", "build", served, "--index", tmp_path / name, "--json",
                        env={"FINGERPRINT_LOG_LEVEL": level})
        json.loads(runs[name].stdout)  # results alone on stdout
    message = "DEBUG index.staging: committed seg-000001-"
    assert message not in runs["default"].stderr and message not in runs["overruled"].stderr
    assert message in runs["verbose"].stderr and message in runs["by_env"].stderr


def test_logging_is_put_back_after_an_in_process_run(small_index):
    root, package = logging.getLogger(), logging.getLogger("fingerprint")
    before = (list(root.handlers), root.level, package.level)
    ok("-v", "index", "info", small_index[0])
    assert (list(root.handlers), root.level, package.level) == before


# 2. Progress bars ------------------------------------------------------------------------------

def test_progress_can_be_forced_on_and_off(tmp_path):
    served = write_jsonl(tmp_path / "served.jsonl", served_rows(5))
    forced = ok("index", "build", served, "--index", tmp_path / "a", "--progress")
    assert "indexing: 100%" in forced.stderr and "5/5" in forced.stderr
    off = ok("index", "build", served, "--index", tmp_path / "b", "--no-progress")
    assert "indexing" not in off.stderr
    explicit = ok("-q", "index", "build", served, "--index", tmp_path / "c", "--progress")
    assert "indexing: 100%" in explicit.stderr  # the explicit flag wins over -q


def test_quiet_implies_no_progress_and_the_default_follows_the_terminal():
    with click.Context(main) as ctx:
        assert progress_disabled() is None  # tqdm decides: on for a terminal
        ctx.meta[QUIET_KEY] = True
        assert progress_disabled() is True
        ctx.meta[PROGRESS_KEY] = True
        assert progress_disabled() is False
        ctx.meta[PROGRESS_KEY] = False
        assert progress_disabled() is True


def _stderr_on_a_terminal(args: list[str]) -> str:
    """Run the CLI with stderr on a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # else 0 wide
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FINGERPRINT_LOG_LEVEL": ""}
    proc = subprocess.run([sys.executable, "-m", "cli", *args], stdout=subprocess.PIPE,
                          stderr=follower, env=env, timeout=300, check=False)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.returncode == 0, proc.stdout
    return b"".join(chunks).decode("utf-8", "replace")


def test_on_a_terminal_the_bar_shows_unless_quiet(tmp_path):
    served = write_jsonl(tmp_path / "served.jsonl", served_rows(5))
    shown = _stderr_on_a_terminal(["index", "build", str(served), "--index", str(tmp_path / "a")])
    assert "indexing" in shown
    hidden = _stderr_on_a_terminal(["-q", "index", "build", str(served), "--index",
                                    str(tmp_path / "b")])
    assert "indexing" not in hidden


# 3. The first-use cache message ----------------------------------------------------------------

def test_building_a_cache_entry_says_so_before_and_after(tmp_path, monkeypatch, caplog):
    from fingerprint.embed_cache import load_or_build

    monkeypatch.setenv("FINGERPRINT_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)

    def build(out: Path) -> dict:
        (out / "table.npy").write_bytes(b"t")
        return {}

    with caplog.at_level(logging.INFO, logger="fingerprint"):
        entry, _ = load_or_build("toy", 1, model, ("table.npy",), build, "toy table", 7)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"building the toy table cache in {entry} (first use, about 7 s)"
    assert messages[1].startswith("done in ") and "the toy table cache is built" in messages[1]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fingerprint"):
        load_or_build("toy", 1, model, ("table.npy",), build, "toy table", 7)
    assert not caplog.records  # built once: nothing to say at INFO


@pytest.mark.slow
def test_the_cli_shows_the_cache_build_by_default(tmp_path):
    """A real first use (the int8 ONNX graph, about 5 s) in a fresh cache directory."""
    served = write_jsonl(tmp_path / "served.jsonl", served_rows(3))
    env = {"FINGERPRINT_CACHE_DIR": str(tmp_path / "cache"), "FINGERPRINT_LOG_LEVEL": None}
    result = ok("index", "build", served, "--index", tmp_path / "idx",
                "--embedding-backend", "onnx-int8", env=env)
    assert "INFO: building the int8 ONNX graph cache in " in result.stderr
    assert "(first use, about 5 s)" in result.stderr
    assert "INFO: done in " in result.stderr
    assert "building" not in result.stdout


# 4. JSON output --------------------------------------------------------------------------------

def _one_compact_line(result) -> dict:
    """The output is one line of JSON with no optional whitespace at all."""
    text = result.stdout
    data = json.loads(text)
    assert text == json.dumps(data, separators=(",", ":")) + "\n", text[:300]
    return data


def test_index_build_add_info_verify_print_compact_json(tmp_path):
    served = write_jsonl(tmp_path / "served.jsonl", served_rows(6))
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(4, start=6))
    idx = tmp_path / "idx"
    built = _one_compact_line(ok("index", "build", served, "--index", idx, "--json"))
    assert built["added"] == 6 and built["total"] == 6 and built["segment"].startswith("seg-")
    added = _one_compact_line(ok("index", "add", more, "--index", idx, "--json"))
    assert added == {"index": str(idx), "segment": added["segment"], "added": 4,
                     "skipped_empty": 0, "skipped_duplicates": 0, "total": 10}
    assert _one_compact_line(ok("index", "info", idx, "--json"))["responses"] == 10
    assert _one_compact_line(ok("verify", idx, "--json"))["ok"] is True
    indented = ok("index", "info", idx, "--json", "--indent", "2").stdout
    assert indented.startswith('{\n  "path": ') and json.loads(indented)["responses"] == 10
    refused = invoke("index", "info", idx, "--indent", "2")
    assert refused.exit_code == 2 and "--indent shapes the output of --json" in refused.stderr


def test_reference_add_and_probe_select_print_json(small_index, tmp_path):
    idx, _ = small_index
    ref = write_jsonl(tmp_path / "ref.jsonl", served_rows(5, start=100))
    stored = _one_compact_line(ok("reference", "add", ref, "--index", idx, "--name", "ref-j",
                                  "--json"))
    assert stored["reference"] == "ref-j" and stored["added"] == 5
    chosen = _one_compact_line(ok("probe", "select", "--index", idx, "-n", "4", "--out",
                                  tmp_path / "probes.jsonl", "--json"))
    assert chosen["chosen"] == 4 and len(chosen["probes"]) == 4
    on_disk = [json.loads(line) for line in (tmp_path / "probes.jsonl").read_text().splitlines()]
    assert [p["id"] for p in chosen["probes"]] == [p["id"] for p in on_disk]
    assert chosen["ranked_by"] == "style_margin"  # the references stored with the index


def test_probe_run_prints_json(tmp_path):
    from replay import ReplayServer

    recorded = write_jsonl(tmp_path / "recorded.jsonl", served_rows(3))
    with ReplayServer.from_file(str(recorded), model="m") as server:
        result = ok("probe", "run", recorded, "--endpoint", server.url, "--model", "m",
                    "--out", tmp_path / "out.jsonl", "--json", "--api-key-env", "NO_KEY_HERE",
                    "--progress")
    assert "probing: 100%" in result.stderr  # forced on, though stderr is no terminal
    data = _one_compact_line(result)
    assert data["answered"] == 3 and data["failed"] == 0 and data["test"] is None
    assert data["out"] == str(tmp_path / "out.jsonl")


def test_watermark_keygen_and_mark_print_json_without_the_secret(tmp_path):
    key = _one_compact_line(ok("watermark", "keygen", "--out", tmp_path / "k.key", "--json"))
    secret = json.loads((tmp_path / "k.key").read_text())["secret"]
    assert key["key_id"] and secret not in json.dumps(key) and "secret" not in key
    served = write_jsonl(tmp_path / "served.jsonl", served_rows(4))
    marked = _one_compact_line(ok("watermark", "mark", served, "--key", tmp_path / "k.key",
                                  "--out", tmp_path / "m.jsonl", "--json"))
    assert marked["responses"] == 4


def test_attribute_json_is_compact_and_nl_gives_one_row_per_response(small_index, tmp_path):
    idx, served = small_index
    whole = _one_compact_line(ok("attribute", served, "--index", idx, "--json",
                                 "--no-references"))
    rows = [json.loads(line) for line in
            ok("attribute", served, "--index", idx, "--nl", "--no-references").stdout
            .splitlines()]
    assert len(rows) == whole["counts"]["responses"] == 24
    assert [r["id"] for r in rows] == [r["id"] for r in whole["responses"]]
    first = rows[0]
    assert first["suspect"] == str(served) and first["prompt"].startswith("Tell me about")
    assert len(first["prompt_hash"]) > 8 and first["paired"]["id"] == first["id"]
    assert {"evidence", "near_duplicate", "lexical_matches", "provider_like"} <= set(first)
    both = invoke("attribute", served, "--index", idx, "--json", "--nl")
    assert both.exit_code == 2 and "choose one" in both.stderr


# 5. Consistency --------------------------------------------------------------------------------

def test_index_info_and_verify_take_index_as_an_option_too(small_index):
    idx, _ = small_index
    positional = ok("index", "info", idx, "--json").stdout
    assert ok("index", "info", "--index", idx, "--json").stdout == positional
    assert ok("index", "info", idx, "--index", idx, "--json").stdout == positional
    assert json.loads(ok("verify", "--index", idx, "--json").stdout)["ok"] is True
    neither = invoke("index", "info")
    assert neither.exit_code == 2 and "as INDEX_PATH or --index" in neither.stderr
    two = invoke("index", "info", idx, "--index", "elsewhere")
    assert two.exit_code == 2 and "two indexes given" in two.stderr


def test_help_shows_no_default_where_the_value_is_detected():
    add_help = ok("index", "add", "-h").stdout
    build_help = ok("index", "build", "-h").stdout
    assert "[default: 128]" in " ".join(build_help.split())
    joined = " ".join(add_help.split())
    assert "[default: 128]" not in joined and "[default: the index's;" in joined
    for command in (("index", "build"), ("attribute",), ("probe", "run"), ("serve-replay",)):
        text = " ".join(ok(*command, "-h").stdout.split())
        assert "[default: response]" not in text and "[default: prompt]" not in text
        assert "the shape is detected from the first record" in text


def test_teacher_table_and_signals_table_show_one_provider_share(providers, tmp_path):
    data = json.loads(ok("attribute", providers["student"], "--index", providers["provider-a"],
                         "--index", providers["provider-b"], "--json").stdout)
    teacher = data["teachers"]["ranking"][0]
    share = data["signals"]["provider_share"]
    assert teacher["provider"] == "provider-b" and data["index"] == str(providers["provider-b"])
    assert teacher["share"] == share["value"] > 0.5
    assert teacher["p_value"] == share["p_value"] and teacher["z"] == share["z"]
    assert teacher["derived_fraction"] == data["derived_fraction"]
    assert sorted(share["reference_values"]) == [f"model{s}" for s in range(2, 7)]  # refs only


def test_providers_are_named_by_name(providers):
    data = json.loads(ok("attribute", providers["student"], "--index", providers["provider-a"],
                         "--name", "chatgpt", "--index", providers["provider-b"], "--name",
                         "claude", "--json").stdout)
    assert [r["provider"] for r in data["teachers"]["ranking"]] == ["claude", "chatgpt"]
    assert data["teachers"]["teacher"] == "claude"
    short = invoke("attribute", providers["student"], "--index", providers["provider-a"],
                   "--index", providers["provider-b"], "--name", "one")
    assert short.exit_code == 2 and "1 --name for 2 --index" in short.stderr
    clash = invoke("attribute", providers["student"], "--index", providers["provider-a"],
                   "--name", "model3", "--index", providers["provider-b"], "--name", "other")
    assert clash.exit_code == 1
    assert "reference names equal provider labels: ['model3']" in clash.stderr


def test_a_reference_that_is_a_candidate_teacher_is_refused(providers, tmp_path):
    """provider-b's own answers given as a reference: the null would hold the alternative."""
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(providers["provider-b.jsonl"].read_bytes())
    refs = [copy] + [
        write_jsonl(tmp_path / f"model{s}.jsonl", styled_rows(s, 40)) for s in range(2, 6)]
    args = ["attribute", providers["student"], "--index", providers["provider-a"], "--index",
            providers["provider-b"]] + [a for r in refs for a in ("--reference", r)]
    ranked = invoke(*args)
    assert ranked.exit_code == 1
    assert ("Error: reference 'copy' gives the same answers as provider 'provider-b' on "
            "40 of 40 common prompts") in ranked.stderr
    alone = invoke("attribute", providers["student"], "--index", providers["provider-b"],
                   *[a for r in refs for a in ("--reference", r)])
    assert alone.exit_code == 1 and "put the alternative into the null" in alone.stderr
    fine = invoke("attribute", providers["student"], "--index", providers["provider-b"],
                  *[a for r in refs[1:] for a in ("--reference", r)])
    assert fine.exit_code == 0, fine.output


# 6. The README's advice on shadowed imports -----------------------------------------------------

def test_a_local_index_package_shadows_python_m_but_not_the_console_script(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "namespaced import path" in readme and "does not put the" in readme
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "__init__.py").write_text("raise SystemExit('SHADOWED')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["index", "info", str(tmp_path / "missing")]
    shadowed = subprocess.run([sys.executable, "-m", "cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert "SHADOWED" in shadowed.stderr
    script = Path(sys.executable).parent / "fingerprint"
    if not script.is_file():
        pytest.skip("the fingerprint console script is not installed beside this Python")
    safe = subprocess.run([str(script), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert "SHADOWED" not in safe.stderr and "not an index" in safe.stderr
