"""Limits per coordinated group online (monitor.group_limits): the members of a group a scan
found share one allowance at the group's risk, kept across restarts; the risk file it comes from
is checked line by line; a damaged groups state is refused at start. Real baseline on the small
simulated traffic (tests/monitor_fixtures.py)."""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl
from fingerprint.errors import InputError
from monitor import (ALLOW, BLOCK, THROTTLE, GroupLimits, LimitPolicy, Monitor,
                     MonitorConfigError, StateCorruptedError)
from monitor.group_limits import GROUPS_FILE
from monitor_fixtures import START

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline(_dir)

# one request a second per account at risk 0, a burst of 2; at risk 0.5 (throttle_risk) the
# allowance is a fraction of it
POLICY = LimitPolicy(rate_per_second=1.0, burst=2, throttle_risk=0.4, block_risk=0.95,
                     floor=0.1)


def members(monitor: Monitor, accounts: list[str], seconds: int, start: float = START):
    """Each account sends one request a second, in turn, for ``seconds`` seconds."""
    return [monitor.observe(a, f"question {i} from {a}", start + i).decision
            for i in range(seconds) for a in accounts]


def test_a_group_shares_one_allowance_at_its_risk(baseline, tmp_path):
    accounts = ["h1", "h2", "h3"]
    with Monitor(baseline, tmp_path / "alone", POLICY) as monitor:
        alone = members(monitor, accounts, 20)
    assert alone == [ALLOW] * 60  # each account alone is within its own allowance
    groups = GroupLimits({a: "group-x" for a in accounts}, {"group-x": 0.7})
    with Monitor(baseline, tmp_path / "together", POLICY, groups=groups) as monitor:
        together = members(monitor, accounts, 20)
        decision = monitor.observe("h1", "one more", START + 20)
        assert decision.group == "group-x" and monitor.health()["groups_limited"] == 1
        other = monitor.observe("someone", "an unrelated account", START + 20)
    assert other.decision == ALLOW and other.group is None
    # three accounts at a second each are three requests a second; the group's allowance at
    # risk 0.7 is a fraction of one a second: most are throttled, a few get through
    assert together.count(ALLOW) < 20 < together.count(THROTTLE)
    assert set(together) == {ALLOW, THROTTLE}
    blocked = GroupLimits({a: "group-y" for a in accounts}, {"group-y": 0.99})
    with Monitor(baseline, tmp_path / "blocked", POLICY, groups=blocked) as monitor:
        assert members(monitor, accounts, 2) == [BLOCK] * 6


def test_the_groups_allowance_survives_a_restart(baseline, tmp_path):
    accounts = ["h1", "h2"]
    groups = GroupLimits({a: "g" for a in accounts}, {"g": 0.7})
    with Monitor(baseline, tmp_path / "once", POLICY, groups=groups) as monitor:
        whole = members(monitor, accounts, 16)
    with Monitor(baseline, tmp_path / "twice", POLICY, groups=groups) as monitor:
        first = members(monitor, accounts, 8)
    assert json.loads((tmp_path / "twice" / GROUPS_FILE).read_text())["tat"]["g"] > START
    with Monitor(baseline, tmp_path / "twice", POLICY, groups=groups) as monitor:
        second = members(monitor, accounts, 8, start=START + 8)
    assert first + second == whole and THROTTLE in whole


def test_a_damaged_groups_state_is_refused_at_start(baseline, tmp_path):
    state = tmp_path / "state"
    with Monitor(baseline, state, POLICY):
        pass
    for damage in ("{not json", json.dumps({"format": 7, "tat": {}}),
                   json.dumps({"format": 1, "tat": {"g": "soon"}})):
        (state / GROUPS_FILE).write_text(damage)
        with pytest.raises(StateCorruptedError, match=f"{GROUPS_FILE}"):
            Monitor(baseline, state, POLICY)
    (state / GROUPS_FILE).unlink()
    with Monitor(baseline, state, POLICY) as monitor:  # the lock was released each time
        assert monitor.observe("a", "fine", START).decision == ALLOW


def test_groups_come_from_a_scans_risk_file(tmp_path):
    rows = [{"account": "a", "risk": 0.2, "flagged": False, "cluster": "g1"},
            {"account": "b", "risk": 0.9, "flagged": True, "cluster": "g1"},
            {"account": "c", "risk": 1.0, "flagged": True, "cluster": None},
            {"account": "d", "risk": 0.4, "flagged": False, "cluster": "g2"}]
    groups = GroupLimits.from_risk_file(write_jsonl(tmp_path / "risk.jsonl", rows))
    assert dict(groups.member_of) == {"a": "g1", "b": "g1", "d": "g2"}
    assert dict(groups.risk) == {"g1": 0.9, "g2": 0.4} and groups.group_of("c") is None
    with pytest.raises(MonitorConfigError, match="groups must be a GroupLimits"):
        Monitor("unused", tmp_path / "s", groups={"a": "g"})
    with pytest.raises(MonitorConfigError, match="groups without a risk"):
        GroupLimits({"a": "g"}, {})
    with pytest.raises(MonitorConfigError, match="must be a number in"):
        GroupLimits({"a": "g"}, {"g": float("nan")})
    bad = write_jsonl(tmp_path / "bad.jsonl", rows[:1] + [{**rows[1], "cluster": 5}])
    with pytest.raises(InputError, match='line 2: field "cluster"'):
        GroupLimits.from_risk_file(bad)


def test_serve_reads_the_groups_before_it_listens(baseline_dir, tmp_path):
    from monitor_fixtures import invoke, one_error_line
    bad = write_jsonl(tmp_path / "risk.jsonl", [{"account": "a", "risk": 2.0, "flagged": True}])
    got = invoke("monitor", "serve", "--baseline", baseline_dir, "--state", tmp_path / "s",
                 "--port", "0", "--groups", bad)
    assert got.exit_code == 1
    assert one_error_line(got) == f'Error: {bad} line 1: field "risk" must be a number in ' \
                                  f'[0, 1], got 2.0'
    assert not (tmp_path / "s").exists()  # refused before the state was opened
