"""The index manifest: the single file that says what an index directory contains.

Segments become part of the index only by being listed here, and the manifest is only ever
replaced atomically, so a reader sees either the old or the new index, never a mix. It records
everything needed to refuse a wrong use of the index: the format version, the toolkit and library
versions that wrote it, the full FingerprintConfig, the embedding size, and for every segment
file its size and sha256. A checksum over the manifest's own content catches edits and damage.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fingerprint.config import FingerprintConfig
from fingerprint.errors import ConfigError
from index.errors import IndexCorruptedError, NotAnIndexError
from index.files import atomic_write_bytes
from index.reference_meta import check_reference_meta

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "fingerprint-index"
FORMAT_VERSION = 2  # 2: streamed .npy vectors, local FAISS ids, size-dependent index types

# Every name the manifest gives a path part (segments, their files, reference sets): one
# component, no separator, not starting with a dot, so "..", "/etc" or ".tmp-x" can never be one.
# Names are checked when the manifest is read, before anything is opened or removed: the
# checksum is unkeyed, so whoever can edit the manifest can also make it match.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

_VERSIONED_PACKAGES = ("output-fingerprint", "datasketch", "faiss-cpu", "numpy",
                       "sentence-transformers", "transformers", "torch")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class FileEntry:
    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SegmentEntry:
    """One immutable batch of responses: rows [first_row, first_row + rows)."""

    name: str
    first_row: int
    rows: int
    created_at: str
    sources: tuple[str, ...]
    skipped_empty: int
    skipped_duplicates: int
    store_text: bool
    embedding_index: str
    minhash_index: str
    files: tuple[FileEntry, ...]

    def file(self, name: str) -> FileEntry:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise IndexCorruptedError(f"segment {self.name}: manifest lists no file {name}")

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "first_row": self.first_row, "rows": self.rows,
            "created_at": self.created_at, "sources": list(self.sources),
            "skipped_empty": self.skipped_empty, "skipped_duplicates": self.skipped_duplicates,
            "store_text": self.store_text,
            "embedding_index": self.embedding_index, "minhash_index": self.minhash_index,
            "files": [{"name": f.name, "bytes": f.bytes, "sha256": f.sha256} for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmentEntry":
        names = [data["name"]] + [f["name"] for f in data["files"]]
        unsafe = [n for n in names if not isinstance(n, str) or not SAFE_NAME.fullmatch(n)]
        if unsafe:
            raise IndexCorruptedError(f"segment names {unsafe!r} are not plain file names "
                                      f"(a path outside the index?)")
        return cls(
            name=str(data["name"]), first_row=int(data["first_row"]), rows=int(data["rows"]),
            created_at=str(data["created_at"]), sources=tuple(data["sources"]),
            skipped_empty=int(data["skipped_empty"]),
            skipped_duplicates=int(data["skipped_duplicates"]), store_text=bool(data["store_text"]),
            embedding_index=str(data["embedding_index"]),
            minhash_index=str(data["minhash_index"]),
            files=tuple(FileEntry(str(f["name"]), int(f["bytes"]), str(f["sha256"]))
                        for f in data["files"]),
        )


@dataclass(frozen=True)
class MarksEntry:
    """The index's marks file (index.marks): labels on served rows, e.g. the responses served to
    accounts the extraction monitor flagged. Replaced whole on each change, like the manifest."""

    name: str
    bytes: int
    sha256: str
    marks: int  # (label, row) pairs it holds

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256,
                "marks": self.marks}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MarksEntry":
        if not isinstance(data["name"], str) or not SAFE_NAME.fullmatch(data["name"]):
            raise IndexCorruptedError(f"marks file name {data['name']!r} is not a plain file "
                                      f"name (a path outside the index?)")
        return cls(data["name"], int(data["bytes"]), str(data["sha256"]), int(data["marks"]))


@dataclass(frozen=True)
class Manifest:
    config: FingerprintConfig
    created_at: str
    updated_at: str
    embedding_dim: int | None = None
    segments: tuple[SegmentEntry, ...] = ()
    references: dict[str, tuple[SegmentEntry, ...]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    format_version: int = FORMAT_VERSION
    marks: MarksEntry | None = None  # None: no marks (and no "marks" key: older indexes)
    # reference name -> its facts (index.reference_meta); no "reference_meta" key: none known
    reference_meta: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def skipped_empty(self) -> int:
        return sum(s.skipped_empty for s in self.segments)

    def with_segment(self, segment: SegmentEntry, embedding_dim: int | None,
                     reference: str | None = None) -> "Manifest":
        """A copy with one more segment, served (``reference=None``) or of a reference set."""
        if reference is not None:
            refs = dict(self.references)
            refs[reference] = refs.get(reference, ()) + (segment,)
            return replace(self, references=refs, updated_at=now_iso(),
                           versions=library_versions())
        return replace(self, segments=self.segments + (segment,), embedding_dim=embedding_dim,
                       updated_at=now_iso(), versions=library_versions())

    def with_reference_meta(self, name: str, meta: dict[str, str]) -> "Manifest":
        """A copy whose reference ``name`` has exactly the facts ``meta`` (empty: none)."""
        known = dict(self.reference_meta)
        if meta:
            known[name] = check_reference_meta(meta, f"reference {name}")
        else:
            known.pop(name, None)
        return replace(self, reference_meta=known, updated_at=now_iso(),
                       versions=library_versions())

    def with_marks(self, marks: MarksEntry) -> "Manifest":
        return replace(self, marks=marks, updated_at=now_iso(), versions=library_versions())

    def to_dict(self) -> dict[str, Any]:
        body = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "versions": self.versions,
            "config": self.config.to_dict(),
            "embedding_dim": self.embedding_dim,
            "counts": {"responses": self.rows, "segments": len(self.segments),
                       "skipped_empty": self.skipped_empty},
            "segments": [s.to_dict() for s in self.segments],
            "references": {name: [s.to_dict() for s in segs]
                           for name, segs in sorted(self.references.items())},
        }
        if self.marks is not None:
            body["marks"] = self.marks.to_dict()
        if self.reference_meta:
            body["reference_meta"] = {name: dict(meta)
                                      for name, meta in sorted(self.reference_meta.items())}
        return {**body, "checksum": content_checksum(body)}


def _reference_meta(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The manifest's reference facts, each for a reference it lists."""
    known = data.get("reference_meta") or {}
    if not isinstance(known, dict):
        raise IndexCorruptedError("reference_meta is not an object")
    unknown = sorted(set(known) - set(data["references"]))
    if unknown:
        raise IndexCorruptedError(f"reference_meta names references the index does not hold: "
                                  f"{', '.join(map(str, unknown))}")
    return {name: check_reference_meta(meta, f"reference_meta.{name}")
            for name, meta in known.items()}


