"""Fingerprinting on every core, in input order, with bounded memory.

Indexing is CPU-bound and one Python process uses one core: the style vectoriser and text
handling hold the GIL. ``ParallelFingerprinter`` hands chunks of texts to worker processes and
yields their fingerprints in submission order, never more than ``2 x workers`` chunks in flight, so
memory stays flat however long the input stream is.

Starting a worker costs seconds (imports, model load), which small batches would notice, so the
pool only starts once ``start_after`` texts have gone through the in-process fingerprinter.
Workers are started with ``spawn`` (no fork of a process that may hold torch or OpenMP threads)
and each runs its libraries single-threaded: the workers, not the libraries, use the cores.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Iterable, Iterator, Sequence, TypeVar

from fingerprint.config import FingerprintConfig
from fingerprint.errors import ConfigError
from fingerprint.fingerprinter import Fingerprinter, Fingerprints

T = TypeVar("T")

START_AFTER = 4096

log = logging.getLogger(__name__)

_worker: Fingerprinter | None = None


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


PARENT_POLL_SECONDS = 0.5


def die_with_parent(parent: int) -> None:
    """End this worker when the process that started it is gone, however it went (SIGKILL
    included): a killed writer must not leave workers holding hundreds of MB.

    Linux's parent-death signal covers most cases at once; a daemon thread that polls the
    parent's pid covers the rest (the signal follows the *thread* that forked, and other
    systems have no such signal)."""
    import signal
    import threading
    import time

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _init_worker(config: FingerprintConfig, batch_size: int, parent: int) -> None:
    global _worker
    die_with_parent(parent)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMBA_NUM_THREADS", "FINGERPRINT_ONNX_THREADS"):
        os.environ[var] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker = Fingerprinter(config, batch_size=batch_size)


def _fingerprint(texts: list[str], embed: bool) -> Fingerprints:
    if _worker is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("worker not initialised")
    return _worker.fingerprint(texts, embed=embed)


class ParallelFingerprinter:
    """``map`` over (payload, texts) chunks -> (payload, fingerprints), in order."""

    def __init__(self, fingerprinter: Fingerprinter, workers: int = 1,
                 start_after: int | None = None):
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.fingerprinter = fingerprinter
        self.workers = workers
        self.start_after = START_AFTER if start_after is None else start_after
        self._pool: ProcessPoolExecutor | None = None

    def map(self, chunks: Iterable[tuple[T, Sequence[str]]],
            embed: bool = True) -> Iterator[tuple[T, Fingerprints]]:
        done = 0
        pending: deque[tuple[T, Future | Fingerprints]] = deque()
        try:
            for payload, texts in chunks:
                if self.workers > 1 and done >= self.start_after:
                    pending.append((payload, self._executor().submit(_fingerprint, list(texts),
                                                                     embed)))
                else:
                    pending.append((payload, self.fingerprinter.fingerprint(texts, embed=embed)))
                done += len(texts)
                while pending and (len(pending) > 2 * self.workers
                                   or not isinstance(pending[0][1], Future)):
                    yield self._result(pending.popleft())
            while pending:
                yield self._result(pending.popleft())
        finally:
            for _, item in pending:
                if isinstance(item, Future):
                    item.cancel()
            self.close()

    @staticmethod
    def _result(item: tuple[T, Future | Fingerprints]) -> tuple[T, Fingerprints]:
        payload, value = item
        return payload, value.result() if isinstance(value, Future) else value

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            log.debug("starting %d fingerprinting worker processes", self.workers)
            config = self.fingerprinter.config
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(config, self.fingerprinter.batch_size, os.getpid()))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
