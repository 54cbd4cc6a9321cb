"""The benchmark's anchor baselines (benchmarks/monitor_baselines.py: MMD-only and PRADA-only) on
the small simulated traffic, with the benign logs built from their whole split (so MMD's
thresholds rest on tens to hundreds of benign windows, not on two): each flags an obvious
templated campaign (real T0 template fillings, five templates, one account) and does not flag
the evaluation log's longest benign individual; thresholds come from the benign logs alone."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import traffic_module

from monitor import Request, read_requests, requests_by_account

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MONITOR_DATA", ROOT.parent / "shared" / "data" / "monitor"))


def baselines_module():
    path = ROOT / "benchmarks" / "monitor_baselines.py"
    spec = importlib.util.spec_from_file_location("monitor_baselines", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["monitor_baselines"] = module
    spec.loader.exec_module(module)
    return module


mb = baselines_module()


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> Path:
    if not (DATA / "benign" / "sharegpt.jsonl").is_file():
        pytest.skip(f"monitor data not found at {DATA} (set MONITOR_DATA=...)")
    module = traffic_module()
    out = tmp_path_factory.mktemp("traffic")
    config = dataclasses.replace(module.TrafficConfig.preset("small", 7), log_conversations=0)
    module.build(config, out)
    return out


@pytest.fixture(scope="module")
def accounts(traffic) -> dict[str, list[Request]]:
    """A T0 campaign (300 fillings of five templates, in turn) and the longest benign
    individual of the evaluation log."""
    truth = json.loads((traffic / "truth.json").read_text())["accounts"]
    log = requests_by_account(read_requests(traffic / "requests.jsonl.gz"))
    benign = max((a for a in log if truth[a]["kind"] == "benign-individual"),
                 key=lambda a: (len(log[a]), a))
    by_template = defaultdict(list)
    with open(DATA / "campaigns" / "t0_templated.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_template[row["template"]].append(row["prompt"])
    templates = sorted(by_template)[:5]
    prompts = [by_template[t][i] for i in range(60) for t in templates]
    campaign = [Request("campaign", p, 1.8e9 + i, f"c{i}", i) for i, p in enumerate(prompts)]
    assert len(log[benign]) > mb.PRADA_MIN  # long enough for PRADA (and MMD) to test it
    return {"campaign": campaign, "benign": log[benign]}


@pytest.fixture(scope="module")
def embed():
    return mb.Embeddings()


@pytest.fixture(scope="module")
def mmd_runs(traffic, accounts, embed):
    return {w: mb.mmd_only(read_requests(traffic / "baseline.jsonl.gz"), accounts, w, embed)
            for w in (100, 300)}


@pytest.fixture(scope="module")
def prada_run(traffic, accounts, embed):
    return mb.prada_only(read_requests(traffic / "calibration.jsonl.gz"), accounts, embed)


@pytest.mark.parametrize("window", [100, 300])
def test_mmd_flags_the_campaign_early_and_not_the_benign_account(mmd_runs, accounts, window):
    run = mmd_runs[window]
    campaign, benign = run.outcomes["campaign"], run.outcomes["benign"]
    assert (campaign.flagged, campaign.flagged_at, campaign.tests) == (True, window // 5, 1)
    assert campaign.extreme > 1.5  # the statistic well above its threshold, not just over it
    assert not benign.flagged
    assert benign.tests == len(mb.test_points(window, len(accounts["benign"])))
    assert benign.extreme < 1
    sizes = run.thresholds["by_size"]
    assert sorted(sizes) == [window // 5, window // 2, window]
    assert all(s["windows"] >= 20 and s["threshold"] > 0 for s in sizes.values())


def test_prada_flags_the_campaign_and_not_the_benign_account(prada_run, accounts):
    campaign, benign = prada_run.outcomes["campaign"], prada_run.outcomes["benign"]
    assert campaign.flagged and campaign.flagged_at == mb.PRADA_MIN + 1  # at its first test
    assert not benign.flagged and benign.tests == len(accounts["benign"]) - mb.PRADA_MIN
    assert benign.extreme >= prada_run.thresholds["delta"]
    assert prada_run.thresholds["tested_accounts"] > prada_run.thresholds["allowed_flags"]
    assert 0 < prada_run.thresholds["delta"] < 1


def test_thresholds_come_from_the_benign_logs_alone(traffic, accounts, embed, mmd_runs,
                                                     prada_run):
    """Without the campaign among the evaluation accounts, every threshold is the same."""
    benign_only = {"benign": accounts["benign"]}
    mmd = mb.mmd_only(read_requests(traffic / "baseline.jsonl.gz"), benign_only, 100, embed)
    prada = mb.prada_only(read_requests(traffic / "calibration.jsonl.gz"), benign_only, embed)
    assert mmd.thresholds == mmd_runs[100].thresholds
    assert prada.thresholds == prada_run.thresholds


def test_the_threshold_is_the_value_at_most_alpha_of_the_windows_exceed():
    values = list(range(1000))  # 0.3% of 1,000: at most 3 above
    assert mb.upper_threshold(values) == 996
    assert sum(v > mb.upper_threshold(values) for v in values) == 3
    assert mb.upper_threshold([5.0, 1.0, 3.0]) == 5.0  # few windows: their maximum
    assert mb.upper_threshold([]) is None


def test_prada_min_distances_look_only_backwards_and_within_the_cap():
    import numpy as np

    x = np.array([[0.0], [10.0], [1.0], [10.5], [100.0]], dtype=np.float32)
    assert mb.min_distances(x).tolist() == pytest.approx([10.0, 1.0, 0.5, 89.5])
    assert mb.min_distances(x, cap=1).tolist() == pytest.approx([10.0, 9.0, 9.5, 89.5])


def test_mmd_test_points():
    assert mb.test_points(1500, 3000) == [(300, 300), (750, 750), (1500, 1500), (2250, 1500),
                                          (3000, 1500)]
    assert mb.test_points(1500, 299) == []
    assert mb.test_points(300, 200) == [(60, 60), (150, 150)]
