"""The bundle: one zip file holding ``manifest.json``, ``manifest.sig`` and the parts.

Why a zip and not one JSON document: signatures are binary (num_perm uint32 per response) and
stay binary (512 bytes a response at 128 permutations, not 684 in base64 inside JSON); a part
can be read without parsing the others; and a zip is what partners' tools open. Its risks are
handled here: only the names the format defines are accepted (no directory, no '..', no
absolute path: nothing can be written outside an import directory), every part is covered by
the signed manifest, and a member the manifest does not list is refused rather than ignored.

The manifest holds the schema version (SCHEMA_VERSION: what changed, what is read), producer
(org, signing key id), created, valid_from,
valid_until, the consortium key id, the config that makes signatures comparable, counts, and
the sha256 and size of every part. ``manifest.sig`` is the Ed25519 signature over the manifest
bytes exactly as stored (written canonically: sorted keys, no spaces, ASCII), so checking the
signature and then each part's sha256 proves every byte of every member came from the signer.
The zip's container bytes (a member's timestamp or attributes) are not signed: changing one
changes nothing that is read, and a test flips every byte of a bundle to show that each change
is refused or leaves every member's content exactly as signed.
Members are written with a fixed timestamp, so the same content gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from fingerprint.atomic import atomic_write_bytes
from sharing.errors import (BundleError, ConsortiumMismatchError, ExpiredBundleError,
                            NotYetValidError, PartChecksumError, SchemaVersionError,
                            SignatureError, UnsafePathError, UntrustedSignerError)
from sharing.keys import PublicKey, SigningKey

FORMAT = "fingerprint-share-bundle"
# Schema history: 1, signatures and accounts; 2 (2026-11-28), the parts that came after
# (prompts.json, texts.json, style.bin and style.json, the manifest's ``include_text`` and
# ``style`` sections, the style section's ``min_feature_responses``). A reader reads every
# version up to its own: an older bundle is one whose optional parts and sections are absent
# (each reader treats absent as "not exported"), and a newer one is refused, since it may hold
# parts or rules this reader would silently ignore.
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PARTS = ("signatures.bin", "signatures.json", "accounts.json", "prompts.json", "texts.json")
PARTS += ("style.bin", "style.json")  # the provider's style profile (sharing.profile)
MEMBERS = (MANIFEST, SIGNATURE) + PARTS
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)
MAX_MEMBER_BYTES = 2 << 30


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest (as signed), the signer and the parts' bytes."""

    path: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    signature: bytes
    signer: PublicKey
    parts: dict[str, bytes]

    @property
    def bundle_id(self) -> str:
        """First 16 hex of SHA-256 of the signed manifest: names this exact bundle."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {"bundle": self.path, "bundle_id": self.bundle_id, "schema": m["schema"],
                "producer": m["producer"], "signer_org": self.signer.org,
                "created": m.get("created"), "valid_from": m["valid_from"],
                "valid_until": m["valid_until"], "consortium_key_id": m["consortium_key_id"],
                "select": m.get("select"), "config": m.get("config"), "counts": m["counts"],
                "parts": m["parts"],
                "include_text": m.get("include_text") is True or "texts.json" in m["parts"],
                "style": m.get("style")}

    def signals(self) -> dict[str, list[str]]:
        """Every signal id a partner can give feedback on (``share feedback --signal``), by kind:
        each response row's keyed id (signatures.json, stable across exports) and each account
        indicator's STIX id (accounts.json)."""
        out: dict[str, list[str]] = {"responses": [], "accounts": []}
        try:
            rows = json.loads(self.parts.get("signatures.json", b"[]").decode("utf-8"))
            stix = json.loads(self.parts.get("accounts.json", b"{}").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{self.path}: a part is not JSON ({exc})") from None
        if not isinstance(rows, list) or not isinstance(stix, dict) or \
                not all(isinstance(r, dict) and isinstance(r.get("signal"), str) for r in rows):
            raise BundleError(f"{self.path}: signatures.json or accounts.json is malformed")
        out["responses"] = [r["signal"] for r in rows]
        out["accounts"] = [o["id"] for o in stix.get("objects") or []
                           if isinstance(o, dict) and o.get("type") == "indicator"]
        return out


def write_bundle(out: str | os.PathLike[str], manifest: Mapping[str, Any],
                 parts: Mapping[str, bytes], key: SigningKey) -> bytes:
    """Sign ``manifest`` (with the parts' checksums added) and write the zip atomically;
    returns the signed manifest bytes."""
    full = {**manifest, "format": FORMAT, "schema": SCHEMA_VERSION,
            "producer": {"org": key.org, "key_id": key.public.key_id},
            "parts": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                      for name, data in sorted(parts.items())}}
    data = canonical_json(full)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in [(MANIFEST, data), (SIGNATURE, key.sign(data)),
                              *sorted(parts.items())]:
            zf.writestr(zipfile.ZipInfo(name, _ZIP_TIME), content,
                        compress_type=zipfile.ZIP_DEFLATED)
    atomic_write_bytes(out, buffer.getvalue())
    return data


