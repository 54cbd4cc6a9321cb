"""Adding batches to an index: one writer at a time, all of a batch or nothing.

The protocol: take the writer lock; build the new segment in a hidden temporary directory; when
every file is written and flushed, rename the directory into place and atomically replace the
manifest with one that lists it. A crash or an error at any earlier point leaves the manifest, and
so the index, exactly as it was; the next writer removes the debris.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from fingerprint.config import FingerprintConfig
from fingerprint.fingerprinter import Fingerprinter
from fingerprint.parallel import ParallelFingerprinter
from fingerprint.normalize import prompt_hash
from fingerprint.records import FieldMap, ReadStats, ResponseRecord, read_records
from index.errors import (ConfigMismatchError, DuplicateIdError, IndexExistsError,
                          IndexLockedError)
from index.manifest import MANIFEST_NAME, Manifest, now_iso, read_manifest, write_manifest
from index.segment import SegmentWriter
from index.errors import IndexStoreError
from index.store import REFERENCES_DIR, SEGMENTS_DIR, SegmentGroup, open_index

LOCK_NAME = ".writer.lock"
REFERENCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_CHUNK = 256

Progress = Callable[[int], None]


@dataclass(frozen=True)
class AppendResult:
    """What one batch added to the index."""

    segment: str | None
    added: int
    skipped_empty: int
    skipped_duplicates: int
    total: int


class WriterLock:
    """Exclusive writer lock (``flock``): released by the kernel even if the writer dies."""

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "WriterLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise IndexLockedError(f"{self.path.parent}: another writer is adding to this index "
                                   f"({holder}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}"
                  .encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def create_index(path: str | os.PathLike[str], config: FingerprintConfig) -> Manifest:
    """Make an empty index in a new or empty directory."""
    root = Path(path)
    if (root / MANIFEST_NAME).exists():
        raise IndexExistsError(f"{root}: an index already exists here; add to it with "
                               f"'fingerprint index add'")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise IndexExistsError(f"{root}: exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)
    (root / SEGMENTS_DIR).mkdir()
    stamp = now_iso()
    manifest = Manifest(config=config, created_at=stamp, updated_at=stamp)
    with WriterLock(root):
        write_manifest(root, manifest)
    return manifest


def append_records(path: str | os.PathLike[str], records: Iterable[ResponseRecord],
                   fingerprinter: Fingerprinter, *, store_text: bool = True,
                   skip_duplicates: bool = False, read_stats: ReadStats | None = None,
                   chunk_size: int = DEFAULT_CHUNK, progress: Progress | None = None,
                   reference: str | None = None, embed: bool = True,
                   workers: int = 1) -> AppendResult:
    """Fingerprint ``records`` and add them to the index as one new segment.

    ``read_stats`` is the ReadStats the records' reader fills in; its count of empty responses is
    recorded with the segment. With ``reference``, the records are another model's outputs and go
    to that named reference set instead of the served responses; ``embed=False`` stores them
    without embeddings. ``workers`` > 1 fingerprints on that many processes once the input proves
    large (fingerprint.parallel); the stored result is identical.
    """
    if reference is not None and not REFERENCE_NAME.fullmatch(reference):
        raise IndexStoreError(f"reference name {reference!r}: use 1 to 64 letters, digits, '.', "
                              f"'_' or '-', starting with a letter or digit")
    if reference is None and not embed:
        raise IndexStoreError("served responses are always stored with their embeddings")
    root = Path(path)
    with WriterLock(root):
        index = open_index(root, expected_config=fingerprinter.config)
        try:
            _remove_debris(root, index.manifest)
            return _append_locked(root, index, records, fingerprinter, store_text,
                                  skip_duplicates, read_stats, chunk_size, progress, reference,
                                  embed, workers)
        finally:
            index.close()


def add_files(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]],
              fingerprinter: Fingerprinter, *, fields: FieldMap = FieldMap(),
              **options) -> AppendResult:
    """Read every input file and add all of them to the index as one batch."""
    stats = ReadStats()
    records = _chain(read_records(p, fields, stats) for p in inputs)
    return append_records(path, records, fingerprinter, read_stats=stats, **options)


def add_reference(path: str | os.PathLike[str], name: str,
                  inputs: Sequence[str | os.PathLike[str]], fingerprinter: Fingerprinter, *,
                  fields: FieldMap = FieldMap(), embed: bool = False, **options) -> AppendResult:
    """Store another model's outputs as the named reference set (appending if it exists)."""
    return add_files(path, inputs, fingerprinter, fields=fields, reference=name, embed=embed,
                     **options)


