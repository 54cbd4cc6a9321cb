import numpy as np
import pytest
from scipy import sparse, stats

from attribution.stats import (MIN_REFERENCES, calibrate, cauchy_combination,
                                     derived_fraction, logit_share)
from attribution import RelativeAttributor


def test_too_few_references_gives_no_p_value_and_says_why():
    result = calibrate(0.9, [0.1, 0.2])
    assert result.p_value is None and result.n_references == 2
    assert result.reason == (f"p-value needs at least {MIN_REFERENCES} references on shared "
                             f"prompts; have 2")


def test_no_spread_gives_no_p_value():
    assert calibrate(0.5, [0.2] * 6).reason.startswith("the references all have the same value")


def test_sampling_noise_floors_the_null_spread():
    from attribution.stats import share_sd_floor

    floor = share_sd_floor(0.0, 60)
    assert 0.5 < floor < 2.0
    strong = calibrate(0.75, [0.0] * 6, transform=logit_share, sd_floor=floor)
    assert strong.p_value < 1e-3
    weak = calibrate(1 / 60, [0.0] * 6, transform=logit_share, sd_floor=floor)
    assert weak.p_value > 0.05  # one response in 60 is within sampling noise of zero


def test_t_prediction_p_values_are_uniform_for_exchangeable_values():
    rng = np.random.default_rng(1)
    ps = np.array([calibrate(x[-1], x[:-1]).p_value for x in rng.normal(size=(4000, 9))])
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert abs(np.mean(ps < 0.05) - 0.05) < 0.012


def test_empirical_p_value_is_the_rank_among_references():
    from attribution.stats import empirical_calibration

    assert empirical_calibration(0.5, [0, 0, 0, 0, 0.6]).p_value == pytest.approx(2 / 6)
    assert empirical_calibration(0.02, [0.0] * 8).p_value == pytest.approx(1 / 9)
    assert empirical_calibration(0.0, [0.0] * 8).p_value == 1.0
    assert empirical_calibration(0.1, [0.0] * 3).reason.endswith("have 3")


def test_cauchy_combination():
    assert cauchy_combination([0.03]) == pytest.approx(0.03)
    assert cauchy_combination([0.2, 0.2, 0.2]) == pytest.approx(0.2)
    assert cauchy_combination([1e-12, 0.9]) == pytest.approx(2e-12, rel=1e-3)
    assert cauchy_combination([None, 0.4]) == pytest.approx(0.4)
    assert cauchy_combination([1e-6, 1.0]) < 1e-5  # p = 1 does not veto strong evidence
    assert cauchy_combination([None]) is None
    rng = np.random.default_rng(2)  # valid for independent uniforms too
    combined = [cauchy_combination(u) for u in rng.uniform(size=(4000, 3))]
    assert abs(np.mean(np.array(combined) < 0.05) - 0.05) < 0.012


def test_derived_fraction_adjusts_for_the_null_rate():
    assert derived_fraction(0.5, 0.1, 0.9) == pytest.approx(0.5)
    assert derived_fraction(0.05, 0.1, 0.9) == 0.0
    assert derived_fraction(0.95, 0.1, 0.9) == 1.0
    assert derived_fraction(0.5, 0.3, 0.3) is None


def test_logit_share_is_monotone_and_finite_at_the_ends():
    values = logit_share(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.isfinite(values)) and values[0] < values[1] < values[2]


# --- the whole style pipeline on simulated models -------------------------------------------
VOCAB = 300


def model_profile(rng):
    """A model's idiosyncrasy: log-normal word preferences from one shared population."""
    return rng.lognormal(sigma=1.0, size=VOCAB)


def responses(rng, profile, n=120, length=60):
    p = profile / profile.sum()
    return sparse.csr_matrix(rng.multinomial(length, p, size=n).astype(np.float32))


@pytest.mark.slow
def test_p_values_are_uniform_for_an_independent_model_in_simulation():
    rng = np.random.default_rng(3)
    ps, student_ps, rank_ps, rank_student_ps = [], [], [], []
    for _ in range(30):
        profiles = [model_profile(rng) for _ in range(8)]
        classes = {f"m{i}": responses(rng, p) for i, p in enumerate(profiles[:7])}
        attributor = RelativeAttributor(classes, ["m0"], p_value="t")
        independent = responses(rng, profiles[7])
        student = responses(rng, 0.6 * profiles[0] / profiles[0].sum()
                            + 0.4 * profiles[7] / profiles[7].sum())
        ps.append(attributor.attribute(independent, bootstrap=0)["m0"].calibrated.p_value)
        student_ps.append(attributor.attribute(student, bootstrap=0)["m0"].calibrated.p_value)
        attributor.p_value = "rank"  # the same fit, the rank p-value (the default)
        rank_ps.append(attributor.attribute(independent, bootstrap=0)["m0"].calibrated.p_value)
        rank_student_ps.append(attributor.attribute(student, bootstrap=0)["m0"].calibrated.p_value)
    ps = np.array(ps)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert np.mean(ps < 0.1) <= 0.2  # nominal 0.1; 30 draws
    assert np.median(student_ps) < 0.01  # and a student of m0 is detected
    # the rank p-value takes the values k/7 (6 references); at most k/7 of nulls reach k/7
    for k in (1, 2, 3):
        assert np.mean(np.array(rank_ps) <= k / 7 + 1e-9) <= k / 7 + 0.15  # 30 draws
    assert np.median(rank_student_ps) == pytest.approx(1 / 7)  # detected, at the rank's floor


