"""Byte streams of inputs: opening a file or standard input, and looking at the first bytes of a
stream that cannot seek (a pipe, a FIFO, standard input) without losing them.

``BufferedReader.peek`` returns whatever one read of a pipe happened to deliver, possibly a
single byte, so deciding "gzip or not" or "JSON array or lines" from it is a guess. Here the
first bytes are read for certain (``read_ahead``) and served again before the rest
(``Rewound``). Standard input is never closed: the process may still need it, and a closed
``sys.stdin`` is what made a second reader fail with "peek of closed file".
"""

from __future__ import annotations

import io
import os
import sys
from typing import IO, Sequence

from fingerprint.errors import InputError

BUFFER_BYTES = 1 << 16


class Rewound(io.RawIOBase):
    """``head`` and then the rest of ``rest``, as one readable stream. Closing it closes
    ``rest`` when ``owns_rest``, and then each of ``also_close`` (what ``rest`` was made of)."""

    def __init__(self, head: bytes, rest: IO[bytes], *, owns_rest: bool = True,
                 also_close: Sequence[IO[bytes]] = ()):
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest
        self._read = getattr(rest, "read1", rest.read)
        self._owns_rest = owns_rest
        self._also_close = list(also_close)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if len(self._head):
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                if self._owns_rest:
                    self._rest.close()
                for stream in self._also_close:
                    stream.close()
            finally:
                super().close()


def rewound(head: bytes, rest: IO[bytes], *, owns_rest: bool = True,
            also_close: Sequence[IO[bytes]] = ()) -> IO[bytes]:
    """A buffered stream of ``head`` followed by ``rest`` (see ``Rewound``)."""
    raw = Rewound(head, rest, owns_rest=owns_rest, also_close=also_close)
    return io.BufferedReader(raw, BUFFER_BYTES)  # type: ignore[return-value]


def read_ahead(stream: IO[bytes], n: int) -> bytes:
    """Exactly ``n`` bytes, fewer only at the end of the stream (however a pipe delivers)."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def open_file(path: str | os.PathLike[str], name: str) -> IO[bytes]:
    """A binary stream of a file, or errors that name it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(name, None, "no such file") from None
    except IsADirectoryError:
        raise InputError(name, None, "is a directory, not an input file") from None
    except OSError as exc:
        raise InputError(name, None, f"cannot open: {exc.strerror or exc}") from None


def open_raw(path: str | os.PathLike[str], name: str) -> tuple[IO[bytes], bool]:
    """The input's bytes, and whether closing them is ours to do (not for standard input)."""
    if str(path) != "-":
        return open_file(path, name), True
    if sys.stdin is None:
        raise InputError(name, None, "standard input is closed")
    return getattr(sys.stdin, "buffer", sys.stdin), False
