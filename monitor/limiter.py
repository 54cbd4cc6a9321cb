"""Risk-adaptive rate limiting: a GCRA per account whose allowance shrinks as the account's
extraction risk grows (allow -> throttle with ``retry_after`` -> block).

Why GCRA: the generic cell rate algorithm keeps ONE number per key, the theoretical arrival time
(``tat``, float seconds on the caller's clock), and decides a request with a comparison and an
addition. One float per account is what the state store persists and what fits the monitor's
memory goal (<= 20 KB per active account); it works on the times a request log carries, not only
on the wall clock (``fingerprint monitor scan`` replays logged timestamps); and the rate can
change between two requests of the same account (the risk moves), which a token bucket that
stores a token count at one fixed rate cannot express without a conversion.

The algorithm, with ``T = 1 / rate`` and ``capacity = burst * T`` seconds of backlog:
``new_tat = max(tat, now) + cost * T``; the request passes if ``new_tat - now <= capacity``
(then ``tat = new_tat``), else it is refused, ``tat`` stays, and ``retry_after = new_tat - now -
capacity``: the wait after which the same request would pass. From idle, ``burst`` requests pass
at one instant and then one every ``T`` seconds. Times within a microsecond count as on time
(epoch floats near 1.7e9 are only exact to about 2e-7 s). Times that go backwards (skewed clocks,
out-of-order logs) are not an error: the account simply looks busier by the skew.

The policy (``LimitPolicy``): below ``throttle_risk`` an account gets the base rate and burst.
Between ``throttle_risk`` and ``block_risk`` both are scaled by a factor that falls linearly
from 1 to ``floor`` (a continuous curve, so risk that wobbles around the threshold does not
halve the allowance in one step; the burst never drops below one request). A request passed at
factor ``f`` adds ``T / f`` seconds to ``tat``: it is charged as ``1 / f`` base requests, so what
an account took while risky is still paid off after its risk falls. At or above
``block_risk`` every request is refused with ``retry_after = block_seconds``. A refusal because
the (possibly shrunken) allowance is used up is "throttle"; a request within the allowance is
"allow" whatever the risk.

Why not the ``limits`` package: measured with ``benchmarks/monitor_limiter.py`` on 2026-11-27
(one core of this 2-core machine, another helper's jobs on the other; 10,000 accounts, keys in
random order, best of 3 runs of 200,000 decisions; limits 5.8.0; bytes per account once every
account has used its whole burst of 20, the key string included):

| limiter | decisions per second | microseconds per decision | bytes per account |
|---|---|---|---|
| ``Gcra.decide`` (this module) | 458,808 | 2.18 | 103 |
| ``LimitPolicy.decision``, risk 0.3 (base allowance) | 331,365 | 3.02 | 103 |
| ``LimitPolicy.decision``, risk 0.7 (shrunken) | 324,167 | 3.08 | 103 |
| limits ``MovingWindowRateLimiter``, ``MemoryStorage`` | 36,782 | 27.19 | 1,614 |
| limits ``SlidingWindowCounterRateLimiter``, ``MemoryStorage`` | 61,077 | 16.37 | 707 |
| limits ``FixedWindowRateLimiter``, ``MemoryStorage`` | 136,772 | 7.31 | 262 |

The policy is 9x faster than the limits strategy closest to it (the moving window: no burst at
a window edge) and 2.4x faster than its crudest (fixed windows, which admit twice the limit
across a window edge), in 1/16 to 1/2.5 of the memory; at 3 microseconds it is under 2% of the
monitor's budget of 200 microseconds per request (5,000 requests per second per core).

Beyond speed, ``limits`` does not fit: it reads the wall clock itself (a log cannot be
replayed), its rates are whole requests per whole second/minute/..., it has no GCRA, and its
in-memory state (a list of hit times per key for the moving window, a lock per key, a timer
thread) is neither one number per account nor something the state store could persist. So the
monitor does not depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from monitor.errors import LimiterError, MonitorConfigError

ALLOW = "allow"
THROTTLE = "throttle"
BLOCK = "block"
DECISIONS = (ALLOW, THROTTLE, BLOCK)
ON_TIME = 1e-6  # seconds; float slack, see the module docstring


class GcraResult(NamedTuple):
    """``allowed``; the account's new ``tat`` (unchanged when refused); ``retry_after`` in
    seconds (0.0 when allowed, > 0 when refused)."""

    allowed: bool
    tat: float
    retry_after: float


class LimitDecision(NamedTuple):
    """``decision`` ("allow", "throttle" or "block"), the account's new ``tat``, and
    ``retry_after`` in seconds (0.0 when allowed)."""

    decision: str
    tat: float
    retry_after: float


def _gcra(tat: float, now: float, increment: float, capacity: float) -> GcraResult:
    """One GCRA step with the emission increment and capacity already in seconds."""
    if not math.isfinite(tat + now):
        raise LimiterError(f"times must be finite seconds, got tat={tat!r}, now={now!r}")
    new_tat = (tat if tat > now else now) + increment
    late = new_tat - now - capacity
    if late <= ON_TIME:
        return GcraResult(True, new_tat, 0.0)
    return GcraResult(False, tat, late)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_rate(name: str, rate: object) -> None:
    if not (_is_number(rate) and 0 < rate < math.inf and math.isfinite(1.0 / rate)):
        raise MonitorConfigError(f"{name} must be a finite number of requests per second > 0, "
                                 f"got {rate!r}")


def _check_burst(name: str, burst: object) -> None:
    if not (isinstance(burst, int) and not isinstance(burst, bool) and burst >= 1):
        raise MonitorConfigError(f"{name} must be a whole number of requests >= 1, got {burst!r}")


@dataclass(frozen=True)
class Gcra:
    """A GCRA of ``rate_per_second`` sustained and ``burst`` requests at once from idle. Holds no
    per-key state: the caller keeps each key's ``tat`` (0.0 for a key never seen). ``interval``
    (seconds per request) and ``capacity`` (seconds of backlog) are derived, not fields, so that
    ``dataclasses.asdict`` gives exactly the settings."""

    rate_per_second: float
    burst: int

    def __post_init__(self) -> None:
        _check_rate("rate_per_second", self.rate_per_second)
        _check_burst("burst", self.burst)
        object.__setattr__(self, "interval", 1.0 / self.rate_per_second)
        object.__setattr__(self, "capacity", self.burst / self.rate_per_second)

    def decide(self, tat: float, now: float, cost: float = 1.0) -> GcraResult:
        """Decide one request of ``cost`` requests' worth (0 < cost <= burst: a larger cost
        could never pass, which is the caller's mistake, not a refusal)."""
        if not 0.0 < cost <= self.burst:
            raise LimiterError(f"cost must be in (0, burst={self.burst}], got {cost!r}")
        return _gcra(tat, now, cost * self.interval, self.capacity)


