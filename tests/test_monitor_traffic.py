"""The monitor benchmark's simulated request logs (benchmarks/monitor_traffic.py) hold what
truth.json says they hold, at the small scale, checked against the source files read here
independently of the simulator: every line is a request-log record the toolkit reads, each
account's campaign share measured from its lines is the share truth.json gives, conversations
run forward in time, hydra accounts are small, the benign logs never hold an evaluation
conversation, and a seed gives the same bytes."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from fingerprint import ConfigError, InputError
from fingerprint.io import read_records
from conftest import traffic_module

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MONITOR_DATA", ROOT.parent / "shared" / "data" / "monitor"))
ALPACA = Path(os.environ.get("ALPACAEVAL", ROOT.parent / "shared" / "data" / "alpacaeval")) \
    / "prompts.jsonl"
SEED = 7
LOG_KEYS = {"id", "timestamp", "account", "request"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")




traffic = traffic_module()


def jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def seconds(stamp: str) -> float:
    return traffic.parse_time(stamp)


def user_turns(line: dict) -> list[str]:
    return [m["content"] for m in line["request"]["messages"] if m["role"] == "user"]


@pytest.fixture(scope="module")
def sources():
    if not (DATA / "benign" / "sharegpt.jsonl").is_file() or not ALPACA.is_file():
        pytest.skip(f"monitor data not found at {DATA} (set MONITOR_DATA=..., ALPACAEVAL=...)")
    return traffic.load_sources(DATA, ALPACA)


@pytest.fixture(scope="module")
def texts():
    """The source files read here, not through the simulator: ShareGPT turns by conversation,
    and every campaign source's prompts."""
    conversations = defaultdict(list)
    for row in jsonl(DATA / "benign" / "sharegpt.jsonl"):
        conversations[row["conversation"]].append(row["prompt"])
    campaigns = {"t0": {r["prompt"] for r in jsonl(DATA / "campaigns" / "t0_templated.jsonl")},
                 "self_instruct": {r["prompt"]
                                   for r in jsonl(DATA / "campaigns" / "self_instruct.jsonl")},
                 "alpacaeval": {r["instruction"] for r in jsonl(ALPACA)}}
    return conversations, campaigns


@pytest.fixture(scope="module")
def built(tmp_path_factory, sources):
    out = tmp_path_factory.mktemp("traffic")
    summary = traffic.build(traffic.TrafficConfig.preset("small", SEED), out, sources)
    return out, summary


@pytest.fixture(scope="module")
def log(built):
    return jsonl(built[0] / "requests.jsonl.gz")


@pytest.fixture(scope="module")
def truth(built):
    return json.loads((built[0] / "truth.json").read_text(encoding="utf-8"))


