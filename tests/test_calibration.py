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
    ps, student_ps = [], []
    for _ in range(30):
        profiles = [model_profile(rng) for _ in range(8)]
        classes = {f"m{i}": responses(rng, p) for i, p in enumerate(profiles[:7])}
        attributor = RelativeAttributor(classes, ["m0"])
        independent = responses(rng, profiles[7])
        ps.append(attributor.attribute(independent, bootstrap=0)["m0"].calibrated.p_value)
        student = responses(rng, 0.6 * profiles[0] / profiles[0].sum()
                            + 0.4 * profiles[7] / profiles[7].sum())
        student_ps.append(attributor.attribute(student, bootstrap=0)["m0"].calibrated.p_value)
    ps = np.array(ps)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert np.mean(ps < 0.1) <= 0.2  # nominal 0.1; 30 draws
    assert np.median(student_ps) < 0.01  # and a student of m0 is detected


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
