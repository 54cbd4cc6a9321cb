"""A reference pack: many reference models' answers to the same prompts, with their facts.

Why: a rank p-value can go no lower than 1/(R+1) with R references, and it is only as fair as the
references are like the suspect. So the population has to grow, and each member has to say what
it is (era, base model, vendor) so that a null can be matched to a suspect. A pack is how that
population is gathered once and installed into any number of indexes: probe open models with
``fingerprint probe run`` (the same prompts as the suspects), add each answers file to the pack
with its facts, install the pack. The pack records where each answers file came from (the probe
run's endpoint, model, parameters and dates, read back from the file) and its sha256.

Layout, one directory::

    pack.json            format, version, one entry per reference, a checksum over the content
    answers/<name>.jsonl a copy of the answers file, byte for byte (any suffix the reader knows)

Every path comes from a name checked against one pattern and must resolve inside the pack, so an
edited ``pack.json`` cannot make the toolkit read outside it. Writes are atomic (the answers file,
then ``pack.json``), so a crash leaves the pack as it was, plus at most an unlisted file that the
next add of that name replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from fingerprint.atomic import atomic_write_bytes, fsync_path
from fingerprint.errors import ConfigError, InputError
from fingerprint.io import ReadStats, read_records, source_name
from fingerprint.provenance import file_sha256, probe_details
from index import IndexStoreError, check_reference_meta, check_reference_name, content_checksum
from reference_pack.errors import PackCorruptedError, PackEntryError, ReferencePackError

PACK_FILE = "pack.json"
ANSWERS_DIR = "answers"
FORMAT_NAME = "fingerprint-reference-pack"
FORMAT_VERSION = 1
# The suffixes of an answers file (its name is a reference name: index.check_reference_name).
SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,8}){1,2}")


@dataclass(frozen=True)
class PackEntry:
    """One reference model in a pack."""

    name: str
    file: str  # relative to the pack directory: answers/<name><suffix>
    sha256: str
    bytes: int
    responses: int
    empty: int
    meta: dict[str, str] = field(default_factory=dict)
    probe: dict[str, Any] | None = None  # how it was probed, if the file is a probe run's
    source: str = ""  # the answers file's name when it was added
    added_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes,
                "responses": self.responses, "empty": self.empty, "meta": dict(self.meta),
                "probe": self.probe, "source": self.source, "added_at": self.added_at}


@dataclass(frozen=True)
class Pack:
    """A pack's directory and its entries, read and checked (``read_pack``)."""

    root: Path
    entries: dict[str, PackEntry]
    created_at: str

    def path_of(self, entry: PackEntry) -> Path:
        return self.root / entry.file


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_pack(root: str | os.PathLike[str]) -> Pack:
    """The pack at ``root``, its manifest checked (format, version, checksum, names, paths and
    facts); the answers files are checked by ``verify_pack``."""
    root = Path(root)
    path = root / PACK_FILE
    if not path.is_file():
        raise ReferencePackError(f"{root}: not a reference pack (no {PACK_FILE}); make one with "
                                 f"'fingerprint reference pack add'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackCorruptedError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise PackCorruptedError(f"{path}: not a reference pack manifest (format "
                                 f"{data.get('format') if isinstance(data, dict) else None!r})")
    version = data.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise PackCorruptedError(f"{path}: version {version!r}; this toolkit reads version "
                                 f"{FORMAT_VERSION}" + (" (upgrade the toolkit)" if newer else ""))
    stored = data.pop("checksum", None)
    if stored != content_checksum(data):
        raise PackCorruptedError(f"{path}: checksum mismatch; the manifest was edited or damaged")
    try:
        entries = {name: _entry(root, name, raw) for name, raw in data["references"].items()}
        return Pack(root, entries, str(data["created_at"]))
    except (KeyError, TypeError, ValueError, ConfigError, IndexStoreError) as exc:
        raise PackCorruptedError(f"{path}: invalid content ({exc})") from None


def _entry(root: Path, name: str, raw: dict[str, Any]) -> PackEntry:
    check_reference_name(name)
    file = str(raw["file"])
    expected = f"{ANSWERS_DIR}/{name}"
    suffix = file[len(expected):]
    if not file.startswith(expected) or not SUFFIX.fullmatch(suffix) or \
            not (root / file).resolve().is_relative_to((root / ANSWERS_DIR).resolve()):
        raise PackCorruptedError(f"{root / PACK_FILE}: reference {name}: file {file!r} is not "
                                 f"{expected}<suffix> inside the pack")
    return PackEntry(name, file, str(raw["sha256"]), int(raw["bytes"]), int(raw["responses"]),
                     int(raw["empty"]), check_reference_meta(raw.get("meta") or {},
                                                             f"reference {name}"),
                     raw.get("probe"), str(raw.get("source", "")), str(raw.get("added_at", "")))


def verify_pack(pack: Pack, names: list[str] | None = None) -> None:
    """Every (or each named) answers file has its recorded size and sha256; the first that does
    not is an error naming it."""
    for name in names or sorted(pack.entries):
        entry = pack.entries[name]
        path = pack.path_of(entry)
        if not path.is_file():
            raise PackEntryError(f"{path}: missing (reference {name} of {pack.root})")
        size = path.stat().st_size
        if size != entry.bytes or file_sha256(path) != entry.sha256:
            raise PackEntryError(f"{path}: changed since it was added to the pack ({size} bytes, "
                                 f"recorded {entry.bytes}; sha256 differs): add it again with "
                                 f"'fingerprint reference pack add --replace'")


def add_to_pack(root: str | os.PathLike[str], answers: str | os.PathLike[str], name: str,
                meta: Mapping[str, str] | None = None, *, replace: bool = False) -> PackEntry:
    """Copy an answers file (``probe run``'s output, or any file the toolkit reads with its
    default fields) into the pack as reference ``name`` with its facts; the pack is made if new.

    The file is copied into the pack under a hidden name and read there: it must hold at least
    one answer, and a malformed line is the reader's usual error naming the user's file and
    line; only then does the copy take its place and the manifest name it."""
    root = Path(root)
    check_reference_name(name)
    facts = check_reference_meta(meta or {}, f"reference {name}")
    pack = read_pack(root) if (root / PACK_FILE).exists() else None
    if pack is not None and name in pack.entries and not replace:
        raise ReferencePackError(f"{root}: already holds reference {name!r}; give --replace to "
                                 f"replace its answers")
    if str(answers) == "-":
        raise InputError("<stdin>", None, "a pack stores a copy of the answers file: give a file")
    data = Path(answers).read_bytes()
    suffix = "".join(Path(answers).suffixes[-2:]) or ".jsonl"
    if not SUFFIX.fullmatch(suffix):
        suffix = ".jsonl"
    # The answers are counted in the copy, not in the user's file, so that what is counted is
    # what is stored even if the file changes meanwhile; errors still name the user's file.
    (root / ANSWERS_DIR).mkdir(parents=True, exist_ok=True)
    copy = root / ANSWERS_DIR / f".tmp-{name}-{uuid.uuid4().hex[:8]}{suffix}"
    try:
        atomic_write_bytes(copy, data)
        stats = ReadStats()
        responses = sum(1 for _ in read_records(copy, stats=stats, name=source_name(answers)))
        if responses == 0:
            raise InputError(source_name(answers), None,
                             f"no non-empty answer ({stats.empty} empty): nothing to add")
        entry = PackEntry(name, f"{ANSWERS_DIR}/{name}{suffix}",
                          hashlib.sha256(data).hexdigest(), len(data), responses, stats.empty,
                          facts, probe_details(answers), source_name(answers), _now())
        os.replace(copy, root / entry.file)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    fsync_path(root / ANSWERS_DIR)
    entries = dict(pack.entries) if pack is not None else {}
    old = entries.get(name)
    entries[name] = entry
    _write(root, entries, pack.created_at if pack is not None else entry.added_at)
    if old is not None and old.file != entry.file:
        (root / old.file).unlink(missing_ok=True)
    return entry


def _write(root: Path, entries: Mapping[str, PackEntry], created_at: str) -> None:
    body = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "created_at": created_at,
            "updated_at": _now(),
            "references": {n: e.to_dict() for n, e in sorted(entries.items())}}
    text = json.dumps({**body, "checksum": content_checksum(body)}, indent=2) + "\n"
    atomic_write_bytes(root / PACK_FILE, text.encode("utf-8"))
