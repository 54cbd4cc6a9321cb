import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from conftest import served_rows, served_text, write_jsonl
from fingerprint import __version__


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args, input=None):
    return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def test_version_and_help(runner):
    assert run(runner, "--version").output.strip() == f"fingerprint, version {__version__}"
    for args in (["-h"], ["index", "-h"], ["index", "build", "-h"], ["attribute", "-h"]):
        result = run(runner, *args)
        assert result.exit_code == 0 and "Usage:" in result.output


def test_build_info_add_attribute(runner, tmp_path, served_file):
    idx = tmp_path / "idx"
    result = run(runner, "index", "build", served_file, "--index", idx)
    assert result.exit_code == 0, result.output
    assert "indexed 24 responses" in result.output and "the index holds 24" in result.output

    more = write_jsonl(tmp_path / "more.jsonl", served_rows(3, start=40))
    result = run(runner, "index", "add", more, "--index", idx)
    assert result.exit_code == 0 and "the index holds 27" in result.output

    info = json.loads(run(runner, "index", "info", idx, "--json").output)
    assert info["responses"] == 27 and len(info["segments"]) == 2
    assert info["config"]["num_perm"] == 128 and info["bytes"]["total"] > 0
    text = run(runner, "index", "info", idx).output
    assert "27 in 2 segment(s)" in text and "all-MiniLM-L6-v2" in text

    suspect = write_jsonl(tmp_path / "suspect.jsonl", [
        {"id": "x1", "prompt": served_rows(3)[2]["prompt"], "response": served_text(2)},
        {"id": "x2", "response": "Nothing like any served answer at all, about submarines."}])
    report = tmp_path / "report.md"
    result = run(runner, "attribute", suspect, "--index", idx, "--json", "--report", report)
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert 0.0 <= data["score"] <= 1.0 and data["counts"] == {
        "responses": 2, "skipped_empty": 0, "paired": 1, "near_duplicates": 1,
        "indexed_responses": 27}
    assert data["responses"][0]["paired"]["id"] == "resp-2"
    assert "served `resp-2` (paired)" in report.read_text()
    human = run(runner, "attribute", suspect, "--index", idx).output
    assert "score" in human and "near_duplicate_rate  0.500" in human


def test_stdin_and_field_mapping(runner, tmp_path):
    idx = tmp_path / "idx"
    lines = "".join(json.dumps({"uid": f"u{i}", "q": f"question {i}", "answer": served_text(i)})
                    + "\n" for i in range(3))
    result = run(runner, "index", "build", "-", "--index", idx, "--text-field", "answer",
                 "--prompt-field", "q", "--id-field", "uid", input=lines)
    assert result.exit_code == 0, result.output
    info = json.loads(run(runner, "index", "info", idx, "--json").output)
    assert info["responses"] == 3 and info["segments"][0]["sources"] == ["<stdin>"]


def test_no_store_text_flag(runner, tmp_path, served_file):
    idx = tmp_path / "idx"
    run(runner, "index", "build", served_file, "--index", idx, "--no-store-text")
    assert json.loads(run(runner, "index", "info", idx, "--json").output)[
        "segments"][0]["store_text"] is False


@pytest.mark.parametrize("content, message", [
    ('{"id": "1", "response": "ok"}\n{"id": "2"}\n', 'line 2: field "response" is missing'),
    ('{"id": "1", "response": "ok"}\n{not json\n', "line 2: malformed JSON"),
])
def test_errors_are_one_line_without_traceback(runner, tmp_path, content, message):
    bad = tmp_path / "served.jsonl"
    bad.write_text(content)
    result = runner.invoke(main, ["index", "build", str(bad), "--index", str(tmp_path / "idx")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad} {message}")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "idx").exists()


def test_add_with_a_different_config_is_refused(runner, built_index, tmp_path):
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(1, start=90))
    result = runner.invoke(main, ["index", "add", str(more), "--index", str(built_index),
                                  "--num-perm", "64"])
    assert result.exit_code == 1
    assert "num_perm: index has 128, got 64" in result.output


def test_not_an_index_and_duplicate_ids(runner, tmp_path, built_index, served_file):
    result = runner.invoke(main, ["index", "info", str(tmp_path)])
    assert result.exit_code == 1 and "not an index" in result.output
    result = runner.invoke(main, ["index", "add", str(served_file), "--index", str(built_index)])
    assert result.exit_code == 1
    assert 'served.jsonl line 1: id "resp-0" is already in the index' in result.output
    result = runner.invoke(main, ["index", "add", str(served_file), "--index", str(built_index),
                                  "--skip-duplicates"])
    assert result.exit_code == 0 and "24 duplicate records skipped" in result.output


