"""The offline scan (monitor.scan) and ``fingerprint monitor baseline build`` / ``monitor scan``:
a log out of time order scans as the sorted log does, late lines are scored and counted, skipped
lines are reported, the risk file is written whole or not at all, and bad inputs are one line.

The simulated traffic is benchmarks/monitor_traffic.py's small scale (real prompt text from
../shared/data); tests that need it are skipped without the data. The baseline uses two
checkpoints and the fewest null accounts the configuration allows for them, to stay fast."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys

import pytest

from conftest import write_jsonl
from monitor import (Baseline, BaselineError, MonitorConfig, MonitorConfigError, Request,
                     ScanError, build_baseline, scan_file, scan_log)
from monitor.scan import ReorderBuffer
from monitor_fixtures import (CONFIG, LOG_LINES, ROOT, invoke, one_error_line, served_log,
                              write_lines)

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline_dir, log_lines, tiny_baseline

WINDOW = 300.0


def comparable(row) -> dict:
    """A row with the shift figure rounded: a batch's matrix product rounds by the batch's
    shape, so features of one prompt differ in the last bits between batches."""
    data = row.to_dict()
    data["reasons"] = [{**r, "value": round(r["value"], 6)} for r in data["reasons"]]
    return data


# the reorder buffer ------------------------------------------------------------------------------

def request(ts: float, rid: str = "") -> Request:
    return Request("a", "p", ts, rid or f"r{ts}")


def test_the_buffer_releases_in_time_order_once_the_watermark_passes():
    buffer = ReorderBuffer(300.0)
    assert buffer.push(request(1000)) == []
    assert buffer.push(request(1200)) == []
    assert buffer.push(request(1100)) == []  # out of order, within the window
    assert [r.timestamp for r in buffer.push(request(1450))] == [1000, 1100]
    assert buffer.push(request(1140)) == [request(1140)]  # behind the watermark (1150): late
    assert buffer.late == 1
    assert buffer.push(request(1150)) == []  # at the watermark: not late, held
    assert [r.timestamp for r in buffer.drain()] == [1150, 1200, 1450]
    assert buffer.drain() == []


def test_equal_times_are_ordered_by_id_whatever_the_arrival_order():
    first, second = ReorderBuffer(10.0), ReorderBuffer(10.0)
    for rid in ("c", "a", "b"):
        first.push(request(5, rid))
    for rid in ("b", "c", "a"):
        second.push(request(5, rid))
    assert [r.id for r in first.drain()] == [r.id for r in second.drain()] == ["a", "b", "c"]


def test_a_full_buffer_releases_early_and_counts_it():
    buffer = ReorderBuffer(300.0, max_buffered=2)
    released = [r.timestamp for ts in (10, 20, 30, 40) for r in buffer.push(request(ts))]
    assert released == [10, 20] and buffer.early == 2
    assert buffer.push(request(15)) == [request(15)] and buffer.late == 1  # behind what left
    assert [r.timestamp for r in buffer.drain()] == [30, 40]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "300"])
def test_a_reorder_window_that_is_not_a_finite_number_is_refused(bad, tiny_baseline, tmp_path):
    with pytest.raises(ScanError, match="reorder_seconds must be a finite number >= 0"):
        scan_file(served_log(tmp_path / "log.jsonl"), Baseline.load(tiny_baseline),
                  reorder_seconds=bad)


# the scan of the simulated traffic --------------------------------------------------------------

@pytest.mark.slow
def test_a_log_shuffled_within_the_window_scans_as_the_sorted_log(log_lines, baseline_dir,
                                                                  tmp_path):
    rng = random.Random(3)
    by_time = [line for _, line in sorted(log_lines, key=lambda p: p[0])]
    jittered = sorted(log_lines, key=lambda p: p[0] + rng.uniform(0, WINDOW - 50))
    shuffled = [line for _, line in jittered]
    times = [t for t, _ in jittered]
    assert sum(b < a for a, b in zip(times, times[1:])) > len(times) // 4  # really shuffled
    baseline = Baseline.load(baseline_dir)
    ordered = scan_file(write_lines(tmp_path / "sorted.jsonl", by_time), baseline,
                        reorder_seconds=WINDOW)
    result = scan_file(write_lines(tmp_path / "shuffled.jsonl", shuffled), baseline,
                       reorder_seconds=WINDOW, batch_size=100)
    assert result.stats["late"] == 0 and result.stats["requests"] == LOG_LINES
    assert result.flagged > 0 and any(row.examples["reuse"] for row in result.rows)
    assert [comparable(r) for r in result.rows] == [comparable(r) for r in ordered.rows]
    # without the buffer the same shuffle changes what accounts are scored on: the test can fail
    unbuffered = scan_file(tmp_path / "shuffled.jsonl", baseline, reorder_seconds=0.0)
    assert unbuffered.stats["late"] > 0
    assert [r.examples for r in unbuffered.rows] != [r.examples for r in ordered.rows]


@pytest.mark.slow
def test_lines_behind_the_watermark_are_scored_at_once_and_counted_late(log_lines,
                                                                         baseline_dir, tmp_path):
    by_time = [line for _, line in sorted(log_lines, key=lambda p: p[0])]
    moved = [by_time[10], by_time[20]]  # hours before the end of the log
    late_log = by_time[:10] + by_time[11:20] + by_time[21:] + moved
    baseline = Baseline.load(baseline_dir)
    result = scan_file(write_lines(tmp_path / "late.jsonl", late_log), baseline,
                       reorder_seconds=WINDOW)
    ordered = scan_file(write_lines(tmp_path / "sorted.jsonl", by_time), baseline,
                        reorder_seconds=WINDOW)
    assert result.stats["late"] == 2 and result.stats["requests"] == LOG_LINES
    assert {r.account: r.requests for r in result.rows} == \
        {r.account: r.requests for r in ordered.rows}  # scored, not dropped


@pytest.mark.slow
def test_baseline_build_and_scan_through_the_cli(traffic, log_lines, tmp_path):
    config = tmp_path / "monitor.json"
    config.write_text(json.dumps(CONFIG.to_dict()))
    out = tmp_path / "baseline"
    built = invoke("monitor", "baseline", "build", traffic / "baseline.jsonl.gz", "--out", out,
                   "--config", config, "--json")
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert summary["counts"]["accounts"] > 2 and summary["config"] == CONFIG.to_dict()
    assert [c["requests"] for c in summary["checkpoints"]] == [30, 60]
    assert all(c["signals"] == ["shift", "reuse", "single_turn"]
               for c in summary["checkpoints"])
    assert summary["skipped"] == {} and summary["seconds"] > 0
    again = invoke("monitor", "baseline", "build", traffic / "baseline.jsonl.gz", "--out", out,
                   "--config", config)
    assert one_error_line(again) == f"Error: {out}: already holds a baseline; --force replaces it"
    forced = invoke("monitor", "baseline", "build", traffic / "baseline.jsonl.gz", "--out", out,
                    "--config", config, "--force")
    assert forced.exit_code == 0 and "tested at   30, 60 requests" in forced.stdout

    log = write_lines(tmp_path / "requests.jsonl", [line for _, line in log_lines])
    risk = tmp_path / "risk.jsonl"
    scanned = invoke("monitor", "scan", log, "--baseline", out, "--out", risk, "--json")
    assert scanned.exit_code == 0, scanned.output
    result = json.loads(scanned.stdout)
    rows = [json.loads(line) for line in risk.read_text().splitlines()]
    assert rows == result["rows"] and len(rows) == result["accounts"] == 95
    assert result["stats"]["requests"] == LOG_LINES and result["stats"]["late"] == 0
    assert [r["risk"] for r in rows] == sorted((r["risk"] for r in rows), reverse=True)
    assert set(rows[0]) == {"account", "risk", "flagged", "p_value", "requests", "flagged_at",
                            "cluster", "reasons", "examples", "first_seen", "last_seen",
                            "flagged_by", "activity"}
    assert set(rows[0]["activity"]) == {"requests_per_hour", "peak_per_minute", "burstiness",
                                        "hours_active", "elicitation", "coverage", "novelty"}
    truth = json.loads((traffic / "truth.json").read_text())["accounts"]
    kinds = {r["account"]: truth[r["account"]]["kind"] for r in rows if r["flagged"]}
    assert result["flagged"] == len(kinds) > 0
    assert "benign-individual" not in kinds.values() and "hydra" in kinds.values()
    text = invoke("monitor", "scan", log, "--baseline", out, "--out", risk)
    assert f"{result['flagged']} accounts (alpha 0.003; tested at 30, 60" in text.stdout
    assert "top accounts by risk:" in text.stdout and rows[0]["account"] in text.stdout
    assert "skipped     no lines" in text.stdout


@pytest.mark.slow
def test_scan_fits_the_baseline_itself_when_given_a_benign_log(traffic, log_lines, tmp_path):
    """``--baseline benign.jsonl.gz``: the same rows as a baseline built from that log with the
    default settings and saved."""
    built = invoke("monitor", "baseline", "build", traffic / "baseline.jsonl.gz", "--out",
                   tmp_path / "b")
    assert built.exit_code == 0, built.output
    log = write_lines(tmp_path / "requests.jsonl", [line for _, line in log_lines[:3000]])
    rows = {}
    for name, source in (("dir", tmp_path / "b"), ("log", traffic / "baseline.jsonl.gz")):
        got = invoke("monitor", "scan", log, "--baseline", source, "--out",
                     tmp_path / f"{name}.jsonl", "--json")
        assert got.exit_code == 0, got.output
        rows[name] = json.loads(got.stdout)["rows"]
        fitted = json.loads(got.stdout)["baseline"].get("fitted_from")
        assert (fitted is None) == (name == "dir")
    assert rows["dir"] == rows["log"] and any(r["reasons"] for r in rows["log"])
    assert fitted["log"] == str(traffic / "baseline.jsonl.gz") and fitted["skipped"] == {}
    text = invoke("monitor", "scan", log, "--baseline", traffic / "baseline.jsonl.gz", "--out",
                  tmp_path / "text.jsonl")
    assert f"baseline    fitted from {traffic / 'baseline.jsonl.gz'}: " \
        f"{fitted['requests']} requests\n" in text.stdout
    import gzip
    with gzip.open(traffic / "baseline.jsonl.gz", "rt", encoding="utf-8") as f:
        assert fitted["requests"] == sum(1 for _ in f) > 0


# what a user can get wrong -----------------------------------------------------------------------

def test_a_log_with_skipped_lines_reports_them(tiny_baseline, tmp_path):
    log = served_log(tmp_path / "log.jsonl", accounts=3, per_account=2)
    with open(log, "a", encoding="utf-8") as f:
        for row in ({"id": "x1", "timestamp": 1_795_000_100, "prompt": "no account"},
                    {"id": "x2", "account": "a", "prompt": "no time"},
                    {"id": "x3", "account": "a", "timestamp": "yesterday", "prompt": "hm"},
                    {"id": "x4", "account": "a", "timestamp": 1_795_000_100, "prompt": " "},
                    {"id": "x5", "account": "a", "timestamp": "soon", "prompt": "again"}):
            f.write(json.dumps(row) + "\n")
    risk = tmp_path / "risk.jsonl"
    result = invoke("monitor", "scan", log, "--baseline", tiny_baseline, "--out", risk,
                    "--json")
    stats = json.loads(result.stdout)["stats"]
    assert stats["requests"] == 6
    assert stats["skipped"] == {"no account": 1, "no timestamp": 1, "bad timestamp": 2,
                                "no prompt": 1}
    assert stats["skipped_lines"]["bad timestamp"] == [9, 11]
    text = invoke("monitor", "scan", log, "--baseline", tiny_baseline, "--out", risk).stdout
    assert ("skipped     5 lines: bad timestamp: 2 (lines 9, 11); no account: 1 (lines 7); "
            "no prompt: 1 (lines 10); no timestamp: 1 (lines 8)") in text
    assert len(risk.read_text().splitlines()) == 3


def test_field_options_map_account_time_prompt_and_id(tiny_baseline, tmp_path):
    rows = [{"rid": f"q{i}", "who": {"name": f"acct-{i % 2}"}, "at": f"2026-11-27T10:0{i}:00Z",
             "text": f"a question numbered {i}"} for i in range(6)]
    log = write_jsonl(tmp_path / "log.jsonl", rows)
    risk = tmp_path / "risk.jsonl"
    args = ["monitor", "scan", log, "--baseline", tiny_baseline, "--out", risk, "--json"]
    unmapped = invoke(*args)
    assert json.loads(unmapped.stdout)["stats"]["requests"] == 0  # no prompt field: all skipped
    mapped = invoke(*args, "--account-field", "who.name", "--timestamp-field", "at",
                    "--prompt-field", "text", "--id-field", "rid")
    result = json.loads(mapped.stdout)
    assert result["stats"]["requests"] == 6 and result["accounts"] == 2
    first = {r["account"]: r for r in result["rows"]}["acct-1"]
    assert first["examples"]["first"] == ["q1", "q3", "q5"]
    assert first["first_seen"] == "2026-11-27T10:01:00.000Z" and first["requests"] == 3


def test_a_failed_scan_leaves_the_old_risk_file_and_no_temporary_file(tiny_baseline, tmp_path):
    log = served_log(tmp_path / "log.jsonl")
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"id": "broken", "account": \n')
    risk = tmp_path / "out" / "risk.jsonl"
    risk.parent.mkdir()
    risk.write_text("the previous scan\n")
    result = invoke("monitor", "scan", log, "--baseline", tiny_baseline, "--out", risk)
    assert one_error_line(result).startswith(f"Error: {log} line 49: ")
    assert risk.read_text() == "the previous scan\n"
    assert os.listdir(risk.parent) == ["risk.jsonl"]


def test_an_out_path_that_cannot_be_written_is_refused_before_the_scan(tiny_baseline, tmp_path):
    log = served_log(tmp_path / "log.jsonl")
    missing = tmp_path / "no-such-dir" / "risk.jsonl"
    assert one_error_line(invoke("monitor", "scan", log, "--baseline", tiny_baseline, "--out",
                                 missing)) == \
        f"Error: {missing}: directory {missing.parent} does not exist"
    with pytest.raises(ScanError, match="is a directory; --out names the file to write"):
        scan_log(log, tiny_baseline, tmp_path)  # the command line refuses it as a usage error


FULL_DISK = """
import resource, sys
from cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ["fingerprint"] + sys.argv[2:]
main()
"""


@pytest.mark.slow
def test_a_full_disk_leaves_the_old_risk_file_and_no_temporary_file(tiny_baseline, tmp_path):
    if resource.getrlimit(resource.RLIMIT_FSIZE)[1] != resource.RLIM_INFINITY:
        pytest.skip("needs an unlimited hard RLIMIT_FSIZE to lower")
    log = served_log(tmp_path / "log.jsonl", accounts=40)
    risk = tmp_path / "out" / "risk.jsonl"
    risk.parent.mkdir()
    risk.write_text("the previous scan\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "2000", "monitor", "scan", str(log),
                           "--baseline", str(tiny_baseline), "--out", str(risk)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "File too large" in done.stderr
    assert risk.read_text() == "the previous scan\n"
    assert os.listdir(risk.parent) == ["risk.jsonl"]
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "100000", "monitor", "scan",
                           str(log), "--baseline", str(tiny_baseline), "--out", str(risk)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr  # the same scan with room to write: the limit did it
    assert len(risk.read_text().splitlines()) == 40


def test_a_bad_baseline_directory_is_one_line(tiny_baseline, tmp_path):
    log = served_log(tmp_path / "log.jsonl")
    risk = tmp_path / "risk.jsonl"
    missing = tmp_path / "nothing-here"
    assert one_error_line(invoke("monitor", "scan", log, "--baseline", missing, "--out", risk)) \
        == f"Error: {missing}: no such baseline directory or benign log"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_error_line(invoke("monitor", "scan", log, "--baseline", empty, "--out", risk)) \
        == f"Error: {empty}: no baseline here (no manifest.json)"
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for item in tiny_baseline.iterdir():
        (damaged / item.name).write_bytes(item.read_bytes())
    mean = bytearray((damaged / "mean.npy").read_bytes())
    mean[-1] ^= 0xFF
    (damaged / "mean.npy").write_bytes(bytes(mean))
    assert one_error_line(invoke("monitor", "scan", log, "--baseline", damaged, "--out", risk)) \
        == (f"Error: {damaged / 'mean.npy'}: checksum does not match the manifest (damaged or "
            f"edited)")
    assert not risk.exists()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON file"),
    ("[1, 2]", "expected a JSON object of monitor settings, got list"),
    ('{"checkpoint": 3}', "unknown monitor settings: ['checkpoint']"),
    ('{"checkpoints": 3, "null_accounts": 2001}', "null_accounts (2001) too few"),
    ('{"alpha": "small"}', "a setting has the wrong type"),
])
def test_a_bad_config_file_is_one_line_naming_it(content, message, tmp_path):
    config = tmp_path / "monitor.json"
    config.write_text(content)
    log = served_log(tmp_path / "log.jsonl")
    line = one_error_line(invoke("monitor", "baseline", "build", log, "--out", tmp_path / "b",
                                 "--config", config))
    assert line.startswith(f"Error: {config}: ") and message in line
    assert not (tmp_path / "b").exists()
    with pytest.raises(MonitorConfigError):
        MonitorConfig.from_file(config)


def test_a_baseline_build_refuses_a_file_and_a_log_without_accounts(tmp_path):
    log = served_log(tmp_path / "log.jsonl")
    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    with pytest.raises(BaselineError, match="exists and is not a directory"):
        build_baseline(log, file_out)  # the command line refuses it as a usage error
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"id": "1", "prompt": "hi"}])
    line = one_error_line(invoke("monitor", "baseline", "build", empty, "--out", tmp_path / "b"))
    assert "a baseline needs benign traffic from at least two accounts; got 0" in line
