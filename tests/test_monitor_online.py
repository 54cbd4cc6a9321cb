"""The online monitor (monitor.online): decisions rise allow -> throttle -> block with the risk;
state survives closing and reopening, eviction from the cache and snapshots; a state directory
made with another baseline, or damaged, is refused at start; clock skew, retries and bad
arguments are handled as documented. Real baseline on the small simulated traffic
(tests/monitor_fixtures.py); the HTTP server is tested in test_monitor_server.py."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from monitor import (ALLOW, BLOCK, THROTTLE, CheckError, LimitPolicy, Monitor,
                     MonitorConfigError, StateCorruptedError, StateVersionError, load_policy)
from monitor.account import state_fingerprint
from monitor_fixtures import START

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline(_dir), rising

PACED = LimitPolicy(rate_per_second=1.0, burst=1)  # one request a second, no burst


def send(monitor: Monitor, prompts, start: int = 0, account: str = "acct") -> list[dict]:
    return [monitor.observe(account, prompt, START + start + i, turns, first).to_dict()
            for i, (prompt, turns, first) in enumerate(prompts)]


def expected_decisions(policy: LimitPolicy, trail: list[float]) -> list[str]:
    """What the policy decides for requests one second apart at the detector's risks."""
    tat, out = 0.0, []
    for i, risk in enumerate(trail):
        decision, tat, _ = policy.decision(risk, tat, START + i)
        out.append(decision)
    return out


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# decisions ---------------------------------------------------------------------------------------

def test_decisions_go_allow_then_throttle_then_block_as_the_risk_rises(rising, baseline,
                                                                      tmp_path):
    prompts, policy, trail = rising
    with Monitor(baseline, tmp_path / "state", policy) as monitor:
        got = send(monitor, prompts)
    decisions = [d["decision"] for d in got]
    first_risky = next(i for i, r in enumerate(trail) if r > 0)
    flagged_at = trail.index(1.0)
    assert set(decisions[:first_risky]) == {ALLOW}  # at the base allowance, paced within it
    assert THROTTLE in decisions[first_risky:flagged_at]  # the shrunken allowance is used up
    assert set(decisions[flagged_at:]) == {BLOCK}
    assert decisions == expected_decisions(policy, trail)
    assert [d["risk"] for d in got] == pytest.approx(trail)
    assert [d["requests"] for d in got] == list(range(1, len(prompts) + 1))
    assert got[-1]["flagged"] and not got[first_risky - 1]["flagged"]
    assert {r["signal"] for r in got[-1]["reasons"]} >= {"shift", "reuse"}
    refused = [d for d in got if d["decision"] != ALLOW]
    assert all(d["retry_after"] > 0 for d in refused)
    assert all(d["retry_after"] == 0.0 for d in got if d["decision"] == ALLOW)
    assert got[-1]["retry_after"] == policy.block_seconds


def test_a_flagged_account_is_counted_and_blocked_but_not_scored_again(rising, baseline,
                                                                      tmp_path):
    prompts, policy, trail = rising
    with Monitor(baseline, tmp_path / "state", policy) as monitor:
        send(monitor, prompts)
        scored = trail.index(1.0) + 1
        assert monitor.stats["scored"] == scored
        assert monitor.stats["flagged_unscored"] == len(prompts) - scored


def test_a_retry_of_a_refused_prompt_is_counted_not_scored_again(baseline, tmp_path):
    with Monitor(baseline, tmp_path / "state", PACED) as monitor:
        first = monitor.observe("a", "what is the capital of France?", START)
        again = monitor.observe("a", "what is the capital of France?", START)  # too soon
        retry = monitor.observe("a", "what is the capital of France?", START + 0.5)
        later = monitor.observe("a", "what is the capital of France?", START + 1.0)
        other = monitor.observe("a", "and of Spain?", START + 1.0)
        assert [d.decision for d in (first, again, retry, later, other)] == \
            [ALLOW, THROTTLE, THROTTLE, ALLOW, THROTTLE]
        assert again.retry_after == pytest.approx(1.0) and retry.retry_after == pytest.approx(0.5)
        # scored: first, again (refused, not yet a retry), other; retries: retry and later
        assert monitor.stats["scored"] == 3 and monitor.stats["retries"] == 2
        assert other.requests == 5


def test_threads_share_one_monitor_without_losing_a_request(baseline, tmp_path):
    import threading

    with Monitor(baseline, tmp_path / "state") as monitor:
        def client(k: int) -> None:
            for i in range(15):
                monitor.observe(f"t{k % 2}", f"thread {k} question {i}", START + i)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert monitor.stats["requests"] == 60
        assert monitor.observe("t0", "last", START + 99).requests == 31
        assert monitor.observe("t1", "last", START + 99).requests == 31


