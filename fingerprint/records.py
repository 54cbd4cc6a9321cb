"""The input shapes a response arrives in, and the record every shape becomes.

Logs come from many serving stacks, so four shapes are accepted, detected from the first record:

- ``served``, the toolkit's own (``id``, ``prompt``, ``response``, ``model``, ``timestamp``,
  ``account``; other names mapped with ``FieldMap``, whose dotted paths reach into objects and,
  by integer index, into lists: ``response.choices.0.message.content``);
- ``openai-chat``, an OpenAI chat-completions log line (``request.messages`` +
  ``response.choices.0.message.content``);
- ``openai-batch``, a line of OpenAI Batch API output (``custom_id`` +
  ``response.body.choices.0.message.content``). The request is not in that file, so the prompt
  is unknown (None) and the id is the ``custom_id``. A request that failed (``response`` null, or
  a ``status_code`` other than 200) is an error naming the line and the status, not a skip: a
  batch with holes is incomplete evidence, and the user decides whether to retry or drop them;
- ``alpacaeval``, AlpacaEval outputs (``instruction``, ``output``).

``RecordParser`` turns one decoded object into a ``ResponseRecord``, or names the line and field
that make it unusable, including a later line of another shape than the first. Every string it
returns can be encoded as UTF-8: a lone surrogate (a JSON ``\\ud800`` escape) is refused here,
where the line and field are known, rather than failing later in hashing or SQLite. Reading
files is fingerprint.io's job.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from fingerprint.errors import InputError

SHAPES = ("served", "openai-chat", "openai-batch", "alpacaeval")
SHAPE_NAMES = {"served": "the served shape", "openai-chat": "an OpenAI chat log line",
               "openai-batch": "an OpenAI Batch API output line",
               "alpacaeval": "an AlpacaEval output"}
SURROGATE = re.compile("[\ud800-\udfff]")
FAILED_BATCH_HINT = ("failed requests carry no response: retry them, or leave them out "
                     "(jq -c 'select(.response.status_code == 200)')")


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
    # chat logs only: answers already in the conversation the request carries (0: it opens one)
    prior_turns: int | None = None
    # chat logs only: the conversation's first user message, which every follow-up carries again
    conversation: str | None = None


@dataclass(frozen=True)
class FieldMap:
    """Field names of the ``served`` shape; dotted names reach into nested objects (``a.b``) and
    lists (``a.0.b``).

    Giving ``text``, ``prompt`` or ``id`` explicitly selects the ``served`` shape instead of
    detecting it, and makes that field required. ``account`` and ``timestamp`` (who sent a
    request, and when: what the extraction monitor reads) apply to every shape and select none.
    """

    text: str | None = None
    prompt: str | None = None
    id: str | None = None
    account: str | None = None
    timestamp: str | None = None

    @property
    def explicit(self) -> bool:
        return any(v is not None for v in (self.text, self.prompt, self.id))


def detect_shape(first: dict[str, Any], fields: FieldMap) -> str:
    if fields.explicit:
        return "served"
    response = first.get("response")
    if "custom_id" in first and (isinstance(response, dict) or
                                 (response is None and "error" in first)):
        return "openai-batch"
    request = first.get("request")
    if isinstance(request, dict) and (isinstance(response, dict) or
                                      (response is None and "messages" in request)):
        return "openai-chat"  # a request logged without its answer is still a chat log line
    if "output" in first and "instruction" in first and "response" not in first:
        return "alpacaeval"
    return "served"


def lookup(obj: Any, dotted: str) -> tuple[bool, Any]:
    """(found, value) of a field: a key as given, else a dotted path through objects and, by
    non-negative integer index, lists."""
    if isinstance(obj, dict):
        if dotted in obj:
            return True, obj[dotted]
        if "." not in dotted:  # a plain key that is absent (most optional fields of most lines)
            return False, None
    current: Any = obj
    for part in dotted.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isascii() and part.isdigit() and \
                int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


class RecordParser:
    """Turns one decoded object of a known shape into a ResponseRecord.

    ``first`` is the number of the record the shape was detected from (named when a later one
    does not fit). ``blank_is_missing`` is for tables (CSV, TSV), where an empty cell is how a
    value is left out: there an empty optional field counts as absent."""

    def __init__(self, shape: str, fields: FieldMap, source: str, unit: str, *,
                 first: int = 1, blank_is_missing: bool = False, response_required: bool = True):
        self.shape = shape
        self.response_required = response_required
        self.account_field = fields.account
        self.timestamp_field = fields.timestamp
        self.source = source
        self.unit = unit
        self.first = None if fields.explicit else first
        self.blank_is_missing = blank_is_missing
        self.text_field = fields.text or "response"
        self.prompt_field = fields.prompt or "prompt"
        self.id_field = fields.id or "id"
        self.prompt_required = fields.prompt is not None
        self.id_required = fields.id is not None
        # a directory (a saved dataset) is often named with a trailing slash
        self.id_prefix = os.path.basename(source.rstrip("/")) or source

    def error(self, number: int, message: str, field_name: str | None = None) -> InputError:
        return InputError(self.source, number, message, field=field_name, unit=self.unit)

    def missing(self, number: int, name: str, problem: str = "is missing") -> InputError:
        """A field the shape needs is absent: name the shape, and where it was detected, since
        the usual cause is a file mixing shapes."""
        where = (f" (expected {SHAPE_NAMES[self.shape]}, the shape of {self.unit} {self.first})"
                 if self.first is not None and number != self.first else "")
        return self.error(number, f'field "{name}" {problem}{where}', name)

    def parse(self, obj: dict[str, Any], number: int) -> ResponseRecord | None:
        """The record of one object; None for an empty response (the documented skip)."""
        if self.shape == "openai-chat":
            values = self._openai_chat(obj, number)
        elif self.shape == "openai-batch":
            values = self._openai_batch(obj, number)
        elif self.shape == "alpacaeval":
            values = {
                "response": self._text(obj, "output", number),
                "prompt": self._optional_text(obj, "instruction", number),
                "id": self._optional_scalar(obj, "prompt_id", number),
                "model": self._optional_scalar(obj, "generator", number),
            }
        else:
            values = {
                "response": (self._text(obj, self.text_field, number) if self.response_required
                             else self._optional_text(obj, self.text_field, number) or ""),
                "prompt": (self._text(obj, self.prompt_field, number) if self.prompt_required
                           else self._optional_text(obj, self.prompt_field, number)),
                "id": (self._required_scalar(obj, self.id_field, number) if self.id_required
                       else self._optional_scalar(obj, self.id_field, number)),
                "model": self._optional_scalar(obj, "model", number),
                "timestamp": self._optional_scalar(obj, "timestamp", number),
                "account": self._optional_scalar(obj, "account", number),
            }
        self._who_and_when(obj, number, values)
        if not self.response_required:  # a request: what matters is its prompt
            return None if not (values.get("prompt") or "").strip() else \
                ResponseRecord(source=self.source, line=number, **self._with_id(values, number))
        if not values["response"].strip():
            return None
        return ResponseRecord(source=self.source, line=number, **self._with_id(values, number))

    def _with_id(self, values: dict[str, Any], number: int) -> dict[str, Any]:
        if values.get("id") is None:
            values["id"] = f"{self.id_prefix}:{number}"
        return values

    def _who_and_when(self, obj: dict[str, Any], number: int, values: dict[str, Any]) -> None:
        """``account`` and ``timestamp`` from the fields named in the FieldMap, where named."""
        if self.account_field is not None:
            values["account"] = self._optional_scalar(obj, self.account_field, number)
        if self.timestamp_field is not None:
            values["timestamp"] = self._optional_scalar(obj, self.timestamp_field, number)

    def parse_prompt(self, obj: dict[str, Any], number: int) -> tuple[str, str]:
        """(id, text) of a prompts-only record: ``prompt`` (or AlpacaEval's ``instruction``) and
        an optional ``id`` (or ``prompt_id``)."""
        key = "prompt" if "prompt" in obj else "instruction" if "instruction" in obj else None
        if key is None:
            raise self.error(number, 'field "prompt" is missing', "prompt")
        text = self._optional_text(obj, key, number)
        if text is None or not text.strip():
            raise self.error(number, f'field "{key}" must be a non-empty string', key)
        ident = self._optional_scalar(obj, "id" if "id" in obj else "prompt_id", number)
        return (f"{self.id_prefix}:{number}" if ident is None else ident), text

    def _object(self, obj: dict[str, Any], name: str, number: int) -> dict[str, Any]:
        found, value = lookup(obj, name)
        if not found or value is None:
            raise self.missing(number, name)
        if not isinstance(value, dict):
            raise self.missing(number, name, f"must be an object, got {type_name(value)}")
        return value

    def _completion(self, body: dict[str, Any], prefix: str, number: int) -> dict[str, Any]:
        """Text, model and time of a chat completion object (a log's or a batch's)."""
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self.missing(number, f"{prefix}.choices", "must be a non-empty list")
        message = choices[0].get("message")
        path = f"{prefix}.choices.0.message.content"
        if not isinstance(message, dict) or "content" not in message:
            raise self.missing(number, path)
        content = content_text(message["content"])
        if content is None:
            raise self.error(number, f'field "{path}" must be a string or a list of text parts',
                             path)
        return {"response": self._clean(content, path, number),
                "model": self._optional_scalar(body, "model", number, prefix),
                "timestamp": self._optional_scalar(body, "created", number, prefix)}

    def _openai_chat(self, obj: dict[str, Any], number: int) -> dict[str, Any]:
        request = self._object(obj, "request", number)
        if self.response_required or obj.get("response") is not None:
            values = self._completion(self._object(obj, "response", number), "response", number)
        else:  # a request log line written before (or without) its answer
            values = {"response": "", "model": None, "timestamp": None}
        messages = request.get("messages")
        if not isinstance(messages, list):
            raise self.missing(number, "request.messages", "must be a list")
        prompt = last_user_message(messages)
        values["prompt"] = None if prompt is None else \
            self._clean(prompt, "request.messages", number)
        values["prior_turns"] = prior_turns(messages)
        values["conversation"] = first_user_message(messages)
        id_field = "id" if "id" in obj else "response.id"
        values["id"] = self._optional_scalar(obj, id_field, number)
        if "timestamp" in obj:
            values["timestamp"] = self._optional_scalar(obj, "timestamp", number)
        values["model"] = values["model"] or self._optional_scalar(request, "model", number,
                                                                   "request")
        account = "account" if "account" in obj else "request.user"
        values["account"] = self._optional_scalar(obj, account, number)
        return values

    def _openai_batch(self, obj: dict[str, Any], number: int) -> dict[str, Any]:
        ident = self._required_scalar(obj, "custom_id", number)
        response = obj.get("response")
        if response is None and "response" in obj:
            raise self.error(number, f'request "{ident}" failed ({_error_text(obj.get("error"))}'
                                     f'); {FAILED_BATCH_HINT}', "error")
        response = self._object(obj, "response", number)
        status = response.get("status_code")
        if isinstance(status, bool) or status != 200:
            _, detail = lookup(response, "body.error.message")
            raise self.error(number, f'request "{ident}" failed with status {status!r}'
                                     f'{_detail(detail)}; {FAILED_BATCH_HINT}',
                             "response.status_code")
        body = self._object(obj, "response.body", number)
        values = self._completion(body, "response.body", number)
        return {**values, "prompt": None, "id": ident}

    def _clean(self, value: str, name: str, number: int) -> str:
        """The text, unless it holds a lone surrogate (not UTF-8: nothing could store it)."""
        if not value.isascii():
            found = SURROGATE.search(value)
            if found:
                raise self.error(number, f'field "{name}" contains an unpaired surrogate '
                                         f'\\u{ord(found.group()):04x} at character '
                                         f'{found.start()}', name)
        return value

    def _present(self, obj: Any, name: str) -> tuple[bool, Any]:
        value = obj.get(name) if name in obj else lookup(obj, name)[1]
        if value is None or (self.blank_is_missing and value == ""):
            return False, None
        return True, value

    def _text(self, obj: dict[str, Any], name: str, number: int) -> str:
        found, value = lookup(obj, name)
        if not found:
            raise self.missing(number, name)
        if not isinstance(value, str):
            raise self.error(number, f'field "{name}" must be a string, got {type_name(value)}',
                             name)
        return self._clean(value, name, number)

    def _optional_text(self, obj: dict[str, Any], name: str, number: int) -> str | None:
        found, value = self._present(obj, name)
        if not found:
            return None
        if not isinstance(value, str):
            raise self.error(number, f'field "{name}" must be a string, got {type_name(value)}',
                             name)
        return self._clean(value, name, number)

    def _required_scalar(self, obj: dict[str, Any], name: str, number: int) -> str:
        found, value = self._present(obj, name)
        if not found:
            raise self.missing(number, name)
        return self._scalar_str(value, name, number)

    def _optional_scalar(self, obj: dict[str, Any], name: str, number: int,
                         prefix: str = "") -> str | None:
        found, value = self._present(obj, name)
        if not found:
            return None
        return self._scalar_str(value, f"{prefix}.{name}" if prefix else name, number)

    def _scalar_str(self, value: Any, name: str, number: int) -> str:
        kind = type(value)
        if kind is str:
            text = self._clean(value, name, number)
        elif kind is int or (kind is float and math.isfinite(value)):
            text = str(value)
        elif kind is float:
            shown = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
            raise self.error(number, f'field "{name}" must be a finite number, got {shown}', name)
        else:
            raise self.error(number, f'field "{name}" must be a string or number, got '
                                     f'{type_name(value)}', name)
        if not text.strip():
            raise self.error(number, f'field "{name}" is empty', name)
        return text


def last_user_message(messages: Any) -> str | None:
    """The text of the last ``user`` message of an OpenAI chat request: the prompt a response
    answers (earlier turns are context). None when there is none or it holds no text."""
    if not isinstance(messages, list):
        return None
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return content_text(msg.get("content"))
    return None


def first_user_message(messages: Any) -> str | None:
    """The text of the first ``user`` message of an OpenAI chat request: what identifies the
    conversation, since every follow-up sends it again. None when there is none with text."""
    if not isinstance(messages, list):
        return None
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") == "user":
            return content_text(msg.get("content"))
    return None


def prior_turns(messages: list[Any]) -> int:
    """How many assistant answers come before the last user message: 0 for a request that opens
    a conversation, more for a follow-up that carries the conversation so far."""
    last_user = max((i for i, m in enumerate(messages)
                     if isinstance(m, dict) and m.get("role") == "user"), default=-1)
    return sum(1 for m in messages[:max(last_user, 0)]
               if isinstance(m, dict) and m.get("role") == "assistant")


def content_text(content: Any) -> str | None:
    """A message's content as text: a string, or the text parts of a list of parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    return None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        text = ": ".join(str(x) for x in (code, message) if x is not None)
        return text[:200] or "no error given"
    return "no response and no error given" if error is None else str(error)[:200]


def _detail(message: Any) -> str:
    return f" ({str(message)[:200]})" if message else ""


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null",
            bytes: "bytes"}.get(type(value), "a value")
