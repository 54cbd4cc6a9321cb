"""Marks: labels on served rows, such as "served to an account the extraction monitor flagged".

Attribution can then ask whether a suspect learned from what a harvesting campaign collected
(only the marked rows), and sharing can send those fingerprints to partners. A mark is a
(label, row) pair; with it, per label, the accounts it was made for (their risk, where the
decision came from) so that a reader can see why a row is marked.

Storage: one small SQLite file, ``marks/marks-<id>.sqlite``, listed in the manifest (name, size,
sha256, number of marks) like every segment file. It is never changed in place: a write copies
the current file to a hidden staged name, adds the new marks there (``INSERT OR IGNORE``, so a
rerun adds nothing), flushes it, renames it into place and swaps the manifest (index.staging's
protocol, under the writer lock). Killed at any point before the manifest swap, the index is as
before (the staged file is debris, removed by the next marks write); after it, the new file is
complete. A write that adds nothing commits nothing. The file a replaced manifest listed stays
until the next marks write, so a reader holding the older manifest can still read it meanwhile.
An index without marks (every index written before marks existed) has no ``marks`` entry and
no marked rows. verify (index.verify) checks the file like a segment's: size, sha256, table,
count, and that every marked row is a served row.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from fingerprint.atomic import fsync_path
from index.errors import IndexCorruptedError, IndexStoreError, IndexWriteError
from index.files import sha256_file
from index.manifest import Manifest, MarksEntry, now_iso, write_manifest

MARKS_DIR = "marks"
STAGED_PREFIX = ".tmp-"
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS marks (
    label TEXT NOT NULL, row INTEGER NOT NULL, account TEXT, PRIMARY KEY (label, row));
CREATE TABLE IF NOT EXISTS accounts (
    label TEXT NOT NULL, account TEXT NOT NULL, risk REAL, source TEXT, marked_at TEXT,
    PRIMARY KEY (label, account));
"""


@dataclass(frozen=True)
class AccountMark:
    """Why an account's rows are marked: its risk and the file the decision came from."""

    account: str
    risk: float | None = None
    source: str | None = None


def check_label(label: str) -> str:
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise IndexStoreError(f"mark label {label!r}: use 1 to 64 letters, digits, '.', '_' or "
                              f"'-', starting with a letter or digit")
    return label


class MarksReader:
    """Read side of the marks file: size and sha256 checked on open (the file is small)."""

    def __init__(self, root: Path, entry: MarksEntry):
        self.path = root / MARKS_DIR / entry.name
        if not self.path.is_file():
            raise IndexCorruptedError(f"{self.path}: marks file missing (the manifest lists it)")
        size = self.path.stat().st_size
        if size != entry.bytes:
            raise IndexCorruptedError(f"{self.path}: {size} bytes, the manifest lists "
                                      f"{entry.bytes}")
        actual = sha256_file(self.path)
        if actual != entry.sha256:
            raise IndexCorruptedError(f"{self.path}: checksum mismatch (expected sha256 "
                                      f"{entry.sha256}, actual {actual})")
        uri = self.path.resolve().as_uri() + "?mode=ro&immutable=1"
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def rows(self, label: str) -> list[int]:
        return [int(r) for (r,) in self._query("SELECT row FROM marks WHERE label = ? "
                                               "ORDER BY row", (label,))]

    def labels(self) -> dict[str, int]:
        return {str(label): int(n) for label, n in
                self._query("SELECT label, COUNT(*) FROM marks GROUP BY label ORDER BY label")}

    def rows_by_account(self, label: str) -> dict[str, int]:
        return {str(a): int(n) for a, n in self._query(
            "SELECT account, COUNT(*) FROM marks WHERE label = ? GROUP BY account", (label,))}

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM marks")[0][0])

    def max_row(self) -> int | None:
        value = self._query("SELECT MAX(row) FROM marks")[0][0]
        return None if value is None else int(value)

    def close(self) -> None:
        self.conn.close()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptedError(f"{self.path}: not a readable marks table ({exc})") from None


