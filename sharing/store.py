"""``share import``: a verified bundle stored in a partner-signals directory, all or nothing.

Layout: ``INTO/<bundle_id>/`` holds the bundle's members as they were signed (manifest.json,
manifest.sig, the parts), so the directory can be verified again at any time and nothing is
re-encoded. bundle_id is the first 16 hex of SHA-256 of the signed manifest (which covers every
part's sha256), so one bundle always lands in one place. The members are written to a hidden
staging directory beside it, fsync'd, and moved into place with one ``os.replace``: a crash
leaves either nothing or the whole bundle (a staging directory left by a crash is removed by the
next import). Importing the same bundle again changes nothing and says so.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fingerprint.atomic import fsync_path
from sharing.bundle import MANIFEST, SIGNATURE, Bundle, read_bundle
from sharing.errors import ImportStoreError, OwnBundleError
from sharing.keys import load_consortium_key, read_public_key, read_trust_dir

STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class ImportResult:
    bundle: Bundle
    path: str
    imported: bool  # False: the same bundle was already there

    def to_dict(self) -> dict[str, Any]:
        return {**self.bundle.summary(), "into": self.path, "imported": self.imported}


def verify_bundle(path: str | os.PathLike[str], trust_dir: str | os.PathLike[str], *,
                  consortium_keys: tuple[str | os.PathLike[str], ...] = (),
                  now: datetime | None = None) -> Bundle:
    """Read and verify a bundle against the trust directory (and, when consortium key files are
    given, refuse one keyed with none of them)."""
    trust = read_trust_dir(trust_dir)
    ids = {load_consortium_key(k).key_id for k in consortium_keys} if consortium_keys else None
    return read_bundle(path, trust, consortium_key_ids=ids, now=now)


def import_bundle(path: str | os.PathLike[str], trust_dir: str | os.PathLike[str],
                  into: str | os.PathLike[str], *,
                  consortium_keys: tuple[str | os.PathLike[str], ...] = (),
                  own_key: str | os.PathLike[str] | None = None,
                  now: datetime | None = None) -> ImportResult:
    """Verify, then store under ``into`` atomically (module docstring). With ``own_key`` (the
    importer's own .pub file), a bundle signed by that key or in that org's name is refused:
    imported, the importer's own outputs would count as a partner's evidence."""
    bundle = verify_bundle(path, trust_dir, consortium_keys=consortium_keys, now=now)
    if own_key is not None:
        own = read_public_key(Path(own_key))
        if bundle.signer.key_id == own.key_id or bundle.signer.org == own.org:
            raise OwnBundleError(
                f"{bundle.path}: is your own bundle (signed by {bundle.signer.org!r}, key "
                f"{bundle.signer.key_id}; you are {own.org!r}, key {own.key_id}); importing it "
                f"would count your own outputs as a partner's evidence")
    root = Path(into)
    if root.exists() and not root.is_dir():
        raise ImportStoreError(f"{root}: exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    target = root / bundle.bundle_id
    if (target / MANIFEST).is_file() and (target / MANIFEST).read_bytes() == \
            bundle.manifest_bytes:
        return ImportResult(bundle, str(target), imported=False)
    if target.exists():
        raise ImportStoreError(f"{target}: exists but does not hold this bundle; move it away")
    for leftover in root.glob(f"{STAGING_PREFIX}{bundle.bundle_id}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = root / f"{STAGING_PREFIX}{bundle.bundle_id}-{os.getpid()}"
    try:
        staging.mkdir()
        members = {MANIFEST: bundle.manifest_bytes, SIGNATURE: bundle.signature, **bundle.parts}
        for name, data in members.items():
            with open(staging / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        fsync_path(staging)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    fsync_path(root)
    return ImportResult(bundle, str(target), imported=True)
