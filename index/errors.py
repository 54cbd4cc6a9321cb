"""Errors of the on-disk index. Each says what was expected and what was found."""

from __future__ import annotations

from fingerprint.errors import FingerprintError, InputError


class IndexStoreError(FingerprintError):
    """Base class of the index's errors."""


class NotAnIndexError(IndexStoreError):
    """The directory holds no (readable) index manifest."""


class IndexExistsError(IndexStoreError):
    """Creating an index where one, or other files, already are."""


class IndexCorruptedError(IndexStoreError):
    """A file of the index is missing, truncated or does not match its recorded checksum."""


class ConfigMismatchError(IndexStoreError):
    """The index was built with another FingerprintConfig (or embedding size) than asked for."""

    def __init__(self, path: str, differences: list[tuple[str, object, object]]):
        self.differences = differences
        detail = "; ".join(f"{name}: index has {stored!r}, got {given!r}"
                           for name, stored, given in differences)
        super().__init__(f"{path}: fingerprint config differs from the index's ({detail})")


class IndexWriteError(IndexStoreError):
    """A file of a segment being staged could not be written (a full disk, a file size limit,
    an I/O error); the staged segment is discarded, so nothing stored before is touched."""


class IndexLockedError(IndexStoreError):
    """Another writer holds the index's lock."""


class DuplicateIdError(InputError):
    """A response id is already in the index or earlier in the same batch."""
