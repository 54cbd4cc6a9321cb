"""Errors of reference packs (all derive from FingerprintError; the CLI prints one line)."""

from __future__ import annotations

from fingerprint.errors import FingerprintError


class ReferencePackError(FingerprintError):
    """Base class: the directory is not a pack, a name is taken, an install would clash."""


class PackCorruptedError(ReferencePackError):
    """``pack.json`` is not valid: edited, damaged, from a newer toolkit, or naming a path
    outside the pack."""


class PackEntryError(ReferencePackError):
    """An answers file is missing or is not the one that was added (size or sha256 differ)."""