@dataclass(frozen=True)
class StagedMarks:
    """A complete new marks file under a hidden name, not yet part of the index."""

    path: Path
    entry: MarksEntry
    added: int  # marks the write adds

    @property
    def final_path(self) -> Path:
        return self.path.parent / self.entry.name

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def stage_marks(root: Path, manifest: Manifest, label: str,
                account_rows: Mapping[str, Iterable[int]],
                accounts: Iterable[AccountMark]) -> StagedMarks | None:
    """The current marks plus ``label`` on every row of ``account_rows`` (account -> its served
    rows), and the accounts' reasons, as a staged file; None when that adds or changes nothing."""
    check_label(label)
    accounts = list(accounts)
    if not account_rows and not accounts:
        return None
    directory = root / MARKS_DIR
    directory.mkdir(exist_ok=True)
    name = f"marks-{uuid.uuid4().hex[:16]}.sqlite"
    staged = directory / f"{STAGED_PREFIX}{name}"
    if manifest.marks is not None:
        MarksReader(root, manifest.marks).close()  # the copy starts from checked bytes
        shutil.copyfile(directory / manifest.marks.name, staged)
    try:
        changes, total = _write(staged, label, account_rows, accounts)
        if changes == 0:
            staged.unlink()
            return None
        with open(staged, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    entry = MarksEntry(name, staged.stat().st_size, sha256_file(staged), total)
    return StagedMarks(staged, entry, total - (manifest.marks.marks if manifest.marks else 0))


def _write(path: Path, label: str, account_rows: Mapping[str, Iterable[int]],
           accounts: Iterable[AccountMark]) -> tuple[int, int]:
    """Add the marks and account reasons in one transaction; the number of changed rows and
    of marks in the file."""
    try:
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode=MEMORY")  # the file is staged: no journal file
            conn.executescript(_SCHEMA)
            before = conn.total_changes
            stamp = now_iso()
            for mark in accounts:
                known = conn.execute("SELECT risk, source FROM accounts WHERE label = ? AND "
                                     "account = ?", (label, mark.account)).fetchone()
                if known != (mark.risk, mark.source):
                    conn.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?)",
                                 (label, mark.account, mark.risk, mark.source, stamp))
            for account, rows in account_rows.items():
                conn.executemany("INSERT OR IGNORE INTO marks VALUES (?, ?, ?)",
                                 [(label, int(r), account) for r in rows])
            changes = conn.total_changes - before
            conn.commit()
            total = int(conn.execute("SELECT COUNT(*) FROM marks").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise IndexWriteError(f"{path}: cannot write the marks ({exc}); is the disk full, or a "
                              f"file size limit reached? The index is unchanged") from None
    return changes, total


def commit_marks(root: Path, manifest: Manifest, staged: StagedMarks) -> Manifest:
    """Make the staged marks the index's with one manifest swap; the new manifest."""
    if staged.final_path.exists():
        raise IndexCorruptedError(f"{staged.final_path}: a marks file of that name exists")
    os.replace(staged.path, staged.final_path)
    fsync_path(staged.final_path.parent)
    updated = manifest.with_marks(staged.entry)
    write_manifest(root, updated)
    return updated


def remove_unlisted_marks(root: Path, manifest: Manifest) -> None:
    """Delete staged files an interrupted write left and files no longer listed; only inside
    the index (a ``marks`` that is a link is refused before anything is removed)."""
    directory = root / MARKS_DIR
    if not directory.is_dir():
        return
    if directory.is_symlink() or not directory.resolve().is_relative_to(root.resolve()):
        raise IndexCorruptedError(f"{directory}: resolves outside the index {root}; refusing to "
                                  f"clean it up")
    listed = manifest.marks.name if manifest.marks is not None else None
    for child in directory.iterdir():
        if child.name != listed and not child.is_dir():
            child.unlink()
