"""The one reader of every input: served responses, suspect outputs, reference outputs, prompts.

A Hugging Face dataset first: ``hf://owner/name[:config][@split]`` on the Hub, or a directory
that ``save_to_disk`` wrote (fingerprint.hf_datasets, the ``hf`` extra; the naming rule is
there). Otherwise the format is chosen by the file name's extension (after a ``.gz``): ``.csv``
and ``.tsv`` (a header row, then one record per row; fingerprint.tables), ``.parquet`` (through
pyarrow, the ``parquet`` extra), anything else JSON: JSON Lines, or one JSON array (AlpacaEval's
``model_outputs.json``; fingerprint.json_input). gzip is recognised by its magic bytes; ``-`` is
standard input (JSON). Every input is read in one pass, a line, row or batch at a time (the JSON
array is the one format read whole), so standard input and named pipes work for every reader.
The shapes a record may take are fingerprint.records'.

Bad input stops the read with an ``InputError`` that names the file, the line (the row of a
Parquet file, the split and row of a dataset, the item of a JSON array) and the field, so that
a batch is either stored whole or not at all. The one documented skip: a response that is empty or whitespace only carries no
fingerprint, so it is counted in ``ReadStats.empty`` and left out. Everything returned can be
encoded as UTF-8, a file name that is not UTF-8 included (it is shown with ``\\x`` escapes).
"""

from __future__ import annotations

import gzip
import itertools
import os
import stat
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

from fingerprint.errors import InputError
from fingerprint.hf_datasets import dataset_items, dataset_rows, is_dataset
from fingerprint.json_input import BLANK, MAX_LINE_BYTES, decode_json_line, json_items
from fingerprint.records import FieldMap, RecordParser, ResponseRecord, detect_shape, type_name
from fingerprint.streams import open_raw, read_ahead, rewound
from fingerprint.tables import csv_items, parquet_items, parquet_rows

__all__ = ["BLANK", "MAX_LINE_BYTES", "Prompt", "ReadStats", "count_lines", "decode_json_line",
           "input_format", "open_input", "read_prompts", "read_records", "source_name"]

# A first record with one of these fields holds responses; without, it is a prompts-only file.
RESPONSE_FIELDS = ("response", "output", "request")
GZIP_MAGIC = b"\x1f\x8b"
TABLE_FORMATS = ("csv", "tsv")


@dataclass
class ReadStats:
    """What a read saw: records yielded and documented skips."""

    records: int = 0
    empty: int = 0
    shape: str | None = None
    skipped_lines: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Prompt:
    """A prompt to ask a suspect: its text and the id it is known by."""

    id: str
    text: str


@dataclass(frozen=True)
class _Items:
    numbered: Iterator[tuple[int, Any]]  # (line, row or item number, decoded record)
    unit: str  # what the numbers count: "line", "item", "row" or "split NAME row"
    table: bool  # CSV or TSV: an empty cell is a value left out


def source_name(path: str | os.PathLike[str]) -> str:
    """How an input is named in errors and stored records; always valid UTF-8."""
    if str(path) == "-":
        return "<stdin>"
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def input_format(path: str | os.PathLike[str]) -> str:
    """``hf`` for a Hugging Face dataset (a Hub id or a saved dataset's directory), else
    ``csv``, ``tsv``, ``parquet`` or ``json``, from the extension (``.gz`` looked through)."""
    if is_dataset(path):
        return "hf"
    name = os.fsdecode(path).lower()
    name = name[:-3] if name.endswith(".gz") else name
    for kind in (*TABLE_FORMATS, "parquet"):
        if name.endswith(f".{kind}"):
            return kind
    return "json"


def open_input(path: str | os.PathLike[str], name: str | None = None) -> IO[bytes]:
    """A buffered binary stream of the input, decompressed if it is gzip; errors name the file.
    Closing it never closes standard input."""
    name = name or source_name(path)
    raw, owned = open_raw(path, name)
    try:
        head = read_ahead(raw, len(GZIP_MAGIC))
    except OSError as exc:
        if owned:
            raw.close()
        raise InputError(name, None, f"cannot read: {exc.strerror or exc}") from None
    stream = rewound(head, raw, owns_rest=owned)
    if head != GZIP_MAGIC:
        return stream
    return rewound(b"", gzip.GzipFile(fileobj=stream, mode="rb"),  # type: ignore[arg-type]
                   also_close=[stream])


