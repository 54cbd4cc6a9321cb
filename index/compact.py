"""Compaction: many small segments merged into fewer large ones, atomically.

Every batch becomes a segment (a daily ``index add``, each task of the Ray engine), and search
visits every segment, so its cost grows with their number. ``compact_index`` merges runs of
consecutive segments of a group (the served responses, each reference set) into one segment of
up to ``target_rows`` rows. The merged segment keeps the rows' numbers (a run is contiguous and
its rows are copied in order: signatures, float16 vectors, style counts and metadata exactly as
stored), so marks and every row reference stay valid; its search indexes are built anew by
SegmentWriter, with the type its size calls for (flat below ANN_MIN_ROWS, IVF and bands above).

Atomic as every write: merged segments are staged under hidden names, renamed into place, and
listed by one manifest swap that drops the segments they replace; only then are those removed.
A crash before the swap leaves the old segments listed (the next writer removes the debris); a
crash after it, old directories no longer listed, removed the same way.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from fingerprint.atomic import fsync_path
from fingerprint.fingerprinter import Fingerprints
from fingerprint.records import ResponseRecord
from index.errors import IndexStoreError
from index.manifest import (Manifest, SegmentEntry, library_versions, now_iso, write_manifest)
from index.segment import Segment
from index.segment_writer import SegmentWriter
from index.staging import STAGING_PREFIX
from index.store import SegmentGroup, open_index
from index.writer import WriterLock, remove_debris

log = logging.getLogger(__name__)

DEFAULT_TARGET_ROWS = 5_000_000
_BLOCK = 65_536  # rows copied at once


@dataclass(frozen=True)
class CompactResult:
    """What compaction did: segments before and after (every group), rows moved."""

    segments_before: int
    segments_after: int
    merged: int  # segments replaced
    rows_moved: int


@dataclass(frozen=True)
class _Merge:
    reference: str | None
    replaced: tuple[SegmentEntry, ...]
    directory: Path  # staged: <group dir>/.tmp-<name>
    entry: SegmentEntry


def compact_index(path: str | os.PathLike[str],
                  target_rows: int = DEFAULT_TARGET_ROWS) -> CompactResult:
    """Merge runs of consecutive small segments (per group) into segments of up to
    ``target_rows`` rows, in one manifest swap."""
    if not isinstance(target_rows, int) or target_rows < 2:
        raise IndexStoreError(f"target_rows must be an integer >= 2, got {target_rows!r}")
    root = Path(path)
    with WriterLock(root):
        index = open_index(root)
        merges: list[_Merge] = []
        try:
            remove_debris(root, index.manifest)
            groups: list[tuple[str | None, SegmentGroup]] = [(None, index)]
            groups += list(index.references.items())
            for reference, group in groups:
                for run in merge_runs(group.segments, target_rows):
                    merges.append(_merge(group, run, reference))
            if merges:
                _swap(root, index.manifest, merges)
        except BaseException:
            for merge in merges:
                shutil.rmtree(merge.directory, ignore_errors=True)
            raise
        finally:
            before = len(index.segments) + sum(len(g.segments) for g in index.references.values())
            index.close()
    merged = sum(len(m.replaced) for m in merges)
    for merge in merges:  # no longer listed: a crash here leaves debris the next writer removes
        for old in merge.replaced:
            shutil.rmtree(merge.directory.parent / old.name, ignore_errors=True)
    return CompactResult(before, before - merged + len(merges), merged,
                         sum(m.entry.rows for m in merges))


def merge_runs(segments: Sequence[Segment], target_rows: int) -> list[list[Segment]]:
    """Runs of two or more consecutive segments to merge: alike (text stored or not,
    embeddings or not) and together at most ``target_rows`` rows."""
    runs: list[list[Segment]] = []
    run: list[Segment] = []
    for seg in segments:
        alike = run and (seg.entry.store_text, seg.has_embeddings) == \
            (run[0].entry.store_text, run[0].has_embeddings)
        if run and alike and sum(s.rows for s in run) + seg.rows <= target_rows:
            run.append(seg)
            continue
        if len(run) > 1:
            runs.append(run)
        run = [seg]
    if len(run) > 1:
        runs.append(run)
    return runs


def _merge(group: SegmentGroup, run: list[Segment], reference: str | None) -> _Merge:
    """One run copied, row by row in order, into a staged segment."""
    first = run[0]
    name = f"seg-{group.segments.index(first) + 1:06d}-{uuid.uuid4().hex[:8]}"
    directory = group.dir / f"{STAGING_PREFIX}{name}"
    dim = int(first.vectors.shape[1]) if first.has_embeddings else None
    writer = SegmentWriter(directory, name, first.first_row, group.config.num_perm, dim,
                           group.config.style_features, first.entry.store_text)
    try:
        for seg in run:
            for start in range(0, seg.rows, _BLOCK):
                stop = min(seg.rows, start + _BLOCK)
                stored = seg.metadata.rows_between(seg.first_row + start, seg.first_row + stop)
                records = [ResponseRecord(id=r.id, response=r.response or "", prompt=r.prompt,
                                          model=r.model, timestamp=r.timestamp,
                                          account=r.account, source=r.source or "",
                                          line=r.line or 0) for r in stored]
                prints = Fingerprints(np.asarray(seg.signatures[start:stop]),
                                      np.asarray(seg.vectors[start:stop]) if dim else None,
                                      seg.style[start:stop])
                writer.add(records, prints, [r.prompt_hash for r in stored])
        entry = writer.finish(sum(s.entry.skipped_empty for s in run),
                              sum(s.entry.skipped_duplicates for s in run))
    except BaseException:
        writer.abort()
        raise
    log.debug("merged %d segments (%d rows) into %s", len(run), entry.rows, name)
    return _Merge(reference, tuple(s.entry for s in run), directory, entry)


def _swap(root: Path, manifest: Manifest, merges: list[_Merge]) -> Manifest:
    """Rename the merged segments into place and list them instead of those they replace."""
    served = list(manifest.segments)
    references = {name: list(entries) for name, entries in manifest.references.items()}
    for merge in merges:
        entries = served if merge.reference is None else references[merge.reference]
        at = entries.index(merge.replaced[0])
        if entries[at:at + len(merge.replaced)] != list(merge.replaced) or \
                merge.entry.rows != sum(e.rows for e in merge.replaced):
            raise IndexStoreError(f"{merge.directory}: does not replace a run of the index's "
                                  f"segments; nothing was changed")
        entries[at:at + len(merge.replaced)] = [merge.entry]
    for merge in merges:
        final = merge.directory.parent / merge.entry.name
        os.replace(merge.directory, final)
        fsync_path(final.parent)
    updated = replace(manifest, segments=tuple(served),
                      references={k: tuple(v) for k, v in references.items()},
                      updated_at=now_iso(), versions=library_versions())
    write_manifest(root, updated)
    return updated
