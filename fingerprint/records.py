"""Reading served responses (and suspect outputs) from the shapes they arrive in.

Logs come from many serving stacks, so the reader accepts three shapes, detected from the first
record: the toolkit's own (``id``, ``prompt``, ``response``, ``model``, ``timestamp``,
``account``; other names mapped with ``FieldMap``), an OpenAI chat-completions log line
(``request.messages`` + ``response.choices[0].message.content``) and AlpacaEval outputs
(``instruction``, ``output``). Input is JSON Lines, or one JSON array (AlpacaEval's
``model_outputs.json``); gzip is recognised by its magic bytes; ``-`` is standard input.

Bad input stops the read with an ``InputError`` that names the file, line and field, so that a
batch is either stored whole or not at all. The one documented skip: a response that is empty or
whitespace only carries no fingerprint, so it is counted in ``ReadStats.empty`` and left out.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

from fingerprint.errors import InputError

SHAPES = ("served", "openai-chat", "alpacaeval")

# One line larger than this is refused rather than read into memory (a 5 MB response is fine).
MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ResponseRecord:
    """One model response with what is known about how it was served."""

    id: str
    response: str
    prompt: str | None = None
    model: str | None = None
    timestamp: str | None = None
    account: str | None = None
    source: str = ""
    line: int = 0


@dataclass(frozen=True)
class FieldMap:
    """Field names of the ``served`` shape; dotted names reach into nested objects (``a.b``).

    Giving any field explicitly selects the ``served`` shape instead of detecting it, and makes
    that field required.
    """

    text: str | None = None
    prompt: str | None = None
    id: str | None = None

    @property
    def explicit(self) -> bool:
        return any(v is not None for v in (self.text, self.prompt, self.id))


@dataclass
class ReadStats:
    """What a read saw: records yielded and documented skips."""

    records: int = 0
    empty: int = 0
    shape: str | None = None
    skipped_lines: list[int] = field(default_factory=list)


def source_name(path: str | os.PathLike[str]) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def read_records(path: str | os.PathLike[str], fields: FieldMap = FieldMap(),
                 stats: ReadStats | None = None) -> Iterator[ResponseRecord]:
    """Yield the records of one input file, validating each one as it is read."""
    stats = stats if stats is not None else ReadStats()
    name = source_name(path)
    with _open_binary(path, name) as stream:
        first = _peek_nonspace(stream)
        if first == b"[":
            items: Iterator[tuple[int, Any]] = _json_array_items(stream, name)
            unit = "item"
        else:
            items = _jsonl_items(stream, name)
            unit = "line"
        parser: _RecordParser | None = None
        for number, obj in items:
            if not isinstance(obj, dict):
                raise InputError(name, number, f"expected a JSON object, got {_type_name(obj)}",
                                 unit=unit)
            if parser is None:
                parser = _RecordParser(_detect_shape(obj, fields), fields, name, unit)
                stats.shape = parser.shape
            record = parser.parse(obj, number)
            if record is None:
                stats.empty += 1
                stats.skipped_lines.append(number)
                continue
            stats.records += 1
            yield record


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


def _open_binary(path: str | os.PathLike[str], name: str) -> IO[bytes]:
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
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(name, number, f"line is {len(raw):,} bytes, more than the "
                                               f"{MAX_LINE_BYTES:,} allowed")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(name, number, f"not valid UTF-8 (byte {exc.start} of the line: "
                                               f"{raw[exc.start:exc.start + 1]!r})") from None
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(name, number, f"malformed JSON: {exc.msg} "
                                               f"(column {exc.colno})") from None
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


def _detect_shape(first: dict[str, Any], fields: FieldMap) -> str:
    if fields.explicit:
        return "served"
    if isinstance(first.get("request"), dict) and isinstance(first.get("response"), dict):
        return "openai-chat"
    if "output" in first and "instruction" in first and "response" not in first:
        return "alpacaeval"
    return "served"


class _RecordParser:
    """Turns one decoded JSON object of a known shape into a ResponseRecord."""

    def __init__(self, shape: str, fields: FieldMap, source: str, unit: str):
        self.shape = shape
        self.source = source
        self.unit = unit
        self.text_field = fields.text or "response"
        self.prompt_field = fields.prompt or "prompt"
        self.id_field = fields.id or "id"
        self.prompt_required = fields.prompt is not None
        self.id_required = fields.id is not None
        self.id_prefix = os.path.basename(source)

    def error(self, number: int, message: str, field_name: str | None = None) -> InputError:
        return InputError(self.source, number, message, field=field_name, unit=self.unit)

    def parse(self, obj: dict[str, Any], number: int) -> ResponseRecord | None:
        if self.shape == "openai-chat":
            values = self._openai(obj, number)
        elif self.shape == "alpacaeval":
            values = {
                "response": self._text(obj, "output", number),
                "prompt": self._optional_text(obj, "instruction", number),
                "id": self._optional_id(obj, "prompt_id", number),
                "model": self._optional_scalar(obj, "generator", number),
            }
        else:
            values = {
                "response": self._text(obj, self.text_field, number),
                "prompt": (self._text(obj, self.prompt_field, number) if self.prompt_required
                           else self._optional_text(obj, self.prompt_field, number)),
                "id": (self._required_id(obj, self.id_field, number) if self.id_required
                       else self._optional_id(obj, self.id_field, number)),
                "model": self._optional_scalar(obj, "model", number),
                "timestamp": self._optional_scalar(obj, "timestamp", number),
                "account": self._optional_scalar(obj, "account", number),
            }
        if not values["response"].strip():
            return None
        if values.get("id") is None:
            values["id"] = f"{self.id_prefix}:{number}"
        return ResponseRecord(source=self.source, line=number, **values)

    def _openai(self, obj: dict[str, Any], number: int) -> dict[str, Any]:
        request, response = obj["request"], obj["response"]
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self.error(number, 'field "response.choices" must be a non-empty list',
                             "response.choices")
        message = choices[0].get("message")
        if not isinstance(message, dict) or "content" not in message:
            raise self.error(number, 'field "response.choices[0].message.content" is missing',
                             "response.choices[0].message.content")
        content = _content_text(message["content"])
        if content is None:
            raise self.error(number, 'field "response.choices[0].message.content" must be a '
                                     'string or a list of text parts',
                             "response.choices[0].message.content")
        messages = request.get("messages")
        if not isinstance(messages, list):
            raise self.error(number, 'field "request.messages" must be a list', "request.messages")
        prompt = None
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                prompt = _content_text(msg.get("content"))
                break
        ident = obj.get("id", response.get("id"))
        created = obj.get("timestamp", response.get("created"))
        return {
            "response": content,
            "prompt": prompt,
            "id": None if ident is None else self._scalar_str(ident, "id", number),
            "model": _str_or_none(response.get("model") or request.get("model")),
            "timestamp": _str_or_none(created),
            "account": _str_or_none(obj.get("account", request.get("user"))),
        }

    def _lookup(self, obj: dict[str, Any], dotted: str) -> tuple[bool, Any]:
        if dotted in obj:
            return True, obj[dotted]
        current: Any = obj
        for part in dotted.split("."):
            if not isinstance(current, dict) or part not in current:
                return False, None
            current = current[part]
        return True, current

    def _text(self, obj: dict[str, Any], name: str, number: int) -> str:
        found, value = self._lookup(obj, name)
        if not found:
            raise self.error(number, f'field "{name}" is missing', name)
        if not isinstance(value, str):
            raise self.error(number, f'field "{name}" must be a string, got {_type_name(value)}',
                             name)
        return value

    def _optional_text(self, obj: dict[str, Any], name: str, number: int) -> str | None:
        found, value = self._lookup(obj, name)
        if not found or value is None:
            return None
        if not isinstance(value, str):
            raise self.error(number, f'field "{name}" must be a string, got {_type_name(value)}',
                             name)
        return value

    def _required_id(self, obj: dict[str, Any], name: str, number: int) -> str:
        found, value = self._lookup(obj, name)
        if not found or value is None:
            raise self.error(number, f'field "{name}" is missing', name)
        return self._scalar_str(value, name, number)

    def _optional_id(self, obj: dict[str, Any], name: str, number: int) -> str | None:
        found, value = self._lookup(obj, name)
        return None if not found or value is None else self._scalar_str(value, name, number)

    def _optional_scalar(self, obj: dict[str, Any], name: str, number: int) -> str | None:
        found, value = self._lookup(obj, name)
        return None if not found or value is None else self._scalar_str(value, name, number)

    def _scalar_str(self, value: Any, name: str, number: int) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(number, f'field "{name}" must be a string or number, got '
                                     f'{_type_name(value)}', name)
        text = str(value)
        if not text.strip():
            raise self.error(number, f'field "{name}" is empty', name)
        return text


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")
