"""Tables as inputs: CSV and TSV (optionally gzipped) and Parquet, each row one record.

CSV and TSV: the first row names the fields; quoting is the spreadsheet convention (``excel``
and ``excel-tab``), so a response may span lines, and read strictly: a quote left open is an
error, not the rest of the file read as one cell; a row is numbered by the file line it starts
on, as an editor shows it. Every cell is text; an empty cell is a value left out (records'
``blank_is_missing``). Bytes that are not UTF-8 are named by line and column, not by where a
decoder buffer happened to stop.

Parquet is read a batch of rows at a time through pyarrow (an optional dependency: the
``parquet`` extra); nested columns arrive as objects and lists (dotted field paths reach into
them), times as ISO 8601 text. Errors name the file and the row (numbered from 1).
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import os
import re
from typing import IO, Any, Iterator

from fingerprint.errors import InputError
from fingerprint.json_input import COMPRESSED, MAX_LINE_BYTES
from fingerprint.streams import open_file

PARQUET_HINT = "pip install 'output-fingerprint[parquet]'"
PARQUET_BATCH_ROWS = 1024
DIALECTS = {"csv": "excel", "tsv": "excel-tab"}
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a non-UTF-8 byte


def csv_items(stream: IO[bytes], name: str, kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: cell}) of every row after the header; blank lines are skipped."""
    if csv.field_size_limit() < MAX_LINE_BYTES:
        csv.field_size_limit(MAX_LINE_BYTES)  # the default (128 KB) is shorter than responses
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, dialect=DIALECTS[kind], strict=True)
    header: list[str] | None = None
    header_line = start = 1
    try:
        for row in reader:
            if row:
                _check_utf8(row, header, name, start)
                if header is None:
                    header, header_line = _header(row, name, start), start
                elif len(row) != len(header):
                    raise InputError(name, start, f"{len(row)} fields, but the header "
                                                  f"(line {header_line}) names {len(header)}")
                else:
                    yield start, dict(zip(header, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(name, start, f"malformed {kind.upper()}: {exc}") from None
    except COMPRESSED as exc:
        raise InputError(name, start, f"cannot read compressed input: {exc}") from None
    finally:
        if not stream.closed:
            text.detach()  # the caller closes the byte stream


def _header(row: list[str], name: str, line: int) -> list[str]:
    seen: set[str] = set()
    for column in row:
        if column in seen:
            raise InputError(name, line, f'column "{column}" appears twice in the header',
                             field=column)
        seen.add(column)
    return row


def _check_utf8(row: list[str], header: list[str] | None, name: str, line: int) -> None:
    for index, cell in enumerate(row):
        if not cell.isascii():
            bad = _ESCAPED_BYTE.search(cell)
            if bad:
                column = header[index] if header and index < len(header) else f"#{index + 1}"
                byte = ord(bad.group()) - 0xDC00
                raise InputError(name, line, f'field "{column}" is not valid UTF-8 (byte '
                                             f'0x{byte:02x} at character {bad.start()})',
                                 field=column)


def parquet_items(path: str | os.PathLike[str], name: str) -> Iterator[tuple[int, dict]]:
    """(row, {column: value}) of every row, read a batch at a time."""
    pq, arrow_error = _pyarrow(name)
    with open_file(path, name) as raw:
        try:
            table = pq.ParquetFile(raw)
            batches = table.iter_batches(batch_size=PARQUET_BATCH_ROWS)
        except (arrow_error, OSError) as exc:
            raise InputError(name, None, f"not a readable Parquet file: {exc}") from None
        row = 0
        while True:
            try:
                batch = next(batches, None)
            except (arrow_error, OSError) as exc:
                raise InputError(name, row + 1, f"cannot read: {exc}", unit="row") from None
            if batch is None:
                return
            for values in batch.to_pylist():
                row += 1
                yield row, {k: plain_value(v) for k, v in values.items()}


def parquet_rows(path: str | os.PathLike[str]) -> int | None:
    """Rows of a Parquet file from its footer (for progress totals); None if unknown."""
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # a progress total is optional; reading will name any problem
        return None


def _pyarrow(name: str) -> tuple[Any, type[Exception]]:
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(name, None, f"reading Parquet needs pyarrow: {PARQUET_HINT}") from None
    return pq, pyarrow.ArrowException


def plain_value(value: Any) -> Any:
    """A Parquet value as the JSON-like value the records expect."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    return value
