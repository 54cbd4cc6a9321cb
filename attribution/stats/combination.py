"""Combining the p-values of several signals into one.

The signals of an attribution are computed from the same responses, so they are dependent; the
combinations here stay valid under that dependence.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def cauchy_combination(p_values: Sequence[float | None],
                       weights: Sequence[float] | None = None) -> float | None:
    """Combine p-values with the Cauchy combination test (Liu & Xie 2020).

    Valid under arbitrary dependence between the signals in the tail that matters, which is
    the case here: all signals are computed from the same responses. Inputs are capped at 0.99:
    tan((0.5 - p) * pi) runs to minus infinity as p nears 1, so one uninformative signal at
    p = 1 (an exact rank p-value of a zero rate, say) would otherwise veto strong evidence from
    the others; the cap moves the combined p-value only where it is large anyway.
    """
    pairs = [(p, w) for p, w in zip(p_values, weights or [1.0] * len(p_values)) if p is not None]
    if not pairs:
        return None
    ps = np.clip(np.array([p for p, _ in pairs], dtype=float), 1e-300, 0.99)
    w = np.array([w for _, w in pairs], dtype=float)
    w = w / w.sum()
    t = float(np.sum(w * np.tan((0.5 - ps) * np.pi)))
    if t > 1e15:  # tan is huge: use the tail approximation 1/(pi t), exact to double precision
        return float(1.0 / (math.pi * t))
    return float(min(1.0, max(0.0, 0.5 - math.atan(t) / math.pi)))