def read_bundle(path: str | os.PathLike[str], trust: Mapping[str, PublicKey], *,
                consortium_key_ids: set[str] | None = None,
                now: datetime | None = None, check_period: bool = True) -> Bundle:
    """Read and verify a bundle, or raise the error naming the first reason to refuse it:
    names (zip slip), schema, signer, signature, each part's sha256, validity period (unless
    ``check_period`` is False: feedback on a bundle may come after it expired), and the
    consortium key id when ``consortium_key_ids`` says which the recipient holds."""
    name = str(path)
    members = _members(Path(path))
    manifest_bytes, signature = members.get(MANIFEST), members.get(SIGNATURE)
    if manifest_bytes is None or signature is None:
        raise BundleError(f"{name}: not a bundle ({MANIFEST} or {SIGNATURE} missing)")
    manifest = _manifest(name, manifest_bytes)
    signer = trust.get(_text(manifest["producer"], "key_id", name))
    if signer is None:
        raise UntrustedSignerError(
            f"{name}: signed by unknown key {manifest['producer']['key_id']} (org "
            f"{manifest['producer'].get('org')!r}); its .pub file is not in the trust directory")
    if not signer.verify(signature, manifest_bytes):
        raise SignatureError(f"{name}: bad signature: the manifest was not signed by "
                             f"{signer.org}'s key {signer.key_id} (changed after signing?)")
    if manifest["producer"].get("org") != signer.org:
        raise UntrustedSignerError(f"{name}: names producer {manifest['producer'].get('org')!r}"
                                   f" but is signed by {signer.org!r}'s key {signer.key_id}")
    parts = _checked_parts(name, manifest, members)
    _check_sizes(name, manifest, parts)
    if check_period:
        _check_period(name, manifest, now or datetime.now(timezone.utc))
    wanted = _text(manifest, "consortium_key_id", name)
    if consortium_key_ids is not None and wanted not in consortium_key_ids:
        raise ConsortiumMismatchError(
            f"{name}: keyed with consortium key {wanted}, which you do not hold (yours: "
            f"{', '.join(sorted(consortium_key_ids)) or 'none'})")
    return Bundle(name, manifest, manifest_bytes, signature, signer, parts)


def _members(path: Path) -> dict[str, bytes]:
    """Every member's bytes, names checked before anything is read. The file is read whole
    first (a missing file stays the OS's error); whatever a damaged zip makes zipfile raise
    (a bad CRC, a corrupt deflate stream, a header offset before the start, an encrypted
    member) is one BundleError."""
    data = path.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_name(str(path), info.filename)
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise BundleError(f"{path}: a member name appears twice")
            if any(i.file_size > MAX_MEMBER_BYTES for i in infos):
                raise BundleError(f"{path}: a member is larger than {MAX_MEMBER_BYTES} bytes")
            return {i.filename: zf.read(i) for i in infos}
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, NotImplementedError,
            zlib.error, ValueError, OSError, RuntimeError, OverflowError, struct.error) as exc:
        raise BundleError(f"{path}: not a bundle, or a damaged or truncated one "
                          f"({exc})") from None


def _check_name(source: str, name: str) -> None:
    if name in MEMBERS:
        return
    unsafe = ("/" in name or "\\" in name or ".." in name or ":" in name or not name
              or name.startswith("."))
    why = "would escape the import directory" if unsafe else "is not a part of the format"
    raise UnsafePathError(f"{source}: member {name!r} {why}; refused")


