"""Checksums and streamed ``.npy`` writing; atomic writes live in fingerprint.atomic (the key
files of the watermark need them too) and are re-exported here."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from fingerprint.atomic import atomic_write_bytes, fsync_path
from fingerprint.checksum import file_sha256 as sha256_file
from fingerprint.parallel import default_workers
from index.errors import IndexStoreError, IndexWriteError

__all__ = ["NpyAppender", "atomic_write_bytes", "fsync_path", "sha256_file", "sha256_files"]


def sha256_files(paths: Sequence[str | os.PathLike[str]], fsync: bool = False) -> list[str]:
    """``sha256_file`` of each path, in order, on one thread per core (with ``fsync``, each
    file is flushed to disk first).

    A segment is several large files (4 GB at a million rows) hashed once when it is written
    and again when it is verified; hashlib releases the GIL on large blocks, so the files are
    hashed side by side instead of one after another."""

    def one(path: str | os.PathLike[str]) -> str:
        if fsync:
            fsync_path(path)
        return sha256_file(path)

    if len(paths) <= 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(len(paths), default_workers())) as pool:
        return list(pool.map(one, paths))


class NpyAppender:
    """Writes a ``.npy`` array row block by row block, so a segment never sits whole in memory.

    The header is written first with room reserved for the final shape and rewritten when the
    file is closed; the result is an ordinary ``.npy`` file that ``np.load(..., mmap_mode="r")``
    opens without reading it.
    """

    HEADER_BYTES = 128

    def __init__(self, path: str | os.PathLike[str], dtype: str, row_shape: tuple[int, ...] = ()):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._file = open(self.path, "wb")
        self._file.write(self._header())

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise IndexStoreError(f"{self.path.name}: rows of shape {block.shape[1:]}, expected "
                             f"{self.row_shape}")
        try:
            self._file.write(block.tobytes())
        except OSError as exc:
            raise self._failed(exc) from None
        self.rows += block.shape[0]

    def abort(self) -> None:
        """Close without finishing the header (the file is about to be deleted); what is still
        buffered may fail to reach the disk, and need not."""
        try:
            self._file.close()
        except OSError:
            pass

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.seek(0)
            self._file.write(self._header())
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self.abort()
            raise self._failed(exc) from None
        self._file.close()

    def _failed(self, exc: OSError) -> IndexWriteError:
        """The write error with the file's name (a write's OSError carries none)."""
        return IndexWriteError(f"{self.path}: cannot write ({exc.strerror or exc}); is the disk "
                               f"full, or a file size limit reached? Nothing was added to the "
                               f"index")

    def _header(self) -> bytes:
        shape = (self.rows, *self.row_shape)
        text = repr({"descr": self.dtype.str, "fortran_order": False, "shape": shape})
        room = self.HEADER_BYTES - 10  # magic (6), version (2), header length (2)
        if len(text) + 1 > room:
            raise IndexStoreError(f"{self.path.name}: shape {shape} does not fit the reserved header")
        body = (text + " " * (room - len(text) - 1) + "\n").encode("latin-1")
        return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body
