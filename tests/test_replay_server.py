"""The replay server against hostile and malformed HTTP, over raw sockets to a real server on
127.0.0.1: every client mistake gets a 4xx in OpenAI's error shape and no traceback, a request
that never arrives whole frees its thread, a burst of connections is answered without resets by a
bounded number of threads, and a taken port is one clear line."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from cli import main
from replay import ReplayError, ReplayFaults, ReplayServer

MODEL = "m"
ANSWERS = {f"prompt {i}": f"answer {i}" for i in range(8)}
CHAT = "/v1/chat/completions"
LIMIT = 50_000  # max_body_bytes of the shared server


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after this response

    def error(self) -> dict:
        return json.loads(self.body)["error"]


def chat_body(prompt: str = "prompt 0") -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": prompt}]}).encode()


def request(method: str, path: str, body: bytes | None = b"", headers: tuple[str, ...] = (),
            ) -> bytes:
    """A raw HTTP/1.1 request; ``body=None``: no Content-Length header at all."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body is not None and not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def read_response(sock: socket.socket, timeout: float = 10.0, no_body: bool = False) -> Response:
    """One response off the socket, framed by its Content-Length (``no_body``: a HEAD answer);
    then whether the server has closed the connection (EOF within a short wait)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without a complete response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in
               (line.split(":", 1) for line in header_lines)}
    length = 0 if no_body else int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of the body")
        body += chunk
    sock.settimeout(0.5)
    try:
        extra = sock.recv(65536)
        closed = extra == b""
    except TimeoutError:
        extra, closed = b"", False
    if extra:  # a second response, as when a chunked body was read as the next request
        raise AssertionError(f"unexpected bytes after the response: {extra[:200]!r}")
    return Response(int(status_line.split()[1]), headers, body[:length], closed)


def exchange(port: int, data: bytes, no_body: bool = False) -> Response:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        return read_response(sock, no_body=no_body)


@pytest.fixture(scope="module")
def server():
    with ReplayServer(ANSWERS, MODEL, max_body_bytes=LIMIT) as s:
        yield s


MALFORMED = {
    "invalid JSON": (request("POST", CHAT, b"{not json"), 400, "invalid_json", False),
    "JSON not an object": (request("POST", CHAT, b"[1, 2]"), 400, "invalid_json", False),
    "invalid UTF-8": (request("POST", CHAT, b'{"model": "\xff\xfe"}'), 400, "invalid_json",
                      False),
    "nesting too deep": (request("POST", CHAT, b"[" * 40_000), 400, "invalid_json", False),
    "no Content-Length": (request("POST", CHAT, None), 411, "length_required", True),
    "negative Content-Length": (request("POST", CHAT, b"{}", ("Content-Length: -5",)), 400,
                                "invalid_content_length", True),
    "non-numeric Content-Length": (request("POST", CHAT, b"{}", ("Content-Length: abc",)), 400,
                                   "invalid_content_length", True),
    "signed Content-Length": (request("POST", CHAT, b"{}", ("Content-Length: +2",)), 400,
                              "invalid_content_length", True),
    "conflicting Content-Lengths": (request("POST", CHAT, b"{}", (
        "Content-Length: 2", "Content-Length: 3")), 400, "invalid_content_length", True),
    "body over the limit": (request("POST", CHAT, b"x" * (4 * LIMIT)), 413,
                            "request_too_large", True),
    "absurd Content-Length": (request("POST", CHAT, b"{}", ("Content-Length: " + "9" * 40,)),
                              413, "request_too_large", True),
    "chunked body": (request("POST", CHAT, None, ("Transfer-Encoding: chunked",)) +
                     b"5\r\nhello\r\n0\r\n\r\n", 411, "length_required", True),
    "unknown path": (request("GET", "/v1/nothing"), 404, "unknown_route", False),
    "GET on the chat route": (request("GET", CHAT, None), 405, "method_not_allowed", False),
    "PUT with a body": (request("PUT", CHAT, chat_body()), 405, "method_not_allowed", False),
    "POST to the models route": (request("POST", "/v1/models", b"{}"), 405,
                                 "method_not_allowed", False),
    "DELETE": (request("DELETE", "/v1/models", None), 405, "method_not_allowed", False),
    "unknown method": (request("BREW", CHAT, b"{}"), 501, None, True),
    "garbage request line": (b"\x00\x01garbage\r\n\r\n", 400, None, True),
    "unsupported HTTP version": (b"GET /v1/models HTTP/9.9\r\n\r\n", 505, None, True),
    "request line too long": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, None, True),
    "header too long": (request("GET", "/v1/models", None, ("X-Big: " + "a" * 70_000,)), 431,
                        None, True),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_request_gets_a_4xx_json_error_and_no_traceback(server, capfd, name):
    data, status, code, closes = MALFORMED[name]
    response = exchange(server.port, data)
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    error = response.error()
    assert error["message"] and error["type"] and error["code"] == code
    assert response.closed == closes  # unusable framing: the connection cannot go on
    if status == 405:
        assert response.headers["allow"] in ("GET", "POST")
    assert "Traceback" not in capfd.readouterr().err


def test_a_refusal_that_keeps_the_framing_keeps_the_connection(server):
    """After a 404 or a 405 whose body was read, the next request on the same connection is
    answered: the server knew where the refused request ended."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for data, status in ((request("PUT", CHAT, chat_body()), 405),
                             (request("GET", "/nowhere"), 404),
                             (request("POST", CHAT, chat_body("prompt 3")), 200)):
            sock.sendall(data)
            assert read_response(sock).status == status
    head = exchange(server.port, request("HEAD", "/v1/models", None), no_body=True)
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0


