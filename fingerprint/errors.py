"""The toolkit's typed errors.

Every error raised on purpose derives from ``FingerprintError`` so that the CLI can turn exactly
these into one clear line and let genuine bugs keep their traceback.
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
