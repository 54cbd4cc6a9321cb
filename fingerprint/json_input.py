"""JSON inputs: JSON Lines (streamed a line at a time), or one JSON array (AlpacaEval's
``model_outputs.json``, the one format read whole), told apart by the first byte that is not
white space. A UTF-8 byte order mark at the start is skipped (Windows tools write one).

Every way a line can fail to be JSON becomes an ``InputError`` naming the file and line: bad
UTF-8, malformed JSON, nesting deeper than Python's parser allows (a RecursionError otherwise),
and an integer too long for Python to convert (a ValueError otherwise). NaN and Infinity, which
Python writes and reads, are accepted here; a field the toolkit uses refuses them (records).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from typing import IO, Any, Iterator

from fingerprint.errors import InputError
from fingerprint.streams import read_ahead, rewound

# One line larger than this is refused rather than read into memory (a 5 MB response is fine).
MAX_LINE_BYTES = 64 * 1024 * 1024
BLANK = object()  # what decode_json_line returns for a line of whitespace only
BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 1 << 20  # leading white space looked through for the first byte
COMPRESSED = (gzip.BadGzipFile, EOFError, OSError)  # a damaged or truncated gzip stream
# A JSON string (skipped whole) or a bracket: enough to measure nesting without parsing.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def json_items(stream: IO[bytes], name: str) -> tuple[Iterator[tuple[int, Any]], str]:
    """(number, decoded value) of every record, and what a number counts (line or item)."""
    head = b""
    try:
        while len(head) < SNIFF_BYTES:
            chunk = read_ahead(stream, 4096)
            head += chunk
            if len(chunk) < 4096 or head.removeprefix(BOM).strip():
                break
    except COMPRESSED as exc:
        raise InputError(name, 1, f"cannot read compressed input: {exc}") from None
    body = head.removeprefix(BOM)
    stream = rewound(body, stream, owns_rest=False)
    if body.lstrip()[:1] == b"[":
        return _array_items(stream, name), "item"
    return _line_items(stream, name), "line"


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
    return _loads(text, name, number)


def _loads(text: str, name: str, number: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = number if number is not None else exc.lineno
        raise InputError(name, line, f"malformed JSON: {exc.msg} (column {exc.colno})") \
            from None
    except RecursionError:
        depth, line = _deepest(text)
        raise InputError(name, number if number is not None else line,
                         f"JSON nested too deeply ({depth:,} levels; Python's parser stops "
                         f"near {sys.getrecursionlimit():,})") from None
    except ValueError:  # an integer longer than Python converts (sys.int_info)
        limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        raise InputError(name, number, f"malformed JSON: a number with more than {limit:,} "
                                       f"digits") from None


def _deepest(text: str) -> tuple[int, int]:
    """The deepest nesting of the JSON text, and the line where it is first reached."""
    depth = deepest = where = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, match.start()
        elif token in "]}":
            depth -= 1
    return deepest, text.count("\n", 0, where) + 1


def _line_items(stream: IO[bytes], name: str) -> Iterator[tuple[int, Any]]:
    number = 0
    try:
        for raw in stream:
            number += 1
            value = decode_json_line(raw, name, number)
            if value is not BLANK:
                yield number, value
    except COMPRESSED as exc:
        raise InputError(name, number + 1, f"cannot read compressed input: {exc}") from None


def _array_items(stream: IO[bytes], name: str) -> Iterator[tuple[int, Any]]:
    try:
        text = stream.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(name, None, f"not valid UTF-8 at byte {exc.start}") from None
    except COMPRESSED as exc:
        raise InputError(name, None, f"cannot read compressed input: {exc}") from None
    items = _loads(text, name, None)
    yield from enumerate(items, start=1)
