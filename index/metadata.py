"""Per-segment SQLite table of what is known about each stored response.

FAISS stores vectors under integer row numbers; this table maps those rows back to the response
ids, prompts and serving metadata that make a match usable as evidence, and finds the served
responses to a given prompt (by prompt hash) for paired comparison.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from fingerprint.records import ResponseRecord
from index.errors import IndexWriteError

_SCHEMA = """
CREATE TABLE responses (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    prompt_hash TEXT,
    model TEXT,
    timestamp TEXT,
    account TEXT,
    source TEXT,
    line INTEGER,
    prompt TEXT,
    response TEXT
);
CREATE INDEX responses_prompt_hash ON responses (prompt_hash);
"""

# SQLite's default limit on host parameters in one statement is 32766; stay well below it.
_MAX_PARAMS = 900


@dataclass(frozen=True)
class StoredResponse:
    row: int
    id: str
    prompt_hash: str | None
    model: str | None
    timestamp: str | None
    account: str | None
    source: str | None
    line: int | None
    prompt: str | None
    response: str | None


class MetadataWriter:
    """Writes a staged segment's table. SQLite's errors (a full disk: "database or disk is
    full"; a file size limit: "disk I/O error") become an ``IndexWriteError`` naming the file,
    so the CLI prints one line; the staging writer then discards the segment."""

    def __init__(self, path: Path, store_text: bool):
        self.path = path
        self.store_text = store_text
        try:
            self.conn = sqlite3.connect(path)
            self.conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def add(self, first_row: int, records: Sequence[ResponseRecord],
            prompt_hashes: Sequence[str | None]) -> None:
        keep = self.store_text
        try:
            self.conn.executemany(
                "INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(first_row + i, r.id, h, r.model, r.timestamp, r.account, r.source, r.line,
                  r.prompt if keep else None, r.response if keep else None)
                 for i, (r, h) in enumerate(zip(records, prompt_hashes))])
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def close(self) -> None:
        try:
            self.conn.commit()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        finally:
            self.conn.close()

    def _failed(self, exc: sqlite3.Error) -> IndexWriteError:
        code = getattr(exc, "sqlite_errorname", None)
        return IndexWriteError(f"{self.path}: cannot write the segment's metadata ({exc}"
                               f"{f', {code}' if code else ''}); is the disk full, or a file "
                               f"size limit reached? Nothing was added to the index")


class MetadataReader:
    """Read-only, immutable view: never writes journals or locks into the index directory."""

    def __init__(self, path: Path):
        uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(
                f"SELECT id FROM responses WHERE id IN ({marks})", chunk))
        return found

    def rows_for_prompts(self, hashes: Iterable[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for chunk in _chunks(list(set(hashes))):
            marks = ",".join("?" * len(chunk))
            for h, row in self.conn.execute(
                    f"SELECT prompt_hash, row FROM responses WHERE prompt_hash IN ({marks}) "
                    f"ORDER BY row", chunk):
                out.setdefault(h, []).append(int(row))
        return out

    def prompt_hashes(self) -> dict[str, list[int]]:
        """Every stored prompt hash with its rows, in row order (rows without a prompt left out)."""
        out: dict[str, list[int]] = {}
        for h, row in self.conn.execute(
                "SELECT prompt_hash, row FROM responses WHERE prompt_hash IS NOT NULL ORDER BY row"):
            out.setdefault(h, []).append(int(row))
        return out

    def rows_for_accounts(self, accounts: Iterable[str]) -> dict[str, list[int]]:
        """The rows served to each of ``accounts`` (those with none left out), in row order."""
        out: dict[str, list[int]] = {}
        for chunk in _chunks(list(set(accounts))):
            marks = ",".join("?" * len(chunk))
            for account, row in self.conn.execute(
                    f"SELECT account, row FROM responses WHERE account IN ({marks}) "
                    f"ORDER BY row", chunk):
                out.setdefault(account, []).append(int(row))
        return out

    def responses(self, rows: Iterable[int]) -> dict[int, StoredResponse]:
        out: dict[int, StoredResponse] = {}
        for chunk in _chunks([int(r) for r in rows]):
            marks = ",".join("?" * len(chunk))
            for values in self.conn.execute(
                    f"SELECT row, id, prompt_hash, model, timestamp, account, source, line, "
                    f"prompt, response FROM responses WHERE row IN ({marks})", chunk):
                out[int(values[0])] = StoredResponse(*values)
        return out

    def rows_between(self, start: int, stop: int) -> list[StoredResponse]:
        """Rows ``start`` to ``stop - 1``, in row order (compaction copies them so)."""
        return [StoredResponse(*values) for values in self.conn.execute(
            "SELECT row, id, prompt_hash, model, timestamp, account, source, line, prompt, "
            "response FROM responses WHERE row >= ? AND row < ? ORDER BY row", (start, stop))]

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _chunks(items: list, size: int = _MAX_PARAMS) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
