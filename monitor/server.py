"""``fingerprint monitor serve``: the online monitor over HTTP on 127.0.0.1 (stdlib http.server).

What it answers is monitor.service's (``POST /v1/check``, ``GET /v1/health``); how requests are
read off the socket, with limits against hostile clients, is fingerprint.http_server's (shared
with the replay server); this module puts them together, runs the flush timer, and starts and
stops them. ``serve`` is what the
command runs: it opens the monitor's state, listens, and on SIGTERM or SIGINT stops accepting,
lets the requests being answered finish (a few seconds at most), then flushes and snapshots the
state and releases its directory.

Threads: each connection has a handler thread (at most ``max_connections``), and every check
goes through the monitor's one lock (monitor.online says why one is enough).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Callable

from fingerprint.http_server import (BACKLOG, MAX_BODY_BYTES, MAX_CONNECTIONS, REQUEST_TIMEOUT,
                                     HTTPAdapter, Reply, adapter_class, limit_problem, listen)
from monitor.baseline import Baseline
from monitor.errors import MonitorError, ServeError
from monitor.limiter import LimitPolicy
from monitor.online import Monitor
from monitor.service import CheckService, error_reply

log = logging.getLogger(__name__)
MIN_TIMER_SECONDS = 0.05
POLL_SECONDS = 0.1  # how long stopping waits for the accept loop to notice, at most


class MonitorHTTPAdapter(HTTPAdapter):
    """The hardened HTTP framing (fingerprint.http_server) around the check service."""

    service: CheckService
    failure_message = "the monitor failed on this request"

    def answer(self, body: bytes) -> Reply:
        return self.service.handle(self.command, self.path, body)

    def error_reply(self, status: int, message: str, code: str | None) -> Reply:
        return error_reply(status, message, code or "bad_request")


class MonitorServer:
    """A threading HTTP server on ``host:port`` (port 0: a free one) answering from ``monitor``.
    Limits as the replay server's: a request must arrive whole within ``request_timeout``
    seconds (else 408), its body must be at most ``max_body_bytes`` (else 413), at most
    ``max_connections`` are served at once. A port already taken is a ServeError naming it.
    The server does not own the monitor: whoever opened it closes it."""

    def __init__(self, monitor: Monitor, *, host: str = "127.0.0.1", port: int = 0,
                 request_timeout: float = REQUEST_TIMEOUT, max_body_bytes: int = MAX_BODY_BYTES,
                 max_connections: int = MAX_CONNECTIONS, backlog: int = BACKLOG):
        check_limits(request_timeout, max_body_bytes, max_connections, backlog)
        self.monitor = monitor
        adapter = adapter_class(MonitorHTTPAdapter, request_timeout, max_body_bytes,
                                service=CheckService(monitor))
        self._httpd = listen(host, port, adapter, max_connections=max_connections,
                             backlog=backlog, error=ServeError)
        self._stopped = threading.Event()
        self._timer = threading.Thread(target=self._flush_timer, daemon=True,
                                       name="monitor-flush")
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/v1"

    def _flush_timer(self) -> None:
        """Flush requests that have waited ``flush_seconds`` when traffic stops (with
        ``flush_every`` 1 there is never anything to do)."""
        interval = max(MIN_TIMER_SECONDS, self.monitor.flush_seconds / 2)
        while not self._stopped.wait(interval):
            try:
                self.monitor.flush_due()
            except MonitorError as exc:  # the next check gets it as a 503 too
                log.warning("monitor state flush failed: %s", exc)

    def start(self) -> "MonitorServer":
        """Serve in a background thread (tests, embedding); ``stop`` ends it."""
        self._timer.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(POLL_SECONDS,),
                                        daemon=True, name="monitor-server")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``shutdown`` is called from another one."""
        self._timer.start()
        self._httpd.serve_forever(POLL_SECONDS)

    def shutdown(self) -> None:
        """End ``serve_forever`` (call from another thread: it waits for the loop to end)."""
        self._httpd.shutdown()

    def stop(self) -> None:
        """Stop serving, close every socket, wait for the handler threads (a few seconds at
        most) and the timer. The monitor stays open."""
        self._stopped.set()
        if self._thread is not None:
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._timer.is_alive():
            self._timer.join(timeout=5)

    def __enter__(self) -> "MonitorServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_limits(request_timeout: float, max_body_bytes: int, max_connections: int,
                 backlog: int) -> None:
    """A limit that would refuse every request (or none) is a mistake: say so at once."""
    problem = limit_problem(request_timeout, max_body_bytes, max_connections, backlog)
    if problem:
        raise ServeError(problem)


def serve(baseline: Baseline | str | os.PathLike[str], state_dir: str | os.PathLike[str],
          policy: LimitPolicy = LimitPolicy(), *, host: str = "127.0.0.1", port: int = 8100,
          ready: Callable[[str], None] | None = None, monitor_options: dict[str, Any] | None
          = None, **server_options: Any) -> dict[str, Any]:
    """What ``fingerprint monitor serve`` does: open the monitor (``monitor_options``: Monitor's
    keyword arguments), listen (``server_options``: MonitorServer's), load the embedding (so
    the first answer is not late), call ``ready(url)``, serve
    until SIGTERM or SIGINT, then stop cleanly: the state is flushed and snapshotted. Returns the
    monitor's counters at the end. Signals are only caught when called from the main thread."""
    monitor = Monitor(baseline, state_dir, policy, **(monitor_options or {}))
    try:
        server = MonitorServer(monitor, host=host, port=port, **server_options)
        monitor.warm_up()
    except BaseException:
        monitor.close()
        raise
    previous = _catch_signals(server)
    try:
        if ready is not None:
            ready(server.url)
        server.serve_forever()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()
        health = monitor.health()
        monitor.close()
    return health["stats"]


def _catch_signals(server: MonitorServer) -> dict[int, Any]:
    """SIGTERM and SIGINT end ``serve_forever`` from a helper thread (the handler runs in the
    serving thread, which cannot wait for its own loop); returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True, name="monitor-stop").start()

    return {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
