"""HTTP/1.1 on a socket, hardened against hostile and malformed clients: the one copy that both
servers of the toolkit use (``replay serve``, which plays a suspect's API in tests, and
``monitor serve``, which a gateway asks before every request).

It lives in the bottom layer because it is a reader of inputs (network ones) and because the
capabilities that serve HTTP may not import each other. What a request *means* is each server's
(an ``HTTPAdapter`` subclass answers a framed body with a ``Reply``); this module decides what a
request *is*: where its body starts and ends, how long the server waits for it, how much it will
hold in memory, and how many connections it serves at once. Every client mistake gets a JSON
answer in the server's error shape (never a traceback on the server's stderr, never a silently
closed socket):

- the body is framed by one valid ``Content-Length`` of at most ``max_body_bytes`` (else 400, 411
  or 413); ``Transfer-Encoding`` (chunked) is refused with 411: OpenAI clients never send it, and
  a gateway's hook forwards a body it has read whole;
- a request must arrive whole within ``request_timeout`` seconds (a total deadline, not per read,
  so a client trickling one byte at a time cannot hold a thread): a late body gets 408, and an
  idle kept-alive connection is closed after as long;
- at most ``max_connections`` connections are served at once, each by one thread; further ones
  wait in the listen backlog (``backlog``, far above socketserver's 5, which reset connections
  under load) until a thread is free.

When a request is refused before its body was read, the connection is closed after the answer,
and the server first reads away what the client is still sending (briefly): closing a socket
with unread data resets it, and the client would lose the answer it was about to read.
"""

from __future__ import annotations

import errno
import io
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping

MAX_BODY_BYTES = 1 << 20        # 1 MiB: far above any chat request, not a book
REQUEST_TIMEOUT = 10.0          # seconds; above httpx's 5 s keep-alive, so clients close first
MAX_CONNECTIONS = 64
BACKLOG = 1024                  # the kernel caps it at net.core.somaxconn
LINGER_SECONDS = 1.0            # reading away a refused body before closing, at most this long
LINGER_BYTES = 4 << 20          # ... and at most this much
STOP_SECONDS = 5.0              # stopping waits this long at most for handler threads to end
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Reply:
    """What to send: status, body and headers; ``delay`` seconds first, and with ``drop`` only
    half the body before the connection is closed (faults the replay server plays)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False


def read_json_object(body: bytes) -> dict[str, Any] | str:
    """The request body as a JSON object, or the sentence saying why it is not one (UTF-8 only,
    as JSON over HTTP must be; nesting too deep for the parser is refused, not a crash)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body is not valid UTF-8 (byte {exc.start})"
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"request body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return "request body nests too deeply"
    if not isinstance(request, dict):
        return "request body is not a JSON object"
    return request