def by_account(lines: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for line in lines:
        out[line["account"]].append(line)
    return out


def own_text(text: str) -> str:
    """A user turn without an app's wrapper."""
    for wrapper in traffic.APP_WRAPPERS.values():
        inner = wrapper.strip(text)
        if inner is not None:
            return inner
    return text


def test_every_line_is_a_request_log_record_the_toolkit_reads(built):
    out, _ = built
    for name in ("requests", "baseline", "calibration"):
        path = out / f"{name}.jsonl.gz"
        lines = jsonl(path)
        records = list(read_records(path, require_response=False))
        assert len(records) == len(lines) > 100
        assert [(r.id, r.account, r.timestamp, r.prompt) for r in records] == [
            (x["id"], x["account"], x["timestamp"], user_turns(x)[-1]) for x in lines]
        assert len({x["id"] for x in lines}) == len(lines)


def test_lines_have_the_chat_log_shape(log, truth):
    for line in log:
        assert set(line) == LOG_KEYS and TIMESTAMP.match(line["timestamp"])
        assert line["id"].startswith("req-") and line["account"].startswith("acct-")
        request, kind = line["request"], truth["accounts"][line["account"]]["kind"]
        assert request["model"] == "provider-model"
        assert (request["user"] != line["account"]) == (kind == "benign-app")
        roles = [m["role"] for m in request["messages"]]
        wrapped = truth["accounts"][line["account"]]["wrapper"] is not None
        assert roles[:1] == (["system"] if wrapped else roles[:1]) and "system" not in roles[1:]
        turns = roles[1:] if wrapped else roles
        assert turns == ["user", "assistant"] * (len(turns) // 2) + ["user"]
        assert all(m["content"] == "(earlier answer)" for m in request["messages"]
                   if m["role"] == "assistant")


def test_kinds_and_campaign_shares_are_what_the_lines_hold(log, truth, texts):
    conversations, campaigns = texts
    benign = {t for turns in conversations.values() for t in turns}
    campaigns = {name: prompts - benign for name, prompts in campaigns.items()}  # as promised
    lines = by_account(log)
    assert set(lines) == set(truth["accounts"])
    for account, entry in truth["accounts"].items():
        mine = lines[account]
        campaign = [x for x in mine if entry["source"] and user_turns(x)[-1] in
                    campaigns[entry["source"]]]
        assert all(len(x["request"]["messages"]) == 1 for x in campaign)
        assert all(own_text(t) in benign for x in mine if x not in campaign
                   for t in user_turns(x))
        assert len(mine) == entry["requests"]
        assert len(campaign) == entry["campaign_requests"]
        assert len(campaign) / len(mine) == pytest.approx(entry["share"], abs=1e-6)
        if entry["kind"] in ("campaign", "hydra"):
            assert entry["share"] == pytest.approx(entry["level"], abs=1e-6)
        else:
            assert entry["share"] == 0 and entry["source"] is None
    levels = Counter(e["level"] for e in truth["accounts"].values() if e["kind"] == "campaign")
    config = truth["config"]
    cell = len(config["sources"]) * len(config["pacings"]) * config["accounts_per_cell"]
    assert levels == {level: cell for level in (1.0, 0.5, 0.25, 0.1, 0.05)}


def test_timestamps_increase_within_each_conversation_with_think_time(log, truth):
    """Turn k of a conversation carries turn k-1's request as its prefix, sent earlier."""
    sent = defaultdict(list)
    for line in log:
        key = (line["account"], line["request"]["user"], json.dumps(line["request"]["messages"]))
        sent[key].append(seconds(line["timestamp"]))
    gaps = []
    for line in log:
        messages = line["request"]["messages"]
        if len(user_turns(line)) > 1:
            prefix = (line["account"], line["request"]["user"], json.dumps(messages[:-2]))
            assert prefix in sent, "a later turn without its earlier turn"
            before = [t for t in sent[prefix] if t < seconds(line["timestamp"])]
            assert before, "a later turn sent no later than its earlier turn"
            gaps.append(seconds(line["timestamp"]) - max(before))
    assert len(gaps) > 1000
    assert min(gaps) >= 2.0 and 45 < statistics.median(gaps) < 80  # log-normal, median 60 s


def test_hydra_groups_hold_about_sixty_requests_per_account(log, truth):
    lines = by_account(log)
    sizes = [size for size, _, count in truth["config"]["hydra"] for _ in range(count)]
    groups = truth["groups"]
    assert sorted(len(g["accounts"]) for g in groups.values()) == sorted(sizes)
    for group in groups.values():
        firsts, prompts = [], []
        for account in group["accounts"]:
            mine = lines[account]
            assert 50 <= len(mine) <= 70
            assert truth["accounts"][account]["kind"] == "hydra"
            firsts.append(min(seconds(x["timestamp"]) for x in mine))
            prompts += [user_turns(x)[-1] for x in mine]
        assert max(firsts) - min(firsts) <= truth["config"]["hydra_start_jitter_s"]
        assert len(set(prompts)) == len(prompts)  # one query set, split between the accounts


def test_pacing_fast_is_bursts_and_careful_is_minutes_apart(log, truth):
    lines = by_account(log)
    gaps = defaultdict(list)
    for account, entry in truth["accounts"].items():
        if entry["kind"] == "campaign" and entry["level"] == 1.0:
            times = sorted(seconds(x["timestamp"]) for x in lines[account])
            gaps[entry["pacing"]] += [b - a for a, b in itertools.pairwise(times)]
    assert statistics.median(gaps["fast"]) < 0.5
    assert statistics.median(gaps["careful"]) > 5


def test_lines_are_interleaved_and_out_of_order_by_less_than_five_seconds(log):
    latest, inversions = float("-inf"), 0
    for line in log:
        t = seconds(line["timestamp"])
        assert t > latest - 5.0
        inversions += t < latest
        latest = max(latest, t)
    assert inversions > len(log) // 100
    switches = sum(a["account"] != b["account"] for a, b in itertools.pairwise(log))
    assert switches > len(log) // 2


def test_the_split_is_disjoint_and_the_benign_logs_hold_no_evaluation_conversation(
        built, sources, texts):
    conversations, campaigns = texts
    ids = list(conversations)
    parts = traffic.split_conversations(ids)
    assert sorted(i for part in parts.values() for i in part) == list(range(len(ids)))
    for part, members in parts.items():
        assert all(traffic.split_of(ids[i]) == part for i in members)
        share = dict(zip(traffic.PARTS, (0.35, 0.15, 0.50)))[part]
        assert abs(len(members) / len(ids) - share) < 0.03
    turns_of = {part: {t for i in members for t in conversations[ids[i]]}
                for part, members in parts.items()}
    out = built[0]
    for name, part in (("baseline", "baseline"), ("calibration", "calibration"),
                       ("requests", "evaluation")):
        others = set().union(*(v for k, v in turns_of.items() if k != part)) - turns_of[part]
        held = {own_text(t) for x in jsonl(out / f"{name}.jsonl.gz") for t in user_turns(x)}
        benign = held - (set().union(*campaigns.values()) - set().union(*turns_of.values()))
        assert benign <= turns_of[part] and not benign & others
        if name != "requests":
            assert benign == held  # no campaign prompt in a benign log


@pytest.mark.slow  # a second build, in a subprocess
def test_a_seed_gives_the_same_bytes_through_the_command_line(built):
    out, summary = built
    again = out.parent / "again"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "monitor_traffic.py"),
                          "--out", str(again), "--seed", str(SEED), "--scale", "small",
                          "--data", str(DATA), "--alpacaeval", str(ALPACA)],
                         capture_output=True, text=True, check=True)
    for name in ("requests.jsonl.gz", "baseline.jsonl.gz", "calibration.jsonl.gz", "truth.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    printed = json.loads(run.stdout[:run.stdout.index("\n| kind")])
    assert printed["kinds"] == summary["kinds"]
    assert "| campaign 5% | 6 | 3,600 | 180 |" in run.stdout


def test_another_seed_gives_other_traffic(tmp_path, sources):
    tiny = {"individuals": 20, "apps": 1, "app_users": (50, 50), "log_conversations": 50,
            "accounts_per_cell": 1, "levels": (1.0,), "level_requests": (30,), "hydra": ()}
    logs = []
    for n, seed in enumerate((1, 1, 2)):
        traffic.build(traffic.TrafficConfig(seed=seed, **tiny), tmp_path / str(n), sources)
        logs.append((tmp_path / str(n) / "requests.jsonl.gz").read_bytes())
    assert logs[0] == logs[1] != logs[2]


@pytest.mark.parametrize("change, field", [
    ({"split": (0.5, 0.5, 0.5)}, "split"),
    ({"levels": (1.0, 1.5), "level_requests": (10, 10)}, "levels"),
    ({"level_requests": (100,)}, "level_requests"),
    ({"sources": ("t0", "web")}, "sources"),
    ({"hydra": ((1, "t0", 2),)}, "hydra"),
    ({"app_users": (500, 50)}, "ranges"),
    ({"seed": -1}, "counts"),
    ({"start": "monday"}, "start"),
    ({"levels": (0.5, 0.5), "level_requests": (10, 10)}, "levels"),
    ({"days": "5"}, "wrong type")])
def test_a_bad_config_is_refused_naming_the_field(change, field):
    with pytest.raises(ConfigError, match=f"TrafficConfig: .*{field}"):
        traffic.TrafficConfig(**change)
    with pytest.raises(ConfigError, match="scale: 'huge'"):
        traffic.TrafficConfig.preset("huge")


def test_a_bad_source_line_names_file_line_and_field(tmp_path):
    (tmp_path / "benign").mkdir()
    sharegpt = tmp_path / "benign" / "sharegpt.jsonl"
    sharegpt.write_text('{"conversation": "a", "turn": 0, "prompt": "hi"}\n'
                        '{"conversation": "a", "turn": 2, "prompt": "again"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"sharegpt.jsonl line 2: .*consecutive") as caught:
        traffic.load_sources(tmp_path, tmp_path / "none.jsonl")
    assert caught.value.field == "turn"
    sharegpt.write_text('{"conversation": "a", "turn": 0}\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 1") as caught:
        traffic.load_sources(tmp_path, tmp_path / "none.jsonl")
    assert caught.value.field == "prompt"
