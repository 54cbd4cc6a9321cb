"""``fingerprint monitor export-flagged`` and the index's marks (index.marks): the flagged
accounts' served responses are marked once however often it runs, all or nothing even when the
process is killed, counted per account, checked by verify, kept by later appends; an index
without marks still opens; a bad risk file line is one error naming file, line and field.

The index is conftest's ``built_index``: 24 served responses, 8 each from acct-0, acct-1 and
acct-2 (rows i with i % 3 == account number)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import served_rows, write_jsonl
from index import IndexCorruptedError, mark_accounts, open_index, verify_index
from index.marks import MARKS_DIR
from monitor import ExportError, export_flagged
from monitor_fixtures import invoke, one_error_line

ROOT = Path(__file__).resolve().parents[1]
RISK = [{"account": "acct-1", "risk": 1.0, "flagged": True, "requests": 40},
        {"account": "ghost", "risk": 1.0, "flagged": True, "requests": 60},
        {"account": "acct-2", "risk": 0.6, "flagged": False, "requests": 30},
        {"account": "acct-0", "risk": 0.1, "flagged": False, "requests": 30}]


def risk_file(tmp_path: Path, rows=RISK) -> Path:
    return write_jsonl(tmp_path / "risk.jsonl", rows)


def rows_of(account: int) -> list[int]:
    return [i for i in range(24) if i % 3 == account]


def marked(index: Path, label: str = "monitor-flagged") -> list[int]:
    with open_index(index) as idx:
        return idx.marked_rows(label)


def state(index: Path) -> tuple[bytes, list[str]]:
    """The manifest's bytes and the marks directory's entries: what a reader sees."""
    marks = index / MARKS_DIR
    return (index / "manifest.json").read_bytes(), sorted(os.listdir(marks)) \
        if marks.is_dir() else []


def test_export_marks_the_flagged_accounts_responses_and_counts_the_rest(built_index, tmp_path):
    result = invoke("monitor", "export-flagged", risk_file(tmp_path), "--index", built_index,
                    "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["selected"], data["in_index"], data["not_in_index"]) == (2, 1, 1)
    assert (data["rows_marked"], data["rows_added"], data["committed"]) == (8, 8, True)
    assert data["accounts"] == [
        {"account": "acct-1", "risk": 1.0, "in_index": True, "rows": 8, "added": 8},
        {"account": "ghost", "risk": 1.0, "in_index": False, "rows": 0, "added": 0}]
    assert marked(built_index) == rows_of(1)
    with open_index(built_index) as idx:
        assert {r.account for r in idx.responses(idx.marked_rows("monitor-flagged")).values()} \
            == {"acct-1"}
        assert idx.mark_labels() == {"monitor-flagged": 8}
        assert idx.marked_accounts("monitor-flagged") == {"acct-1": 8}
    report = verify_index(built_index)
    assert report.ok and report.files == 9  # the segment's 8 files and the marks file
    text = invoke("monitor", "export-flagged", risk_file(tmp_path), "--index", built_index)
    assert "not found   1 accounts have no served response in the index: ghost" in text.stdout
    assert "(0 of them new; nothing to add, index unchanged)" in text.stdout


def test_a_rerun_marks_nothing_twice_and_commits_nothing(built_index, tmp_path):
    risk = risk_file(tmp_path)
    first = export_flagged(risk, built_index)
    before = state(built_index)
    again = export_flagged(risk, built_index)
    assert again.marks.committed is False and again.marks.rows_added == 0
    assert again.marks.rows == first.marks.rows == {"acct-1": 8}
    assert state(built_index) == before and len(before[1]) == 1
    assert marked(built_index) == rows_of(1)  # no duplicates


def test_min_risk_adds_unflagged_accounts_and_labels_stay_apart(built_index, tmp_path):
    risk = risk_file(tmp_path)
    export_flagged(risk, built_index)
    wider = export_flagged(risk, built_index, min_risk=0.5, label="review")
    assert [a.account for a in wider.selected] == ["acct-1", "ghost", "acct-2"]
    assert wider.marks.added == {"acct-1": 8, "acct-2": 8}  # new under this label
    both = export_flagged(risk, built_index, min_risk=0.5)
    assert both.marks.added == {"acct-1": 0, "acct-2": 8}
    assert marked(built_index, "review") == sorted(rows_of(1) + rows_of(2))
    with open_index(built_index) as idx:
        assert idx.mark_labels() == {"monitor-flagged": 16, "review": 16}
    listed = json.loads((built_index / "manifest.json").read_text())["marks"]["name"]
    files = state(built_index)[1]  # the listed file, and the one it replaced (for readers of
    assert len(files) == 2 and listed in files  # the older manifest) until the next write
    with pytest.raises(ExportError, match=r"min_risk must be a number in \[0, 1\], got 2"):
        export_flagged(risk, built_index, min_risk=2)
    line = one_error_line(invoke("monitor", "export-flagged", risk, "--index", built_index,
                                 "--label", "../x"))
    assert "mark label '../x': use 1 to 64 letters" in line


def test_an_index_without_marks_opens_and_keeps_marks_through_later_appends(built_index,
                                                                           tmp_path):
    manifest = json.loads((built_index / "manifest.json").read_text())
    assert "marks" not in manifest  # what every index written before marks looks like
    with open_index(built_index) as idx:
        assert idx.marked_rows("monitor-flagged") == [] and idx.mark_labels() == {}
    assert verify_index(built_index).ok
    export_flagged(risk_file(tmp_path), built_index)
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(6, start=24))
    added = invoke("index", "add", more, "--index", built_index)
    assert added.exit_code == 0, added.output
    assert marked(built_index) == rows_of(1)  # the append's manifest keeps the marks
    result = export_flagged(risk_file(tmp_path), built_index)
    assert result.marks.added == {"acct-1": 2}  # rows 25 and 28, served after the first export
    assert marked(built_index) == rows_of(1) + [25, 28]
    assert verify_index(built_index).ok


KILLED = """
import os, signal, sys
import index.marks
target, when = sys.argv[1], int(sys.argv[2])
real = getattr(index.marks, target)
calls = []
def killer(*args, **kwargs):
    calls.append(1)
    if len(calls) == when:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(index.marks, target, killer)
