"""The monitor's GCRA and risk-adaptive policy: bursts and sustained rates are what they say on
epoch-sized times, refusals say exactly how long to wait, the allowance shrinks continuously with
risk and blocks at the top, and every bad value is a typed error."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerprint.errors import ConfigError, FingerprintError
from monitor import (ALLOW, BLOCK, THROTTLE, Gcra, LimitDecision, LimiterError, LimitPolicy,
                     MonitorConfigError, MonitorError)

EPOCH = 1_764_000_000.0  # 2025-11-24: floats this large are exact only to ~2e-7 s


def burst_at_one_instant(decide, now: float = EPOCH) -> int:
    """How many requests pass at one instant from idle (tat 0.0)."""
    tat, passed = 0.0, 0
    while True:
        allowed, tat, _ = decide(tat, now)
        if not allowed:
            return passed
        passed += 1


def test_burst_requests_pass_at_once_then_one_per_interval():
    gcra = Gcra(rate_per_second=10.0, burst=5)
    assert burst_at_one_instant(gcra.decide) == 5
    tat = 0.0
    for _ in range(5):
        tat = gcra.decide(tat, EPOCH).tat
    refused = gcra.decide(tat, EPOCH)
    assert not refused.allowed and refused.tat == tat  # a refusal costs nothing
    assert refused.retry_after == pytest.approx(0.1, abs=1e-6)
    assert not gcra.decide(tat, EPOCH + refused.retry_after - 1e-3).allowed
    later = gcra.decide(tat, EPOCH + refused.retry_after)
    assert later.allowed and later.retry_after == 0.0


def test_a_sustained_rate_passes_for_ever_on_epoch_times_and_a_faster_one_does_not():
    gcra = Gcra(rate_per_second=7.0, burst=1)  # no burst: only the spacing counts
    tat = 0.0
    for i in range(20_000):
        result = gcra.decide(tat, EPOCH + i / 7.0)
        assert result.allowed, f"request {i} at exactly the rate was refused"
        tat = result.tat
    assert not gcra.decide(tat, EPOCH + 20_000 / 7.0 - 1e-3).allowed  # a millisecond early
    gcra = Gcra(rate_per_second=7.0, burst=5)
    tat, allowed = 0.0, 0
    for i in range(7_000):  # 1% too fast for 990 s: burst + rate * duration pass
        result = gcra.decide(tat, EPOCH + i / 7.07)
        allowed += result.allowed
        tat = result.tat
    assert allowed == pytest.approx(5 + 7.0 * (6_999 / 7.07), abs=2)


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(0.1, 100.0), burst=st.integers(1, 50),
       gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=300))
def test_no_window_ever_passes_more_than_burst_plus_rate_times_its_length(rate, burst, gaps):
    """The GCRA's guarantee, over arbitrary arrival patterns."""
    gcra = Gcra(rate, burst)
    now, tat, passed = EPOCH, 0.0, []
    for gap in gaps:
        now += gap
        result = gcra.decide(tat, now)
        if result.allowed:
            passed.append(now)
        tat = result.tat
    for i, start in enumerate(passed):
        for j in range(i, len(passed)):
            window = passed[j] - start
            assert j - i + 1 <= burst + rate * window + 1e-3, (i, j, window)


def test_cost_counts_as_that_many_requests_and_must_fit_the_burst():
    gcra = Gcra(rate_per_second=1.0, burst=10)
    first = gcra.decide(0.0, EPOCH, cost=4)
    assert first.allowed and first.tat == EPOCH + 4.0
    assert gcra.decide(first.tat, EPOCH, cost=6).allowed
    assert not gcra.decide(first.tat + 6.0, EPOCH, cost=0.5).allowed
    for cost in (0, -1, 11, math.nan):
        with pytest.raises(LimiterError, match="cost"):
            gcra.decide(0.0, EPOCH, cost=cost)


@pytest.mark.parametrize("tat,now", [(0.0, math.nan), (math.inf, EPOCH), (0.0, -math.inf),
                                     (math.nan, EPOCH)])
