"""Durable, atomic file writes: a reader never sees a half-written file.

The file is written under a temporary name in the same directory, flushed to disk and moved into
place with ``os.replace`` (atomic on POSIX filesystems); the directory is fsync'd so the rename
itself survives a crash. Used for every file the toolkit writes whole: the index manifest, watermark
keys, probe files, marked files and reports.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (a directory's entry list must reach disk for renames)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically; ``mode`` applies from the first byte written, so a
    secret never sits in a world-readable temporary file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_path(target.parent)


def output_file_problem(path: str | os.PathLike[str], option: str) -> str | None:
    """Why a file cannot be written at ``path`` (``option``: the command-line option that named
    it), or None. Checked before a long job starts, so that an hour's scan is not lost to a
    typo in the output's directory; the caller raises it in its own error type."""
    target = Path(path)
    if target.is_dir():
        return f"{target}: is a directory; {option} names the file to write"
    parent = target.parent
    if not parent.is_dir():
        return f"{target}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{target}: directory {parent} is not writable"
    return None
