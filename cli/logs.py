"""Log messages of the command line: configured here, once per run, and nowhere else.

Library modules only ever call ``logging.getLogger(__name__)``: a library that configures logging
takes the choice away from the program that uses it. The ``fingerprint`` command is such a
program, so it chooses: the toolkit's own messages at INFO and above (a cache being built on
first use, a damaged cache entry rebuilt) and other libraries' warnings go to stderr, where they
never mix with results on stdout. ``-v`` adds the toolkit's debug messages, ``-vv`` the libraries'
too; ``-q`` keeps warnings and errors, ``-qq`` errors only; ``FINGERPRINT_LOG_LEVEL`` sets the
level when no flag does (flags win: the command line is the more specific choice).
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

import click

LOG_ENV = "FINGERPRINT_LOG_LEVEL"
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
          "ERROR": logging.ERROR}
PACKAGES = ("fingerprint", "index", "attribution", "probing", "replay", "reports",
            "distributed", "cli")
QUIET_KEY = "fingerprint.quiet"  # in the click context's meta: the level is above INFO


class StderrHandler(logging.Handler):
    """Writes each record on its own line of the *current* stderr, above any progress bar.

    ``tqdm.write`` clears the bar, writes and redraws it, so a message does not tear the bar's
    line; looking stderr up at each record (not once) keeps it right when stderr is replaced,
    as click's test runner does."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


def log_level(verbose: int, quiet: int, environ: str | None) -> int:
    """The toolkit's level: the flags if given, else the environment variable, else INFO."""
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet contradict each other")
    if verbose:
        return logging.DEBUG
    if quiet:
        return logging.WARNING if quiet == 1 else logging.ERROR
    if environ is None or not environ.strip():
        return logging.INFO
    level = LEVELS.get(environ.strip().upper())
    if level is None:
        raise click.UsageError(f"{LOG_ENV}={environ!r}: expected one of "
                               f"{', '.join(LEVELS)}")
    return level


def configure_logging(level: int, libraries: bool = False) -> Callable[[], None]:
    """Send the toolkit's records at ``level`` and up to stderr; other libraries' from WARNING
    (from DEBUG with ``libraries``). Returns what puts logging back as it was, for a program
    that runs the command in-process (click's test runner, a notebook) and keeps going."""
    root = logging.getLogger()
    loggers = [root] + [logging.getLogger(p) for p in PACKAGES]
    before = [(logger, logger.level) for logger in loggers]
    handler = StderrHandler()
    detailed = level <= logging.DEBUG
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s" if detailed
        else "%(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if libraries else max(level, logging.WARNING))
    for package in PACKAGES:
        logging.getLogger(package).setLevel(level)

    def restore() -> None:
        root.removeHandler(handler)
        for logger, old in before:
            logger.setLevel(old)
    return restore


def quiet_ray() -> None:
    """Ray Data's progress messages (INFO, its own console handler) only with ``-vv``, like
    every other library's. Imports Ray Data first, which sets up its loggers on import and
    would undo a level set before; without Ray nothing happens (the engine says what to
    install)."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return
    level = logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.WARNING
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(level)