def test_missing_suspect_file(runner, built_index, tmp_path):
    result = runner.invoke(main, ["attribute", str(tmp_path / "nope.jsonl"), "--index",
                                  str(built_index)])
    assert result.exit_code == 1 and "nope.jsonl: no such file" in result.output


def test_unwritable_report_path_is_a_one_line_error(runner, built_index, served_file, tmp_path):
    result = runner.invoke(main, ["attribute", str(served_file), "--index", str(built_index),
                                  "--report", str(tmp_path / "no-such-dir" / "r.md")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path / 'no-such-dir' / 'r.md'}: "
                                     f"directory {tmp_path / 'no-such-dir'} does not exist")


def test_os_errors_are_one_line(runner, built_index, served_file):
    # /proc refuses new files even to root: a real OSError after the attribution ran
    result = runner.invoke(main, ["attribute", str(served_file), "--index", str(built_index),
                                  "--report", "/proc/version.md"])
    assert result.exit_code == 1 and result.output.startswith(
        "Error: /proc/version.md: cannot write the report (")
    assert len(result.output.strip().splitlines()) == 1


def test_reference_add_list_and_calibrated_attribute(runner, tmp_path):
    from conftest import styled_answer, styled_rows

    idx = tmp_path / "idx"
    served = write_jsonl(tmp_path / "provider.jsonl", styled_rows(0, 60))
    assert run(runner, "index", "build", served, "--index", idx).exit_code == 0
    for style in range(1, 7):
        ref = write_jsonl(tmp_path / f"model{style}.jsonl", styled_rows(style, 60))
        result = run(runner, "reference", "add", ref, "--index", idx, "--name", f"model{style}")
        assert result.exit_code == 0 and "it holds 60" in result.output
    listing = run(runner, "reference", "list", "--index", idx).output
    assert listing.count("responses") == 6 and "embeddings no" in listing
    assert set(json.loads(run(runner, "reference", "list", "--index", idx, "--json").output)) \
        == {f"model{s}" for s in range(1, 7)}

    student = write_jsonl(tmp_path / "student.jsonl", [
        {"prompt": r["prompt"], "response": styled_answer(0 if i % 4 else 7, i)}
        for i, r in enumerate(styled_rows(0, 60))])  # 3 in 4 answers in the provider's style
    independent = write_jsonl(tmp_path / "independent.jsonl", styled_rows(7, 60))
    s = json.loads(run(runner, "attribute", student, "--index", idx, "--json").output)
    i = json.loads(run(runner, "attribute", independent, "--index", idx, "--json").output)
    for r in (s, i):
        assert r["calibrated"] is True and r["references"] == [f"model{k}" for k in range(1, 7)]
        assert r["signals"]["provider_share"]["references"] == 6
    assert s["p_value"] < 0.01 < i["p_value"]
    assert s["signals"]["provider_share"]["value"] == pytest.approx(0.75, abs=0.1)
    assert s["derived_fraction_ci95"][0] <= 0.75 and s["score"] == s["derived_fraction"] > 0.5
    assert i["score"] < 0.2
    human = run(runner, "attribute", student, "--index", idx).output
    assert "p-value" in human and "derived fraction, lower bound" in human

    # per-call references replace the stored ones; too few of them: no p-value, and it says why
    few = run(runner, "attribute", student, "--index", idx, "--json", "--reference",
              tmp_path / "model1.jsonl", "--reference", tmp_path / "model2.jsonl").output
    few = json.loads(few)
    assert few["calibrated"] is False and few["p_value"] is None
    assert few["references"] == ["model1", "model2"]
    assert any("needs at least 5 references on shared prompts; have 2" in n for n in few["notes"])
    none = json.loads(run(runner, "attribute", student, "--index", idx, "--json",
                          "--no-references").output)
    assert none["calibrated"] is False and none["references"] == []


