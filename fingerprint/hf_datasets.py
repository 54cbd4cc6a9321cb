"""Hugging Face ``datasets`` as inputs: a directory written by ``save_to_disk``, or a Hub id.

How one is named (fingerprint.io asks ``is_dataset`` before it looks at extensions):

- a **directory** holding ``dataset_dict.json`` (a saved ``DatasetDict``), or ``state.json`` or
  ``dataset_info.json`` (a saved ``Dataset``), is read as that dataset. A DatasetDict is read
  from its ``train`` split; another split is named by its directory (``./saved/test``), since
  every split of a saved DatasetDict is a saved Dataset of its own, so one rule names both and
  no path syntax is invented. A DatasetDict without ``train`` is an error listing its splits.
- ``hf://ID[:CONFIG][@SPLIT]`` is a dataset on the **Hugging Face Hub**: ``hf://owner/name``,
  ``hf://owner/name@test``, ``hf://wikimedia/wikipedia:20231101.en@train``. The prefix keeps an
  id from ever being taken for a local path (``owner/name`` may well be one), and ``:`` and
  ``@`` cannot occur in a Hub repository name. Without ``@SPLIT`` the split is ``train``, as
  for a directory. It is streamed (``load_dataset(..., streaming=True)``): nothing is
  downloaded whole, and a private dataset uses the Hugging Face login (``HF_TOKEN``). Offline
  (``HF_HUB_OFFLINE=1``), or with no such dataset, the error is one line naming the id.

Rows are records exactly as JSON objects are (fingerprint.records: the same shapes, field names
and paths, ``response.choices.0.message.content`` included). They are read as Arrow, a batch of
``BATCH_ROWS`` at a time, never the whole table as Python objects, and without decoding
features: an image or audio column stays the bytes and path it is stored as (decoding audio
could import torch), a class label its integer; times become ISO 8601 text, as in Parquet.
Errors name the dataset, the split and the row (from 1), and the field:
``./saved split test row 3: field "response" must be a string, got null``.

``datasets`` is optional (the ``hf`` extra) and imported only when a dataset is named, so
``import fingerprint`` never loads it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from fingerprint.errors import InputError
from fingerprint.tables import plain_value

HF_HINT = "pip install 'output-fingerprint[hf]'"
HUB_PREFIX = "hf://"
HUB_FORM = "hf://owner/name, optionally with :config and @split (hf://owner/name:config@split)"
BATCH_ROWS = 1024
DEFAULT_SPLIT = "train"
DICT_FILE = "dataset_dict.json"  # what DatasetDict.save_to_disk writes beside its splits
DATASET_FILES = ("state.json", "dataset_info.json")  # what Dataset.save_to_disk writes
# A Hub repository id (name, or owner/name), a config, a split as datasets names them.
_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?)"
                     r"(?::(?P<config>[\w.-]+))?(?:@(?P<split>\w+(?:\.\w+)*))?")


@dataclass(frozen=True)
class HubId:
    """A dataset on the Hub as ``hf://repo[:config][@split]`` names it."""

    repo: str
    config: str | None = None
    split: str | None = None


def is_hub_id(path: str | os.PathLike[str]) -> bool:
    return os.fsdecode(path).startswith(HUB_PREFIX)


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether an input names a Hugging Face dataset: a Hub id, or a directory that holds a
    saved one. Decided from names alone, without importing ``datasets``."""
    if is_hub_id(path):
        return True
    if str(path) == "-" or not os.path.isdir(path):
        return False
    return any(os.path.isfile(os.path.join(path, f)) for f in (DICT_FILE, *DATASET_FILES))


def parse_hub_id(text: str, name: str) -> HubId:
    """The parts of ``hf://repo[:config][@split]``; an InputError showing the form otherwise."""
    match = _HUB_ID.fullmatch(text[len(HUB_PREFIX):]) if text.startswith(HUB_PREFIX) else None
    if match is None:
        raise InputError(name, None, f"not a Hugging Face Hub id: write {HUB_FORM}")
    return HubId(**match.groupdict())


def dataset_items(path: str | os.PathLike[str],
                  name: str) -> tuple[Iterator[tuple[int, dict[str, Any]]], str]:
    """(row, {column: value}) of every row of the dataset's split, and what errors call a row
    (``split test row``, or ``row`` when the dataset does not know its split). The dataset is
    opened here, so that an unreadable one fails before the first row is asked for."""
    library = _datasets(name)
    dataset, split = _open(library, path, name)
    unit = f"split {split} row" if split else "row"
    return iter_rows(library, dataset, name, unit), unit


def dataset_rows(path: str | os.PathLike[str]) -> int | None:
    """Rows of a saved dataset's split (for progress totals); None for a Hub id (streamed, its
    size is not known before it is read) or when it cannot be told."""
    if is_hub_id(path):
        return None
    try:
        dataset, _ = _open(_datasets(""), path, "")
    except InputError:  # a progress total is optional; reading will name the problem
        return None
    return int(dataset.num_rows)