def read_records(path: str | os.PathLike[str], fields: FieldMap = FieldMap(),
                 stats: ReadStats | None = None, *, require_response: bool = True,
                 name: str | None = None) -> Iterator[ResponseRecord]:
    """Yield the records of one input file, validating each one as it is read.

    ``require_response=False`` reads request logs (the extraction monitor's input): the answer
    may be absent (its ``response`` is then ""), and what is skipped and counted as empty is a
    request without a prompt instead. ``name`` is how the input is named in errors and stored
    records (default: the path as given): a worker of the Ray engine reads the file by its
    absolute path but must name it as the user did, so that its records equal a local read's."""
    stats = stats if stats is not None else ReadStats()
    name = name or source_name(path)
    with _records_of(path, name) as items:
        yield from _parse_records(items, name, fields, stats, require_response)


def read_prompts(path: str | os.PathLike[str], fields: FieldMap = FieldMap()) -> list[Prompt]:
    """Prompts to ask, in file order, each text once.

    A prompts file has a ``prompt`` (or AlpacaEval's ``instruction``) field and an optional
    ``id`` (or ``prompt_id``); any file ``read_records`` reads (which also carries responses)
    works too, and its prompts are used. The shape is decided by the first record.
    """
    name = source_name(path)
    with _records_of(path, name) as items:
        first = next(items.numbered, None)
        if first is None:
            return []
        rest = itertools.chain([first], items.numbered)
        if items.unit == "item" or fields.explicit or _has_responses(first[1]):
            records = _parse_records(_Items(rest, items.unit, items.table), name, fields,
                                     ReadStats())
            return _unique(_record_prompt(r, name, items.unit) for r in records)
        parser = RecordParser("served", fields, name, items.unit, blank_is_missing=items.table)
        return _unique(Prompt(*parser.parse_prompt(_object(obj, name, number, items.unit),
                                                   number)) for number, obj in rest)


def count_lines(path: str | os.PathLike[str]) -> int | None:
    """About how many records a file holds, for progress totals: the lines of a plain regular
    file (less a table's header), the rows of a Parquet file or of a saved dataset's split;
    None for gzip, standard input, a Hub id, and anything else not a regular file (a named pipe
    must be read once, by the reader)."""
    if is_dataset(path):
        return dataset_rows(path)
    try:
        if str(path) == "-" or not stat.S_ISREG(os.stat(path).st_mode):
            return None
        kind = input_format(path)
        if kind == "parquet":
            return parquet_rows(path)
        with open(path, "rb") as f:
            if f.read(2) == GZIP_MAGIC:
                return None
            f.seek(0)
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return max(0, lines - 1) if kind in TABLE_FORMATS else lines
    except OSError:
        return None


@contextmanager
def _records_of(path: str | os.PathLike[str], name: str) -> Iterator[_Items]:
    """The numbered records of an input. On exit the record generator is closed, then the
    file, however early the caller stops."""
    kind = input_format(path)
    with ExitStack() as stack:
        if kind == "hf":
            items = _Items(*dataset_items(path, name), False)
        elif kind == "parquet":
            items = _Items(parquet_items(path, name), "row", False)
        else:
            stream = stack.enter_context(open_input(path, name))
            if kind in TABLE_FORMATS:
                items = _Items(csv_items(stream, name, kind), "line", True)
            else:
                items = _Items(*json_items(stream, name), False)
        stack.callback(items.numbered.close)  # type: ignore[attr-defined]
        yield items


def _parse_records(items: _Items, name: str, fields: FieldMap, stats: ReadStats,
                   require_response: bool = True) -> Iterator[ResponseRecord]:
    parser: RecordParser | None = None
    for number, obj in items.numbered:
        obj = _object(obj, name, number, items.unit)
        if parser is None:
            parser = RecordParser(detect_shape(obj, fields), fields, name, items.unit,
                                  first=number, blank_is_missing=items.table,
                                  response_required=require_response)
            stats.shape = parser.shape
        record = parser.parse(obj, number)
        if record is None:
            stats.empty += 1
            stats.skipped_lines.append(number)
            continue
        stats.records += 1
        yield record


def _object(obj: Any, name: str, number: int, unit: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InputError(name, number, f"expected a JSON object, got {type_name(obj)}",
                         unit=unit)
    return obj


def _has_responses(first: Any) -> bool:
    return not isinstance(first, dict) or any(k in first for k in RESPONSE_FIELDS)


def _record_prompt(record: ResponseRecord, name: str, unit: str) -> Prompt:
    if record.prompt is None:
        raise InputError(name, record.line, 'field "prompt" is missing', field="prompt",
                         unit=unit)
    return Prompt(record.id, record.prompt)


def _unique(prompts: Iterable[Prompt]) -> list[Prompt]:
    seen: set[str] = set()
    out = []
    for p in prompts:
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    return out

