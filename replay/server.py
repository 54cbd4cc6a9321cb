"""Serve recorded outputs as an OpenAI-compatible model over real HTTP, for testing clients.

Probing a suspect through its API has to survive rate limits, server errors, slow answers and
dropped connections. Testing that against mocks of the HTTP protocol would test the mocks; this
server speaks real HTTP on 127.0.0.1 (``/v1/chat/completions``, ``/v1/models``). What it answers
is replay.handler's (a pure request -> reply function, faults included); how requests are read
off the socket and replies written onto it, with limits against hostile clients, is
fingerprint.http_server's (shared with the monitor's server); this module puts the two together
and starts and stops them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping

from fingerprint.http_server import (BACKLOG, MAX_BODY_BYTES, MAX_CONNECTIONS, REQUEST_TIMEOUT,
                                     HTTPAdapter, Reply, adapter_class, limit_problem, listen)
from fingerprint.io import read_records
from fingerprint.records import FieldMap
from replay.errors import ReplayError
from replay.handler import ReplayFaults, ReplayHandler, ReplayLog, error_reply


class ReplayHTTPAdapter(HTTPAdapter):
    """The hardened HTTP framing (fingerprint.http_server) around a ReplayHandler, with errors
    in OpenAI's shape, which its client parses into typed exceptions."""

    replay_handler: ReplayHandler
    failure_message = "the replay server failed on this request"
    malformed_code = None  # as OpenAI's API, whose errors mostly carry no code

    def answer(self, body: bytes) -> Reply:
        return self.replay_handler.handle(self.command, self.path, self.headers, body)

    def error_reply(self, status: int, message: str, code: str | None) -> Reply:
        """OpenAI's shape: a request the server cannot frame is the client's error (even a 501
        for an unknown method); only our own failure is a ``server_error``."""
        kind = "server_error" if code == "server_error" else "invalid_request_error"
        return error_reply(status, message, kind, code)


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
    """A threading HTTP server on ``host:port`` (port 0: a free one) answering from ``answers``
    through a ReplayHandler (``api_key``: requests without it get a 401).

    Limits (replay.protocol): a request must arrive whole within ``request_timeout`` seconds
    (else 408, or the idle connection is closed), its body must be at most ``max_body_bytes``
    (else 413), and at most ``max_connections`` connections are served at once (more wait in a
    listen backlog of ``backlog``). A port already taken is a ReplayError naming it.
    """

    def __init__(self, answers: dict[str, str], model: str, *, host: str = "127.0.0.1",
                 port: int = 0, faults: ReplayFaults = ReplayFaults(),
                 api_key: str | None = None, request_timeout: float = REQUEST_TIMEOUT,
                 max_body_bytes: int = MAX_BODY_BYTES, max_connections: int = MAX_CONNECTIONS,
                 backlog: int = BACKLOG):
        check_limits(request_timeout, max_body_bytes, max_connections, backlog)
        self.handler = ReplayHandler(answers, model, faults=faults, api_key=api_key)
        adapter = adapter_class(ReplayHTTPAdapter, request_timeout, max_body_bytes,
                                replay_handler=self.handler)
        self._httpd = listen(host, port, adapter, max_connections=max_connections,
                             backlog=backlog, error=ReplayError)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: str | Path, fields: FieldMap = FieldMap(), *,
                  model: str | None = None, **options: Any) -> "ReplayServer":
        """A server of a recorded outputs file, as model ``model`` (default: the records' model,
        else the file's name); ``options`` as for the constructor."""
        answers, name = load_recorded(path, fields)
        return cls(answers, model or name, **options)

    @property
    def answers(self) -> Mapping[str, str]:
        return self.handler.answers

    @property
    def model(self) -> str:
        return self.handler.model

    @property
    def log(self) -> ReplayLog:
        return self.handler.log

    @property
    def active_connections(self) -> int:
        """Connections being served right now (each holds one handler thread)."""
        return self._httpd.active_connections

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/v1"

    def start(self) -> "ReplayServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="replay-server")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (``stop_serving`` closes the socket after)."""
        self._httpd.serve_forever()

    def stop_serving(self) -> None:
        """Close the listening socket and every open connection (after ``serve_forever``)."""
        self._httpd.server_close()

    def stop(self) -> None:
        """Stop serving and close every socket. socketserver's ``shutdown`` waits for a
        ``serve_forever`` loop to end, so it is only called when ``start`` began one."""
        if self._thread is not None:
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_limits(request_timeout: float, max_body_bytes: int, max_connections: int,
                 backlog: int) -> None:
    """A limit that would refuse every request (or none) is a mistake: say so at once."""
    problem = limit_problem(request_timeout, max_body_bytes, max_connections, backlog)
    if problem:
        raise ReplayError(problem)
