"""Errors of the distributed engine (Ray): it is missing, the cluster cannot be reached, or a
worker was lost. Errors of the data (a bad record, a duplicate id) are the lower layers' own,
raised on the driver exactly as a local build raises them."""

from __future__ import annotations

from fingerprint.errors import FingerprintError


class EngineError(FingerprintError):
    """The Ray engine failed; nothing was committed (the message says what to do)."""


class EngineNotInstalledError(EngineError):
    """``--engine ray`` without the ``ray`` extra installed."""
