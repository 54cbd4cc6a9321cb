"""The monitor's per-account test, on real prompts: ShareGPT users as benign traffic, T0's
templated prompts as a harvesting campaign (../shared/data/monitor)."""

import dataclasses
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from monitor.baseline import BASELINE_FORMAT, Baseline, fit_baseline
from monitor.config import MonitorConfig
from monitor.detector import OPEN_RING, AccountState, conversation_key, count_turn
from monitor.errors import BaselineError, MonitorConfigError, StateEntryError
from monitor.requests import Request
from monitor.scoring import SIGNALS, AccountScorer, Totals

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "monitor"
CONFIG = MonitorConfig(checkpoints=4, null_accounts=4001)  # 30, 60, 120, 240 requests


def conversations():
    if not (DATA / "benign" / "sharegpt.jsonl").is_file():
        pytest.skip(f"real monitor data not found at {DATA}")
    by_id = defaultdict(list)
    with open(DATA / "benign" / "sharegpt.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_id[row["conversation"]].append(row["prompt"])
    convs = list(by_id.values())
    random.Random(0).shuffle(convs)
    return convs


def as_accounts(convs, prefix, per_account=3):
    requests, clock = [], 1_795_000_000.0
    for a in range(0, len(convs), per_account):
        for conv in convs[a:a + per_account]:
            for prompt in conv:
                clock += 30.0
                requests.append(Request(f"{prefix}{a}", prompt, clock, f"r{len(requests)}"))
    return requests


@pytest.fixture(scope="module")
def fitted():
    convs = conversations()
    baseline = fit_baseline(as_accounts(convs[:2000], "b"), CONFIG)
    return baseline, convs[2000:]


@pytest.mark.slow
def test_a_baseline_tests_only_checkpoints_it_can_calibrate(fitted):
    baseline, _ = fitted
    assert baseline.tested == (True, True, True, True)
    assert baseline.counts["null_requests_from"] >= 240 * 10
    assert baseline.null_shift.shape == (4001, 4)
    assert np.all(np.diff(baseline.null_shift, axis=0) >= 0)  # sorted for p-values
    small = fit_baseline(as_accounts(conversations()[:60], "s"), CONFIG)
    assert small.tested[-1] is False  # too little benign traffic to calibrate 240 requests
    assert np.isnan(small.null_shift[:, -1]).all()


@pytest.mark.slow
def test_signals_that_fit_nothing_are_calibrated_on_every_benign_account():
    """``reuse`` and ``single_turn`` depend on nothing fitted, so their nulls use both halves
    and reach a checkpoint that ``shift``'s (half B only) cannot."""
    convs = conversations()
    baseline = fit_baseline(with_turns(convs[:700], "b"), CONFIG)
    counts = baseline.counts
    assert counts["null_requests_from"] < 2400 <= counts["count_null_requests_from"]
    assert baseline.tested[-1] is True
    assert np.isnan(baseline.null_shift[:, -1]).all()
    assert not np.isnan(baseline.null_reuse[:, -1]).any()
    assert not np.isnan(baseline.null_single_turn[:, -1]).any()
    scorer = AccountScorer(baseline)
    state = run_requests(scorer, with_turns(convs[2000:2400], "f", per_account=400)[:240])
    assert state.n == 240 and state.next_checkpoint == 4
    last = {r["signal"] for r in state.reasons if r["checkpoint"] == 240}
    assert last in (set(), {"reuse", "single_turn"})  # kept only if it was the strongest
    p, reasons = scorer.checkpoint_test(Totals.of(state), 3, SIGNALS)
    assert [r["signal"] for r in reasons] == ["reuse", "single_turn"]
    assert p == min(1.0, 2 * min(r["p_value"] for r in reasons))


@pytest.mark.slow
def test_a_templated_campaign_is_flagged_and_benign_users_are_not(fitted):
    baseline, fresh = fitted
    scorer = AccountScorer(baseline)
    rows = [json.loads(line) for line in open(DATA / "campaigns" / "t0_templated.jsonl",
                                               encoding="utf-8")]
    campaign = [r["prompt"] for r in rows[:240]]
    flagged = run(scorer, campaign)
    assert flagged.flagged and flagged.flagged_at <= 120 and flagged.risk == 1.0
    reasons = {r["signal"]: r for r in flagged.reasons}
    assert reasons["shift"]["value"] > 5 * reasons["shift"]["benign_median"]
    benign = [run(scorer, [p for conv in fresh[i:i + 60] for p in conv][:240])
              for i in range(0, 3000, 60)]
    assert not any(s.flagged for s in benign)
    assert all(0 <= s.risk < 1 for s in benign)


def run(scorer, prompts):
    state = scorer.new_state()
    rff, signatures = scorer.features.transform([scorer.strip(state, p) for p in prompts])
    for i, (row, signature) in enumerate(zip(rff, signatures)):
        scorer.observe(state, row, signature, 1_795_000_000.0 + i)
    return state


@pytest.mark.slow
def test_a_baseline_round_trips_and_refuses_damage(fitted, tmp_path):
    baseline, _ = fitted
    baseline.save(tmp_path / "bl")
    loaded = Baseline.load(tmp_path / "bl", CONFIG)
    assert loaded.median == baseline.median and loaded.tested == baseline.tested
    np.testing.assert_array_equal(loaded.null_reuse, baseline.null_reuse)
    with pytest.raises(BaselineError, match="checkpoints: expected 4, got 9"):
        Baseline.load(tmp_path / "bl", MonitorConfig())
    data = bytearray((tmp_path / "bl" / "mean.npy").read_bytes())
    data[-1] ^= 1
    (tmp_path / "bl" / "mean.npy").write_bytes(bytes(data))
    with pytest.raises(BaselineError, match="mean.npy: checksum does not match"):
        Baseline.load(tmp_path / "bl")
    manifest = json.loads((tmp_path / "bl" / "manifest.json").read_text())
    (tmp_path / "bl" / "manifest.json").write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(BaselineError,
                       match=f"baseline format 99; this toolkit reads format {BASELINE_FORMAT}"):
        Baseline.load(tmp_path / "bl")
    with pytest.raises(BaselineError, match="no baseline here"):
        Baseline.load(tmp_path / "nothing")


def test_account_state_round_trips_through_bytes():
    state = AccountState.new(CONFIG, 12)
    state.n, state.reuse_hits, state.risk, state.flagged_at = 61, 7, 0.4, -1
    state.rff_sum[:] = np.arange(12) / 7
    state.recent[3, 5] = 99
    state.reasons = [{"signal": "reuse", "value": 0.11}]
    back = AccountState.from_bytes(state.to_bytes(), CONFIG, 12)
    assert (back.n, back.reuse_hits, back.risk, back.reasons) == (61, 7, 0.4, state.reasons)
    np.testing.assert_array_equal(back.rff_sum, state.rff_sum)
    assert back.recent[3, 5] == 99 and len(state.to_bytes()) < 20_000
    with pytest.raises(StateEntryError, match="bytes"):
        AccountState.from_bytes(state.to_bytes()[:40], CONFIG, 12)


@pytest.mark.parametrize("change, message", [
    ({"alpha": 0.7}, "alpha must be in"),
    ({"null_accounts": 1000}, "need at least 9001"),
    ({"reuse_perm": 12}, "multiple of 8"),
    ({"bandwidths": ()}, "bandwidths"),
    ({"embedding_backend": "gpu"}, "embedding_backend"),
    ({"checkpoints": True}, "checkpoints must be an integer"),
])
def test_config_is_validated(change, message):
    with pytest.raises(MonitorConfigError, match=message):
        MonitorConfig(**change)
    assert MonitorConfig.from_dict(MonitorConfig().to_dict()) == MonitorConfig()


def with_turns(convs, prefix, per_account=3):
    """As as_accounts, with each request's conversation depth (0 opens a conversation) and
    key."""
    requests, clock = [], 1_795_000_000.0
    for a in range(0, len(convs), per_account):
        for conv in convs[a:a + per_account]:
            for turn, prompt in enumerate(conv):
                clock += 30.0
                requests.append(Request(f"{prefix}{a}", prompt, clock, f"r{len(requests)}",
                                        prior_turns=turn, conversation=conversation_key(conv[0])))
    return requests


@pytest.mark.slow
def test_single_turn_harvesting_of_ordinary_prompts_is_caught_by_single_turn():
    """Prompts drawn from benign users' own conversations, but each sent as a fresh one-question
    request: nothing in the text is unusual, the conversation structure is."""
    convs = conversations()
    baseline = fit_baseline(with_turns(convs[:2000], "b"), CONFIG)
    assert not np.isnan(baseline.null_single_turn[:, 0]).any()
    scorer = AccountScorer(baseline)
    fresh = with_turns(convs[2000:2400], "f", per_account=400)
    harvest = [dataclasses.replace(r, prior_turns=0, conversation=conversation_key(r.prompt))
               for r in fresh[:240]]
    caught, ordinary = run_requests(scorer, harvest), run_requests(scorer, fresh[:240])
    assert caught.flagged and not ordinary.flagged
    reasons = {r["signal"]: r for r in caught.reasons}
    assert reasons["single_turn"]["value"] == 1.0 > reasons["single_turn"]["benign_median"]
    assert reasons["single_turn"]["p_value"] < reasons["shift"]["p_value"]
    # the same requests with their conversations' keys withheld: single_turn is not tested
    unknown = run_requests(scorer, [dataclasses.replace(r, conversation=None)
                                    for r in fresh[:240]])
    assert ordinary.turns_known == 240 and unknown.turns_known == sum(
        r.prior_turns == 0 for r in fresh[:240])
    assert "single_turn" not in {r["signal"] for r in unknown.reasons}


def turns_of(steps):
    """An account's state after (prior_turns, conversation's first message) steps."""
    state = AccountState.new(CONFIG, 8)
    for prior, first in steps:
        count_turn(state, prior, None if first is None else conversation_key(first))
    return state


def test_a_follow_up_takes_its_opening_out_of_the_single_turn_count():
    state = turns_of([(0, "a"), (0, "b"), (1, "a"), (2, "a"), (0, "c")])
    assert (state.openings, state.followed, state.single_turn, state.turns_known) == (3, 1, 2, 5)
    # a follow-up of a conversation the account never opened continues nothing
    assert turns_of([(0, "a"), (1, "z")]).single_turn == 1
    # two openings with the same first message: each follow-up continues one, the latest first
    twice = turns_of([(0, "hi"), (0, "hi"), (1, "hi")])
    assert twice.single_turn == 1 and list(twice.open_followed[:2]) == [False, True]
    assert turns_of([(0, "hi"), (0, "hi"), (1, "hi"), (1, "hi")]).single_turn == 0
    # an unknown depth, or a follow-up without its conversation, is not counted as known
    unknown = turns_of([(None, "a"), (1, None), (0, "b")])
    assert (unknown.turns_known, unknown.openings, unknown.single_turn) == (1, 1, 1)


def test_only_the_latest_openings_can_be_continued():
    steps = [(0, f"q{i}") for i in range(OPEN_RING + 1)]
    late = turns_of(steps + [(1, "q0")])  # q0's slot now holds the last opening
    recent = turns_of(steps + [(1, "q1")])
    assert late.followed == 0 and recent.followed == 1
    blob = recent.to_bytes()
    back = AccountState.from_bytes(blob, CONFIG, 8)
    assert (back.openings, back.followed, back.turns_known) == (OPEN_RING + 1, 1, OPEN_RING + 2)
    assert np.array_equal(back.open_keys, recent.open_keys)
    assert np.array_equal(back.open_followed, recent.open_followed)


def run_requests(scorer, requests):
    state = scorer.new_state()
    rff, signatures = scorer.features.transform([scorer.strip(state, r.prompt)
                                                 for r in requests])
    for r, row, signature in zip(requests, rff, signatures):
        scorer.observe(state, row, signature, r.timestamp, r.prior_turns, r.conversation)
    return state


@pytest.mark.slow
def test_an_app_that_wraps_its_users_messages_is_judged_on_the_messages(fitted):
    """A benign API customer wraps each end user's message in its own fixed text: judged on the
    whole prompts it would look templated and unlike benign traffic; on what varies, it is
    benign."""
    baseline, fresh = fitted
    scorer = AccountScorer(baseline)
    users = [p for conv in fresh[3000:3100] for p in conv][:240]
    wrapped = [f"You are the help desk of Example Corp. Be friendly and brief. The customer "
               f"writes: {u} Answer in the customer's language." for u in users]
    assert not run(scorer, wrapped).flagged
    unstripped = scorer.new_state()
    rff, signatures = scorer.features.transform(wrapped)
    for i, (row, signature) in enumerate(zip(rff, signatures)):
        scorer.observe(unstripped, row, signature, 1_795_000_000.0 + i)
    assert unstripped.flagged  # what the stripping is for


def test_a_skeleton_strips_a_shared_prefix_and_suffix_only():
    from monitor.skeleton import Skeleton, stripped

    prompts = ["Translate to French please: the cat sleeps . Thanks a lot",
               "Translate to French please: where is the station ? Thanks a lot",
               "something else entirely", "Translate to French please: Thanks a lot"]
    assert stripped(prompts) == [prompts[0], "where is the station ?",
                                 "something else entirely", prompts[3]]  # nothing left: kept
    skeleton = Skeleton()
    skeleton.strip("a b c")
    assert skeleton.strip("a b c d") == "a b c d"  # three shared words are no template
    back = Skeleton.from_json(json.loads(json.dumps(skeleton.to_json())))
    assert back.strip("x y z") == "x y z" and len(back.edges) == 3
