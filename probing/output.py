"""The resumable file of a suspect's answers (prompts are read by fingerprint.io.read_prompts).

A probe run can take hours against a rate-limited API and is interrupted (Ctrl-C, a crash, a
killed job). So the output is append-only JSON Lines, one line per prompt, each written whole with
one ``write`` and an ``fsync``: after a crash the file holds every answer received, plus at most
one torn last line, which the next run cuts off and asks again. Prompts are keyed by their text,
so a rerun asks exactly the prompts that have no answer yet.

Each line is in the ``served`` shape that ``fingerprint attribute`` reads (``id``, ``prompt``,
``response``, ``model``, ``timestamp``) plus ``status``, ``params`` (the request parameters),
``endpoint`` and ``timing``. A prompt that kept failing gets a line with ``status: "failed"``, its
``error`` and an empty ``response`` (which readers skip and count as empty), so it is never
silently lost. A rerun retries failed prompts: their lines are removed first (the file is
rewritten atomically, temp file + ``os.replace``), so the file never holds two lines for a prompt.

A file written with another model or other request parameters is refused: answers to different
requests must not be mixed in one suspect's file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fingerprint.atomic import atomic_write_bytes
from fingerprint.errors import ConfigError, InputError
from fingerprint.io import BLANK, decode_json_line
from probing.errors import OutputFileError, OutputMismatchError, ProbeError


@dataclass(frozen=True)
class RequestParams:
    """What is asked of the suspect; answers to different params are never mixed in one file."""

    model: str
    temperature: float | None = 0.0
    max_tokens: int | None = 1024
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model must be a non-empty string")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature!r}")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int)
                                            or self.max_tokens < 1):
            raise ConfigError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, other: dict[str, Any]) -> list[str]:
        mine = self.to_dict()
        return [f"{k} {other.get(k)!r} (this run: {mine[k]!r})" for k in mine
                if other.get(k) != mine[k]]


@dataclass
class ResumeState:
    answered: dict[str, dict[str, Any]]  # prompt text -> its ok line
    failed_retried: int  # failed lines removed so that their prompts are asked again
    torn_line: bool  # a torn last line was cut off


# Every answer line starts so (json.dumps of a dict whose first key is "id").
LINE_PREFIX = b'{"id": '
ANSWER_FIELDS = {"status", "prompt", "params"}


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


class ProbeOutput:
    """The append-only answers file of one probe run (opened, checked, then appended to)."""

    def __init__(self, path: str | os.PathLike[str], params: RequestParams):
        self.path = Path(path)
        self.params = params
        self._fd: int | None = None

    def resume(self) -> ResumeState:
        """Read what an earlier run collected; cut a torn last line; drop failed lines.

        A torn last line is cut only from a file recognisably written by this tool: one whose
        other lines are probe answers, or whose fragment starts as every answer line does. A
        last line that is whole JSON but lacks its newline is kept if it is an answer line, and
        any other file is refused, never truncated."""
        if not self.path.exists():
            return ResumeState({}, 0, False)
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        lines, fragment = data[:cut].splitlines(keepends=True), data[cut:]
        torn = False
        if fragment:
            if _is_json(fragment):
                lines.append(fragment + b"\n")  # whole, only its newline is missing
            elif any(r.strip() for r in lines) or fragment.startswith(LINE_PREFIX):
                torn = True
            else:
                raise OutputFileError(f"{self.path}: holds one unterminated line that is not a "
                                      f"probe answer (was the file written by 'fingerprint probe "
                                      f"run'?); use another --out")
        answered: dict[str, dict[str, Any]] = {}
        kept: list[bytes] = []
        failed = 0
        for number, raw in enumerate(lines, start=1):
            line = self._answer_line(raw, number)
            if line is None:
                continue
            if line["status"] == "ok":
                if line["prompt"] not in answered:
                    answered[line["prompt"]] = line
                    kept.append(raw)
            else:
                failed += 1
        if fragment or failed or len(kept) != sum(1 for r in lines if r.strip()):
            self._rewrite(b"".join(kept))
        return ResumeState(answered, failed, torn)

    def _answer_line(self, raw: bytes, number: int) -> dict[str, Any] | None:
        """The line as an answer of this run's requests (None if blank), or a clear refusal."""
        try:
            line = decode_json_line(raw, str(self.path), number)
        except InputError:
            line = None
        if line is BLANK:
            return None
        if not isinstance(line, dict) or not ANSWER_FIELDS <= line.keys():
            raise OutputFileError(f"{self.path} line {number}: not a probe answer line "
                                  f"(was the file written by 'fingerprint probe run'?); "
                                  f"use another --out")
        params = line["params"]
        differences = self.params.differences(params if isinstance(params, dict) else {})
        if differences:
            raise OutputMismatchError(
                f"{self.path} holds answers to other requests (line {number}: "
                f"{'; '.join(differences)}); mixing them would make one suspect of two. "
                f"Use another --out, or the same model and parameters")
        return line

    def _rewrite(self, data: bytes) -> None:
        atomic_write_bytes(self.path, data)

    def open(self) -> "ProbeOutput":
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def append(self, line: dict[str, Any]) -> None:
        """One whole line per write, then fsync: a crash leaves at most a torn last line."""
        if self._fd is None:
            raise ProbeError("output file is not open")
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ProbeOutput":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