def content_checksum(body: dict[str, Any]) -> str:
    """sha256 of a JSON body in canonical form: how a manifest (the index's, a reference
    pack's) catches edits and damage of its own content."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def write_manifest(root: Path, manifest: Manifest) -> None:
    data = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(root / MANIFEST_NAME, data.encode("utf-8"))


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise NotAnIndexError(f"{root}: not a directory, so not an index")
    if not path.is_file():
        raise NotAnIndexError(f"{root}: not an index (no {MANIFEST_NAME}); "
                              f"create one with 'fingerprint index build'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptedError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise NotAnIndexError(f"{path}: expected format {FORMAT_NAME!r}, found {found!r}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        hint = (" (written by an older release: rebuild it from the served responses with "
                "'fingerprint index build')" if isinstance(version, int) and
                version < FORMAT_VERSION else "")
        raise IndexCorruptedError(f"{path}: format_version is {version!r}; this toolkit reads "
                                  f"version {FORMAT_VERSION}{hint}")
    stored = data.pop("checksum", None)
    actual = content_checksum(data)
    if stored != actual:
        raise IndexCorruptedError(f"{path}: checksum mismatch (expected {stored}, actual {actual}); "
                                  f"the manifest was edited or damaged")
    try:
        unsafe = [n for n in data["references"] if not SAFE_NAME.fullmatch(str(n))]
        if unsafe:
            raise IndexCorruptedError(f"{path}: reference names {unsafe!r} are not plain file "
                                      f"names (a path outside the index?); the manifest was "
                                      f"edited")
        config = FingerprintConfig.from_dict(data["config"])
        return Manifest(
            config=config, created_at=str(data["created_at"]),
            updated_at=str(data["updated_at"]), embedding_dim=data.get("embedding_dim"),
            segments=tuple(SegmentEntry.from_dict(s) for s in data["segments"]),
            references={name: tuple(SegmentEntry.from_dict(s) for s in segs)
                        for name, segs in data["references"].items()},
            versions=dict(data["versions"]), format_version=int(version),
            marks=MarksEntry.from_dict(data["marks"]) if data.get("marks") else None,
            reference_meta=_reference_meta(data),
        )
    except IndexCorruptedError as exc:
        raise IndexCorruptedError(f"{path}: {exc}; the manifest was edited") from None
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise IndexCorruptedError(f"{path}: invalid manifest content ({exc})") from None
