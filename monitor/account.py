"""What the online monitor keeps per account, and the fingerprint its state directory is made for.

An account's entry is the detector's ``AccountState`` (opaque here: only its ``to_bytes`` /
``from_bytes`` are used, so the detector can change its signals without this module knowing)
plus what the online decision needs on top: the limiter's theoretical arrival time ``tat``, the
account's latest request time (for clock skew), counters of requests and refusals, and a digest
of the last refused prompt (to recognise a client's retry). On disk it is one blob in the
``StateStore``: a fixed little-endian header, then the detector's bytes. No pickle.

The state directory's config fingerprint covers everything that gives the stored numbers their
meaning: the baseline's configuration, median and tested checkpoints, the sha256 of each of its
arrays (the same digests as its manifest), the detector's state format and this record's format.
Another baseline, even one refitted with the same configuration, is another fingerprint: its
nulls differ, so a risk accrued under one is not a risk under the other. The limit policy is
not part of it: ``tat`` is a time in seconds whatever the rate, so an operator may change the
policy between restarts.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.baseline import ARRAYS, Baseline
from monitor.config import MonitorConfig
from monitor.detector import STATE_FORMAT, AccountState
from monitor.errors import StateEntryError

RECORD_MAGIC = b"FPMO"
RECORD_VERSION = 1
# magic, version, tat, last time, requests, throttled, blocked, retries, last refused digest
RECORD = struct.Struct("<4sH2xddQQQQ8s")
NO_DIGEST = bytes(8)


def prompt_digest(prompt: str) -> bytes:
    """8 bytes that tell one prompt from another (a retry is the same text again)."""
    return hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest()


@dataclass
class AccountEntry:
    """One account's online state (mutable; the monitor holds it under its lock)."""

    state: AccountState
    tat: float = 0.0  # the limiter's theoretical arrival time (0.0: never limited)
    last: float = -math.inf  # the latest request time the limiter has seen for the account
    requests: int = 0  # every request checked, refused ones and retries included
    throttled: int = 0
    blocked: int = 0
    retries: int = 0  # requests that repeated the last refused prompt (not scored again)
    refused: bytes = NO_DIGEST  # digest of the last refused prompt, until one is allowed

    def to_bytes(self) -> bytes:
        return RECORD.pack(RECORD_MAGIC, RECORD_VERSION, self.tat, self.last, self.requests,
                           self.throttled, self.blocked, self.retries, self.refused) + \
            self.state.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, account: str, config: MonitorConfig,
                   dim: int) -> "AccountEntry":
        if len(data) < RECORD.size or data[:4] != RECORD_MAGIC:
            raise StateEntryError(f"account {account!r}: stored state is not an online monitor "
                                  f"record ({len(data)} bytes)")
        (_, version, tat, last, requests, throttled, blocked, retries,
         refused) = RECORD.unpack_from(data)
        if version != RECORD_VERSION:
            raise StateEntryError(f"account {account!r}: expected online record version "
                                  f"{RECORD_VERSION}, found {version}")
        try:
            state = AccountState.from_bytes(data[RECORD.size:], config, dim)
        except StateEntryError as exc:
            raise StateEntryError(f"account {account!r}: {exc}") from None
        return cls(state, tat, last, requests, throttled, blocked, retries, refused)


def state_fingerprint(baseline: Baseline) -> str:
    """The config fingerprint of the state directories this baseline's monitor may use (the
    module docstring says what it covers)."""
    digests = {}
    for name in ARRAYS:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(getattr(baseline, name)), allow_pickle=False)
        digests[name] = hashlib.sha256(buffer.getvalue()).hexdigest()
    described: dict[str, Any] = {
        "online_record": RECORD_VERSION, "detector_state": STATE_FORMAT,
        "config": baseline.config.to_dict(), "median": baseline.median,
        "tested": list(baseline.tested), "sha256": digests}
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return "online-baseline-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
