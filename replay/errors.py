"""Errors of the replay server (all derive from FingerprintError)."""

from __future__ import annotations

from fingerprint.errors import FingerprintError


class ReplayError(FingerprintError):
    """The recorded outputs cannot be served (no prompts in them, an unusable option)."""
