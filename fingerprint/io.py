"""The one reader of every input: served responses, suspect outputs, reference outputs, prompts.

Input is JSON Lines, or one JSON array (AlpacaEval's ``model_outputs.json``); gzip is recognised
by its magic bytes; ``-`` is standard input. Every file is read in one pass, so standard input
works for every reader. The shapes a record may take are fingerprint.records'.

Bad input stops the read with an ``InputError`` that names the file, line and field, so that a
batch is either stored whole or not at all. The one documented skip: a response that is empty or
whitespace only carries no fingerprint, so it is counted in ``ReadStats.empty`` and left out.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

from fingerprint.errors import InputError
from fingerprint.records import FieldMap, RecordParser, ResponseRecord, detect_shape, type_name

# One line larger than this is refused rather than read into memory (a 5 MB response is fine).
MAX_LINE_BYTES = 64 * 1024 * 1024
# A first record with one of these fields holds responses; without, it is a prompts-only file.
RESPONSE_FIELDS = ("response", "output", "request")
BLANK = object()  # what decode_json_line returns for a line of whitespace only


@dataclass
class ReadStats:
    """What a read saw: records yielded and documented skips."""

    records: int = 0
    empty: int = 0
    shape: str | None = None
    skipped_lines: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Prompt:
    """A prompt to ask a suspect: its text and the id it is known by."""

    id: str
    text: str


def source_name(path: str | os.PathLike[str]) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def open_input(path: str | os.PathLike[str], name: str | None = None) -> IO[bytes]:
    """A buffered binary stream of the input, decompressed if it is gzip; errors name the file."""
    name = name or source_name(path)
    if str(path) == "-":
        raw: IO[bytes] = io.BufferedReader(sys.stdin.buffer, buffer_size=1 << 16) \
            if not isinstance(sys.stdin.buffer, io.BufferedReader) else sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")
        except FileNotFoundError:
            raise InputError(name, None, "no such file") from None
        except IsADirectoryError:
            raise InputError(name, None, "is a directory, not an input file") from None
        except OSError as exc:
            raise InputError(name, None, f"cannot open: {exc.strerror}") from None
    if raw.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def decode_json_line(raw: bytes, name: str, number: int) -> Any:
    """One JSON Lines line to its value (``BLANK`` for a line of whitespace only); an
    ``InputError`` naming file and line if it is not JSON."""
    if len(raw) > MAX_LINE_BYTES:
        raise InputError(name, number, f"line is {len(raw):,} bytes, more than the "
                                       f"{MAX_LINE_BYTES:,} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(name, number, f"not valid UTF-8 (byte {exc.start} of the line: "
                                       f"{raw[exc.start:exc.start + 1]!r})") from None
    if not text.strip():
        return BLANK
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(name, number, f"malformed JSON: {exc.msg} "
                                       f"(column {exc.colno})") from None


def read_records(path: str | os.PathLike[str], fields: FieldMap = FieldMap(),
                 stats: ReadStats | None = None) -> Iterator[ResponseRecord]:
    """Yield the records of one input file, validating each one as it is read."""
    stats = stats if stats is not None else ReadStats()
    name = source_name(path)
    with open_input(path, name) as stream:
        items, unit = _items(stream, name)
        yield from _parse_records(items, name, unit, fields, stats)


def read_prompts(path: str | os.PathLike[str], fields: FieldMap = FieldMap()) -> list[Prompt]:
    """Prompts to ask, in file order, each text once.

    A prompts file is JSON Lines with a ``prompt`` (or AlpacaEval's ``instruction``) field and an
    optional ``id`` (or ``prompt_id``); any file ``read_records`` reads (which also carries
    responses) works too, and its prompts are used. The shape is decided by the first record.
    """
    name = source_name(path)
    with open_input(path, name) as stream:
        items, unit = _items(stream, name)
        first = next(items, None)
        if first is None:
            return []
        rest = itertools.chain([first], items)
        if unit == "item" or fields.explicit or _has_responses(first[1]):
            return _unique(_record_prompt(r, name)
                           for r in _parse_records(rest, name, unit, fields, ReadStats()))
        return _unique(_prompt_only(obj, name, number) for number, obj in rest)


def count_lines(path: str | os.PathLike[str]) -> int | None:
    """Line count of a plain (not gzipped, not stdin) file, for progress totals; else None."""
    if str(path) == "-":
        return None
    try:
        with open(path, "rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return None
            f.seek(0)
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return None


def _items(stream: IO[bytes], name: str) -> tuple[Iterator[tuple[int, Any]], str]:
    """(number, decoded value) of every record, and what a number counts (line or item)."""
    if _peek_nonspace(stream) == b"[":
        return _json_array_items(stream, name), "item"
    return _jsonl_items(stream, name), "line"


def _parse_records(items: Iterable[tuple[int, Any]], name: str, unit: str, fields: FieldMap,
                   stats: ReadStats) -> Iterator[ResponseRecord]:
    parser: RecordParser | None = None
    for number, obj in items:
        if not isinstance(obj, dict):
            raise InputError(name, number, f"expected a JSON object, got {type_name(obj)}",
                             unit=unit)
        if parser is None:
            parser = RecordParser(detect_shape(obj, fields), fields, name, unit)
            stats.shape = parser.shape
        record = parser.parse(obj, number)
        if record is None:
            stats.empty += 1
            stats.skipped_lines.append(number)
            continue
        stats.records += 1
        yield record


def _peek_nonspace(stream: IO[bytes]) -> bytes:
    try:
        head = stream.peek(4096)  # type: ignore[attr-defined]
    except (OSError, EOFError, gzip.BadGzipFile):
        return b""
    stripped = head.lstrip()
    return stripped[:1]


def _jsonl_items(stream: IO[bytes], name: str) -> Iterator[tuple[int, Any]]:
    number = 0
    try:
        for raw in stream:
            number += 1
            value = decode_json_line(raw, name, number)
            if value is not BLANK:
                yield number, value
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise InputError(name, number + 1, f"cannot read compressed input: {exc}") from None


def _json_array_items(stream: IO[bytes], name: str) -> Iterator[tuple[int, Any]]:
    try:
        data = stream.read()
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(name, None, f"not valid UTF-8 at byte {exc.start}") from None
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise InputError(name, None, f"cannot read compressed input: {exc}") from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(name, exc.lineno, f"malformed JSON: {exc.msg} (column {exc.colno})") \
            from None
    for index, item in enumerate(items, start=1):
        yield index, item


def _has_responses(first: Any) -> bool:
    return not isinstance(first, dict) or any(k in first for k in RESPONSE_FIELDS)


def _record_prompt(record: ResponseRecord, name: str) -> Prompt:
    if record.prompt is None:
        raise InputError(name, record.line, 'field "prompt" is missing', field="prompt")
    return Prompt(record.id, record.prompt)


def _prompt_only(obj: Any, name: str, number: int) -> Prompt:
    if not isinstance(obj, dict):
        raise InputError(name, number, "expected a JSON object")
    key = "prompt" if "prompt" in obj else "instruction" if "instruction" in obj else None
    if key is None:
        raise InputError(name, number, 'field "prompt" is missing', field="prompt")
    prompt = obj[key]
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(name, number, f'field "{key}" must be a non-empty string', field=key)
    ident = obj.get("id", obj.get("prompt_id"))
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        raise InputError(name, number, 'field "id" must be a string or number', field="id")
    return Prompt(f"{os.path.basename(name)}:{number}" if ident is None else str(ident), prompt)


def _unique(prompts: Iterable[Prompt]) -> list[Prompt]:
    seen: set[str] = set()
    out = []
    for p in prompts:
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    return out
