"""Errors of scoring a suspect (the index's and the input's are index.errors and
fingerprint.errors; all derive from fingerprint.errors.FingerprintError)."""

from __future__ import annotations

from fingerprint.errors import FingerprintError


class AttributionError(FingerprintError):
    """Base class of the errors of attribution."""


class ReferenceNameError(AttributionError):
    """Two reference models share a name, or a reference is named like a provider: their
    classes and null draws would be confused."""


class TooFewClassesError(AttributionError):
    """A comparison needs more models than it was given (a teacher ranking two providers, a
    style classifier the provider and at least one reference)."""


class ReferenceIsProviderError(AttributionError):
    """A reference model gives the provider's own answers: a candidate teacher among the
    references puts the alternative into the null hypothesis."""


class ReferenceMatchError(AttributionError):
    """References were asked for by their facts (``--match-references``) and none qualifies, or
    they were given as files, which carry no facts."""
