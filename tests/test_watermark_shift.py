"""The shift test (does a suspect use green pairs more often than the provider's unmarked text?)
and the context-width-0 mark it was made for."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from click.testing import CliRunner

from fingerprint import watermark as wm
from fingerprint.errors import ConfigError, InputError
from fingerprint.watermark.green import unique_rows

VOCAB = 2000


def zipf_probabilities(rng: np.random.Generator) -> np.ndarray:
    p = 1.0 / np.arange(1, VOCAB + 1) ** 1.05
    return rng.permutation(p / p.sum())


def sample(p: np.ndarray, rng: np.random.Generator, answers: int = 300, length: int = 120):
    return [rng.choice(VOCAB, size=length, p=p).tolist() for _ in range(answers)]


@functools.lru_cache(maxsize=None)
def template() -> wm.WatermarkKey:
    return wm.generate_key()  # loads a tokenizer: once


def with_key(width: int, seed: int) -> wm.WatermarkKey:
    return dataclasses.replace(template(), tokens=wm.WatermarkConfig(context_width=width),
                               secret=np.random.default_rng(seed).bytes(32))


def student_of(p: np.ndarray, key: wm.WatermarkKey, marked_share: float) -> np.ndarray:
    """A unigram "student" trained on text of which ``marked_share`` was marked (delta on the
    key's green tokens) and learned it exactly: the mixture of the two unigram distributions."""
    green = wm.green_masks(key, np.zeros((1, 0), dtype=np.int64), VOCAB)[0]
    marked = p * np.exp(key.tokens.delta * green)
    return (1 - marked_share) * p + marked_share * marked / marked.sum()


def test_unmarked_suspects_give_valid_p_values_under_many_keys():
    """The null: a suspect that never saw marked text, tested under 150 keys. Its p-values must
    not fall below a level more often than the level says (the test is exact)."""
    rng = np.random.default_rng(0)
    p = zipf_probabilities(rng)
    q = 0.7 * p + 0.3 * zipf_probabilities(rng)  # another model: differs, but not by the key
    suspect, reference = sample(q, rng, answers=150), sample(p, rng, answers=150)
    tests = [wm.shift_test_ids(with_key(0, seed), suspect, reference) for seed in range(150)]
    for values in (np.array([t.weighted_p for t in tests]), np.array([t.sign_p for t in tests])):
        assert np.mean(values < 0.05) <= 0.05 + 3 * (0.05 * 0.95 / 150) ** 0.5
        assert np.mean(values < 0.5) == pytest.approx(0.5, abs=0.15)
    assert all(t.p_value == t.weighted_p for t in tests)  # the default method
    short = [s[:40] for s in suspect[:60]], [r[:40] for r in reference[:60]]
    width2 = [wm.shift_test_ids(with_key(2, seed), *short, min_count=2).p_value
              for seed in range(20)]
    assert np.mean(np.array(width2) < 0.05) <= 0.05 + 3 * (0.05 * 0.95 / 20) ** 0.5


def marked_student(share: float):
    """(rng, unigram distribution, key, unmarked reference, student of ``share`` marked)."""
    rng = np.random.default_rng(1)
    p = zipf_probabilities(rng)
    key = with_key(0, 7)
    reference = sample(p, rng)
    return rng, p, key, reference, sample(student_of(p, key, share), rng)


def test_a_student_of_a_little_marked_text_is_found_and_only_under_its_key():
    rng, p, key, reference, student = marked_student(0.10)
    found = wm.shift_test_ids(key, student, reference)
    assert found.p_value < 1e-3 and found.green_up / found.up > 0.3
    assert found.windows > 500 and found.suspect_windows == 300 * 120
    # the usual detector, distinct tokens only, hardly sees it
    assert wm.detect_token_ids(key, student).p_value > found.p_value * 100
    others = [wm.shift_test_ids(with_key(0, s), student, reference).p_value
              for s in range(100, 120)]
    assert min(others) > 1e-3
    # a reference that is itself marked costs power, never validity: no small p-value appears
    marked_reference = sample(student_of(p, key, 1.0), rng)
    against_marked = wm.shift_test_ids(key, student, marked_reference)
    assert against_marked.p_value > 0.5 and against_marked.sign_p > 0.5
    assert against_marked.lean < 0 < found.lean


def test_weighing_each_window_by_how_far_it_moved_finds_what_the_sign_test_misses():
    """At 5% marked training text the sign of each window's move is mostly noise; its size,
    weighted by how precisely it is measured, is not."""
    _, _, key, reference, student = marked_student(0.05)
    weighted = wm.shift_test_ids(key, student, reference)
    sign = wm.shift_test_ids(key, student, reference, method="sign")
    assert weighted.method == "weighted" and sign.method == "sign"
    assert sign.p_value == sign.sign_p == weighted.sign_p and sign.p_value > 1e-3
    assert weighted.p_value < 1e-4 and weighted.p_value < sign.p_value / 100
    # the size it reports: exp(lean) ~ how much more often than a red window a green one is
    # used; the student learned 5% of delta = 2's boost (a factor 1.3 on green, ~0.98 on red)
    assert 0.03 < weighted.lean < 0.3
    assert weighted.to_dict()["weighted_p"] == weighted.p_value
    with pytest.raises(InputError, match="method"):
        wm.shift_test_ids(key, student, reference, method="t")


def test_the_weighted_tail_is_exact():
    """Against every one of the 2**14 outcomes, for weights of both signs and every threshold;
    equal unit weights give the binomial tail."""
    import itertools

    from fingerprint.watermark.bernoulli_sum import bernoulli_sum_tail, integer_weights

    rng = np.random.default_rng(3)
    weights = rng.integers(-7, 12, size=14)
    gamma = 0.3
    outcomes = np.array(list(itertools.product([0, 1], repeat=14)))
    sums = outcomes @ weights
    probs = np.prod(np.where(outcomes == 1, gamma, 1 - gamma), axis=1)
    for t in range(int(sums.min()) - 1, int(sums.max()) + 2):
        assert bernoulli_sum_tail(weights, t, gamma) == pytest.approx(probs[sums >= t].sum(),
                                                                      rel=1e-9, abs=1e-15)
    assert bernoulli_sum_tail(np.ones(400, dtype=int), 160, 0.25) == pytest.approx(
        wm.binomial_tail(160, 400, 0.25), rel=1e-6)
    assert bernoulli_sum_tail(np.zeros(3, dtype=int), 0, 0.25) == 1.0
    assert bernoulli_sum_tail(np.zeros(0, dtype=int), 1, 0.25) == 0.0
    with pytest.raises(InputError, match="gamma"):
        bernoulli_sum_tail(weights, 0, 1.0)
    grid = integer_weights(np.array([0.0, 1.0, -1.0, 1e9]))
    assert grid[0] == 0 and grid[1] == -grid[2] > 0 and grid[3] == 8 * 20  # the outlier clipped
    with pytest.raises(InputError, match="finite"):
        integer_weights(np.array([np.nan]))


def test_degenerate_inputs_are_no_evidence():
    key = with_key(0, 1)
    empty = wm.shift_test_ids(key, [], [[1, 2, 3]])
    assert empty.p_value == 1.0 and empty.up == 0 and empty.to_dict()["green_share_up"] is None
    rare = wm.shift_test_ids(key, [[1, 2]], [[3]])  # no window seen min_count times
    assert rare.windows == 0 and rare.p_value == rare.sign_p == 1.0
    same = [[1, 2, 3, 4] * 10] * 5
    assert wm.shift_test_ids(key, same, same).up == 0  # nothing is used more
    with pytest.raises(InputError, match="token ids must be in"):
        wm.shift_test_ids(key, [[-1, 2]], [[1, 2]])
    with pytest.raises(InputError, match="min_count"):
        wm.shift_test_ids(key, same, same, min_count=0)


def test_windows_compared_once_test_like_the_whole_test_under_every_key():
    """compare_windows is the key-free half: testing its result under a key gives what the
    whole test gives, and a key of another width is refused rather than read wrongly."""
    rng = np.random.default_rng(3)
    p = zipf_probabilities(rng)
    suspect, reference = sample(p, rng, answers=60), sample(p, rng, answers=60)
    compared = wm.compare_windows(suspect, reference, 1)
    for seed in range(5):
        key = with_key(1, seed)
        for method in ("weighted", "sign"):
            assert compared.test(key, method) == wm.shift_test_ids(key, suspect, reference,
                                                                   method=method)
    with pytest.raises(InputError, match="width 0, but the windows were compared at width 1"):
        compared.test(with_key(0, 1))
    with pytest.raises(InputError, match="method"):
        compared.test(with_key(1, 1), "t")
    with pytest.raises(InputError, match="context_width"):
        wm.compare_windows(suspect, reference, -1)
    empty = wm.compare_windows([], reference, 1).test(with_key(1, 1))
    assert empty.windows == 0 and empty.p_value == 1.0


def test_context_width_0_marks_the_same_tokens_after_any_context():
    key = with_key(0, 3)
    logits = np.zeros((3, 50))
    contexts = np.array([[1, 2], [7, 9], [40, 41]])
    marked = wm.bias_logits(key, logits, contexts)
    assert (marked == marked[0]).all() and set(np.unique(marked[0])) == {0.0, key.tokens.delta}
    with2 = wm.bias_logits(with_key(2, 3), logits, contexts)
    assert not (with2 == with2[0]).all()  # width 2: each context its own list
    distinct, inverse = unique_rows(np.zeros((5, 0), dtype=np.int64))
    assert distinct.shape == (1, 0) and inverse.tolist() == [0] * 5
    det = wm.detect_token_ids(key, [[1, 2, 3, 1, 2, 3] * 10])
    assert det.pooled.scored == 3  # distinct tokens
    with pytest.raises(ConfigError, match="context_width"):
        wm.WatermarkConfig(context_width=-1)


def test_keygen_accepts_context_width_0(tmp_path):
    from cli import main

    out = CliRunner().invoke(main, ["watermark", "keygen", "--out", str(tmp_path / "k.json"),
                                    "--context-width", "0", "--json"])
    assert out.exit_code == 0, out.output
    assert wm.load_key(tmp_path / "k.json").tokens.context_width == 0