def test_times_that_are_not_finite_are_refused_with_a_typed_error(tat, now):
    with pytest.raises(LimiterError, match="finite"):
        Gcra(1.0, 1).decide(tat, now)
    with pytest.raises(LimiterError, match="finite"):
        LimitPolicy().decision(0.0, tat, now)
    with pytest.raises(LimiterError, match="finite"):
        LimitPolicy().decision(1.0, tat, now)  # blocked: still checked


def test_time_going_backwards_is_not_an_error_the_account_just_looks_busier():
    gcra = Gcra(rate_per_second=1.0, burst=3)
    tat = gcra.decide(0.0, EPOCH).tat
    back = gcra.decide(tat, EPOCH - 0.5)  # clock skew: half a second earlier
    assert back.allowed and back.tat == EPOCH + 2.0
    assert gcra.decide(back.tat, EPOCH).allowed  # on time, a third request would pass
    refused = gcra.decide(back.tat, EPOCH - 0.5)  # skewed, it looks half a second too busy
    assert not refused.allowed and refused.retry_after == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs,field", [
    ({"rate_per_second": 0}, "rate_per_second"), ({"rate_per_second": -1.0}, "rate_per_second"),
    ({"rate_per_second": math.nan}, "rate_per_second"),
    ({"rate_per_second": math.inf}, "rate_per_second"),
    ({"rate_per_second": 1e-320}, "rate_per_second"),  # 1/rate overflows
    ({"rate_per_second": True}, "rate_per_second"), ({"rate_per_second": "5"}, "rate_per_second"),
    ({"burst": 0}, "burst"), ({"burst": 2.5}, "burst"), ({"burst": True}, "burst"),
])
def test_a_gcra_with_a_bad_rate_or_burst_is_a_config_error_naming_the_field(kwargs, field):
    settings_ = {"rate_per_second": 1.0, "burst": 1, **kwargs}
    with pytest.raises(MonitorConfigError, match=field) as caught:
        Gcra(**settings_)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, MonitorError)
    with pytest.raises(MonitorConfigError, match=field):
        LimitPolicy(**settings_)


@pytest.mark.parametrize("kwargs,field", [
    ({"throttle_risk": -0.1}, "throttle_risk"), ({"throttle_risk": math.nan}, "throttle_risk"),
    ({"block_risk": 1.5}, "block_risk"), ({"throttle_risk": 0.9, "block_risk": 0.9}, "below"),
    ({"throttle_risk": 0.96}, "below"), ({"floor": 0}, "floor"), ({"floor": 1.2}, "floor"),
    ({"block_seconds": 0}, "block_seconds"), ({"block_seconds": math.inf}, "block_seconds"),
])
def test_a_bad_policy_fails_when_it_is_made(kwargs, field):
    with pytest.raises(MonitorConfigError, match=field):
        LimitPolicy(**kwargs)


def test_the_policy_is_frozen_and_its_settings_are_exactly_its_fields():
    import dataclasses

    policy = LimitPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.burst = 3
    assert dataclasses.asdict(policy) == {"rate_per_second": 2.0, "burst": 20,
                                          "throttle_risk": 0.5, "block_risk": 0.95,
                                          "floor": 0.1, "block_seconds": 3600.0}


def test_below_the_throttle_risk_the_policy_is_the_plain_gcra():
    policy = LimitPolicy(rate_per_second=3.0, burst=4)
    gcra = Gcra(3.0, 4)
    tat_p = tat_g = 0.0
    for i in range(200):
        now = EPOCH + (i % 13) * 0.05 + i * 0.2
        risk = (i % 6) / 10  # 0.0 .. 0.5, all at or below throttle_risk
        d = policy.decision(risk, tat_p, now)
        g = gcra.decide(tat_g, now)
        assert (d.decision == ALLOW) == g.allowed and d.tat == g.tat
        assert d.retry_after == g.retry_after
        assert d.decision in (ALLOW, THROTTLE)
        tat_p, tat_g = d.tat, g.tat