@dataclass(frozen=True)
class LimitPolicy:
    """The risk-adaptive allowance of one account (or one coordinated group): base
    ``rate_per_second`` and ``burst``; from ``throttle_risk`` the allowance shrinks linearly
    towards ``floor`` times the base; from ``block_risk`` on, requests are blocked for
    ``block_seconds``. Validated on construction, so a bad policy fails when it is loaded, not at
    the first risky request."""

    rate_per_second: float = 2.0
    burst: int = 20
    throttle_risk: float = 0.5
    block_risk: float = 0.95
    floor: float = 0.1
    block_seconds: float = 3600.0

    def __post_init__(self) -> None:
        _check_rate("rate_per_second", self.rate_per_second)
        _check_burst("burst", self.burst)
        for name in ("throttle_risk", "block_risk"):
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 <= value <= 1.0):
                raise MonitorConfigError(f"{name} must be a number in [0, 1], got {value!r}")
        if not self.throttle_risk < self.block_risk:
            raise MonitorConfigError(f"throttle_risk ({self.throttle_risk}) must be below "
                                     f"block_risk ({self.block_risk})")
        if not (_is_number(self.floor) and 0.0 < self.floor <= 1.0):
            raise MonitorConfigError(f"floor must be a fraction of the base allowance in (0, 1], "
                                     f"got {self.floor!r}")
        if not (_is_number(self.block_seconds) and 0.0 < self.block_seconds < math.inf):
            raise MonitorConfigError(f"block_seconds must be a finite number of seconds > 0, "
                                     f"got {self.block_seconds!r}")
        object.__setattr__(self, "_interval", 1.0 / self.rate_per_second)
        object.__setattr__(self, "_slope",
                           (1.0 - self.floor) / (self.block_risk - self.throttle_risk))

    def factor(self, risk: float) -> float:
        """The share of the base allowance an account at ``risk`` gets (0.0 when blocked)."""
        if not 0.0 <= risk <= 1.0:
            raise LimiterError(f"risk must be a number in [0, 1], got {risk!r}")
        if risk >= self.block_risk:
            return 0.0
        if risk <= self.throttle_risk:
            return 1.0
        return 1.0 - self._slope * (risk - self.throttle_risk)

    def allowance(self, risk: float) -> tuple[float, float]:
        """(requests per second, burst in requests) at ``risk``: what a reason can quote."""
        f = self.factor(risk)
        return self.rate_per_second * f, (max(1.0, self.burst * f) if f else 0.0)

    def decision(self, risk: float, tat: float, now: float) -> LimitDecision:
        """Decide one request of an account at ``risk`` whose theoretical arrival time is
        ``tat`` (0.0 for an account never seen), at time ``now``."""
        f = self.factor(risk)
        if f == 0.0:
            if not math.isfinite(tat + now):
                raise LimiterError(f"times must be finite seconds, got tat={tat!r}, now={now!r}")
            return LimitDecision(BLOCK, tat, self.block_seconds)
        increment = self._interval / f
        burst = self.burst * f
        result = _gcra(tat, now, increment, (burst if burst > 1.0 else 1.0) * increment)
        if result[0]:
            return LimitDecision(ALLOW, result[1], 0.0)
        return LimitDecision(THROTTLE, result[1], result[2])