# time -------------------------------------------------------------------------------------------

def test_a_late_request_is_scored_and_limited_at_the_accounts_latest_time(baseline, tmp_path):
    with Monitor(baseline, tmp_path / "state", PACED) as monitor:
        assert monitor.observe("a", "first question", START + 5).decision == ALLOW
        late = monitor.observe("a", "an earlier question", START + 1)
        assert monitor.stats["late"] == 1 and monitor.stats["scored"] == 2
        # at START + 5 the account's next slot is one second away; at START + 1 it would be 5
        assert late.decision == THROTTLE and late.retry_after == pytest.approx(1.0)


def test_a_timestamp_far_in_the_future_is_taken_as_now(baseline, tmp_path):
    now = START + 1000
    with Monitor(baseline, tmp_path / "state", PACED, clock=lambda: now,
                 max_future_seconds=60) as monitor:
        assert monitor.observe("a", "from the future", now + 86400).decision == ALLOW
        assert monitor.stats["future"] == 1
        # taken as now, not as tomorrow: a request at now + 1 is on time and not late
        assert monitor.observe("a", "on time", now + 1).decision == ALLOW
        assert monitor.stats["late"] == 0
        assert monitor.observe("a", "no timestamp: now").decision == THROTTLE  # now < now + 1


@pytest.mark.parametrize("args,field", [
    (("", "p"), "account"), ((7, "p"), "account"), (("a" * 2000, "p"), "account"),
    (("a\ud800", "p"), "account"), (("a", None), "prompt"), (("a", ["p"]), "prompt"),
    (("a", "p\udfff"), "prompt"), (("a", "p", float("nan")), "timestamp"),
    (("a", "p", "yesterday"), "timestamp"), (("a", "p", True), "timestamp"),
    (("a", "p", None, -1), "prior_turns"), (("a", "p", None, 1.5), "prior_turns")])
def test_arguments_it_cannot_judge_are_a_check_error_naming_the_field(args, field, baseline,
                                                                     tmp_path):
    with Monitor(baseline, tmp_path / "state") as monitor:
        with pytest.raises(CheckError, match=f"^{field} "):
            monitor.observe(*args)
        assert monitor.stats["requests"] == 0 and monitor.observe("a", "p").requests == 1


# persistence ------------------------------------------------------------------------------------

def test_closing_and_reopening_changes_no_decision(rising, baseline, tmp_path):
    prompts, policy, _ = rising
    half = len(prompts) // 2
    with Monitor(baseline, tmp_path / "whole", policy) as monitor:
        whole = send(monitor, prompts)
    with Monitor(baseline, tmp_path / "parts", policy) as monitor:
        parts = send(monitor, prompts[:half])
    with Monitor(baseline, tmp_path / "parts", policy) as monitor:
        assert monitor.store.recovery.snapshot_entries == 1
        parts += send(monitor, prompts[half:], start=half)
    assert parts == whole


def test_evicted_and_snapshotted_accounts_keep_their_state(rising, baseline, tmp_path):
    prompts, policy, _ = rising
    with Monitor(baseline, tmp_path / "ref", policy) as monitor:
        reference = [send(monitor, prompts[:40], account=a) for a in ("x", "y", "z")]
    with Monitor(baseline, tmp_path / "small", policy, cache_accounts=1,
                 snapshot_bytes=20_000) as monitor:
        got: dict[str, list[dict]] = {"x": [], "y": [], "z": []}
        for i, (prompt, turns, first) in enumerate(prompts[:40]):
            for account in got:  # interleaved: every request evicts the account before it
                got[account].append(monitor.observe(account, prompt, START + i, turns,
                                                    first).to_dict())
        assert monitor.stats["evictions"] >= 3 * 40 - 1 and monitor.stats["snapshots"] > 0
    assert [got[a] for a in ("x", "y", "z")] == reference


def test_with_a_flush_window_requests_wait_in_memory_until_it_closes(baseline, tmp_path):
    with Monitor(baseline, tmp_path / "state", flush_every=3, flush_seconds=3600) as monitor:
        empty = monitor.store.journal_bytes
        monitor.observe("a", "one", START)
        monitor.observe("b", "two", START)
        assert monitor.store.journal_bytes == empty and not monitor.flush_due()
        monitor.observe("a", "three", START + 1)
        assert monitor.store.journal_bytes > empty and monitor.stats["flushes"] == 1
    with Monitor(baseline, tmp_path / "timed", flush_every=100, flush_seconds=0.01) as monitor:
        monitor.observe("a", "one", START)
        assert monitor.health()["unflushed_requests"] == 1
        import time
        time.sleep(0.02)
        assert monitor.flush_due() and monitor.health()["unflushed_requests"] == 0


