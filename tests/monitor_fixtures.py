"""Fixtures and helpers shared by the monitor's tests (every tests/test_monitor_*.py that needs
them): the small simulated traffic (benchmarks/monitor_traffic.py, real prompt
text from ../shared/data; skipped without it), a baseline fitted on its benign log with two
checkpoints and the fewest null accounts the configuration allows (fast), and a campaign whose
risk passes through the middle on its way to a flag, with a policy that makes that middle a
throttle.

The campaign and the policy are chosen from the detector's own figures (an AccountScorer run over
each campaign account), not written down, so the tests keep their meaning when the detector's
signals change; if no campaign passes through the middle any more, the fixture says so.

Also a tiny hand-made baseline (too little traffic to test any checkpoint, enough for what the
CLI does around a scan), the first lines of the simulated log, and small helpers (``invoke``,
``one_error_line``, ``served_log``, ``write_lines``).

The test modules load it with ``pytest_plugins = ("monitor_fixtures",)`` (module-scoped
fixtures: each module builds its own traffic, as before) and import helpers from it; the
module is imported before pytest could rewrite its asserts, so it has none (failures go through
``pytest.fail``): PYTEST_DONT_REWRITE."""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from conftest import traffic_module, write_jsonl
from monitor import (AccountScorer, Baseline, LimitPolicy, MonitorConfig, Request,
                     build_baseline, fit_baseline)
from monitor.detector import conversation_key
from monitor.requests import parse_timestamp

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MONITOR_DATA", ROOT.parent / "shared" / "data" / "monitor"))
ALPACA = Path(os.environ.get("ALPACAEVAL", ROOT.parent / "shared" / "data" / "alpacaeval")) \
    / "prompts.jsonl"
CONFIG = MonitorConfig(checkpoints=2, null_accounts=2001)  # 3 signals x 2 / 0.003 + 1 at least
START = 1_795_000_000.0  # 2026-11-18: the requests' times, one second apart
LOG_LINES = 3000  # the first lines of the simulated log: enough for 95 accounts, fast to scan


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result) -> str:
    """The single ``Error: ...`` line of a failed command (exit 1), or a failure saying why."""
    if result.exit_code != 1:
        pytest.fail(f"exit code {result.exit_code}, not 1: {result.output}")
    lines = result.output.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("Error: "):
        pytest.fail(f"not one 'Error: ' line: {result.output}")
    return lines[0]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def served_log(path: Path, accounts: int = 12, per_account: int = 4) -> Path:
    """A small hand-made request log: ``accounts`` accounts, ``per_account`` requests each."""
    rows = [{"id": f"q{a}-{i}", "account": f"acct-{a}", "timestamp": 1_795_000_000 + 10 * i + a,
             "prompt": f"please list {i} facts about subject {a}"}
            for i in range(per_account) for a in range(accounts)]
    return write_jsonl(path, rows)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> Path:
    if not (DATA / "benign" / "sharegpt.jsonl").is_file() or not ALPACA.is_file():
        pytest.skip(f"monitor data not found at {DATA} (set MONITOR_DATA=..., ALPACAEVAL=...)")
    module = traffic_module()
    out = tmp_path_factory.mktemp("traffic")
    module.build(module.TrafficConfig.preset("small", 7), out)
    return out


@pytest.fixture(scope="module")
def baseline_dir(traffic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "b"
    build_baseline(traffic / "baseline.jsonl.gz", out, CONFIG)
    return out


@pytest.fixture(scope="module")
def baseline(baseline_dir) -> Baseline:
    return Baseline.load(baseline_dir)


@pytest.fixture(scope="module")
def log_lines(traffic) -> list[tuple[float, str]]:
    """(time, line) of the log's first lines, in file order."""
    with gzip.open(traffic / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for _, line in zip(range(LOG_LINES), f)]
    return [(parse_timestamp(json.loads(line)["timestamp"]), line) for line in lines]


@pytest.fixture(scope="module")
def tiny_baseline(tmp_path_factory) -> Path:
    """A baseline fitted on 8 hand-made accounts: too little traffic to test any checkpoint,
    enough for what the CLI does around the scan."""
    requests = [Request(f"b{a}", f"question {i} from user {a} about topic {(a * i) % 7}",
                        1_795_000_000.0 + 60 * i + a, f"r{a}-{i}")
                for a in range(8) for i in range(12)]
    out = tmp_path_factory.mktemp("tiny") / "b"
    fit_baseline(requests, CONFIG).save(out)
    return out


def campaign_prompts(traffic: Path) -> dict[str, list[tuple[str, int | None, str]]]:
    """Each campaign account's (prompt, prior turns, its conversation's first user message), in
    time order, a prompt that repeats the one before it left out (the monitor would take it as
    a retry)."""
    truth = json.loads((traffic / "truth.json").read_text())
    wanted = {a for a, info in truth["accounts"].items() if info["kind"] == "campaign"}
    rows = defaultdict(list)
    with gzip.open(traffic / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["account"] in wanted:
                messages = row["request"]["messages"]
                turns = sum(m["role"] == "assistant" for m in messages[:-1])
                rows[row["account"]].append((parse_timestamp(row["timestamp"]), row["id"],
                                             messages[-1]["content"], turns,
                                             messages[0]["content"]))
    out = {}
    for account, requests in sorted(rows.items()):
        kept: list[tuple[str, int | None, str]] = []
        for _, _, prompt, turns, first in sorted(requests):
            if not kept or kept[-1][0] != prompt:
                kept.append((prompt, turns, first))
        out[account] = kept
    return out


def risks(baseline: Baseline, prompts: list[tuple[str, int | None, str]]) -> list[float]:
    """The account's risk after each request, as the detector alone gives it."""
    scorer = AccountScorer(baseline)
    state = scorer.new_state()
    out = []
    for i, (prompt, turns, first) in enumerate(prompts):
        scorer.score([(state, prompt, START + i, turns, conversation_key(first))])
        out.append(scorer.assessment("a", state).risk)
    return out


@pytest.fixture(scope="module")
def rising(traffic, baseline) -> tuple[list[tuple[str, int | None]], LimitPolicy, list[float]]:
    """A campaign's first requests up to a little past its flag, whose risk is strictly between
    0 and 1 before it is 1; a policy (one request a second, burst 1) that throttles at that
    middle risk and blocks at 1; and the detector's risks. Sent one a second, the requests are
    all within the base allowance, so every throttle comes from the risk."""
    for account, prompts in campaign_prompts(traffic).items():
        trail = risks(baseline, prompts[:200])
        middle = [r for r in trail if 0.0 < r < 1.0]
        if middle and 1.0 in trail[trail.index(middle[0]):]:
            low = middle[0]
            policy = LimitPolicy(rate_per_second=1.0, burst=1, throttle_risk=low / 2,
                                 block_risk=(low + 1.0) / 2, floor=0.1, block_seconds=600.0)
            end = trail.index(1.0) + 10
            return prompts[:end], policy, trail[:end]
    pytest.fail("no campaign of the small traffic passes through a risk strictly between 0 and "
                "1 before its flag; the allow -> throttle -> block tests need one")
