"""Options shared by several commands, and the progress bars. Parsing only: no domain logic.

Options that only shape how output looks (``--indent``, ``--progress/--no-progress``) are kept in
the click context's ``meta`` by their decorator and read where the output is written
(``echo_json``, ``progress_bar``), so that every command offers them without threading them
through its signature.
"""

from __future__ import annotations

import functools
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from cli.logs import QUIET_KEY
from fingerprint.config import FingerprintConfig, settable_fields
from fingerprint.io import count_lines
from fingerprint.records import FieldMap

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
INDENT_KEY = "fingerprint.indent"
PROGRESS_KEY = "fingerprint.progress"


def field_options(f: Callable) -> Callable:
    """--text-field/--prompt-field/--id-field, passed on as ``fields: FieldMap``."""
    @click.option("--text-field", help="Field holding the response text; naming any field reads "
                  "every record in the 'served' shape [default: the shape is detected from the "
                  "first record].")
    @click.option("--prompt-field", help="Field holding the prompt (see --text-field).")
    @click.option("--id-field", help="Field holding the response id (see --text-field; without "
                  "an id a record is named <file>:<line>).")
    @functools.wraps(f)
    def wrapper(*args: Any, text_field: str | None, prompt_field: str | None,
                id_field: str | None, **kwargs: Any) -> Any:
        fields = FieldMap(text=text_field, prompt=prompt_field, id=id_field)
        return f(*args, fields=fields, **kwargs)
    return wrapper


def request_field_options(f: Callable) -> Callable:
    """--prompt-field/--id-field/--account-field/--timestamp-field for request logs (the
    monitor's input: who asked what, and when; no answer needed), passed on as ``fields``."""
    @click.option("--prompt-field", help="Field holding the prompt; naming it (or --id-field) "
                  "reads every record in the 'served' shape [default: the shape is detected "
                  "from the first record].")
    @click.option("--id-field", help="Field holding the request id (see --prompt-field; "
                  "without an id a request is named <file>:<line>).")
    @click.option("--account-field", help="Field holding the account [default: 'account'; in "
                  "OpenAI chat logs 'account', else 'request.user'].")
    @click.option("--timestamp-field", help="Field holding the request's time, ISO 8601 or "
                  "seconds since the epoch [default: 'timestamp'; in OpenAI chat logs "
                  "'timestamp', else 'response.created'].")
    @functools.wraps(f)
    def wrapper(*args: Any, prompt_field: str | None, id_field: str | None,
                account_field: str | None, timestamp_field: str | None, **kwargs: Any) -> Any:
        fields = FieldMap(prompt=prompt_field, id=id_field, account=account_field,
                          timestamp=timestamp_field)
        return f(*args, fields=fields, **kwargs)
    return wrapper


def config_options(f: Callable, from_index: bool = False) -> Callable:
    """One option per settable FingerprintConfig field (its metadata names flag and help),
    passed on as ``config_overrides``: the fields given, the others keep the defaults (or, with
    ``from_index``, the index's: then no default is shown, since the index decides it)."""
    settable = settable_fields()
    defaults = FingerprintConfig()
    for field in reversed(settable):
        meta = field.metadata
        kind = click.Choice(meta["choices"]) if meta["choices"] else type(field.default)
        default = ("the index's; given, it must equal it" if from_index
                   else getattr(defaults, field.name))
        f = click.option(meta["flag"], field.name, type=kind, default=None,
                         help=f"{meta['help']} [default: {default}].")(f)
    names = [field.name for field in settable]

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {n: kwargs.pop(n) for n in names}
        overrides = {n: v for n, v in given.items() if v is not None}
        return f(*args, config_overrides=overrides, **kwargs)
    return wrapper


def index_option(f: Callable) -> Callable:
    return click.option("--index", "index_path", required=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Index directory.")(f)


def reference_files_option(help: str) -> Callable[[Callable], Callable]:
    """``--reference``, kept as the text given: an input may be a saved dataset's directory or
    an ``hf://`` id, which a ``click.Path`` would refuse or turn into ``hf:/``."""
    return click.option("--reference", "reference_files", multiple=True, metavar="INPUT",
                        help=help)


def tokenizer_option(f: Callable) -> Callable:
    return click.option("--tokenizer", help="Tokenizer of the marked model (tokenizer.json or "
                        "a directory holding it) [default: the one the key records].")(f)


def json_option(help: str = "Print one JSON object.") -> Callable[[Callable], Callable]:
    """``--json`` (passed on as ``as_json``) and ``--indent N`` (kept for ``echo_json``)."""
    def decorate(f: Callable) -> Callable:
        @click.option("--json", "as_json", is_flag=True, help=help)
        @click.option("--indent", type=click.IntRange(0, 16), default=None,
                      help="Indent the JSON by N spaces per level [default: one compact line].")
        @functools.wraps(f)
        def wrapper(*args: Any, indent: int | None, **kwargs: Any) -> Any:
            if indent is not None and not kwargs.get("as_json"):
                raise click.UsageError("--indent shapes the output of --json; give --json too")
            click.get_current_context().meta[INDENT_KEY] = indent
            return f(*args, **kwargs)
        return wrapper
    return decorate


def echo_json(data: Any) -> None:
    """One JSON document on stdout: a single compact line unless ``--indent`` asked for more
    (a 1 MB result pretty-printed is mostly spaces, and one line is what ``jq`` and log
    collectors take)."""
    indent = click.get_current_context().meta.get(INDENT_KEY)
    separators = (",", ":") if indent is None else None
    click.echo(json.dumps(data, indent=indent, separators=separators))


def progress_option(f: Callable) -> Callable:
    """``--progress/--no-progress``, kept for ``progress_disabled``."""
    @click.option("--progress/--no-progress", "show_progress", default=None,
                  help="Force progress bars on stderr on or off [default: on when stderr is a "
                       "terminal and -q is not given].")
    @functools.wraps(f)
    def wrapper(*args: Any, show_progress: bool | None, **kwargs: Any) -> Any:
        click.get_current_context().meta[PROGRESS_KEY] = show_progress
        return f(*args, **kwargs)
    return wrapper


def progress_disabled() -> bool | None:
    """tqdm's ``disable``: what --progress/--no-progress forced, else off when quiet, else None
    (tqdm's own choice: on when stderr is a terminal)."""
    meta = click.get_current_context().meta
    forced = meta.get(PROGRESS_KEY)
    if forced is not None:
        return not forced
    return True if meta.get(QUIET_KEY) else None


@contextmanager
def progress_bar(inputs: tuple[str, ...], label: str,
                 unit: str = "resp") -> Iterator[Callable[[int], None]]:
    """A bar over the inputs' lines (no total for gzip or stdin), as ``progress(n)``."""
    from tqdm import tqdm

    disable = progress_disabled()
    if disable is None and not sys.stderr.isatty():
        disable = True  # tqdm would decide so too; deciding here spares the counting pass
    counts = [None if disable else count_lines(p) for p in inputs]  # no bar, no counting pass
    total = None if any(c is None for c in counts) else sum(c for c in counts if c)
    with tqdm(total=total, desc=label, unit=unit, file=sys.stderr, disable=disable,
              dynamic_ncols=True) as bar:
        yield bar.update


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
