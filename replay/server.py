"""Serve recorded outputs as an OpenAI-compatible model over real HTTP, for testing clients.

Probing a suspect through its API has to survive rate limits, server errors, slow answers and
dropped connections. Testing that against mocks of the HTTP protocol would test the mocks; this
server speaks real HTTP on 127.0.0.1 (``/v1/chat/completions``, ``/v1/models``). What it answers
is replay.handler's (a pure request -> reply function, faults included); this module only reads
requests off the socket and writes replies onto it.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping

from fingerprint.io import read_records
from fingerprint.records import FieldMap
from replay.errors import ReplayError
from replay.handler import Reply, ReplayFaults, ReplayHandler, ReplayLog


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
    """A ThreadingHTTPServer on ``host:port`` (port 0: a free one) answering from ``answers``
    through a ReplayHandler (``api_key``: requests without it get a 401)."""

    def __init__(self, answers: dict[str, str], model: str, *, host: str = "127.0.0.1",
                 port: int = 0, faults: ReplayFaults = ReplayFaults(),
                 api_key: str | None = None):
        self.handler = ReplayHandler(answers, model, faults=faults, api_key=api_key)
        self._httpd = ThreadingHTTPServer((host, port), _http_adapter(self.handler))
        self._httpd.daemon_threads = True
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


def _http_adapter(handler: ReplayHandler) -> type[BaseHTTPRequestHandler]:
    class HTTPAdapter(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the request lines carry nothing a test needs (the handler's log does)."""

        def do_GET(self) -> None:  # noqa: N802
            self._reply(handler.handle("GET", self.path, self.headers, b""))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            self._reply(handler.handle("POST", self.path, self.headers, body))

        def _reply(self, reply: Reply) -> None:
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                if reply.drop:  # half the body, then the connection is closed under the client
                    self.wfile.write(reply.body[: len(reply.body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                self.close_connection = True

    return HTTPAdapter
