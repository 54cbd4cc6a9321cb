"""Coordinated accounts (monitor.groups): templates counted per account, accounts linked by the
templates they fill, a hydra of small accounts flagged as a group while each member alone is
under the first checkpoint, and benign accounts that share an app's wrapper grouped but not
flagged. Real prompt text from ../shared/data (skipped without it)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from conftest import write_jsonl
from monitor import AccountScorer, Baseline, MonitorConfig, scan_file
from monitor.detector import AccountState
from monitor.groups import link_accounts
from monitor.skeleton import TEMPLATES_KEPT, Skeleton, template_id
from monitor_fixtures import DATA

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline_dir

WRAP_HEAD = "You are the support assistant of Nimbus Routers Ltd. A customer writes:"
WRAP_TAIL = "Answer in a friendly tone and suggest a next step."


def test_a_skeleton_counts_the_templates_it_strips_and_keeps_the_most_used():
    skeleton = Skeleton()
    for message in ("my wifi drops", "how do I reset it?", "the light is red"):
        skeleton.strip(f"{WRAP_HEAD} {message} {WRAP_TAIL}")
    head = template_id("prefix", WRAP_HEAD.split()[:4])
    tail = template_id("suffix", WRAP_TAIL.split()[-4:])
    assert skeleton.templates == {head: 2, tail: 2}  # the first filling had nothing to match
    for i in range(TEMPLATES_KEPT + 3):  # more one-off templates than are kept
        skeleton.strip(f"alpha{i} beta{i} gamma{i} delta{i} middle one")
        skeleton.strip(f"alpha{i} beta{i} gamma{i} delta{i} middle two")
    assert len(skeleton.templates) == TEMPLATES_KEPT
    assert skeleton.templates[head] >= 2  # the most used survive the one-offs
    skeleton = Skeleton()  # fillings that share more than the template: still one id
    for text in ("Answer from the passage: Paris is big. Who?",
                 "Answer from the passage: Paris is old. When?",
                 "Answer from the passage: Rome is old. Why?"):
        skeleton.strip(text)
    assert skeleton.templates == {template_id("prefix", "Answer from the passage:".split()): 2}


def test_templates_survive_the_state_encoding():
    config = MonitorConfig(checkpoints=2, null_accounts=2001)
    state = AccountState.new(config, 8)
    for message in ("my wifi drops", "how do I reset it?", "the light is red"):
        state.skeleton.strip(f"{WRAP_HEAD} {message} {WRAP_TAIL}")
    back = AccountState.from_bytes(state.to_bytes(), config, 8)
    assert back.skeleton.templates == state.skeleton.templates != {}


def _state_with(templates: dict[str, int], filled: int = 10, n: int = 20) -> AccountState:
    state = AccountState.new(MonitorConfig(checkpoints=2, null_accounts=2001), 4)
    state.skeleton.templates = dict(templates)
    state.skeleton.filled, state.n = filled, n
    return state


def test_accounts_are_linked_through_two_templates_each_filled_twice():
    states = {"a": _state_with({"t1": 2, "t2": 2}), "b": _state_with({"t1": 5, "t2": 2,
                                                                      "t3": 3, "t4": 2}),
              "c": _state_with({"t3": 3, "t4": 2}),
              "d": _state_with({"t1": 1, "t2": 9}),  # t1 once: one template shared, no link
              "e": _state_with({"t5": 4, "t6": 2}), "f": _state_with({"t5": 2, "t6": 2}),
              "g": _state_with({"t5": 2}), "h": _state_with({})}
    groups = link_accounts(states)
    assert groups == [(["a", "b", "c"], ["t1", "t2", "t3", "t4"]),
                      (["e", "f"], ["t5", "t6"])]


def _t0_templates() -> list[list[str]]:
    """Fillings of four T0 templates (60 each): a templated query set."""
    by_template: dict[str, list[str]] = {}
    with open(DATA / "campaigns" / "t0_templated.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_template.setdefault(row["template"], []).append(row["prompt"])
    return [by_template[t][:60] for t in sorted(t for t, ps in by_template.items()
                                                  if len(ps) >= 60)[:4]]


def _sharegpt_turns(n: int) -> list[str]:
    with open(DATA / "benign" / "sharegpt.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for line, _ in zip(f, range(n))]


def _sharegpt_conversations(n: int) -> list[list[str]]:
    """The first n ShareGPT conversations' user turns, in order."""
    conversations: dict[str, list[str]] = {}
    with open(DATA / "benign" / "sharegpt.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["conversation"] not in conversations and len(conversations) == n:
                break
            conversations.setdefault(row["conversation"], []).append(row["prompt"])
    return list(conversations.values())


def _request(i: int, account: str, prompt: str, second: float,
             earlier: list[str] = ()) -> dict:
    messages = []
    for turn in earlier:  # the conversation so far, as a chat log shows it
        messages += [{"role": "user", "content": turn},
                     {"role": "assistant", "content": "(earlier answer)"}]
    return {"id": f"req-{account}-{i}", "account": account,
            "timestamp": 1_795_000_000 + second,
            "request": {"messages": messages + [{"role": "user", "content": prompt}]},
            "response": {"choices": [{"message": {"content": "(answer)"}}]}}


def test_a_hydra_of_small_accounts_is_flagged_as_a_group(tmp_path, baseline_dir):  # noqa: F811
    templates = _t0_templates()
    prompts = [p for fillings in templates for p in fillings[:30]]
    random.Random(3).shuffle(prompts)
    members = [f"acct-hydra-{k}" for k in range(6)]  # 6 x 20 requests, each under 30
    rows = [_request(i, members[i % 6], p, 7.0 * i) for i, p in enumerate(prompts)]
    benign = _sharegpt_turns(60)
    rows += [_request(i, f"acct-user-{i % 3}", p, 5.0 * i) for i, p in enumerate(benign)]
    # a user who filled two of the templates three times each, among 40 turns of their own:
    # linked by the templates, but too little of the traffic is templated to join
    mixed = [(p, []) for fillings in templates[:2] for p in fillings[40:43]]
    for turns in _sharegpt_conversations(60)[40:]:  # their conversations, as the log shows them
        mixed += [(turn, turns[:t]) for t, turn in enumerate(turns)]
    rows += [_request(i, "acct-mixed", p, 13.0 * i, earlier)
             for i, (p, earlier) in enumerate(mixed[:46])]
    members.append("acct-mixed")
    baseline = Baseline.load(baseline_dir)
    result = scan_file(write_jsonl(tmp_path / "log.jsonl", rows), baseline)
    by_account = {row.account: row for row in result.rows}
    assert all(by_account[m].p_value is None for m in members[:6])  # no member was tested
    hydra = [g for g in result.groups if set(g.members) & set(members)]
    assert len(hydra) == 1 and set(hydra[0].members) == set(members[:6])
    assert hydra[0].flagged and hydra[0].p_value <= baseline.config.alpha
    for m in members[:6]:
        row = by_account[m]
        assert row.flagged and row.flagged_by == "group" and row.cluster == hydra[0].id
        assert row.reasons[-1]["signal"] == "group" and row.risk == hydra[0].risk
    mixed_row = by_account["acct-mixed"]  # shares the templates, but its traffic is its own
    assert mixed_row.cluster is None and not mixed_row.flagged
    for k in range(3):
        row = by_account[f"acct-user-{k}"]
        assert not row.flagged and row.cluster is None and row.flagged_by is None
    assert AccountScorer(baseline).level < baseline.config.alpha


def test_benign_accounts_sharing_an_apps_wrapper_are_grouped_not_flagged(tmp_path,
                                                                        baseline_dir):  # noqa: F811
    accounts = [f"acct-app-{k}" for k in range(4)]  # four deployments of one app
    rows = []
    for c, turns in enumerate(_sharegpt_conversations(160)):  # its users' conversations
        wrapped = [f"{WRAP_HEAD} {turn} {WRAP_TAIL}" for turn in turns]
        rows += [_request(len(rows), accounts[c % 4], turn, 11.0 * len(rows), wrapped[:t])
                 for t, turn in enumerate(wrapped)]
    result = scan_file(write_jsonl(tmp_path / "log.jsonl", rows), Baseline.load(baseline_dir))
    assert len(result.groups) == 1 and set(result.groups[0].members) == set(accounts)
    group = result.groups[0]
    assert group.p_value is not None and not group.flagged
    assert not any(row.flagged for row in result.rows)
    assert all(row.cluster == group.id for row in result.rows)
    assert result.to_dict()["groups"][0]["members"] == list(group.members)


def test_only_accounts_whose_traffic_fills_templates_in_good_part_are_linked():
    both = {"t1": 3, "t2": 3}
    states = {"a": _state_with(both), "b": _state_with(both, filled=4, n=10),  # 4 < 5 fills
              "c": _state_with(both, filled=9, n=50)}  # 18% of its requests
    assert link_accounts(states) == []
    states["d"] = _state_with(both, filled=5, n=25)
    assert link_accounts(states) == [(["a", "d"], ["t1", "t2"])]


@pytest.mark.parametrize("count", [0, 1])
def test_an_account_alone_or_filling_a_template_once_is_in_no_group(count):
    states = {"a": _state_with({"t": 3, "u": 2}),
              "b": _state_with({"t": count, "u": 2} if count else {})}
    assert link_accounts(states) == []


def test_activity_describes_bursts_and_a_steady_pace():
    from monitor.activity import Activity
    bursts, steady = Activity(), Activity()
    start = 1_795_000_000.0  # a whole minute: 29,916,666 x 60 + 40; bursts of 10 in 5 seconds
    times = [start + 3600 * b + 0.5 * i for b in range(5) for i in range(10)]
    for t in times:
        bursts.observe(t)
    for i in range(50):
        steady.observe(start + 60.0 * i)
    shown = bursts.summary(len(times), times[0], times[-1])
    assert shown["peak_per_minute"] == 10 and shown["burstiness"] > 2
    assert shown["hours_active"] == 5
    calm = steady.summary(50, start, start + 60.0 * 49)
    assert calm["peak_per_minute"] == 1 and calm["burstiness"] == 0.0
    assert calm["requests_per_hour"] == round(50 / (49 / 60), 2)
    back = Activity.from_bytes(bursts.to_bytes())
    assert back.summary(len(times), times[0], times[-1]) == shown
    assert Activity().summary(1, start, start)["requests_per_hour"] is None


def test_a_template_too_many_accounts_fill_links_none_of_them(monkeypatch):
    import monitor.groups as groups
    states = {name: _state_with({"common": 2, "also": 2}) for name in "abc"}
    assert link_accounts(states) == [(["a", "b", "c"], ["also", "common"])]
    monkeypatch.setattr(groups, "MAX_TEMPLATE_ACCOUNTS", 2)
    assert link_accounts(states) == []


def test_elicitation_markers_are_counted_and_shown(tmp_path, baseline_dir):  # noqa: F811
    from monitor.elicitation import elicits
    assert elicits("Let's think step by step.") and elicits("Answer in JSON, nothing else")
    assert elicits("Explain your reasoning before you answer") and not elicits("Write a haiku")
    prompts = [f"Question {i}: {turn} Let's think step by step." if i % 4 == 0 else turn
               for i, turn in enumerate(_sharegpt_turns(40))]
    rows = [_request(i, "acct-asks", p, 9.0 * i) for i, p in enumerate(prompts)]
    result = scan_file(write_jsonl(tmp_path / "log.jsonl", rows), Baseline.load(baseline_dir))
    share = result.rows[0].activity["elicitation"]
    assert share == round(sum(map(elicits, prompts)) / 40, 3) and share >= 0.25


def test_the_keyword_screen_never_changes_what_the_markers_find():
    """elicits() runs the pattern only on prompts holding one of KEYWORDS: on real prompts and
    on one phrasing of every alternative, the answers are the pattern's own."""
    from monitor.elicitation import KEYWORDS, MARKERS, elicits
    phrasings = ["step-by-step", "think it through", "chain of thought", "show all steps",
                 "explain your answer", "justify your steps", "reasoning carefully",
                 "walk me through", "before answering", "reply only with csv",
                 "output as a table", "in the following format", "output format",
                 "valid json", "a json object", "respond in yaml", "answer with xml"]
    for text in phrasings:
        assert MARKERS.search(text) and elicits(text.upper()), text
        assert any(word in text for word in KEYWORDS), text
    turns = _sharegpt_turns(3000)
    assert [elicits(t) for t in turns] == [MARKERS.search(t.lower()) is not None for t in turns]
    assert 0 < sum(map(elicits, turns)) < len(turns)


def test_activity_shows_coverage_growth_and_prada_novelty():
    from monitor.activity import CELL_BITS, Activity
    from monitor.detector import reuse_and_distance

    def nearest_distance(recent, count, signature):
        return reuse_and_distance(recent, count, signature, 1.0)[1]
    rng = np.random.default_rng(0)
    same, spread = Activity(), Activity()
    row = rng.standard_normal(64)
    for _ in range(40):
        same.visit(row)  # one cell, however often
        spread.visit(rng.standard_normal(64))  # random directions: mostly new cells
    assert same.new_cells == 1 and spread.new_cells > 30
    assert int(np.unpackbits(spread.cells).sum()) == spread.new_cells <= 1 << CELL_BITS
    recent = np.zeros((4, 8), dtype=np.uint32)
    recent[0] = np.arange(8)
    recent[1] = np.arange(8) + 100
    assert nearest_distance(recent, 0, np.arange(8)) is None
    assert nearest_distance(recent, 2, np.arange(8)) == 0.0  # a copy of the first
    half = np.concatenate([np.arange(4), np.arange(4) + 50])
    assert nearest_distance(recent, 2, half) == 0.5
    assert nearest_distance(recent, 1, np.arange(8) + 100) == 1.0  # the second is not counted yet
    for d in (0.0, 0.5, 1.0):
        spread.near(d)
    shown = spread.summary(40, 1_795_000_000.0, 1_795_000_000.0 + 600)
    assert shown["novelty"] == 0.5 and shown["coverage"] == round(spread.new_cells / 40, 3)
    assert Activity.from_bytes(spread.to_bytes()).summary(40, 1_795_000_000.0,
                                                           1_795_000_000.0 + 600) == shown
    assert Activity().summary(1, 0.0, 0.0)["novelty"] is None


def test_activity_takes_the_size_its_docstring_says():
    from monitor import activity
    assert activity.SIZE == len(activity.Activity().to_bytes()) == 668
    assert "fixed 668 bytes" in " ".join(activity.__doc__.split())
