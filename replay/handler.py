"""The replay model as a pure function of a request: recorded answers, injected faults, OpenAI's
error shapes. No sockets here (replay.server puts it on HTTP), so every answer it gives can be
tested without a network, and the HTTP layer only copies a ``Reply`` onto the wire.

Faults are deterministic given the seed: whether attempt ``a`` at prompt ``p`` gets a fault depends
only on (seed, p, a), never on timing or thread scheduling, so a test sees the same faults on every
run. ``max_faults_per_prompt`` bounds the faults in a row at one prompt, so that a client with
enough retries always gets its answer.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from fingerprint.errors import ConfigError
from fingerprint.http_server import Reply, read_json_object
from fingerprint.records import last_user_message

FAULT_KINDS = ("rate_limit", "server_error", "slow", "drop", "non_json")
CHAT_ROUTE = "/v1/chat/completions"
MODELS_ROUTE = "/v1/models"
ROUTES = {CHAT_ROUTE: "POST", MODELS_ROUTE: "GET"}  # each route answers one method (and HEAD)


@dataclass(frozen=True)
class ReplayFaults:
    """Shares of requests that get each fault (drawn in this order; their sum must be <= 1)."""

    rate_limit: float = 0.0       # 429 with a Retry-After header
    server_error: float = 0.0     # 500
    slow: float = 0.0             # answered after ``slow_seconds``
    drop: float = 0.0             # headers and half the body sent, then the socket is closed
    non_json: float = 0.0         # 200 with an HTML body, as a misconfigured proxy would send
    retry_after: float = 1.0      # seconds, sent with every 429
    slow_seconds: float = 2.0
    seed: int = 0
    max_faults_per_prompt: int | None = 3  # None: no bound (a prompt can fail for ever)

    def __post_init__(self) -> None:
        for name in FAULT_KINDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"fault share {name} must be in [0, 1], got {value!r}")
        if sum(getattr(self, n) for n in FAULT_KINDS) > 1 + 1e-9:
            raise ConfigError("the fault shares must add up to at most 1")
        for name in ("retry_after", "slow_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_faults_per_prompt is not None and self.max_faults_per_prompt < 0:
            raise ConfigError("max_faults_per_prompt must be >= 0 or None")

    def draw(self, prompt: str, attempt: int) -> str | None:
        """The fault for this attempt at this prompt, or None: a function of the seed only."""
        if self.max_faults_per_prompt is not None and attempt >= self.max_faults_per_prompt:
            return None
        digest = hashlib.sha256(f"{self.seed}\0{attempt}\0{prompt}".encode()).digest()
        u = random.Random(digest).random()
        edge = 0.0
        for name in FAULT_KINDS:
            edge += getattr(self, name)
            if u < edge:
                return name
        return None


@dataclass
class ReplayLog:
    """What the server did, for tests: every request with its time, prompt and outcome."""

    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **event: Any) -> None:
        with self.lock:
            self.events.append({"time": time.monotonic(), **event})

    def count(self, outcome: str) -> int:
        with self.lock:
            return sum(e["outcome"] == outcome for e in self.events)


def error_reply(status: int, message: str, kind: str, code: str | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
    """An error in OpenAI's shape, which its client parses into typed exceptions."""
    body = json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()
    return Reply(status, body, dict(headers or {}))


class ReplayHandler:
    """Answers requests from ``answers`` (prompt text -> recorded response) as model ``model``.

    ``api_key``: when given, requests without ``Authorization: Bearer <api_key>`` get a 401 (to
    test the client's handling); the key itself is never logged. Thread-safe.
    """

    def __init__(self, answers: Mapping[str, str], model: str, *,
                 faults: ReplayFaults = ReplayFaults(), api_key: str | None = None):
        self.answers = answers
        self.model = model
        self.faults = faults
        self.api_key = api_key
        self.log = ReplayLog()
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        route = path.rstrip("/")
        allowed = ROUTES.get(route)
        if allowed is None:
            return error_reply(404, f"no route {path[:200]}", "invalid_request_error",
                               "unknown_route")
        if method != allowed and (method, allowed) != ("HEAD", "GET"):
            return error_reply(405, f"{route} takes {allowed}, not {method[:20]}",
                               "invalid_request_error", "method_not_allowed",
                               {"Allow": allowed})
        if not self._authorised(headers):
            self.log.add(prompt=None, outcome="unauthorised")
            return error_reply(401, "Incorrect API key provided.", "invalid_request_error",
                               "invalid_api_key")
        if allowed == "GET":
            return Reply(200, json.dumps({"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0,
                 "owned_by": "fingerprint-replay"}]}).encode())
        request = parse_json_object(body)
        if isinstance(request, Reply):
            return request
        return self._chat(request)

    def next_attempt(self, prompt: str) -> int:
        with self._lock:
            attempt = self._attempts.get(prompt, 0)
            self._attempts[prompt] = attempt + 1
            return attempt

    def _authorised(self, headers: Mapping[str, str]) -> bool:
        return self.api_key is None or headers.get("Authorization", "") == \
            f"Bearer {self.api_key}"

    def _chat(self, request: dict[str, Any]) -> Reply:
        prompt = last_user_message(request.get("messages"))
        if request.get("model") != self.model:
            self.log.add(prompt=prompt, outcome="unknown_model")
            return error_reply(404, f"The model '{request.get('model')}' does not exist",
                               "invalid_request_error", "model_not_found")
        if prompt is None or prompt not in self.answers:
            self.log.add(prompt=prompt, outcome="unknown_prompt")
            return error_reply(404, "no recorded answer for this prompt",
                               "invalid_request_error", "prompt_not_recorded")
        fault = self.faults.draw(prompt, self.next_attempt(prompt))
        self.log.add(prompt=prompt, outcome=fault or "ok")
        if fault == "rate_limit":
            return error_reply(429, "Rate limit reached, retry later.", "requests",
                               "rate_limit_exceeded",
                               {"Retry-After": f"{self.faults.retry_after:g}"})
        if fault == "server_error":
            return error_reply(500, "The server had an error.", "server_error")
        if fault == "non_json":
            return Reply(200, b"<html><body>502 Bad Gateway</body></html>",
                         content_type="text/html")
        body = json.dumps(completion(request, self.answers[prompt])).encode()
        return Reply(200, body, delay=self.faults.slow_seconds if fault == "slow" else 0.0,
                     drop=fault == "drop")


def parse_json_object(body: bytes) -> dict[str, Any] | Reply:
    """The request body as a JSON object, or the 400 saying why it is not one."""
    request = read_json_object(body)
    if isinstance(request, str):
        return error_reply(400, request, "invalid_request_error", "invalid_json")
    return request


def completion(request: Mapping[str, Any], answer: str) -> dict[str, Any]:
    """A chat.completion object answering ``request`` with ``answer``."""
    return {
        "id": "chatcmpl-replay-" + hashlib.sha256(answer.encode()).hexdigest()[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(answer.split()),
                  "total_tokens": len(answer.split())},
    }
