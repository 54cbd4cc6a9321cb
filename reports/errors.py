"""Errors of writing reports (all derive from FingerprintError)."""

from __future__ import annotations

from fingerprint.errors import FingerprintError


class ReportError(FingerprintError):
    """A report cannot be written where it was asked for."""
