"""Marking the responses served to given accounts: what ``monitor export-flagged`` asks of the
index. Under the writer lock: look the accounts' rows up in the served metadata, stage the marks
file with them added, commit it with one manifest swap (index.marks says how it is stored and
why a killed write leaves the index as it was)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from index.marks import (AccountMark, check_label, commit_marks, remove_unlisted_marks,
                         stage_marks)
from index.manifest import read_manifest
from index.store import open_index
from index.writer import WriterLock


@dataclass(frozen=True)
class MarkResult:
    """What one marking did, per account: rows now carrying the label, and rows it added."""

    label: str
    rows: dict[str, int]  # account -> its served rows marked with the label (after this write)
    added: dict[str, int]  # account -> of those, the rows this write marked (0 on a rerun)
    missing: list[str]  # accounts with no served response in the index, in the order given
    committed: bool  # False: nothing to add (a rerun, or no account in the index)

    @property
    def rows_added(self) -> int:
        return sum(self.added.values())


def mark_accounts(path: str | os.PathLike[str], label: str,
                  accounts: Iterable[AccountMark]) -> MarkResult:
    """Mark with ``label`` every served response of ``accounts`` (by the ``account`` stored with
    each row). Idempotent: marking again adds nothing and commits nothing."""
    check_label(label)
    marks = list(accounts)
    root = Path(path)
    read_manifest(root)  # not an index: said as such, before a lock file is made
    with WriterLock(root):
        index = open_index(root)
        try:
            remove_unlisted_marks(root, index.manifest)
            found = index.rows_for_accounts(m.account for m in marks)
            before = index.marked_accounts(label)
            staged = stage_marks(root, index.manifest, label, found,
                                 [m for m in marks if m.account in found])
            if staged is not None:
                try:
                    commit_marks(root, index.manifest, staged)
                except BaseException:
                    staged.discard()
                    raise
        finally:
            index.close()
    rows = {m.account: len(found[m.account]) for m in marks if m.account in found}
    added = {a: n - before.get(a, 0) for a, n in rows.items()}
    missing = [m.account for m in marks if m.account not in found]
    return MarkResult(label, rows, added, missing, staged is not None)