def test_a_state_directory_of_another_baseline_names_both_fingerprints(baseline, tmp_path):
    with Monitor(baseline, tmp_path / "state") as monitor:
        monitor.observe("a", "p", START)
        made_with = monitor.config_fingerprint
    for other in (dataclasses.replace(baseline, median=baseline.median * 1.01),
                  dataclasses.replace(baseline, config=dataclasses.replace(baseline.config,
                                                                           seed=1))):
        expected = state_fingerprint(other)
        assert expected != made_with
        with pytest.raises(StateVersionError) as info:
            Monitor(other, tmp_path / "state")
        assert expected in str(info.value) and made_with in str(info.value)
    with Monitor(baseline, tmp_path / "state") as monitor:  # refused, not damaged
        assert monitor.observe("a", "p", START + 1).requests == 2


def test_a_damaged_state_file_is_an_error_at_start_naming_file_and_offset(baseline,
                                                                          baseline_dir,
                                                                          tmp_path):
    state = tmp_path / "state"
    with Monitor(baseline, state) as monitor:
        for i in range(3):
            monitor.observe(f"acct-{i}", f"prompt {i}", START + i)
    snapshot = state / "snapshot.bin"
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    with pytest.raises(StateCorruptedError, match=r"snapshot\.bin: .*byte offset \d+"):
        Monitor(baseline, state)
    line = one_error_line(CliRunner().invoke(main, [
        "monitor", "serve", "--baseline", str(baseline_dir), "--state", str(state),
        "--port", "0"]))
    assert "snapshot.bin" in line and "byte offset" in line


def test_serve_on_a_port_in_use_is_one_error_line(baseline_dir, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        line = one_error_line(CliRunner().invoke(main, [
            "monitor", "serve", "--baseline", str(baseline_dir), "--state",
            str(tmp_path / "state"), "--port", str(port)]))
    finally:
        holder.close()
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    with Monitor(baseline_dir, tmp_path / "state"):  # the state directory was released
        pass


FULL_DISK = """
import json, resource, signal, sys
from monitor import Monitor
from monitor.service import CheckService
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
baseline, state, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
out = {}
monitor = Monitor(baseline, state)
service = CheckService(monitor)
def check(i):
    body = json.dumps({"account": "a", "prompt": f"question {i}", "timestamp": start + i})
    reply = service.handle("POST", "/v1/check", body.encode())
    return [reply.status, json.loads(reply.body)]
out["before"] = check(0)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (monitor.store.journal_bytes + 100, hard))
out["full"] = check(1)
out["health"] = service.handle("GET", "/v1/health", b"").status
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
out["after"] = check(2)
monitor.close()
print(json.dumps(out))
"""


def test_a_full_disk_is_a_503_and_a_later_write_catches_up(baseline_dir, baseline, tmp_path):
    state = tmp_path / "state"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(baseline_dir), str(state),
                           str(START)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["before"][0] == 200 and out["health"] == 200
    status, error = out["full"]
    assert status == 503 and error["error"]["code"] == "state_unavailable"
    assert "journal.bin" in error["error"]["message"] and "intact" in error["error"]["message"]
    # the refused write stays pending and goes out with the next one (applied, not answered)
    assert out["after"][0] == 200 and out["after"][1]["requests"] == 3
    with Monitor(baseline, state) as monitor:
        assert monitor.observe("a", "question 3", START + 3).requests == 4


# the policy file --------------------------------------------------------------------------------

def test_a_policy_file_gives_a_policy_and_every_mistake_names_the_file(tmp_path: Path):
    good = tmp_path / "policy.json"
    good.write_text(json.dumps({"rate_per_second": 5, "burst": 50, "block_risk": 0.9}))
    assert load_policy(good) == LimitPolicy(rate_per_second=5, burst=50, block_risk=0.9)
    for text, message in (("{", "not a JSON file"), ("[1]", "expected a JSON object"),
                          ('{"rate": 1}', "unknown limit policy fields"),
                          ('{"burst": 0}', "burst must be a whole number"),
                          ('{"throttle_risk": "high"}', "throttle_risk must be a number")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(MonitorConfigError, match=message) as info:
            load_policy(bad)
        assert str(bad) in str(info.value)
