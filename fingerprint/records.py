"""The input shapes a response arrives in, and the record every shape becomes.

Logs come from many serving stacks, so three shapes are accepted, detected from the first record:
the toolkit's own (``id``, ``prompt``, ``response``, ``model``, ``timestamp``, ``account``; other
names mapped with ``FieldMap``), an OpenAI chat-completions log line (``request.messages`` +
``response.choices[0].message.content``) and AlpacaEval outputs (``instruction``, ``output``).
``RecordParser`` turns one decoded JSON object into a ``ResponseRecord`` or names the line and
field that make it unusable. Reading files is fingerprint.io's job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fingerprint.errors import InputError

SHAPES = ("served", "openai-chat", "alpacaeval")


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


def detect_shape(first: dict[str, Any], fields: FieldMap) -> str:
    if fields.explicit:
        return "served"
    if isinstance(first.get("request"), dict) and isinstance(first.get("response"), dict):
        return "openai-chat"
    if "output" in first and "instruction" in first and "response" not in first:
        return "alpacaeval"
    return "served"


class RecordParser:
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
        content = content_text(message["content"])
        if content is None:
            raise self.error(number, 'field "response.choices[0].message.content" must be a '
                                     'string or a list of text parts',
                             "response.choices[0].message.content")
        messages = request.get("messages")
        if not isinstance(messages, list):
            raise self.error(number, 'field "request.messages" must be a list', "request.messages")
        prompt = last_user_message(messages)
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
            raise self.error(number, f'field "{name}" must be a string, got {type_name(value)}',
                             name)
        return value

    def _optional_text(self, obj: dict[str, Any], name: str, number: int) -> str | None:
        found, value = self._lookup(obj, name)
        if not found or value is None:
            return None
        if not isinstance(value, str):
            raise self.error(number, f'field "{name}" must be a string, got {type_name(value)}',
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
                                     f'{type_name(value)}', name)
        text = str(value)
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


def content_text(content: Any) -> str | None:
    """A message's content as text: a string, or the text parts of a list of parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")