from cli import main
sys.argv = ["fingerprint"] + sys.argv[3:]
main()
"""


@pytest.mark.parametrize("target, call", [
    ("sha256_file", 3),  # the new file staged and flushed, its checksum being taken
    ("fsync_path", 1),  # renamed into place, the manifest not yet swapped
    ("write_manifest", 1),  # just before the swap
])
def test_a_write_killed_mid_way_leaves_the_index_as_before(target, call, built_index, tmp_path):
    risk = risk_file(tmp_path)
    export_flagged(risk, built_index)  # marks to keep
    before, files = state(built_index)
    done = subprocess.run([sys.executable, "-c", KILLED, target, str(call), "monitor",
                           "export-flagged", str(risk), "--index", str(built_index),
                           "--min-risk", "0"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == -9, done.stderr
    assert state(built_index)[0] == before  # the manifest: the index as before
    assert len(state(built_index)[1]) > len(files)  # debris was left, and is harmless
    assert marked(built_index) == rows_of(1) and verify_index(built_index).ok
    result = export_flagged(risk, built_index, min_risk=0)
    assert result.marks.added == {"acct-1": 0, "acct-2": 8, "acct-0": 8}
    assert len(state(built_index)[1]) == 2  # the debris removed; the replaced file kept


def test_verify_and_readers_find_a_damaged_marks_file(built_index, tmp_path):
    export_flagged(risk_file(tmp_path), built_index)
    (name,) = state(built_index)[1]
    path = built_index / MARKS_DIR / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify_index(built_index)
    assert not report.ok and report.problems == [
        f"{path}: checksum mismatch (expected sha256 "
        f"{json.loads((built_index / 'manifest.json').read_text())['marks']['sha256']}, "
        f"actual {__import__('hashlib').sha256(bytes(data)).hexdigest()})"]
    with pytest.raises(IndexCorruptedError, match="checksum mismatch"):
        marked(built_index)
    line = one_error_line(invoke("monitor", "export-flagged", risk_file(tmp_path), "--index",
                                 built_index))
    assert "checksum mismatch" in line  # never builds on damaged marks


def test_marking_an_account_list_directly(built_index):
    from index import AccountMark

    result = mark_accounts(built_index, "campaign-7", [AccountMark("acct-0"),
                                                       AccountMark("nobody")])
    assert (result.rows, result.missing, result.committed) == ({"acct-0": 8}, ["nobody"], True)
    nothing = mark_accounts(built_index, "campaign-8", [AccountMark("nobody")])
    assert nothing.committed is False and nothing.rows == {}


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: malformed JSON"),
    ("[1, 2]", "line 2: expected a JSON object (one account's row), got list"),
    ('{"risk": 1, "flagged": true}', 'line 2: field "account" is missing'),
    ('{"account": 7, "risk": 1, "flagged": true}',
     'line 2: field "account" must be a non-empty string, got int 7'),
    ('{"account": "", "risk": 1, "flagged": true}', 'line 2: field "account" is empty'),
    ('{"account": "b", "risk": "high", "flagged": true}',
     'line 2: field "risk" must be a number in [0, 1], got str'),
    ('{"account": "b", "risk": 1.5, "flagged": true}',
     'line 2: field "risk" must be a number in [0, 1], got 1.5'),
    ('{"account": "b", "risk": true, "flagged": true}',
     'line 2: field "risk" must be a number in [0, 1], got bool'),
    ('{"account": "b", "risk": 1}', 'line 2: field "flagged" is missing'),
    ('{"account": "b", "risk": 1, "flagged": "yes"}',
     'line 2: field "flagged" must be true or false, got str'),
    ('{"account": "acct-1", "risk": 1, "flagged": true}',
     "line 2: account 'acct-1' already has a row on line 1"),
])
def test_a_bad_risk_file_line_is_one_error_naming_file_line_and_field(line, message,
                                                                        built_index, tmp_path):
    risk = tmp_path / "risk.jsonl"
    risk.write_text(json.dumps(RISK[0]) + "\n" + line + "\n" + json.dumps(RISK[2]) + "\n")
    before = state(built_index)
    error = one_error_line(invoke("monitor", "export-flagged", risk, "--index", built_index))
    assert error.startswith(f"Error: {risk} {message}"), error
    assert state(built_index) == before  # checked whole before the index is touched


def test_an_index_that_is_not_there_is_one_error(tmp_path):
    line = one_error_line(invoke("monitor", "export-flagged", risk_file(tmp_path), "--index",
                                 tmp_path / "nothing"))
    assert line == f"Error: {tmp_path / 'nothing'}: not a directory, so not an index"