def build_index(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]],
                fingerprinter: Fingerprinter, *, fields: FieldMap = FieldMap(),
                **options) -> AppendResult:
    """Create an index and add the inputs; if that fails, the new directory is removed again."""
    root = Path(path)
    existed = root.exists()
    create_index(root, fingerprinter.config)
    try:
        return add_files(root, inputs, fingerprinter, fields=fields, **options)
    except BaseException:
        if existed:
            for child in root.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _chain(iterables: Iterable[Iterable[ResponseRecord]]) -> Iterator[ResponseRecord]:
    for it in iterables:
        yield from it


def _remove_debris(root: Path, manifest: Manifest) -> None:
    """Delete what an interrupted writer left: unlisted segment dirs and temp files."""
    _remove_unlisted(root / SEGMENTS_DIR, {s.name for s in manifest.segments})
    refs_dir = root / REFERENCES_DIR
    if refs_dir.is_dir():
        _remove_unlisted(refs_dir, set(manifest.references))
        for name, entries in manifest.references.items():
            _remove_unlisted(refs_dir / name, {s.name for s in entries})
    for child in root.glob(f".{MANIFEST_NAME}.tmp-*"):
        child.unlink()


def _remove_unlisted(directory: Path, listed: set[str]) -> None:
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.name not in listed:
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def _append_locked(root: Path, index, records: Iterable[ResponseRecord],
                   fingerprinter: Fingerprinter, store_text: bool, skip_duplicates: bool,
                   read_stats: ReadStats | None, chunk_size: int,
                   progress: Progress | None, reference: str | None,
                   embed: bool, workers: int) -> AppendResult:
    manifest: Manifest = index.manifest
    dim = fingerprinter.embedding_dim if embed else None
    if dim is not None and manifest.embedding_dim is not None and manifest.embedding_dim != dim:
        raise ConfigMismatchError(str(root), [("embedding_dim", manifest.embedding_dim, dim)])
    if reference is None:
        group: SegmentGroup = index
        directory = root / SEGMENTS_DIR
        entries = manifest.segments
    else:
        group = index.references.get(reference) or SegmentGroup(
            root / REFERENCES_DIR / reference, (), manifest.config, manifest.embedding_dim)
        directory = root / REFERENCES_DIR / reference
        entries = manifest.references.get(reference, ())
    first_row = sum(e.rows for e in entries)
    name = f"seg-{len(entries) + 1:06d}-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True, exist_ok=True)
    writer = SegmentWriter(directory / f".tmp-{name}", name, first_row,
                           fingerprinter.config.num_perm, dim,
                           fingerprinter.config.style_features, store_text)
    seen: set[str] = set()
    duplicates = 0
    version = fingerprinter.config.normalizer_version

    def fresh_chunks() -> Iterator[tuple[tuple[int, list[ResponseRecord]], list[str]]]:
        nonlocal duplicates
        for chunk in _chunks(records, chunk_size):
            fresh = _without_duplicates(group, chunk, seen, skip_duplicates)
            duplicates += len(chunk) - len(fresh)
            if fresh:
                yield (len(chunk), fresh), [r.response for r in fresh]
            elif progress is not None:
                progress(len(chunk))

    pool = ParallelFingerprinter(fingerprinter, workers)
    try:
        for (read, fresh), prints in pool.map(fresh_chunks(), embed=embed):
            hashes = [None if r.prompt is None else prompt_hash(r.prompt, version) for r in fresh]
            writer.add(fresh, prints, hashes)
            if progress is not None:
                progress(read)
        empty = read_stats.empty if read_stats is not None else 0
        if writer.rows == 0:
            writer.abort()
            return AppendResult(None, 0, empty, duplicates, first_row)
        entry = writer.finish(empty, duplicates)
        os.replace(writer.dir, directory / name)
        embedding_dim = dim if reference is None else manifest.embedding_dim
        write_manifest(root, manifest.with_segment(entry, embedding_dim, reference))
        return AppendResult(name, entry.rows, empty, duplicates, first_row + entry.rows)
    except BaseException:
        pool.close()
        writer.abort()
        raise


def _chunks(records: Iterable[ResponseRecord], size: int) -> Iterator[list[ResponseRecord]]:
    chunk: list[ResponseRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _without_duplicates(index, chunk: list[ResponseRecord], seen: set[str],
                        skip: bool) -> list[ResponseRecord]:
    stored = index.existing_ids(r.id for r in chunk)
    fresh = []
    for record in chunk:
        if record.id in seen or record.id in stored:
            if skip:
                continue
            where = "earlier in this batch" if record.id in seen else "already in the index"
            raise DuplicateIdError(record.source, record.line,
                                   f'id "{record.id}" is {where} (use --skip-duplicates to '
                                   f'skip such records)', field="id")
        seen.add(record.id)
        fresh.append(record)
    return fresh