def test_several_indexes_rank_the_likely_teacher(runner, tmp_path):
    from conftest import styled_answer, styled_rows

    for provider, style in (("provider-a", 0), ("provider-b", 1)):
        served = write_jsonl(tmp_path / f"{provider}.jsonl", styled_rows(style, 40))
        assert run(runner, "index", "build", served, "--index", tmp_path / provider).exit_code == 0
    for style in range(2, 7):  # references stored with one index serve the whole ranking
        ref = write_jsonl(tmp_path / f"model{style}.jsonl", styled_rows(style, 40))
        run(runner, "reference", "add", ref, "--index", tmp_path / "provider-a", "--name",
            f"model{style}")
    student = write_jsonl(tmp_path / "student.jsonl", [
        {"prompt": r["prompt"], "response": styled_answer(1 if i % 5 else 7, i)}
        for i, r in enumerate(styled_rows(1, 40))])  # 4 in 5 answers in provider-b's style
    result = run(runner, "attribute", student, "--index", tmp_path / "provider-a", "--index",
                 tmp_path / "provider-b", "--json", "--report", tmp_path / "r.md")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    teachers = data["teachers"]
    assert teachers["teacher"] == "provider-b" and teachers["margin"] > 0.5
    assert [r["provider"] for r in teachers["ranking"]] == ["provider-b", "provider-a"]
    # a rank among 5 references: above them all is p = 1/6, the floor, and no lower
    assert teachers["p_value"] == pytest.approx(1 / 6)
    assert teachers["ranking"][1]["p_value"] > 0.5
    assert data["index"].endswith("provider-b")  # the full attribution is against the teacher
    assert "**Likely teacher: provider-b**" in (tmp_path / "r.md").read_text()
    mismatched = tmp_path / "other-config"
    run(runner, "index", "build", tmp_path / "provider-a.jsonl", "--index", mismatched,
        "--num-perm", "64")
    result = runner.invoke(main, ["attribute", str(student), "--index",
                                  str(tmp_path / "provider-a"), "--index", str(mismatched)])
    assert result.exit_code == 1 and "num_perm: index has 128, got 64" in result.output


def test_html_report_from_the_cli(runner, built_index, served_file, tmp_path):
    result = run(runner, "attribute", served_file, "--index", built_index, "--report",
                 tmp_path / "r.html")
    assert result.exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert "<h1>Attribution report</h1>" in page and "Uncalibrated score" in page
    assert '"num_perm": 128' in page and "index_versions" in page


def test_reference_files_with_one_name_are_a_clear_error(runner, built_index, served_file,
                                                         tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_jsonl(tmp_path / "a" / "claude.jsonl", served_rows(5, start=300))
    second = write_jsonl(tmp_path / "b" / "claude.jsonl", served_rows(5, start=400))
    result = run(runner, "attribute", served_file, "--index", built_index,
                 "--reference", first, "--reference", second)
    assert result.exit_code == 1
    assert result.output.startswith("Error: reference files ")
    assert "both named 'claude'" in result.output and str(second) in result.output
    assert "Traceback" not in result.output


def test_report_to_a_symlink_or_a_device(runner, built_index, served_file, tmp_path):
    """A report file is written atomically through a symlink (the link stays), and a device such
    as /dev/stdout is written to directly (there is no directory to stage a file in)."""
    target = tmp_path / "real.md"
    link = tmp_path / "link.md"
    link.symlink_to(target)
    result = run(runner, "attribute", served_file, "--index", built_index, "--report", link)
    assert result.exit_code == 0 and link.is_symlink()
    assert target.read_text().startswith("# Attribution report")
    device = tmp_path / "device.md"
    device.symlink_to("/dev/null")
    result = run(runner, "attribute", served_file, "--index", built_index, "--report", device)
    assert result.exit_code == 0, result.output
    assert device.is_symlink() and Path("/dev/null").is_char_device()


def test_a_report_extension_that_names_no_format_is_refused_first(runner, built_index,
                                                                  served_file, tmp_path):
    result = run(runner, "attribute", served_file, "--index", built_index, "--report",
                 tmp_path / "r.html", "--report", tmp_path / "r.docx")
    assert result.exit_code == 1 and "is HTML (.html, .htm), PDF (.pdf)" in result.output
    assert not (tmp_path / "r.docx").exists() and not (tmp_path / "r.html").exists()


def test_a_suspect_with_no_usable_response_is_refused(runner, built_index, tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"response": "  "}, {"response": ""}])
    result = run(runner, "attribute", empty, "--index", built_index)
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {empty}: no non-empty response to attribute "
                                     f"(2 empty skipped)")
