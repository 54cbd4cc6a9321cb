"""Per-account monitor state that survives a restart: a snapshot plus an append-only journal.

The monitor keeps one small opaque blob per account (the detector's sketches and counters, the
limiter's ``tat``). Rewriting every blob after every request would cost a full file per request;
appending only what changed (the journal) and folding it into a fresh snapshot now and then
(``snapshot()``) makes a flush cost what changed, and a restart cost one read of each file.

Layout (bytes in ``monitor.statefile``): ``manifest.json`` (format version, toolkit version, the
monitor configuration's fingerprint), ``snapshot.bin`` (every entry, one checksummed frame) and
``journal.bin`` (one checksummed frame per ``flush()``). Opening with another configuration
fingerprint or format version is a ``StateVersionError`` naming expected and actual: counters
fitted under one configuration mean something else under another. The snapshot is written whole
under a temporary name, fsync'd, moved into place with ``os.replace`` and the directory fsync'd:
it is the old snapshot or the new one, never half of one. The journal names the generation of the
snapshot it continues; one older than the snapshot's is already folded in (a crash between the
two steps of ``snapshot()``) and is reset, not replayed.

A flush is one frame, so it lands whole or not at all. Only the journal's last frame can be
damaged by a crash (it is the only write not yet acknowledged), so damage there (too short, a
checksum that fails, or a zero-filled tail) is taken for a crash: the frame is dropped, counted
in ``recovery`` and cut off the file. The same damage anywhere else, or in the snapshot or
manifest, is a ``StateCorruptedError`` naming file and offset: nothing is guessed.

Durability contract:
- ``flush()`` returns after one write of the frame and, with ``fsync=True`` (the default), an
  ``fdatasync``. A process killed at any moment (SIGKILL included) loses nothing that a returned
  ``flush()`` wrote; with ``fsync=True`` neither does a power cut. With ``fsync=False`` a killed
  process still loses nothing (the page cache belongs to the kernel), a power cut may lose the
  last flushes.
- Entries ``put`` since the last flush are in memory only. The caller decides how often to flush
  (the monitor: at least every N requests or T seconds, whichever comes first) and when the
  journal is long enough to ``snapshot()`` (``journal_bytes``).
- A failed write (a full disk, a file size limit) raises ``StateWriteError``; the journal is cut
  back to its last whole frame, the unwritten entries stay pending, and a later flush retries.
- One process at a time: the directory is locked (``flock``) while a store is open, and a second
  opener gets ``StateLockedError``. A store is for one thread.

Memory: every blob is held in memory (``get`` is a dict look-up); opening reads each file once.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from fingerprint import __version__
from fingerprint.atomic import atomic_write_bytes, fsync_path
from monitor.errors import (StateCorruptedError, StateEntryError, StateError, StateLockedError,
                            StateVersionError, StateWriteError)
from monitor.statefile import (FILE_HEADER, FORMAT, FORMAT_VERSION, FRAME_HEAD, JOURNAL,
                               JOURNAL_MAGIC, MANIFEST, MAX_ACCOUNT_BYTES, MAX_BLOB_BYTES,
                               SNAPSHOT, SNAPSHOT_MAGIC, TMP_PREFIX, TMP_PREFIXES, decode_entries,
                               encode_entry, file_header, frame, frame_at, open_state_file,
                               read_all, write_all, write_snapshot_file)


@dataclass(frozen=True)
class Recovery:
    """What opening found: entries read from the snapshot, frames and entries replayed from the
    journal, the torn last frame a crash left (0 or 1, and its bytes), and whether the journal
    was stale (already folded into the snapshot) and so reset."""

    snapshot_entries: int = 0
    journal_frames: int = 0
    journal_entries: int = 0
    torn_frames: int = 0
    torn_bytes: int = 0
    stale_journal: bool = False


def _check_account(account: object) -> None:
    if not isinstance(account, str) or not account:
        raise StateEntryError(f"an account must be a non-empty string, got {account!r}")
    try:
        size = len(account.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise StateEntryError(f"account {account!r} cannot be written as UTF-8") from exc
    if size > MAX_ACCOUNT_BYTES:
        raise StateEntryError(f"account name of {size} bytes; at most {MAX_ACCOUNT_BYTES}")


class StateStore:
    """Per-account blobs in ``directory``, made for the monitor configuration whose digest is
    ``config_fingerprint``. Opening creates the directory's files if it is new or empty, else
    checks and replays them (``recovery`` says what was found). Use as a context manager, or
    call ``close()``: it flushes and releases the directory's lock."""

    def __init__(self, directory: str | os.PathLike[str], config_fingerprint: str, *,
                 fsync: bool = True):
        if not isinstance(config_fingerprint, str) or not config_fingerprint:
            raise StateError(f"config_fingerprint must be a non-empty string, "
                             f"got {config_fingerprint!r}")
        self.directory = Path(directory)
        self.config_fingerprint = config_fingerprint
        self.fsync = fsync
        self._blobs: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._broken: str | None = None
        self._journal_fd = -1
        self._lock_fd = self._lock()
        try:
            self._open_files()
        except BaseException:
            self._release()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _lock(self) -> int:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StateError(f"{self.directory}: cannot use as a state directory: "
                             f"{exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StateLockedError(f"{self.directory} is in use by another process (it holds "
                                   f"the lock); one monitor per state directory") from exc
        return fd

    def _open_files(self) -> None:
        try:
            names = set(os.listdir(self.directory))
            for name in names:  # left by a crash: we hold the lock, so no one is writing it
                if name.startswith(TMP_PREFIXES):
                    (self.directory / name).unlink()
        except OSError as exc:
            raise StateError(f"{self.directory}: cannot list or tidy: {exc.strerror}") from exc
        names = {n for n in names if not n.startswith(TMP_PREFIXES)}
        if MANIFEST not in names:
            if names - {SNAPSHOT, JOURNAL}:
                raise StateError(f"{self.directory} is not a monitor state directory (no "
                                 f"{MANIFEST}, and it holds other files)")
            self._create()
        self._check_manifest()
        self._generation, snapshot_entries = self._read_snapshot()
        self._journal_fd = open_state_file(self.directory / JOURNAL, os.O_RDWR)
        self.recovery = self._replay_journal(snapshot_entries)

    def _create(self) -> None:
        """Empty snapshot and journal first, the manifest last: a directory with a manifest is
        whole, and one without (creation interrupted) holds no entry yet and is made again."""
        try:
            atomic_write_bytes(self.directory / SNAPSHOT, FILE_HEADER.pack(SNAPSHOT_MAGIC, 0)
                               + frame(b""), mode=0o600)
            atomic_write_bytes(self.directory / JOURNAL, FILE_HEADER.pack(JOURNAL_MAGIC, 0),
                               mode=0o600)
            fsync_path(self.directory.parent)  # the directory's own entry, if mkdir made it
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                        "toolkit_version": __version__,
                        "config_fingerprint": self.config_fingerprint}
            atomic_write_bytes(self.directory / MANIFEST,
                               (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        except OSError as exc:
            raise StateWriteError(f"{self.directory}: cannot create the state files: "
                                  f"{exc.strerror}") from exc

    def _check_manifest(self) -> None:
        path = self.directory / MANIFEST
        fd = open_state_file(path, os.O_RDONLY)
        try:
            manifest = json.loads(read_all(fd, path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateCorruptedError(f"{path}: not valid JSON ({exc})") from exc
        finally:
            os.close(fd)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StateError(f"{path}: not a monitor state manifest (format is not {FORMAT!r})")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise StateVersionError(
                f"{path}: expected state format version {FORMAT_VERSION}, found {version!r}"
                + (f" (written by a newer toolkit, {manifest.get('toolkit_version')!r}; this "
                   f"is {__version__})" if newer else ""))
        actual = manifest.get("config_fingerprint")
        if actual != self.config_fingerprint:
            raise StateVersionError(
                f"{path}: expected monitor config fingerprint {self.config_fingerprint!r}, found "
                f"{actual!r}; this state was made under another configuration: use a new state "
                f"directory, or the configuration it was made with")

    def _read_snapshot(self) -> tuple[int, int]:
        path = self.directory / SNAPSHOT
        fd = open_state_file(path, os.O_RDONLY)
        try:
            data = read_all(fd, path)
        finally:
            os.close(fd)
        generation = file_header(data, path, SNAPSHOT_MAGIC)
        problem, _, payload, end = frame_at(data, FILE_HEADER.size)
        if problem is not None or end != len(data):  # written atomically: no crash explains it
            where = FILE_HEADER.size if problem else end
            raise StateCorruptedError(f"{path}: {problem or 'trailing bytes'} at byte offset "
                                      f"{where}")
        count = 0
        for account, blob in decode_entries(payload, path, FILE_HEADER.size + FRAME_HEAD):
            self._blobs[account] = blob
            count += 1
        return generation, count

    def _replay_journal(self, snapshot_entries: int) -> Recovery:
        path = self.directory / JOURNAL
        data = read_all(self._journal_fd, path)
        generation = file_header(data, path, JOURNAL_MAGIC)
        if generation > self._generation:
            raise StateCorruptedError(f"{path}: generation {generation} at byte offset 8 is "
                                      f"newer than the snapshot's ({self._generation})")
        if generation < self._generation:
            self._reset_journal()
            return Recovery(snapshot_entries, stale_journal=True)
        frames = entries = 0
        offset = FILE_HEADER.size
        while offset < len(data):
            problem, crash, payload, end = frame_at(data, offset)
            if problem is not None and crash:
                self._cut_journal(offset)
                return Recovery(snapshot_entries, frames, entries, 1, len(data) - offset)
            if problem is not None:
                raise StateCorruptedError(f"{path}: {problem} at byte offset {offset}")
            for account, blob in decode_entries(payload, path, offset + FRAME_HEAD):
                self._blobs[account] = blob
                entries += 1
            frames += 1
            offset = end
        self._journal_end = offset
        return Recovery(snapshot_entries, frames, entries)

    # -- writing ---------------------------------------------------------------------------

    def _cut_journal(self, offset: int) -> None:
        """Cut the journal back to ``offset`` (a torn frame, or a failed append) so that the
        next frame follows a whole one; if even that fails, the store refuses further writes."""
        try:
            os.ftruncate(self._journal_fd, offset)
            os.fsync(self._journal_fd)
        except OSError as exc:
            self._broken = (f"{self.directory / JOURNAL} could not be cut back to byte offset "
                            f"{offset} ({exc.strerror}); reopen the store")
        self._journal_end = offset

    def _reset_journal(self) -> None:
        """Empty the journal and give it the snapshot's generation. Cut first, header second: a
        crash in between leaves an older generation, which the next open resets again."""
        try:
            os.ftruncate(self._journal_fd, FILE_HEADER.size)
            write_all(self._journal_fd, FILE_HEADER.pack(JOURNAL_MAGIC, self._generation), 0)
            os.fsync(self._journal_fd)
        except OSError as exc:
            self._broken = (f"{self.directory / JOURNAL} could not be reset after a snapshot "
                            f"({exc.strerror}); reopen the store")
            raise StateWriteError(self._broken) from exc
        self._journal_end = FILE_HEADER.size

    def _check_usable(self) -> None:
        if self._journal_fd < 0:
            raise StateError(f"the state store {self.directory} is closed")
        if self._broken:
            raise StateError(self._broken)

    def put(self, account: str, blob: bytes) -> None:
        """Keep ``blob`` as ``account``'s state (in memory until the next ``flush()``)."""
        self._check_usable()
        if not isinstance(blob, bytes):
            if not isinstance(blob, (bytearray, memoryview)):
                raise StateEntryError(f"a state blob must be bytes, got {type(blob).__name__}")
            blob = bytes(blob)
        if len(blob) > MAX_BLOB_BYTES:
            raise StateEntryError(f"state blob of {len(blob)} bytes for account {account!r}; "
                                  f"at most {MAX_BLOB_BYTES}")
        if account not in self._blobs:
            _check_account(account)
        self._blobs[account] = blob
        self._dirty.add(account)

    def get(self, account: str) -> bytes | None:
        """``account``'s last blob, or None for an account never put."""
        if self._journal_fd < 0:
            raise StateError(f"the state store {self.directory} is closed")
        return self._blobs.get(account)

    def flush(self) -> int:
        """Append every entry put since the last flush as one journal frame; returns how many.
        Durable when it returns (see the module docstring)."""
        self._check_usable()
        if not self._dirty:
            return 0
        data = frame(b"".join(encode_entry(a, self._blobs[a]) for a in self._dirty))
        start = self._journal_end
        try:
            write_all(self._journal_fd, data, start)
            if self.fsync:
                os.fdatasync(self._journal_fd)
        except OSError as exc:
            self._cut_journal(start)
            raise StateWriteError(
                f"{self.directory / JOURNAL}: could not append {len(data)} bytes at byte "
                f"offset {start} ({exc.strerror}); everything flushed before is intact and "
                f"the {len(self._dirty)} unwritten entries stay pending") from exc
        self._journal_end = start + len(data)
        count = len(self._dirty)
        self._dirty.clear()
        return count

    def snapshot(self) -> None:
        """Write every entry to a new snapshot atomically, then empty the journal."""
        self._check_usable()
        path = self.directory / SNAPSHOT
        tmp = self.directory / f"{TMP_PREFIX}{os.getpid()}"
        try:
            write_snapshot_file(tmp, self._generation + 1, self._blobs.items())
            os.replace(tmp, path)
            fsync_path(self.directory)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StateWriteError(f"{path}: could not write a new snapshot ({exc.strerror}); the "
                                  f"previous snapshot and the journal are intact") from exc
        self._generation += 1
        self._dirty.clear()
        self._reset_journal()

    # -- the rest --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Entries put since the last flush (lost if the process dies now)."""
        return len(self._dirty)

    @property
    def journal_bytes(self) -> int:
        """The journal's length: the caller snapshots when this has grown large."""
        return self._journal_end

    def accounts(self) -> list[str]:
        """Every account with a blob, in the order first seen."""
        return list(self._blobs)

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, account: object) -> bool:
        return account in self._blobs

    def _release(self) -> None:
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = -1

    def close(self) -> None:
        """Flush what is pending, then release the directory. Closing twice does nothing."""
        if self._journal_fd < 0:
            self._release()
            return
        try:
            if not self._broken:
                self.flush()
        finally:
            self._release()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