def limit_problem(request_timeout: float, max_body_bytes: int, max_connections: int,
                  backlog: int) -> str | None:
    """What is wrong with a server's limits, if anything: a limit that would refuse every
    request (or none) is a mistake to report at once, in the caller's error type."""
    if isinstance(request_timeout, bool) or not isinstance(request_timeout, (int, float)) \
            or not request_timeout > 0:
        return f"request_timeout must be > 0 seconds, got {request_timeout!r}"
    for name, value in (("max_body_bytes", max_body_bytes), ("max_connections", max_connections),
                        ("backlog", backlog)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be an integer >= 1, got {value!r}"
    return None


class DeadlineReader(io.RawIOBase):
    """The socket's input, raising TimeoutError once the request's deadline has passed however
    the bytes trickle in (a socket timeout alone restarts at every byte received)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline = float("inf")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


def linger(sock: socket.socket) -> None:
    """Half-close, then read away what the client still sends (bounded), so that closing the
    socket does not reset the connection before the client has read our answer."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline, drained = time.monotonic() + LINGER_SECONDS, 0
        while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:
        return


class HTTPAdapter(BaseHTTPRequestHandler):
    """Frames a request and copies the Reply that ``answer`` gives onto the socket. A server
    subclasses it with ``answer`` (what a framed body means) and ``error_reply`` (its error
    shape); ``adapter_class`` fills in the limits (http.server makes one instance a connection)."""

    protocol_version = "HTTP/1.1"
    timeout: float = REQUEST_TIMEOUT  # StreamRequestHandler puts it on the socket: every write
    max_body_bytes = MAX_BODY_BYTES
    failure_message = "the server failed on this request"
    malformed_code: str | None = "bad_request"  # the code of http.server's own refusals
    unread = False  # a refused body may still be arriving: linger before closing

    def answer(self, body: bytes) -> Reply:
        """The reply to this request (``self.command``, ``self.path``, ``self.headers``)."""
        raise NotImplementedError

    def error_reply(self, status: int, message: str, code: str | None) -> Reply:
        """An error in this server's JSON shape."""
        raise NotImplementedError

    def setup(self) -> None:
        """A deadline reader on the socket, and no Nagle delay: an answer's headers and body go
        out as two writes, and with Nagle the second waits for the client's delayed ACK (40 ms
        on Linux) on every request of a kept-alive connection (measured: 10 requests took
        0.40 s)."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        self.reader.deadline = time.monotonic() + self.timeout
        super().handle_one_request()

    def finish(self) -> None:
        super().finish()
        if self.unread:
            linger(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines and client timeouts are not the operator's problem (each
        server's own log or counters say what it did)."""

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, headers too long, an unknown
        method) as JSON instead of an HTML page, always with a status line (http.server omits
        it when the request line was not understood)."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        text = message or self.responses.get(code, ("error",))[0]
        self.refuse(self.error_reply(code, text[:300], self.malformed_code))

    def body_length(self) -> int | Reply:
        """How many body bytes follow the headers, or the error reply when the framing is
        unusable (after which the connection must be closed: where the next request starts is
        unknown)."""
        headers = self.headers
        if headers.get_all("Transfer-Encoding"):
            return self.error_reply(411, "Transfer-Encoding (chunked) is not supported: send the "
                                    "body with a Content-Length header", "length_required")
        values = {v.strip() for v in headers.get_all("Content-Length") or ()}
        if not values:
            if self.command in ("POST", "PUT", "PATCH"):
                return self.error_reply(411, "a Content-Length header is required",
                                        "length_required")
            return 0
        if len(values) > 1:
            return self.error_reply(400, "conflicting Content-Length headers",
                                    "invalid_content_length")
        value = values.pop()
        if not _DIGITS.fullmatch(value):
            return self.error_reply(400, f"Content-Length {value[:40]!r} is not a number of "
                                    "bytes", "invalid_content_length")
        if len(value) > 18 or int(value) > self.max_body_bytes:
            return self.error_reply(413, f"request body of {value[:40]} bytes is over the limit "
                                    f"of {self.max_body_bytes} bytes", "request_too_large")
        return int(value)

    def handle_expect_100(self) -> bool:
        """No ``100 Continue`` for a body that will be refused anyway."""
        if isinstance(self.body_length(), Reply):
            return True
        return super().handle_expect_100()

    def serve(self) -> None:
        length = self.body_length()
        if isinstance(length, Reply):
            return self.refuse(length)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            return self.refuse(self.error_reply(
                408, f"the request body did not arrive within {self.timeout:g} s",
                "request_timeout"))
        if len(body) < length:  # the client half-closed: nothing more will come
            return self.refuse(self.error_reply(
                400, f"the request body ended after {len(body)} of {length} bytes",
                "incomplete_body"))
        try:
            reply = self.answer(body)
        except Exception:  # a bug of ours: the client still gets an answer, stderr the trace
            self.refuse(self.error_reply(500, self.failure_message, "server_error"))
            raise
        self.reply(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = serve

    def refuse(self, reply: Reply) -> None:
        self.unread = self.close_connection = True
        self.reply(reply)

    def reply(self, reply: Reply) -> None:
        self.connection.settimeout(self.timeout)  # whatever the read deadline left
        if reply.delay:
            time.sleep(reply.delay)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if reply.drop:  # half the body, then the connection is closed under the client
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(reply.body)


def adapter_class(base: type[HTTPAdapter], request_timeout: float, max_body_bytes: int,
                  **attributes: Any) -> type[HTTPAdapter]:
    """``base`` with one server's limits (and ``attributes``, e.g. its handler) filled in."""
    return type(base.__name__, (base,), {"timeout": request_timeout,
                                         "max_body_bytes": max_body_bytes, **attributes})


class BoundedHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with at most ``max_connections`` handler threads (the accept loop
    waits for a free one; meanwhile connections queue in the listen backlog), quiet about
    clients that go away, and able to close every open connection when stopped."""

    daemon_threads = True
    allow_reuse_port = False  # a taken port must be an error, never a shared one

    def __init__(self, address: tuple[str, int], handler_class: Callable[..., Any], *,
                 max_connections: int, backlog: int):
        self.request_queue_size = backlog
        self.slots = threading.BoundedSemaphore(max_connections)
        self.closing = threading.Event()
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        self.all_closed = threading.Condition(self.open_lock)
        super().__init__(address, handler_class)

    @property
    def active_connections(self) -> int:
        with self.open_lock:
            return len(self.open)

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self.slots.acquire(timeout=0.2):
            if self.closing.is_set():
                self.shutdown_request(request)
                return
        with self.open_lock:
            self.open.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread could not start: give its slot back
            self.release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.release(request)

    def release(self, request: Any) -> None:
        with self.all_closed:
            self.open.discard(request)
            self.all_closed.notify_all()
        self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets, times out or stops reading is not an error of the server; a
        bug of ours still prints its traceback."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def shutdown(self) -> None:
        self.closing.set()  # an accept loop waiting for a free thread gives up waiting
        super().shutdown()

    def server_close(self) -> None:
        """Close the listening socket, then wake every handler thread by shutting its socket
        and wait (a few seconds at most: a slow fault may be sleeping) for them to end."""
        self.closing.set()
        super().server_close()
        with self.open_lock:
            live = list(self.open)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.all_closed:
            self.all_closed.wait_for(lambda: not self.open, timeout=STOP_SECONDS)


def listen(host: str, port: int, handler_class: type[HTTPAdapter], *, max_connections: int,
           backlog: int, error: Callable[[str], Exception]) -> BoundedHTTPServer:
    """A bound, listening BoundedHTTPServer. When it cannot listen, ``error(message)`` (the
    caller's error type) says which address failed and, when the port is taken, how to get a
    free one."""
    try:
        return BoundedHTTPServer((host, port), handler_class,
                                 max_connections=max_connections, backlog=backlog)
    except OSError as exc:
        hint = (" (another process holds it; --port 0 picks a free port)"
                if exc.errno == errno.EADDRINUSE else "")
        raise error(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
