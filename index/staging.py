"""Index writes in two steps: stage a segment, then commit staged segments in one manifest swap.

``stage_segment`` fingerprints a batch (through an executor) into a complete segment under a
hidden name; nothing a reader sees changes. ``commit`` checks staged segments against the
manifest (config, rows, files) and makes them part of the index: each directory is renamed into
place, its parent fsync'd, and the manifest atomically replaced once for all of them. A crash
before the manifest swap leaves the index exactly as it was (the next writer removes the
debris); after it, the new segments are complete on disk.

The executor is the seam where work can go elsewhere: ``LocalExecutor`` fingerprints in this
process and a local process pool; a distributed engine can fingerprint (or stage whole segments)
on other machines, and imported bundles can arrive as staged segments, all committed the same way.
Callers hold the index's writer lock from staging to commit.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from fingerprint.atomic import fsync_path
from fingerprint.config import FingerprintConfig
from fingerprint.fingerprinter import Fingerprinter, Fingerprints
from fingerprint.io import ReadStats
from fingerprint.normalize import prompt_hashes
from fingerprint.parallel import ParallelFingerprinter
from fingerprint.records import ResponseRecord
from index.errors import (ConfigMismatchError, DuplicateIdError, IndexCorruptedError,
                          IndexStoreError)
from index.manifest import Manifest, SegmentEntry, write_manifest
from index.segment import Segment
from index.segment_writer import SegmentWriter
from index.store import REFERENCES_DIR, SEGMENTS_DIR, FingerprintIndex, SegmentGroup

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 256
STAGING_PREFIX = ".tmp-"

T = TypeVar("T")
Progress = Callable[[int], None]


@dataclass(frozen=True)
class WriteOptions:
    """How a batch is written (what a fingerprint is, is the FingerprintConfig's business).

    ``embed=False`` stores no embeddings (reference sets only); ``workers`` > 1 lets the local
    executor fingerprint a large batch on that many processes (the result is identical)."""

    store_text: bool = True
    skip_duplicates: bool = False
    chunk_size: int = DEFAULT_CHUNK
    embed: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise IndexStoreError(f"chunk_size must be a positive integer, got "
                                  f"{self.chunk_size!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise IndexStoreError(f"workers must be a positive integer, got {self.workers!r}")


class Executor(Protocol):
    """Turns chunks of texts into fingerprints, in order; ``payload`` travels with each chunk."""

    def map(self, chunks: Iterable[tuple[T, Sequence[str]]],
            embed: bool = True) -> Iterator[tuple[T, Fingerprints]]: ...

    def close(self) -> None: ...


def local_executor(fingerprinter: Fingerprinter, workers: int = 1) -> Executor:
    """This process, then a pool of ``workers`` processes once the input proves large."""
    return ParallelFingerprinter(fingerprinter, workers)


@dataclass(frozen=True)
class StagedSegment:
    """A complete segment under a hidden name, not yet part of the index."""

    directory: Path  # where it is staged: <group directory>/.tmp-<name>
    entry: SegmentEntry
    reference: str | None  # None: the served responses; else the reference set's name
    embedding_dim: int | None
    config: FingerprintConfig

    @property
    def final_directory(self) -> Path:
        return self.directory.parent / self.entry.name

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class StageResult:
    staged: StagedSegment | None  # None when every record was empty or a skipped duplicate
    skipped_empty: int
    skipped_duplicates: int
    first_row: int


def group_of(index: FingerprintIndex, reference: str | None) -> tuple[SegmentGroup, Path]:
    """The rows a batch joins (served, or a named reference set) and their directory."""
    if reference is None:
        return index, index.path / SEGMENTS_DIR
    directory = index.path / REFERENCES_DIR / reference
    group = index.references.get(reference) or SegmentGroup(
        directory, (), index.config, index.manifest.embedding_dim)
    return group, directory


def stage_segment(index: FingerprintIndex, records: Iterable[ResponseRecord],
                  fingerprinter: Fingerprinter, *, reference: str | None = None,
                  options: WriteOptions = WriteOptions(), read_stats: ReadStats | None = None,
                  progress: Progress | None = None,
                  executor: Executor | None = None) -> StageResult:
    """Fingerprint ``records`` into one staged segment that follows ``index``'s last row.

    Duplicate ids (stored already, or earlier in the batch) stop the batch, or are skipped and
    counted with ``options.skip_duplicates``. On any error the staged directory is removed."""
    dim = fingerprinter.embedding_dim if options.embed else None
    stored_dim = index.manifest.embedding_dim
    if dim is not None and stored_dim is not None and stored_dim != dim:
        raise ConfigMismatchError(str(index.path), [("embedding_dim", stored_dim, dim)])
    group, directory = group_of(index, reference)
    first_row = len(group)
    name = f"seg-{len(group.segments) + 1:06d}-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True, exist_ok=True)
    config = fingerprinter.config
    writer = SegmentWriter(directory / f"{STAGING_PREFIX}{name}", name, first_row,
                           config.num_perm, dim, config.style_features, options.store_text)
    duplicates = DuplicateFilter(group, options.skip_duplicates)
    executor = executor or local_executor(fingerprinter, options.workers)
    try:
        chunks = duplicates.fresh_chunks(records, options.chunk_size, progress)
        for (read, fresh), prints in executor.map(chunks, embed=options.embed):
            writer.add(fresh, prints,
                       prompt_hashes((r.prompt for r in fresh), config.normalizer_version))
            if progress is not None:
                progress(read)
        empty = read_stats.empty if read_stats is not None else 0
        if writer.rows == 0:
            writer.abort()
            return StageResult(None, empty, duplicates.skipped, first_row)
        entry = writer.finish(empty, duplicates.skipped)
    except BaseException:
        executor.close()
        writer.abort()
        raise
    embedding_dim = dim if reference is None else stored_dim
    return StageResult(StagedSegment(writer.dir, entry, reference, embedding_dim, config),
                       empty, duplicates.skipped, first_row)


def commit(root: Path, manifest: Manifest, staged: Sequence[StagedSegment], *,
           verify: bool = False) -> Manifest:
    """Make staged segments part of the index with one manifest swap; the new manifest.

    Every staged segment must have the index's config and continue its group's rows; its files
    must have their recorded sizes (and, with ``verify``, checksums: for segments staged by
    another process or machine). Nothing is renamed until all of them pass."""
    for segment in staged:
        _check_staged(manifest, segment, verify)
    _check_contiguous(manifest, staged)
    updated = manifest
    for segment in staged:
        os.replace(segment.directory, segment.final_directory)
        fsync_path(segment.final_directory.parent)
        updated = updated.with_segment(segment.entry, segment.embedding_dim, segment.reference)
    write_manifest(root, updated)
    log.debug("committed %s to %s", ", ".join(s.entry.name for s in staged) or "nothing", root)
    return updated


def _check_staged(manifest: Manifest, segment: StagedSegment, verify: bool) -> None:
    differences = manifest.config.differences(segment.config)
    if differences:
        raise ConfigMismatchError(str(segment.directory), differences)
    if segment.final_directory.exists():
        raise IndexCorruptedError(f"{segment.final_directory}: a segment of that name exists")
    checked = Segment(segment.directory, segment.entry, manifest.config.num_perm,
                      manifest.config.style_features)  # checks every file's size
    try:
        if verify:
            checked.verify()
    finally:
        checked.close()


def _check_contiguous(manifest: Manifest, staged: Sequence[StagedSegment]) -> None:
    """Rows are numbered per group: each staged segment starts where the group ends."""
    ends: dict[str | None, int] = {None: manifest.rows}
    for name, entries in manifest.references.items():
        ends[name] = sum(e.rows for e in entries)
    for segment in staged:
        end = ends.get(segment.reference, 0)
        if segment.entry.first_row != end:
            raise IndexCorruptedError(f"{segment.directory}: starts at row "
                                      f"{segment.entry.first_row}, but its group ends at {end} "
                                      f"(staged against an older manifest?)")
        ends[segment.reference] = end + segment.entry.rows


class DuplicateFilter:
    """Drops (or refuses) records whose id is stored already or came earlier in the batch.

    Public because every engine must skip (or refuse) exactly the same records with the same
    error: the Ray engine (distributed.plan) runs its scanned ids through this one filter. It
    reads only ``id``, ``source`` and ``line`` of what it is given."""

    def __init__(self, group: SegmentGroup, skip: bool):
        self.group = group
        self.skip = skip
        self.seen: set[str] = set()
        self.skipped = 0

    def fresh_chunks(self, records: Iterable[ResponseRecord], size: int,
                     progress: Progress | None
                     ) -> Iterator[tuple[tuple[int, list[ResponseRecord]], list[str]]]:
        """((records read, fresh records), their texts) per chunk with anything fresh in it."""
        for chunk in _chunks(records, size):
            fresh = self.fresh(chunk)
            self.skipped += len(chunk) - len(fresh)
            if fresh:
                yield (len(chunk), fresh), [r.response for r in fresh]
            elif progress is not None:
                progress(len(chunk))

    def all_fresh(self, ids: Sequence[str]) -> bool:
        """True, with the ids taken as seen, when none of them is stored, came earlier or
        repeats; else False and nothing changes (``fresh`` then says which, and what to do).

        The common case checked with set operations: the Ray engine's plan runs every input
        id through here, a million at a time, before falling back to ``fresh``."""
        unique = set(ids)
        if len(unique) != len(ids) or not self.seen.isdisjoint(unique) or \
                self.group.existing_ids(ids):
            return False
        self.seen |= unique
        return True

    def fresh(self, chunk: list[ResponseRecord]) -> list[ResponseRecord]:
        stored = self.group.existing_ids(r.id for r in chunk)
        fresh = []
        for record in chunk:
            if record.id in self.seen or record.id in stored:
                if self.skip:
                    continue
                where = "earlier in this batch" if record.id in self.seen else \
                    "already in the index"
                raise DuplicateIdError(record.source, record.line,
                                       f'id "{record.id}" is {where} (use --skip-duplicates to '
                                       f'skip such records)', field="id")
            self.seen.add(record.id)
            fresh.append(record)
        return fresh


def _chunks(records: Iterable[ResponseRecord], size: int) -> Iterator[list[ResponseRecord]]:
    chunk: list[ResponseRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