def _datasets(name: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError(name, None, f"reading a Hugging Face dataset needs the datasets "
                                     f"library: {HF_HINT}") from None
    return datasets


def _errors(library: Any) -> tuple[type[BaseException], ...]:
    """What loading or reading a dataset raises when the dataset (not this code) is the
    problem: the library's own errors, Arrow's, missing files and network failures (OSError),
    unknown configs and splits (ValueError), damaged metadata (KeyError, TypeError), and a
    loader that needs a package not installed (ImportError)."""
    import pyarrow

    return (OSError, ValueError, KeyError, TypeError, ImportError,
            library.exceptions.DatasetsError, pyarrow.ArrowException)


def _open(library: Any, path: str | os.PathLike[str], name: str) -> tuple[Any, str | None]:
    """The dataset (a Dataset, or an IterableDataset from the Hub) and its split's name."""
    text = os.fsdecode(path)
    if is_hub_id(text):
        hub = parse_hub_id(text, name)
        loaded = _load(library, lambda: library.load_dataset(
            hub.repo, hub.config, split=hub.split, streaming=True), name,
            f"cannot load {hub.repo!r} from the Hugging Face Hub")
    else:
        loaded = _load(library, lambda: library.load_from_disk(text), name,
                       "not a readable saved dataset")
    if isinstance(loaded, (library.DatasetDict, library.IterableDatasetDict)):
        return _split_of(loaded, text, name)
    split = getattr(loaded, "split", None)
    return loaded, str(split) if split is not None else _split_named_by(text)


def _split_named_by(directory: str) -> str | None:
    """The split a directory is, when it is one split of a saved DatasetDict (its parent's
    ``dataset_dict.json`` lists it): a Dataset made in memory does not know its split's name,
    but errors should still say which split a bad row is in."""
    directory = os.path.normpath(directory)
    try:
        with open(os.path.join(os.path.dirname(directory), DICT_FILE), "rb") as f:
            splits = json.load(f).get("splits")
    except (OSError, ValueError, AttributeError):  # no parent DatasetDict, or not one we know
        return None
    name = os.path.basename(directory)
    return name if isinstance(splits, list) and name in splits else None


def _load(library: Any, load: Callable[[], Any], name: str, problem: str) -> Any:
    try:
        return load()
    except _errors(library) as exc:
        offline = is_hub_id(name) and any(getattr(library.config, flag, False) for flag in
                                          ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        hint = ("; this process is set to work offline (HF_HUB_OFFLINE), so the Hub cannot "
                "be reached" if offline else "")
        raise InputError(name, None, f"{problem}: {_one_line(exc)}{hint}") from None


def _split_of(splits: Any, text: str, name: str) -> tuple[Any, str]:
    """The default split of a DatasetDict, or an error naming the splits there are and how to
    choose one."""
    if DEFAULT_SPLIT in splits:
        return splits[DEFAULT_SPLIT], DEFAULT_SPLIT
    if not splits:
        raise InputError(name, None, "a DatasetDict with no splits: there is nothing to read")
    names = ", ".join(repr(s) for s in splits)
    raise InputError(name, None, f"a DatasetDict with the splits {names} and no "
                                 f"{DEFAULT_SPLIT!r} to read by default; to choose a split, "
                                 f"{_how_to_choose(text, str(next(iter(splits))))}")


def _how_to_choose(text: str, split: str) -> str:
    """How a split of the DatasetDict ``text`` names is chosen, with ``split`` as the example."""
    if is_hub_id(text):
        hub = parse_hub_id(text, text)
        config = f":{hub.config}" if hub.config else ""
        return f"add it to the id, e.g. hf://{hub.repo}{config}@{split}"
    return f"name its directory, e.g. {os.path.join(text.rstrip('/'), split)}"


def iter_rows(library: Any, dataset: Any, name: str,
              unit: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row, {column: value}) of a Dataset or an IterableDataset (``library`` is the
    ``datasets`` module): plain values from Arrow batches. A failure while reading (a damaged
    file, a connection lost mid-stream) names the row it stopped before."""
    errors = _errors(library)
    row = 0
    try:
        batches = iter(dataset.with_format("arrow").iter(batch_size=BATCH_ROWS))
        while True:
            batch = next(batches, None)
            if batch is None:
                return
            for values in batch.to_pylist():
                row += 1
                yield row, {k: plain_value(v) for k, v in values.items()}
    except errors as exc:
        raise InputError(name, row + 1, f"cannot read: {_one_line(exc)}", unit=unit) from None


def _one_line(exc: BaseException) -> str:
    """The library's message on one line, all of it: a missing config's message lists the
    configs there are on its second line."""
    return " ".join(str(exc).split()) or type(exc).__name__
