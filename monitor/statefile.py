"""The state store's files on disk: names, headers, frames, entries, and safe file access.

Kept apart from ``monitor.state`` (the store's behaviour) so that the byte layout is read in one
place. A state directory holds exactly these files (fixed names; account names never become
paths, and no file is followed through a symbolic link, so every path stays inside the
directory):

- ``manifest.json``: format name and version, the toolkit version that made it, and the monitor
  configuration's fingerprint.
- ``snapshot.bin``: magic ``FPMSNAP1``, a generation number (u64), one frame holding every entry.
- ``journal.bin``: magic ``FPMJRNL1``, the generation of the snapshot it continues, then one
  frame per flush.

A frame is ``<u64 payload length><u32 crc32 of that length><payload><u32 crc32 of payload>``: the
length has its own checksum, so a damaged length is seen as damage rather than sending the reader
past the end and mistaking the rest of the file for a torn tail. A payload is entries
``<u16 account bytes><u32 blob bytes><account utf-8><blob>``. No pickle: a state file is read as
data and can never run code. All integers are little-endian.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from monitor.errors import StateCorruptedError, StateError

FORMAT = "fingerprint-monitor-state"
FORMAT_VERSION = 1
MANIFEST, SNAPSHOT, JOURNAL = "manifest.json", "snapshot.bin", "journal.bin"
SNAPSHOT_MAGIC, JOURNAL_MAGIC = b"FPMSNAP1", b"FPMJRNL1"
MAX_ACCOUNT_BYTES = 1024
MAX_BLOB_BYTES = 1 << 20
FILE_HEADER = struct.Struct("<8sQ")  # magic, generation
LENGTH = struct.Struct("<Q")
CRC = struct.Struct("<I")
FRAME_HEAD = LENGTH.size + CRC.size
ENTRY = struct.Struct("<HI")  # account bytes, blob bytes
TMP_PREFIX = f".{SNAPSHOT}.tmp-"  # the snapshot's temporary name, before os.replace
TMP_PREFIXES = tuple(f".{name}.tmp-" for name in (MANIFEST, SNAPSHOT, JOURNAL))  # + atomic.py's


def frame_head(length: int) -> bytes:
    packed = LENGTH.pack(length)
    return packed + CRC.pack(zlib.crc32(packed))


def frame(payload: bytes) -> bytes:
    return frame_head(len(payload)) + payload + CRC.pack(zlib.crc32(payload))


def encode_entry(account: str, blob: bytes) -> bytes:
    key = account.encode("utf-8")
    return ENTRY.pack(len(key), len(blob)) + key + blob


def frame_at(data: bytes,
             offset: int) -> tuple[str | None, bool, memoryview | None, int]:
    """(problem, crash, payload, end) of the frame at ``offset``. ``problem`` is None for a
    whole frame, else what is wrong; ``crash`` says whether a crash during the file's last write
    explains it (the frame is cut short, the tail is zeros, or the checksum of a frame that ends
    the file fails); ``end`` is where the next frame starts."""
    size = len(data)
    if size - offset < FRAME_HEAD:
        return "frame cut short", True, None, size
    packed = data[offset:offset + LENGTH.size]
    if zlib.crc32(packed) != CRC.unpack_from(data, offset + LENGTH.size)[0]:
        zero_tail = data.count(0, offset) == size - offset
        return "frame header checksum mismatch", zero_tail, None, size
    start = offset + FRAME_HEAD
    end = start + LENGTH.unpack(packed)[0]
    if end + CRC.size > size:
        return "frame cut short", True, None, size
    payload = memoryview(data)[start:end]
    if zlib.crc32(payload) != CRC.unpack_from(data, end)[0]:
        return "frame checksum mismatch", end + CRC.size == size, None, size
    return None, False, payload, end + CRC.size


def decode_entries(payload: memoryview, path: Path, base: int) -> Iterator[tuple[str, bytes]]:
    """Decode one frame's entries; ``base`` is the payload's offset in the file, for errors."""
    offset, size = 0, len(payload)
    while offset < size:
        if offset + ENTRY.size > size:
            raise StateCorruptedError(f"{path}: entry header cut short at byte offset "
                                      f"{base + offset}")
        key_len, blob_len = ENTRY.unpack_from(payload, offset)
        start = offset + ENTRY.size
        end = start + key_len + blob_len
        if end > size:
            raise StateCorruptedError(f"{path}: entry runs past its frame at byte offset "
                                      f"{base + offset}")
        try:
            account = bytes(payload[start:start + key_len]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StateCorruptedError(f"{path}: account name is not UTF-8 at byte offset "
                                      f"{base + offset}") from exc
        yield account, bytes(payload[start + key_len:end])
        offset = end


def open_state_file(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open a state file without following a link; a link or a non-file is refused."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"{path} is a symbolic link; a state directory holds only its own "
                             f"files") from exc
        if exc.errno == errno.ENOENT:
            raise StateCorruptedError(f"{path} is missing") from exc
        raise StateError(f"{path}: cannot open: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StateError(f"{path} is not a regular file")
    return fd


def read_all(fd: int, path: Path) -> bytes:
    try:
        size = os.fstat(fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, min(size - offset, 1 << 24), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}") from exc


def write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]


def file_header(data: bytes, path: Path, magic: bytes) -> int:
    """The generation a state file's header names; a wrong magic is corruption."""
    if len(data) < FILE_HEADER.size or data[:len(magic)] != magic:
        raise StateCorruptedError(f"{path}: not a monitor state file (no {magic.decode()} "
                                  f"header at byte offset 0)")
    return FILE_HEADER.unpack_from(data)[1]


def write_snapshot_file(tmp: Path, generation: int,
                        items: Iterable[tuple[str, bytes]]) -> None:
    """Stream the entries into ``tmp`` (one frame, its checksum computed on the way) so the
    state is never held twice in memory."""
    entries = [(account.encode("utf-8"), blob) for account, blob in items]
    length = sum(ENTRY.size + len(key) + len(blob) for key, blob in entries)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(FILE_HEADER.pack(SNAPSHOT_MAGIC, generation) + frame_head(length))
        crc = 0
        for key, blob in entries:
            chunk = ENTRY.pack(len(key), len(blob)) + key + blob
            crc = zlib.crc32(chunk, crc)
            f.write(chunk)
        f.write(CRC.pack(crc))
        f.flush()
        os.fsync(f.fileno())