def test_derived_fraction_lower_bound_covers_the_mixture_share():
    rng = np.random.default_rng(4)
    profiles = [model_profile(rng) for _ in range(8)]
    classes = {f"m{i}": responses(rng, p, n=200) for i, p in enumerate(profiles[:7])}
    attributor = RelativeAttributor(classes, ["m0"])
    mixed = sparse.vstack([responses(rng, profiles[0], n=150), responses(rng, profiles[7], n=150)],
                          format="csr")  # half of the responses come from the provider
    result = attributor.attribute(mixed)["m0"]
    low, high = result.fraction_ci
    assert 0.3 <= low <= result.fraction <= high <= 0.55  # a lower bound, close to the truth
    assert high - low < 0.25


def test_rank_p_value_is_uniform_or_conservative_for_exchangeable_scores():
    from attribution.stats import rank_p_value

    rng = np.random.default_rng(3)
    draws = 2000
    # continuous scores, and scores with many ties at 0 (shares of independent models often are)
    for scores in (rng.normal(size=(draws, 27)),
                   np.where(rng.uniform(size=(draws, 27)) < 0.6, 0.0,
                            rng.exponential(size=(draws, 27)))):
        ps = np.array([rank_p_value(x[-1], x[:-1]) for x in scores])
        margin = 3 * np.sqrt(0.05 * 0.95 / draws)  # binomial, 3 sd
        assert np.mean(ps <= 0.05) <= 0.05 + margin
        assert np.mean(ps <= 0.2) <= 0.2 + 3 * np.sqrt(0.2 * 0.8 / draws)
    # the t-on-logit null is not: a null near 0 with a heavy tail, as references' shares are
    shares = np.clip(rng.lognormal(-4, 1.5, size=(draws, 27)), 0, 1)
    t_ps = np.array([calibrate(x[-1], x[:-1], transform=logit_share).p_value for x in shares])
    rank_ps = np.array([rank_p_value(x[-1], x[:-1]) for x in shares])
    assert np.mean(t_ps < 0.05) > 0.05 + 3 * np.sqrt(0.05 * 0.95 / draws)
    assert np.mean(rank_ps <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / draws)


def test_rank_p_value_floor_and_ties():
    from attribution.stats import rank_floor_sentence, rank_p_floor, rank_p_value

    assert rank_p_value(100.0, list(range(26))) == pytest.approx(1 / 27) == rank_p_floor(26)
    # ties count against the suspect: equal to every reference is p = 1, not 1 / (R + 1)
    assert rank_p_value(0.0, [0.0] * 26) == 1.0
    assert rank_p_value(0.3, [0.1, 0.3, 0.3, 0.5]) == pytest.approx(4 / 5)
    assert rank_p_value(0.3, [0.1, None, float("nan")]) == pytest.approx(1 / 2)
    assert rank_floor_sentence(26) == (
        "the p-value is a rank among 26 references and cannot go below 1/27 = 0.037; "
        "p < 0.01 needs at least 99 references (fingerprint reference add)")


def test_relative_attributor_uses_the_rank_p_value_by_default():
    rng = np.random.default_rng(4)

    def model(k):  # 30 responses concentrated on feature k, with noise
        dense = rng.poisson(0.3, size=(30, 40)).astype(float)
        dense[:, k] += 3
        return sparse.csr_matrix(dense)

    classes = {f"m{k}": model(k) for k in range(7)}
    rank = RelativeAttributor(classes, ["m0"]).attribute(model(0), bootstrap=0)["m0"]
    assert rank.p_value_method == "rank" and rank.share > 0.9
    assert rank.calibrated.p_value == pytest.approx(1 / 7)  # above all 6 null draws: the floor
    t = RelativeAttributor(classes, ["m0"], p_value="t").attribute(model(0), bootstrap=0)["m0"]
    assert t.p_value_method == "t" and t.calibrated.p_value < 1 / 7
    from attribution import AttributionError

    with pytest.raises(AttributionError, match="p-value method"):
        RelativeAttributor(classes, ["m0"], p_value="normal")
