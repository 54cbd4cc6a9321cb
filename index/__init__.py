"""Fingerprints to disk and back, and search (FAISS). Knows no suspects or scores."""

from index.errors import (ConfigMismatchError, DuplicateIdError, IndexCorruptedError,
                          IndexExistsError, IndexLockedError, IndexStoreError, NotAnIndexError)
from index.manifest import Manifest, read_manifest
from index.metadata import StoredResponse
from index.search import Hits
from index.store import FingerprintIndex, SegmentGroup, open_index
from index.writer import (AppendResult, WriterLock, add_files, add_reference, append_records,
                          build_index, create_index)

__all__ = [
    "AppendResult", "ConfigMismatchError", "DuplicateIdError", "FingerprintIndex", "Hits",
    "IndexCorruptedError", "IndexExistsError", "IndexLockedError", "IndexStoreError", "Manifest",
    "NotAnIndexError", "SegmentGroup", "StoredResponse", "WriterLock", "add_files",
    "add_reference", "append_records",
    "build_index", "create_index", "open_index", "read_manifest",
]