def test_the_allowance_shrinks_continuously_from_the_throttle_risk_to_the_floor():
    policy = LimitPolicy(rate_per_second=2.0, burst=20, throttle_risk=0.5, block_risk=0.95,
                         floor=0.1)
    assert policy.factor(0.5) == 1.0
    assert policy.factor(0.5 + 1e-9) == pytest.approx(1.0)  # no cliff at the threshold
    assert policy.factor(0.725) == pytest.approx(0.55)
    assert policy.factor(0.95 - 1e-9) == pytest.approx(0.1)
    assert policy.factor(0.95) == 0.0 and policy.factor(1.0) == 0.0
    factors = [policy.factor(r / 1000) for r in range(1001)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    assert policy.allowance(0.725) == pytest.approx((1.1, 11.0))
    assert policy.allowance(0.2) == (2.0, 20.0)
    assert policy.allowance(0.99) == (0.0, 0.0)


def test_at_elevated_risk_the_burst_and_rate_shrink_and_a_refusal_is_a_throttle():
    policy = LimitPolicy(rate_per_second=2.0, burst=20)
    risk = 0.725  # factor 0.55: 1.1 requests/s, burst 11

    def decide(tat, now):
        d = policy.decision(risk, tat, now)
        return d.decision == ALLOW, d.tat, d.retry_after

    assert burst_at_one_instant(decide) == 11
    tat = 0.0
    for _ in range(11):
        d = policy.decision(risk, tat, EPOCH)
        assert d == LimitDecision(ALLOW, d.tat, 0.0)  # within the allowance: allowed
        tat = d.tat
    throttled = policy.decision(risk, tat, EPOCH)
    assert throttled.decision == THROTTLE and throttled.tat == tat
    assert throttled.retry_after == pytest.approx(1 / 1.1, abs=1e-5)  # epoch-float precision
    assert policy.decision(risk, tat, EPOCH + throttled.retry_after).decision == ALLOW
    # Each request at factor 0.55 was charged 1/0.55 base requests: 11 of them are 10 s of the
    # base allowance's 10 s of backlog, so when the risk falls the account waits one base interval.
    after = policy.decision(0.0, tat, EPOCH)
    assert after.decision == THROTTLE and after.retry_after == pytest.approx(0.5, abs=1e-5)
    assert policy.decision(0.0, tat, EPOCH + 0.5).decision == ALLOW


def test_the_burst_never_shrinks_below_one_request():
    policy = LimitPolicy(rate_per_second=1.0, burst=20, floor=0.01)
    risk = 0.95 - 1e-6
    d = policy.decision(risk, 0.0, EPOCH)
    assert d.decision == ALLOW
    again = policy.decision(risk, d.tat, EPOCH)
    assert again.decision == THROTTLE
    assert again.retry_after == pytest.approx(1 / policy.allowance(risk)[0], rel=1e-3)


@pytest.mark.parametrize("risk", [0.95, 0.99, 1.0])
def test_at_or_above_the_block_risk_every_request_is_blocked_for_block_seconds(risk):
    policy = LimitPolicy(block_seconds=900.0)
    d = policy.decision(risk, 0.0, EPOCH)
    assert d == LimitDecision(BLOCK, 0.0, 900.0)


@pytest.mark.parametrize("risk", [-0.01, 1.01, math.nan, math.inf])
def test_a_risk_outside_zero_to_one_is_a_typed_error(risk):
    with pytest.raises(LimiterError, match="risk") as caught:
        LimitPolicy().decision(risk, 0.0, EPOCH)
    assert isinstance(caught.value, FingerprintError)


def test_over_a_long_run_at_elevated_risk_the_rate_is_the_shrunken_one():
    policy = LimitPolicy(rate_per_second=10.0, burst=10)
    risk = 0.725  # 5.5 requests/s, burst 5.5 -> 5
    tat, allowed = 0.0, 0
    for i in range(100_000):  # 100 requests/s for 1,000 s
        d = policy.decision(risk, tat, EPOCH + i / 100)
        allowed += d.decision == ALLOW
        tat = d.tat
    assert allowed == pytest.approx(5.5 * 1000, abs=6)
