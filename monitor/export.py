"""``monitor export-flagged``: the flagged accounts' served responses marked in the fingerprint
index, so that attribution can later ask whether a suspect learned from what a campaign
harvested, and sharing can send those fingerprints to partners.

The risk file is the scan's (one JSON object per line: ``account``, ``risk``, ``flagged``, ...).
Selected are the flagged accounts, or with ``min_risk`` every account whose risk is at least
that (flagged accounts have risk 1, so a threshold below 1 adds unflagged accounts of elevated
risk). The whole file is checked before the index is touched: a line that is not a JSON object,
lacks a field or has one of the wrong type, or repeats an account, is an ``InputError`` naming
file, line and field. The marks are written by ``index.mark_accounts`` (stage + commit under the
writer lock: all or nothing, and a rerun adds nothing); each marked row carries the label
(``monitor-flagged`` unless told otherwise) and each account its risk and the risk file's name.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from fingerprint.errors import InputError
from fingerprint.io import BLANK, decode_json_line, open_input, source_name
from monitor.errors import ExportError

if TYPE_CHECKING:  # the index (and FAISS) is imported when an export runs, not with the monitor
    from index import AccountMark, MarkResult

DEFAULT_LABEL = "monitor-flagged"


@dataclass(frozen=True)
class ExportResult:
    """What an export selected and marked."""

    risk_file: str
    index: str
    label: str
    selected: list["AccountMark"]  # in the risk file's order (highest risk first)
    marks: "MarkResult"

    def to_dict(self) -> dict[str, Any]:
        m = self.marks
        accounts = [{"account": a.account, "risk": a.risk, "in_index": a.account in m.rows,
                     "rows": m.rows.get(a.account, 0), "added": m.added.get(a.account, 0)}
                    for a in self.selected]
        return {"risk_file": self.risk_file, "index": self.index, "label": self.label,
                "selected": len(self.selected), "in_index": len(m.rows),
                "not_in_index": len(m.missing), "rows_marked": sum(m.rows.values()),
                "rows_added": m.rows_added, "committed": m.committed, "accounts": accounts}


def _field(row: dict, name: str, kinds: tuple[type, ...], what: str, source: str,
           line: int) -> Any:
    if name not in row:
        raise InputError(source, line, f'field "{name}" is missing (is this a risk file from '
                                       f"'fingerprint monitor scan'?)", field=name)
    value = row[name]
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        raise InputError(source, line, f'field "{name}" must be {what}, got '
                                       f"{type(value).__name__} {value!r:.40}", field=name)
    return value


@dataclass(frozen=True)
class RiskRow:
    """The fields of one row of a scan's risk file that other tools read."""

    account: str
    risk: float
    flagged: bool
    cluster: str | None  # the coordinated group's id, if any
    source: str
    line: int


def read_risk_rows(path: str | os.PathLike[str]) -> Iterator[RiskRow]:
    """Every row of a risk file (``fingerprint monitor scan --out``), in file order, each line
    checked (an account given twice is an error naming both lines)."""
    source = source_name(path)
    seen: dict[str, int] = {}
    with open_input(path, source) as stream:
        for number, raw in enumerate(stream, 1):
            row = decode_json_line(raw, source, number)
            if row is BLANK:
                continue
            if not isinstance(row, dict):
                raise InputError(source, number, f"expected a JSON object (one account's row), "
                                                 f"got {type(row).__name__}")
            account = _field(row, "account", (str,), "a non-empty string", source, number)
            if not account:
                raise InputError(source, number, 'field "account" is empty', field="account")
            risk = _field(row, "risk", (int, float), "a number in [0, 1]", source, number)
            if not (math.isfinite(risk) and 0 <= risk <= 1):
                raise InputError(source, number, f'field "risk" must be a number in [0, 1], '
                                                 f"got {risk!r}", field="risk")
            flagged = _field(row, "flagged", (bool,), "true or false", source, number)
            cluster = row.get("cluster")
            if cluster is not None and (not isinstance(cluster, str) or not cluster):
                raise InputError(source, number, f'field "cluster" must be a group id or null, '
                                                 f"got {cluster!r:.40}", field="cluster")
            if account in seen:
                raise InputError(source, number, f"account {account!r} already has a row on "
                                                 f"line {seen[account]}", field="account")
            seen[account] = number
            yield RiskRow(account, float(risk), flagged, cluster, source, number)


def read_risk_file(path: str | os.PathLike[str],
                   min_risk: float | None = None) -> list["AccountMark"]:
    """The accounts to mark, each with its risk, in file order; every line checked."""
    from index import AccountMark

    return [AccountMark(row.account, row.risk, row.source) for row in read_risk_rows(path)
            if (row.flagged if min_risk is None else row.risk >= min_risk)]


def export_flagged(risk_file: str | os.PathLike[str], index: str | os.PathLike[str], *,
                   min_risk: float | None = None, label: str = DEFAULT_LABEL) -> ExportResult:
    """Mark in ``index`` the served responses of the risk file's flagged accounts (or of those
    at ``min_risk`` or above); the module docstring gives the rules."""
    if min_risk is not None and (isinstance(min_risk, bool) or
                                 not isinstance(min_risk, (int, float)) or
                                 not 0 <= min_risk <= 1):
        raise ExportError(f"min_risk must be a number in [0, 1], got {min_risk!r}")
    from index import mark_accounts

    selected = read_risk_file(risk_file, min_risk)
    marks = mark_accounts(index, label, selected)
    return ExportResult(source_name(risk_file), str(index), label, selected, marks)
