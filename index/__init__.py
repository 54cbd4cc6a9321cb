"""Fingerprints to disk and back, and search (FAISS). Knows no suspects or scores.

Writes are two steps (index.staging): ``stage_segment`` writes a complete segment under a hidden
name through an ``Executor`` (the local process pool is one), ``commit`` makes staged segments
part of the index in one manifest swap. ``append_records``/``add_files``/``build_index`` do both
under the writer lock. Marks (index.marks) label served rows, e.g. those served to accounts the
extraction monitor flagged: ``mark_accounts`` writes them the same way (stage + commit), and
``FingerprintIndex.marked_rows`` reads them. ``compact_index`` merges small segments into large
ones (index.compact), also in one manifest swap."""

from index.compact import DEFAULT_TARGET_ROWS, CompactResult, compact_index
from index.errors import (ConfigMismatchError, DuplicateIdError, IndexCorruptedError,
                          IndexExistsError, IndexLockedError, IndexStoreError, IndexWriteError,
                          NotAnIndexError)
from index.manifest import Manifest, MarksEntry, content_checksum, read_manifest
from index.mark_writer import MarkResult, mark_accounts
from index.marks import AccountMark
from index.metadata import StoredResponse
from index.reference_meta import check_reference_meta, meta_matches, parse_meta_pairs
from index.search import Hits
from index.staging import (STAGING_PREFIX, DuplicateFilter, Executor, StagedSegment, StageResult,
                           WriteOptions, commit, local_executor, stage_segment)
from index.store import FingerprintIndex, SegmentGroup, fingerprinter_for, open_index
from index.verify import VerifyReport, verify_index
from index.writer import (AppendResult, WriterLock, add_files, add_reference, append_records,
                          build_index, check_reference_name, create_index,
                          describe_reference, remove_debris)

__all__ = [
    "AccountMark", "AppendResult", "CompactResult", "ConfigMismatchError", "DEFAULT_TARGET_ROWS",
    "DuplicateFilter", "DuplicateIdError", "Executor", "FingerprintIndex", "Hits",
    "IndexCorruptedError", "IndexExistsError", "IndexLockedError", "IndexStoreError",
    "IndexWriteError", "Manifest", "MarkResult", "MarksEntry", "NotAnIndexError",
    "STAGING_PREFIX", "SegmentGroup", "StageResult", "StagedSegment", "StoredResponse",
    "VerifyReport", "WriteOptions", "WriterLock", "add_files", "add_reference", "append_records",
    "build_index", "check_reference_meta", "check_reference_name", "commit", "compact_index",
    "content_checksum", "create_index",
    "describe_reference", "fingerprinter_for", "local_executor", "mark_accounts", "meta_matches",
    "open_index", "parse_meta_pairs", "read_manifest", "remove_debris", "stage_segment",
    "verify_index",
]
