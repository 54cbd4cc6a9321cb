"""Errors of probing a suspect through its API (all derive from FingerprintError)."""

from __future__ import annotations

from fingerprint.errors import FingerprintError


class ProbeError(FingerprintError):
    """Base class of the errors of probing a suspect."""


class OutputMismatchError(ProbeError):
    """The output file holds answers to other requests (another model or other parameters)."""


class OutputFileError(ProbeError):
    """The output file is damaged somewhere other than a torn last line."""


class EndpointError(ProbeError):
    """The endpoint cannot serve this run at all (refused key, unknown model, down, not OpenAI)."""
