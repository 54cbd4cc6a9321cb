"""Adding batches to an index: one writer at a time, all of a batch or nothing.

The protocol: take the writer lock; stage the new segment in a hidden temporary directory
(index.staging); when every file is written and flushed, commit it: rename the directory into
place and atomically replace the manifest with one that lists it. A crash or an error at any
earlier point leaves the manifest, and so the index, exactly as it was; the next writer removes
the debris.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from fingerprint.config import FingerprintConfig
from fingerprint.errors import InputError
from fingerprint.fingerprinter import Fingerprinter
from fingerprint.io import ReadStats, read_records
from fingerprint.records import FieldMap, ResponseRecord
from index.errors import IndexCorruptedError, IndexExistsError, IndexLockedError, IndexStoreError
from index.manifest import MANIFEST_NAME, Manifest, now_iso, read_manifest, write_manifest
from index.reference_meta import check_reference_meta
from index.staging import Progress, WriteOptions, commit, stage_segment
from index.store import REFERENCES_DIR, SEGMENTS_DIR, open_index

LOCK_NAME = ".writer.lock"
REFERENCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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


def check_reference_name(name: str) -> str:
    """``name`` if it can name a reference set (a plain directory name), else IndexStoreError."""
    if not isinstance(name, str) or not REFERENCE_NAME.fullmatch(name):
        raise IndexStoreError(f"reference name {name!r}: use 1 to 64 letters, digits, '.', "
                              f"'_' or '-', starting with a letter or digit")
    return name


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
                   fingerprinter: Fingerprinter, *, reference: str | None = None,
                   read_stats: ReadStats | None = None, progress: Progress | None = None,
                   reference_meta: Mapping[str, str] | None = None,
                   new_reference: bool = False, **options: Any) -> AppendResult:
    """Fingerprint ``records`` and add them to the index as one new segment (stage + commit).

    ``read_stats`` is the ReadStats the records' reader fills in; its count of empty responses is
    recorded with the segment. With ``reference``, the records are another model's outputs and go
    to that named reference set instead of the served responses; ``reference_meta`` (its facts:
    index.reference_meta) is merged into what the index knows of it, in the same manifest swap
    as the rows, so a reference never exists without the facts it was added with. ``options``
    are WriteOptions' fields (``store_text``, ``skip_duplicates``, ``chunk_size``, ``embed``,
    ``workers``). ``new_reference`` refuses to append to a reference set that exists, checked
    under the writer lock: a caller that checked beforehand (a pack install) cannot then mix
    its answers into a set another writer created meanwhile.
    """
    write = WriteOptions(**options)
    if reference is not None:
        check_reference_name(reference)
    if reference is None and not write.embed:
        raise IndexStoreError("served responses are always stored with their embeddings")
    if reference_meta and reference is None:
        raise IndexStoreError("reference_meta describes a reference set; served responses "
                              "have none")
    meta = check_reference_meta(reference_meta or {}, f"reference {reference}")
    root = Path(path)
    with WriterLock(root):
        index = open_index(root, expected_config=fingerprinter.config)
        try:
            if new_reference and reference in index.references:
                raise IndexExistsError(f"{root}: reference {reference!r} exists (added by "
                                       f"another writer meanwhile?); nothing was added to it")
            remove_debris(root, index.manifest)
            result = stage_segment(index, records, fingerprinter, reference=reference,
                                   options=write, read_stats=read_stats, progress=progress)
            staged = result.staged
            if staged is None:
                return AppendResult(None, 0, result.skipped_empty, result.skipped_duplicates,
                                    result.first_row)
            manifest = index.manifest
            if meta:
                manifest = manifest.with_reference_meta(
                    reference, {**manifest.reference_meta.get(reference, {}), **meta})
            try:
                commit(root, manifest, [staged])
            except BaseException:
                staged.discard()
                raise
            return AppendResult(staged.entry.name, staged.entry.rows, result.skipped_empty,
                                result.skipped_duplicates, result.first_row + staged.entry.rows)
        finally:
            index.close()


def add_files(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]],
              fingerprinter: Fingerprinter, *, fields: FieldMap = FieldMap(),
              **options) -> AppendResult:
    """Read every input file and add all of them to the index as one batch."""
    if sum(str(p) == "-" for p in inputs) > 1:
        raise InputError("<stdin>", None, "standard input is named more than once; it can be "
                                          "read only once")
    stats = ReadStats()
    records = _chain(read_records(p, fields, stats) for p in inputs)
    return append_records(path, records, fingerprinter, read_stats=stats, **options)


def add_reference(path: str | os.PathLike[str], name: str,
                  inputs: Sequence[str | os.PathLike[str]], fingerprinter: Fingerprinter, *,
                  fields: FieldMap = FieldMap(), embed: bool = False,
                  meta: Mapping[str, str] | None = None, **options) -> AppendResult:
    """Store another model's outputs as the named reference set (appending if it exists),
    with ``meta``, its facts (era, base model, ...: index.reference_meta), if given."""
    return add_files(path, inputs, fingerprinter, fields=fields, reference=name, embed=embed,
                     reference_meta=meta, **options)


def describe_reference(path: str | os.PathLike[str], name: str,
                       meta: Mapping[str, str]) -> dict[str, str]:
    """Set facts of a stored reference (an empty value removes that key); its facts after.

    One manifest swap under the writer lock: the rows are untouched."""
    root = Path(path)
    removed = {k for k, v in meta.items() if isinstance(v, str) and not v.strip()}
    given = check_reference_meta({k: v for k, v in meta.items() if k not in removed},
                                 f"reference {name}")
    with WriterLock(root):
        manifest = read_manifest(root)
        if name not in manifest.references:
            held = ", ".join(sorted(manifest.references)) or "none"
            raise IndexStoreError(f"{root}: holds no reference {name!r} (it holds: {held})")
        facts = {k: v for k, v in {**manifest.reference_meta.get(name, {}), **given}.items()
                 if k not in removed}
        write_manifest(root, manifest.with_reference_meta(name, facts))
    return facts


def build_index(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]],
                fingerprinter: Fingerprinter, *, fields: FieldMap = FieldMap(),
                add: Callable[..., AppendResult] | None = None, **options) -> AppendResult:
    """Create an index and add the inputs; if that fails, the new directory is removed again.

    ``add`` is how the inputs are added (``add_files`` by default; the Ray engine passes its
    own), so every engine creates and cleans up a new index the same way."""
    root = Path(path)
    existed = root.exists()
    create_index(root, fingerprinter.config)
    try:
        return (add or add_files)(root, inputs, fingerprinter, fields=fields, **options)
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


def remove_debris(root: Path, manifest: Manifest) -> None:
    """Delete what an interrupted writer left: unlisted segment dirs and temp files. Every
    writer (the local one, the Ray engine, compaction) calls it under the writer lock.

    Only inside the index: a directory that resolves elsewhere (a symlink planted in the index)
    is refused before anything in it is removed."""
    _remove_unlisted(root, root / SEGMENTS_DIR, {s.name for s in manifest.segments})
    refs_dir = root / REFERENCES_DIR
    if refs_dir.is_dir():
        _remove_unlisted(root, refs_dir, set(manifest.references))
        for name, entries in manifest.references.items():
            _remove_unlisted(root, refs_dir / name, {s.name for s in entries})
    for child in root.glob(f".{MANIFEST_NAME}.tmp-*"):
        child.unlink()


def _remove_unlisted(root: Path, directory: Path, listed: set[str]) -> None:
    if not directory.is_dir():
        return
    inside = directory.resolve()
    if directory.is_symlink() or not inside.is_relative_to(root.resolve()):
        raise IndexCorruptedError(f"{directory}: resolves to {inside}, outside the index "
                                  f"{root}; refusing to clean it up")
    for child in directory.iterdir():
        if child.name in listed:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink()  # a file, or a symlink itself (never what it points to)
