"""Limits per coordinated group, online: one allowance shared by every member of a group.

A hydra spreads one campaign over many accounts, each under a per-account limit. ``monitor
scan`` finds such groups (monitor.groups) and writes each member's ``cluster`` and risk to its
risk file; the online monitor, given that file, limits a group's members together as well: one
GCRA allowance per group, at the group's risk (the largest risk among its rows: a member flagged
with its group carries the group's), shrinking as that risk grows, exactly as an account's own
allowance does (monitor.limiter's policy). A request is allowed only if both its account's and
its group's allowances allow it; a refused request advances neither, and the answer is the
stricter refusal with the longer ``retry_after``.

Groups come from a scan, not from the online traffic: the online monitor scores each account
on its own, and linking accounts needs the whole population's templates. So a group is limited
online from the first request after the monitor is given the scan's file; a new hydra is found
by the next scan.

Each group's theoretical arrival time is kept in ``groups.json`` in the state directory, written
atomically at every flush and on close (format, then the times by group id); a file that cannot
be read is a StateCorruptedError naming it, as for the accounts' state.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from fingerprint.atomic import atomic_write_bytes
from monitor.errors import MonitorConfigError, StateCorruptedError, StateWriteError
from monitor.export import read_risk_rows

GROUPS_FILE = "groups.json"
GROUPS_FORMAT = 1


@dataclass(frozen=True)
class GroupLimits:
    """Which group each account belongs to, and each group's risk."""

    member_of: Mapping[str, str] = field(default_factory=dict)  # account -> group id
    risk: Mapping[str, float] = field(default_factory=dict)  # group id -> risk in [0, 1]

    def __post_init__(self) -> None:
        missing = sorted(set(self.member_of.values()) - set(self.risk))
        if missing:
            raise MonitorConfigError(f"groups without a risk: {missing[:5]}")
        bad = {g: r for g, r in self.risk.items() if isinstance(r, bool)
               or not isinstance(r, (int, float)) or not 0 <= r <= 1}
        if bad:
            raise MonitorConfigError(f"a group's risk must be a number in [0, 1], got "
                                     f"{dict(list(bad.items())[:5])}")

    @classmethod
    def from_risk_file(cls, path: str | os.PathLike[str]) -> "GroupLimits":
        """The groups of a scan's risk file (``monitor scan --out``): every account with a
        ``cluster``, each group at the largest risk among its rows."""
        member_of: dict[str, str] = {}
        risk: dict[str, float] = {}
        for row in read_risk_rows(path):
            if row.cluster is not None:
                member_of[row.account] = row.cluster
                risk[row.cluster] = max(risk.get(row.cluster, 0.0), row.risk)
        return cls(member_of, risk)

    def group_of(self, account: str) -> str | None:
        return self.member_of.get(account)


def load_group_times(directory: str | os.PathLike[str]) -> dict[str, float]:
    """The groups' theoretical arrival times saved in a state directory (none if never saved)."""
    path = Path(directory) / GROUPS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateCorruptedError(f"{path}: not readable as the groups' limiter state "
                                  f"({exc})") from None
    times = data.get("tat") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != GROUPS_FORMAT or \
            not isinstance(times, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in times.values()):
        raise StateCorruptedError(f"{path}: not the groups' limiter state of format "
                                  f"{GROUPS_FORMAT} (a JSON object with finite times)")
    return {str(k): float(v) for k, v in times.items()}


def save_group_times(directory: str | os.PathLike[str], times: Mapping[str, float]) -> None:
    """Write the groups' theoretical arrival times atomically (the old file stays whole if
    writing fails: a StateWriteError)."""
    body = json.dumps({"format": GROUPS_FORMAT, "tat": dict(sorted(times.items()))},
                      allow_nan=False)
    path = Path(directory) / GROUPS_FILE
    try:
        atomic_write_bytes(path, body.encode("utf-8"))
    except OSError as exc:
        raise StateWriteError(f"{path}: cannot write the groups' limiter state: "
                              f"{exc.strerror or exc}") from exc
