"""The toolkit's typed errors, and those of this layer (text to fingerprints).

Every error raised on purpose derives from ``FingerprintError`` so that the CLI can turn exactly
these into one clear line and let genuine bugs keep their traceback. Each layer keeps its own in
one module: fingerprint.errors (here), index.errors, attribution.errors, probing.errors,
replay.errors, reports.errors. The tree is drawn in the README ("Errors").
"""

from __future__ import annotations


class FingerprintError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class ConfigError(FingerprintError, ValueError):
    """A configuration value is invalid (names the field and the accepted values)."""


class InputError(FingerprintError, ValueError):
    """A record in an input file is unusable; the message names the file, line and field."""

    def __init__(self, source: str, line: int | None, message: str, *, field: str | None = None,
                 unit: str = "line"):
        self.source = source
        self.line = line
        self.field = field
        where = source if line is None else f"{source} {unit} {line}"
        super().__init__(f"{where}: {message}")


class EmbeddingModelError(FingerprintError):
    """The embedding model cannot be loaded offline, or does not suit the chosen backend."""


class EmbeddingCacheError(FingerprintError):
    """The cache directory cannot be used, or a freshly built entry does not verify."""


class TokenizerMismatchError(FingerprintError):
    """The tokenizer given is not the one the key was made for."""


class LexiconError(FingerprintError):
    """WordNet's data is missing or is not the data a key was made with."""


class WatermarkKeyError(FingerprintError):
    """A key file is missing, not a key, damaged, or of an unknown version."""
