"""The sequential test: valid under optional stopping, and quick on clear-cut suspects."""

import numpy as np
import pytest

from attribution.stats import (DERIVED, NOT_DERIVED, SequentialConfig, SequentialTest,
                                    Thresholds, crossing_times, run_sequence, thresholds)
from fingerprint.errors import ConfigError

TH = Thresholds(q0=0.3, q1=0.45, reference_mean=0.2, reference_rates={})
ALPHA = 0.05


@pytest.mark.parametrize("side,q", [("upper", TH.q0), ("lower", TH.q1)])
def test_false_decision_rate_under_the_null_is_at_most_alpha(side, q):
    """At the boundary of each null (the hardest case), over 2000 runs of 800 probes each,
    looked at after every probe: the e-process reaches 1/alpha in at most alpha of the runs."""
    rng = np.random.default_rng(11)
    scores = (rng.random((2000, 800)) < q).astype(float)
    false_rate = float(np.mean(crossing_times(scores, q, side, ALPHA) > 0))
    assert false_rate <= ALPHA


def test_vectorised_crossing_matches_the_test():
    rng = np.random.default_rng(2)
    for p in (0.1, 0.3, 0.6):
        scores = (rng.random(400) < p).astype(float)
        test = run_sequence(scores, TH, SequentialConfig(alpha=ALPHA))
        up = crossing_times(scores, TH.q0, "upper", ALPHA)[0]
        down = crossing_times(scores, TH.q1, "lower", ALPHA)[0]
        expected = [t for t in (up, down) if t]
        assert test.decided_at == (min(expected) if expected else None)


def test_stops_early_on_clear_suspects():
    rng = np.random.default_rng(5)
    derived = run_sequence((rng.random(805) < 0.75).astype(float), TH, SequentialConfig())
    assert derived.decision == DERIVED and derived.decided_at < 40
    independent = run_sequence((rng.random(805) < 0.08).astype(float), TH, SequentialConfig())
    assert independent.decision == NOT_DERIVED and independent.decided_at < 60
    middle = run_sequence(np.tile([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], 100), TH,
                          SequentialConfig(max_probes=100))  # rate 0.375, between q0 and q1
    assert middle.decision is None and middle.n == 100


def test_thresholds_from_references():
    rates = {"a": 0.10, "b": 0.15, "c": 0.20, "d": 0.12, "e": 0.30}
    th = thresholds(rates, SequentialConfig(alpha=0.05, min_derived_fraction=0.2))
    assert th.q0 >= 0.30  # never below the largest reference
    assert th.q1 == pytest.approx(0.174 + 0.2 * (1 - 0.174))
    with pytest.raises(ConfigError):
        thresholds({"a": 0.1}, SequentialConfig())
    with pytest.raises(ConfigError):
        SequentialConfig(alpha=0.7)


def test_decision_is_final():
    test = SequentialTest(TH, SequentialConfig())
    for _ in range(50):
        test.update(True)
    assert test.decision == DERIVED
    at = test.decided_at
    for _ in range(200):
        test.update(False)
    assert test.decision == DERIVED and test.decided_at == at


@pytest.mark.parametrize("style,expected", [(0, "derived"), (6, "not derived")])
def test_probe_run_until_decided(tmp_path, fingerprinter, style, expected):
    """End to end over HTTP: the provider's own style is decided derived, an unrelated style
    not derived, each well before all 60 prompts are asked."""
    from click.testing import CliRunner

    from cli import main
    from replay import ReplayServer
    from conftest import styled_rows, write_jsonl
    from index import build_index

    n = 60
    idx = tmp_path / "idx"
    build_index(idx, [write_jsonl(tmp_path / "served.jsonl", styled_rows(0, n))], fingerprinter)
    refs = []
    for k in (1, 2, 3, 4, 5):
        refs += ["--reference", str(write_jsonl(tmp_path / f"ref{k}.jsonl", styled_rows(k, n)))]
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": r["prompt"]} for r in styled_rows(0, n)])
    answers = {r["prompt"]: r["response"] for r in styled_rows(style, n)}
    with ReplayServer(answers, "suspect") as server:
        result = CliRunner().invoke(main, [
            "probe", "run", str(prompts), "--endpoint", server.url, "--model", "suspect",
            "--out", str(tmp_path / "out.jsonl"), "--until-decided", "--index", str(idx),
            *refs, "--concurrency", "1"])
    assert result.exit_code == 0, result.output
    assert f"sequential test: {expected} after" in result.output
    asked = len((tmp_path / "out.jsonl").read_text().splitlines())
    assert asked < n