def test_a_request_that_never_arrives_whole_gets_408_and_frees_its_thread(capfd):
    with ReplayServer(ANSWERS, MODEL, request_timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request("POST", CHAT, b"{}", ("Content-Length: 100",)))  # 2 of 100
            started = time.monotonic()
            response = read_response(sock)
            assert response.status == 408 and response.error()["code"] == "request_timeout"
            assert response.closed and time.monotonic() - started < 3
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            # one byte every 0.1 s: a timeout per read would never fire, the deadline does
            sock.sendall(request("POST", CHAT, b"", ("Content-Length: 100",)))
            started = time.monotonic()
            while not select.select([sock], [], [], 0.1)[0] and time.monotonic() - started < 5:
                sock.sendall(b" ")
            assert read_response(sock).status == 408 and time.monotonic() - started < 2
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.settimeout(3)
            assert sock.recv(1) == b""  # an idle connection is closed after the timeout
        deadline = time.monotonic() + 5
        while server.active_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.active_connections == 0
    assert "Traceback" not in capfd.readouterr().err


def test_stopping_closes_idle_connections_promptly():
    server = ReplayServer(ANSWERS, MODEL).start()  # request_timeout 10 s
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        deadline = time.monotonic() + 5
        while not server.active_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3 and server.active_connections == 0
        sock.settimeout(3)
        assert sock.recv(1) == b""


def one_chat(port: int, barrier: threading.Barrier, prompt: str = "prompt 0") -> str:
    """One request on its own connection, all of them at once: its status, or the error."""
    try:
        barrier.wait(timeout=60)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request("POST", CHAT, chat_body(prompt), ("Connection: close",)))
            return str(read_response(sock, timeout=30).status)
    except (OSError, threading.BrokenBarrierError) as exc:
        return type(exc).__name__


def test_a_burst_of_connections_is_answered_without_resets():
    """600 connections at once (socketserver's backlog of 5 lost some of them)."""
    n = 600
    with ReplayServer(ANSWERS, MODEL) as server:
        barrier = threading.Barrier(n)
        with ThreadPoolExecutor(n) as pool:
            outcomes = Counter(pool.map(lambda _: one_chat(server.port, barrier), range(n)))
    assert outcomes == {"200": n}


def test_handler_threads_are_bounded():
    """Six slow requests with two threads: never more than two handler threads, so the requests
    are answered in three waves; every one is answered."""
    slow = ReplayFaults(slow=1.0, slow_seconds=0.3)
    with ReplayServer(ANSWERS, MODEL, faults=slow, max_connections=2) as server:
        peak, done = [0], threading.Event()

        def watch() -> None:
            while not done.is_set():
                handlers = [t for t in threading.enumerate() if "process_request" in t.name]
                peak[0] = max(peak[0], len(handlers), server.active_connections)
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        barrier = threading.Barrier(6)
        try:
            with ThreadPoolExecutor(6) as pool:
                outcomes = Counter(pool.map(
                    lambda i: one_chat(server.port, barrier, f"prompt {i}"),
                    range(6)))  # six prompts: each one's first try is slow
            elapsed = time.monotonic() - started
        finally:
            done.set()
            watcher.join()
    assert outcomes == {"200": 6}
    assert 1 <= peak[0] <= 2 and elapsed >= 0.85


def test_a_taken_port_is_one_line_naming_it(tmp_path):
    recorded = tmp_path / "recorded.jsonl"
    recorded.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve-replay", str(recorded), "--port", str(port)])
        with pytest.raises(ReplayError, match=f"127.0.0.1:{port}"):
            ReplayServer(ANSWERS, MODEL, port=port)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port 0" in result.output and result.output.count("\n") == 1


@pytest.mark.parametrize("option,value", [("request_timeout", 0), ("max_body_bytes", 0),
                                          ("max_connections", 0), ("backlog", 1.5)])
def test_unusable_limits_are_refused(option, value):
    with pytest.raises(ReplayError, match=option):
        ReplayServer(ANSWERS, MODEL, **{option: value})


def test_the_command_defaults_are_the_library_defaults():
    from fingerprint.http_server import MAX_BODY_BYTES, MAX_CONNECTIONS, REQUEST_TIMEOUT

    defaults = {p.name: p.default for p in main.commands["serve-replay"].params}
    assert (defaults["request_timeout"], defaults["max_body_bytes"],
            defaults["max_connections"]) == (REQUEST_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS)


def test_a_server_never_started_stops_at_once():
    server = ReplayServer({"q": "a"}, "m")
    done = threading.Event()
    threading.Thread(target=lambda: (server.stop(), done.set()), daemon=True).start()
    assert done.wait(5), "stop() waited for a serve loop that never began"


def test_a_kept_alive_connection_is_answered_without_a_delayed_ack_stall():
    """Headers and body are two writes; without TCP_NODELAY the second waits for the client's
    delayed ACK (40 ms on Linux) on every request of a kept-alive connection: 10 requests
    took 0.40 s before the fix."""
    import http.client

    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "prompt 1"}]})
    with ReplayServer(ANSWERS, MODEL) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            started = time.perf_counter()
            for _ in range(10):
                conn.request("POST", "/v1/chat/completions", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                assert response.status == 200 and response.read()
            elapsed = time.perf_counter() - started
        finally:
            conn.close()
    assert elapsed < 0.3, f"10 requests took {elapsed:.3f} s"
