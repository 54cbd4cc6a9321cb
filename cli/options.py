"""Options shared by several commands, and the progress bars. Parsing only: no domain logic."""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from fingerprint.config import FingerprintConfig, settable_fields
from fingerprint.io import count_lines
from fingerprint.records import FieldMap

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def field_options(f: Callable) -> Callable:
    """--text-field/--prompt-field/--id-field, passed on as ``fields: FieldMap``."""
    @click.option("--text-field", help="Field holding the response text [default: response].")
    @click.option("--prompt-field", help="Field holding the prompt [default: prompt].")
    @click.option("--id-field", help="Field holding the response id [default: id].")
    @functools.wraps(f)
    def wrapper(*args: Any, text_field: str | None, prompt_field: str | None,
                id_field: str | None, **kwargs: Any) -> Any:
        fields = FieldMap(text=text_field, prompt=prompt_field, id=id_field)
        return f(*args, fields=fields, **kwargs)
    return wrapper


def config_options(f: Callable) -> Callable:
    """One option per settable FingerprintConfig field (its metadata names flag and help),
    passed on as ``config_overrides``: the fields given, the others keep the defaults (or the
    index's, on add)."""
    settable = settable_fields()
    defaults = FingerprintConfig()
    for field in reversed(settable):
        meta = field.metadata
        kind = click.Choice(meta["choices"]) if meta["choices"] else type(field.default)
        f = click.option(meta["flag"], field.name, type=kind, default=None,
                         help=f"{meta['help']} [default: {getattr(defaults, field.name)}].")(f)
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
    return click.option("--reference", "reference_files", multiple=True,
                        type=click.Path(dir_okay=False, path_type=Path), help=help)


def tokenizer_option(f: Callable) -> Callable:
    return click.option("--tokenizer", help="Tokenizer of the marked model (tokenizer.json or "
                        "a directory holding it) [default: the one the key records].")(f)


def json_option(help: str = "Print one JSON object.") -> Callable[[Callable], Callable]:
    return click.option("--json", "as_json", is_flag=True, help=help)


@contextmanager
def progress_bar(inputs: tuple[str, ...], label: str) -> Iterator[Callable[[int], None]]:
    """A bar over the inputs' lines (no total for gzip or stdin), as ``progress(n)``."""
    from tqdm import tqdm

    counts = [count_lines(p) for p in inputs]
    total = None if any(c is None for c in counts) else sum(c for c in counts if c)
    with tqdm(total=total, desc=label, unit="resp", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        yield bar.update


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
