"""The ``fingerprint`` command: one module per command group, each command parsing its options
and calling the library.

Library errors (``FingerprintError``) become one ``Error: ...`` line and exit code 1 here and only
here; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from cli.attribute import attribute_command
from cli.index import index_group, verify_command
from cli.logs import LOG_ENV, QUIET_KEY, configure_logging, log_level
from cli.monitor import monitor_group
from cli.options import CONTEXT
from cli.probe import probe_group
from cli.reference import reference_group
from cli.replay import serve_replay
from cli.share import share_group
from cli.watermark import watermark_group
from fingerprint import __version__
from fingerprint.errors import FingerprintError


class ErrorReportingGroup(click.Group):
    """Turns the toolkit's own errors, and the OS's (a full disk, a path we may not write),
    into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FingerprintError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@click.group(cls=ErrorReportingGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="fingerprint")
@click.option("-v", "--verbose", count=True,
              help="More log messages on stderr: -v the toolkit's debug messages, -vv other "
                   "libraries' too.")
@click.option("-q", "--quiet", count=True,
              help="Fewer: -q warnings and errors only (and no progress bars), -qq errors only.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Fingerprint served LLM responses and find out whether a suspect model derives from them.

    Results go to stdout, log messages and progress bars to stderr; the log level is INFO unless
    -v/-q or the environment variable FINGERPRINT_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR) say
    otherwise."""
    level = log_level(verbose, quiet, os.environ.get(LOG_ENV))
    ctx.call_on_close(configure_logging(level, libraries=verbose >= 2))
    ctx.meta[QUIET_KEY] = level > logging.INFO


for command in (index_group, verify_command, reference_group, attribute_command, probe_group,
                serve_replay, watermark_group, monitor_group, share_group):
    main.add_command(command)

__all__ = ["ErrorReportingGroup", "main"]
