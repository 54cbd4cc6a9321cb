"""The pure statistics of attribution: placing a statistic among reference models
(calibration), combining dependent p-values (combination) and the anytime-valid sequential test
of a probe run (sequential). Numbers in, numbers out: no index, no files."""

from attribution.stats.calibration import (MIN_REFERENCES, Calibrated, calibrate, derived_fraction,
                                           empirical_calibration, inverse_logit_share,
                                           logit_share, rank_floor_sentence, rank_p_floor,
                                           rank_p_value, share_sd_floor)
from attribution.stats.combination import cauchy_combination
from attribution.stats.sequential import (DERIVED, NOT_DERIVED, BettingEProcess, SequentialConfig,
                                          SequentialTest, Thresholds, crossing_times, run_sequence,
                                          thresholds)

__all__ = [
    "DERIVED", "MIN_REFERENCES", "NOT_DERIVED", "BettingEProcess", "Calibrated", "SequentialConfig",
    "SequentialTest", "Thresholds", "calibrate", "cauchy_combination",
    "crossing_times", "derived_fraction", "empirical_calibration", "inverse_logit_share",
    "logit_share", "rank_floor_sentence", "rank_p_floor", "rank_p_value", "share_sd_floor",
    "run_sequence", "thresholds",
]
