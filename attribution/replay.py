"""Serve recorded outputs as an OpenAI-compatible model, with injected faults for testing.

Probing a suspect through its API has to survive rate limits, server errors, slow answers and
dropped connections. Testing that against mocks of the HTTP protocol would test the mocks; this
server speaks real HTTP on 127.0.0.1 (``/v1/chat/completions``, ``/v1/models``), answers each
request with the recorded response to the same prompt (the last user message), and injects
faults on request.

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fingerprint.errors import ConfigError, FingerprintError
from fingerprint.records import FieldMap, read_records

FAULT_KINDS = ("rate_limit", "server_error", "slow", "drop", "non_json")


class ReplayError(FingerprintError):
    """The recorded outputs cannot be served (no prompts in them, an unusable option)."""


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


def load_recorded(path: str | Path, fields: FieldMap = FieldMap()) -> tuple[dict[str, str], str]:
    """Prompt text -> recorded response (the first one, if a prompt repeats), and a model name."""
    answers: dict[str, str] = {}
    model = None
    for record in read_records(path, fields):
        if record.prompt is None:
            continue
        answers.setdefault(record.prompt, record.response)
        model = model or record.model
    if not answers:
        raise ReplayError(f"{path}: no record with a prompt to replay")
    name = Path(str(path)).name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    if name == "model_outputs":  # AlpacaEval's results/<model>/model_outputs.json
        name = Path(str(path)).parent.name
    return answers, model or name


class ReplayServer:
    """A ThreadingHTTPServer on ``host:port`` (port 0: a free one) answering from ``answers``.

    ``api_key``: when given, requests without ``Authorization: Bearer <api_key>`` get a 401 (to
    test the client's handling); the key itself is never logged.
    """

    def __init__(self, answers: dict[str, str], model: str, *, host: str = "127.0.0.1",
                 port: int = 0, faults: ReplayFaults = ReplayFaults(),
                 api_key: str | None = None):
        self.answers = answers
        self.model = model
        self.faults = faults
        self.api_key = api_key
        self.log = ReplayLog()
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/v1"

    def next_attempt(self, prompt: str) -> int:
        with self._lock:
            attempt = self._attempts.get(prompt, 0)
            self._attempts[prompt] = attempt + 1
            return attempt

    def start(self) -> "ReplayServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="replay-server")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (``stop_serving`` closes the socket after)."""
        self._httpd.serve_forever()

    def stop_serving(self) -> None:
        self._httpd.server_close()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _error_body(message: str, kind: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()


def _prompt_of(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content
                               if isinstance(p, dict) and p.get("type") == "text")
    return None


def _handler_for(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the request lines carry nothing a test needs (the log does)."""

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                self.close_connection = True

        def _authorised(self) -> bool:
            if server.api_key is None:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {server.api_key}":
                return True
            server.log.add(prompt=None, outcome="unauthorised")
            self._send(401, _error_body("Incorrect API key provided.", "invalid_request_error",
                                        "invalid_api_key"))
            return False

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, _error_body(f"no route {self.path}", "invalid_request_error"))
                return
            if not self._authorised():
                return
            self._send(200, json.dumps({"object": "list", "data": [
                {"id": server.model, "object": "model", "created": 0,
                 "owned_by": "fingerprint-replay"}]}).encode())

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, _error_body(f"no route {self.path}", "invalid_request_error"))
                return
            if not self._authorised():
                return
            try:
                request = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, _error_body("request body is not JSON", "invalid_request_error"))
                return
            prompt = _prompt_of(request.get("messages"))
            if request.get("model") != server.model:
                server.log.add(prompt=prompt, outcome="unknown_model")
                self._send(404, _error_body(f"The model '{request.get('model')}' does not exist",
                                            "invalid_request_error", "model_not_found"))
                return
            if prompt is None or prompt not in server.answers:
                server.log.add(prompt=prompt, outcome="unknown_prompt")
                self._send(404, _error_body("no recorded answer for this prompt",
                                            "invalid_request_error", "prompt_not_recorded"))
                return
            fault = server.faults.draw(prompt, server.next_attempt(prompt))
            server.log.add(prompt=prompt, outcome=fault or "ok")
            if fault == "rate_limit":
                self._send(429, _error_body("Rate limit reached, retry later.", "requests",
                                            "rate_limit_exceeded"),
                           {"Retry-After": f"{server.faults.retry_after:g}"})
                return
            if fault == "server_error":
                self._send(500, _error_body("The server had an error.", "server_error"))
                return
            if fault == "non_json":
                self._send(200, b"<html><body>502 Bad Gateway</body></html>",
                           content_type="text/html")
                return
            if fault == "slow":
                time.sleep(server.faults.slow_seconds)
            body = json.dumps(_completion(request, server.answers[prompt])).encode()
            if fault == "drop":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._send(200, body)

    return Handler


def _completion(request: dict[str, Any], answer: str) -> dict[str, Any]:
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
