"""An account's volume and rhythm: requests per hour, the busiest minute, burstiness, the
spread over the hours of the day, the share of requests asking for reasoning
(monitor.elicitation), and how its prompts spread (coverage growth, PRADA's nearest-neighbour
distance), in a fixed 668 bytes per account.

These figures are shown with every account, and they do not enter its test. Volume and rate
alone are no evidence of extraction: a busy API customer relaying its users' conversations is
benign and as fast as a campaign, and a careful campaign paces itself like such a customer. What
the figures are for is reading a flag: a campaign that fires bursts of several requests a second
around the clock looks different from one person's afternoon, and a reviewer should see both.

- ``requests_per_hour``: requests over the span from the first to the last (null under a
  minute);
- ``peak_per_minute``: the most requests in one calendar minute (UTC);
- ``burstiness``: the coefficient of variation of the gaps between consecutive requests (1 for
  requests at random times, well above 1 for bursts separated by pauses, below 1 for a steady
  pace); null with fewer than three requests;
- ``hours_active``: the UTC hours of the day that hold at least 2% of the requests (a person
  sleeps: 24 means around the clock);
- ``elicitation``: the share of requests that ask for reasoning steps, a chain of thought or a
  fixed output format (monitor.elicitation);
- ``coverage``: the share of requests whose prompt lands in a cell of the embedding space the
  account had not visited (Kesarwani et al. 2018's coverage growth): ``CELL_BITS`` signs of the
  prompt's random Fourier features cut the space into 4,096 cells. A harvest that walks a task
  list spreads fast, a person returns to a topic; on the simulated traffic the two overlap
  (benchmarks/README.md, monitor_bench.py: not a test);
- ``novelty``: the mean distance (1 - estimated word 3-gram Jaccard) from each prompt to the
  nearest of the account's recent prompts (the ones ``reuse`` compares with): PRADA's statistic
  (Juuti et al. 2019), in MinHash space over a window instead of embeddings over the whole
  history; null before a second request. Templated queries sit near each other (low), a person's
  new questions far (high). PRADA's own test, on embeddings, runs as a baseline in
  benchmarks/monitor_baselines.py.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_HEAD = struct.Struct("<qIIdddIIdI")  # minute, its count, peak, previous time, gap sum, gap sq
# sum, requests with an elicitation marker, requests in a new cell, novelty sum and count
CELL_BITS = 12
_CELL_WEIGHTS = 1 << np.arange(CELL_BITS)
SIZE = _HEAD.size + 24 * 4 + (1 << CELL_BITS) // 8
HOUR_SHARE = 0.02


@dataclass
class Activity:
    """Running counts of one account's request times (in the order they are scored)."""

    minute: int = -1
    minute_count: int = 0
    peak: int = 0
    previous: float = math.nan
    gap_sum: float = 0.0
    gap_squares: float = 0.0
    elicited: int = 0  # requests with an elicitation marker (counted by the scorer)
    new_cells: int = 0  # requests whose prompt landed in a cell not visited before
    novelty_sum: float = 0.0  # distances to the nearest recent prompt, summed
    novelty_count: int = 0
    hours: np.ndarray = field(default_factory=lambda: np.zeros(24, dtype=np.uint32))
    cells: np.ndarray = field(  # bitmap of the cells visited
        default_factory=lambda: np.zeros((1 << CELL_BITS) // 8, dtype=np.uint8))

    def visit(self, rff_row: np.ndarray) -> None:
        """Count the cell of the embedding space a prompt's features fall in (coverage)."""
        cell = int(_CELL_WEIGHTS @ (rff_row[:CELL_BITS] > 0))
        byte, bit = cell >> 3, 1 << (cell & 7)
        if not self.cells[byte] & bit:
            self.cells[byte] |= bit
            self.new_cells += 1

    def near(self, distance: float) -> None:
        """Count a prompt's distance to the nearest of the account's recent prompts."""
        self.novelty_sum += distance
        self.novelty_count += 1

    def observe(self, timestamp: float) -> None:
        if not math.isfinite(timestamp):
            return
        minute = int(timestamp // 60)
        self.minute_count = self.minute_count + 1 if minute == self.minute else 1
        self.minute = minute
        self.peak = max(self.peak, self.minute_count)
        if not math.isnan(self.previous):
            gap = max(0.0, timestamp - self.previous)  # a late request counts as no gap
            self.gap_sum += gap
            self.gap_squares += gap * gap
        self.previous = timestamp
        self.hours[int(timestamp // 3600) % 24] += 1

    def summary(self, requests: int, first_seen: float, last_seen: float) -> dict[str, Any]:
        span = last_seen - first_seen
        gaps = requests - 1
        burstiness = None
        if gaps >= 2 and self.gap_sum > 0:
            mean = self.gap_sum / gaps
            variance = max(0.0, self.gap_squares / gaps - mean * mean)
            burstiness = round(math.sqrt(variance) / mean, 3)
        hours = self.hours.tolist()  # Python ints: 24 numbers cost less than numpy's calls
        total = sum(hours)
        least = HOUR_SHARE * total
        return {"requests_per_hour": round(requests / (span / 3600), 2) if span >= 60 else None,
                "peak_per_minute": self.peak, "burstiness": burstiness,
                "hours_active": sum(h >= least for h in hours) if total else 0,
                "elicitation": round(self.elicited / requests, 3) if requests else None,
                "coverage": round(self.new_cells / requests, 3) if requests else None,
                "novelty": round(self.novelty_sum / self.novelty_count, 3)
                if self.novelty_count else None}

    def to_bytes(self) -> bytes:
        return b"".join((_HEAD.pack(self.minute, self.minute_count, self.peak, self.previous,
                                     self.gap_sum, self.gap_squares, self.elicited,
                                     self.new_cells, self.novelty_sum, self.novelty_count),
                         self.hours.astype("<u4").tobytes(), self.cells.tobytes()))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Activity":
        (minute, count, peak, previous, gap_sum, squares, elicited, new_cells, novelty,
         novelty_count) = _HEAD.unpack_from(data)
        hours = np.frombuffer(data, "<u4", 24, _HEAD.size).astype(np.uint32)
        cells = np.frombuffer(data, np.uint8, (1 << CELL_BITS) // 8,
                              _HEAD.size + 24 * 4).copy()
        return cls(minute, count, peak, previous, gap_sum, squares, elicited, new_cells,
                   novelty, novelty_count, hours, cells)