def _manifest(name: str, data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{name}: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{name}: {MANIFEST} is not a fingerprint bundle manifest")
    schema = manifest.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise BundleError(f'{name}: {MANIFEST} field "schema" is not a positive integer')
    if schema > SCHEMA_VERSION:
        raise SchemaVersionError(f"{name}: bundle schema version {schema} is newer than this "
                                 f"fingerprint reads ({SCHEMA_VERSION}); upgrade fingerprint")
    for field in ("producer", "parts", "counts"):
        if not isinstance(manifest.get(field), dict):
            raise BundleError(f'{name}: {MANIFEST} field "{field}" is missing or not an object')
    return manifest


def _text(data: Mapping[str, Any], field: str, name: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise BundleError(f'{name}: {MANIFEST} field "{field}" is missing or not a string')
    return value


def _checked_parts(name: str, manifest: dict[str, Any],
                   members: dict[str, bytes]) -> dict[str, bytes]:
    listed = manifest["parts"]
    unlisted = sorted(set(members) - set(listed) - {MANIFEST, SIGNATURE})
    if unlisted:
        raise PartChecksumError(f"{name}: member {unlisted[0]!r} is not in the signed manifest "
                                f"(added after signing)")
    parts = {}
    for part, entry in sorted(listed.items()):
        _check_name(name, part)
        if part not in members:
            raise BundleError(f"{name}: part {part!r} is listed in the manifest but missing")
        digest = hashlib.sha256(members[part]).hexdigest()
        if not isinstance(entry, dict) or entry.get("sha256") != digest:
            raise PartChecksumError(f"{name}: part {part!r} has sha256 {digest[:16]}..., not "
                                    f"the signed manifest's: changed after signing")
        parts[part] = members[part]
    return parts


def _check_sizes(name: str, manifest: dict[str, Any], parts: dict[str, bytes]) -> None:
    """Signatures agree with the counts and config the manifest states (a producer's bug, not
    an attack: the manifest is signed, but a reader must not misalign rows)."""
    rows = manifest["counts"].get("signatures", 0)
    num_perm = (manifest.get("config") or {}).get("num_perm")
    if "signatures.bin" not in parts and not rows:
        return
    if not isinstance(rows, int) or not isinstance(num_perm, int) or num_perm <= 0 or \
            len(parts.get("signatures.bin", b"")) != rows * num_perm * 4:
        raise BundleError(f"{name}: signatures.bin does not hold counts.signatures ({rows}) "
                          f"rows of config.num_perm ({num_perm}) uint32 values")
    try:
        signals = json.loads(parts.get("signatures.json", b"").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        signals = None
    if not isinstance(signals, list) or len(signals) != rows:
        raise BundleError(f"{name}: signatures.json is not a list of {rows} signals")
    if "texts.json" in parts:
        _check_texts(name, manifest, parts["texts.json"], signals)


def _check_texts(name: str, manifest: dict[str, Any], data: bytes, signals: list) -> None:
    """texts.json (``--include-text``) holds one {signal, response} per signature row, as
    counts.texts says: a text a reader shows must belong to a signal the bundle has."""
    try:
        texts = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        texts = None
    expected = manifest["counts"].get("texts", len(signals))
    known = {s.get("signal") for s in signals if isinstance(s, dict)}
    if not isinstance(texts, list) or len(texts) != expected or not all(
            isinstance(t, dict) and isinstance(t.get("response"), str)
            and t.get("signal") in known for t in texts):
        raise BundleError(f"{name}: texts.json is not a list of {expected} {{signal, response}} "
                          "objects for the bundle's signals")


def _check_period(name: str, manifest: dict[str, Any], now: datetime) -> None:
    try:
        start = datetime.fromisoformat(_text(manifest, "valid_from", name))
        end = datetime.fromisoformat(_text(manifest, "valid_until", name))
    except ValueError as exc:
        raise BundleError(f"{name}: validity dates are not ISO 8601 ({exc})") from None
    if start.tzinfo is None or end.tzinfo is None:
        raise BundleError(f"{name}: validity dates carry no time zone")
    if now < start:
        raise NotYetValidError(f"{name}: not valid before {utc_iso(start)} (now "
                               f"{utc_iso(now)})")
    if now >= end:
        raise ExpiredBundleError(f"{name}: expired on {utc_iso(end)} (now {utc_iso(now)}); "
                                 f"ask {manifest['producer'].get('org')!r} for a fresh export")


def read_imported(directory: str | os.PathLike[str], *,
                  consortium_key_ids: set[str] | None = None,
                  now: datetime | None = None) -> Bundle:
    """A bundle ``share import`` stored (``INTO/<bundle_id>/``), checked again at use: every
    part against the stored signed manifest's sha256, the sizes, the validity period (an
    expired bundle is refused at use too) and the consortium key id. The signature was checked
    against the trust directory at import; the signer is the producer the manifest names."""
    root = Path(directory)
    name = str(root)
    members = {}
    for path in sorted(root.iterdir()):
        _check_name(name, path.name)
        members[path.name] = path.read_bytes()
    manifest_bytes, signature = members.get(MANIFEST), members.get(SIGNATURE)
    if manifest_bytes is None or signature is None:
        raise BundleError(f"{name}: not an imported bundle ({MANIFEST} or {SIGNATURE} missing)")
    manifest = _manifest(name, manifest_bytes)
    parts = _checked_parts(name, manifest, members)
    _check_sizes(name, manifest, parts)
    _check_period(name, manifest, now or datetime.now(timezone.utc))
    wanted = _text(manifest, "consortium_key_id", name)
    if consortium_key_ids is not None and wanted not in consortium_key_ids:
        raise ConsortiumMismatchError(
            f"{name}: keyed with consortium key {wanted}, which you do not hold (yours: "
            f"{', '.join(sorted(consortium_key_ids)) or 'none'})")
    producer = manifest["producer"]
    signer = PublicKey(str(producer.get("org")), str(producer.get("key_id")), b"")
    return Bundle(name, manifest, manifest_bytes, signature, signer, parts)
