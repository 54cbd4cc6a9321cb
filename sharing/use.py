"""Using partners' bundles: ``fingerprint attribute --bundle DIR --consortium-key FILE``.

Each imported bundle (``share import --into DIR`` stored it as ``DIR/<bundle_id>/``) becomes a
partner (attribution.partners): its style profile, if it has one, a candidate teacher beside the
user's own indexes ("this suspect most resembles partner B's outputs"), and its keyed
signatures a near-duplicate check (the suspect's responses are signed with the same consortium
key, so equal shingles give equal signatures). Every figure carries the partner's org, the
bundle id and the bundle's age in days; a bundle is checked again at use (parts against the
signed manifest, validity: an expired bundle is refused here too) and one keyed with a
consortium key the user does not hold is refused, naming both key ids.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from attribution import (AttributionResult, PartnerEvidence, PartnerMatch, ProviderProfile,
                         attribute_file)
from fingerprint import FingerprintConfig, has_shingles
from fingerprint.records import ResponseRecord
from sharing.bundle import MANIFEST, Bundle, read_imported
from sharing.errors import BundleError
from sharing.keyed import KeyedMinHasher
from sharing.keys import ConsortiumKey, load_consortium_key
from sharing.profile import read_style, style_config, style_prompt_key

SIGNATURE_FIELDS = ("normalizer_version", "shingle_size", "num_perm", "seed", "minhash_scheme")
TOP_MATCHES = 10
CHUNK = 16  # suspect responses compared at once: CHUNK x signatures x num_perm bytes


def bundle_dirs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Each path is one imported bundle (it holds manifest.json) or an import directory of
    them (its ``<bundle_id>/`` subdirectories; hidden staging directories left out)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / MANIFEST).is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise BundleError(f"{path}: no such import directory (made by 'fingerprint share "
                              f"import --into')")
        inner = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and (p / MANIFEST).is_file())
        if not inner:
            raise BundleError(f"{path}: holds no imported bundle (made by 'fingerprint share "
                              f"import --into')")
        found += inner
    return found


@dataclass(frozen=True)
class BundlePartner:
    """One imported bundle as a partner: profile, keyed signatures, origin."""

    name: str
    origin: dict[str, Any]
    profile: ProviderProfile | None
    signatures: np.ndarray  # (rows, num_perm) uint32, keyed
    signals: list[dict[str, Any]] = field(repr=False)
    hasher: KeyedMinHasher | None = field(repr=False)

    def near_duplicates(self, records: Sequence[ResponseRecord],
                        threshold: float) -> PartnerEvidence:
        """Each suspect response's best estimated Jaccard against the partner's signatures."""
        usable = np.zeros(len(records), dtype=bool)
        best = np.zeros(len(records))
        where = np.full(len(records), -1)
        if self.hasher is not None and len(self.signatures):
            mine = self.hasher.signatures([r.response for r in records])
            usable = has_shingles(mine)
            theirs = self.signatures[has_shingles(self.signatures)]
            rows = np.flatnonzero(has_shingles(self.signatures))
            for start in range(0, len(records), CHUNK):
                block = mine[start:start + CHUNK]
                if len(theirs):
                    jaccard = (block[:, None, :] == theirs[None, :, :]).mean(axis=2)
                    where[start:start + len(block)] = rows[jaccard.argmax(axis=1)]
                    best[start:start + len(block)] = jaccard.max(axis=1)
        best[~usable] = 0.0
        hits = np.flatnonzero(usable & (best >= threshold))
        order = hits[np.argsort(-best[hits], kind="stable")][:TOP_MATCHES]
        matches = tuple(PartnerMatch(records[i].id, records[i].line,
                                     str(self.signals[where[i]].get("signal")),
                                     self.signals[where[i]].get("model"), float(best[i]))
                        for i in order)
        return PartnerEvidence(self.name, dict(self.origin), len(self.signatures),
                               int(usable.sum()), len(hits), threshold,
                               float(best[usable].max()) if usable.any() else None, matches)


def origin_of(bundle: Bundle, now: datetime) -> dict[str, Any]:
    m = bundle.manifest
    created = m.get("created") or m["valid_from"]
    age = (now - datetime.fromisoformat(created)).total_seconds() / 86400
    return {"org": m["producer"].get("org"), "bundle_id": bundle.bundle_id,
            "bundle": bundle.path, "created": created, "valid_until": m["valid_until"],
            "age_days": round(age, 1), "consortium_key_id": m["consortium_key_id"]}


def partner_from(bundle: Bundle, name: str, key: ConsortiumKey, config: FingerprintConfig,
                 now: datetime) -> BundlePartner:
    """The partner one verified bundle makes: style profile, signatures, keyed hasher."""
    m, origin = bundle.manifest, origin_of(bundle, now)
    style = read_style(bundle.path, m, bundle.parts, key.secret, style_config(config))
    profile = None
    if style is not None:
        profile = ProviderProfile(
            name, bundle.path, style[0], tuple(style[1]),
            lambda h, secret=key.secret: style_prompt_key(secret, h),
            {k: m["style"][k] for k in ("style_version", "style_features",
                                         "normalizer_version")}, origin,
            all_features=m["style"].get("min_feature_responses", 1) <= 1)
    rows = m["counts"].get("signatures", 0)
    hasher, signatures, signals = None, np.zeros((0, 1), dtype=np.uint32), []
    if rows:
        bundle_config = FingerprintConfig(**{k: m["config"][k] for k in SIGNATURE_FIELDS})
        hasher = KeyedMinHasher(bundle_config, key.secret)
        signatures = np.frombuffer(bundle.parts["signatures.bin"], "<u4").reshape(
            rows, bundle_config.num_perm).astype(np.uint32)
        signals = json.loads(bundle.parts["signatures.json"].decode("utf-8"))
    return BundlePartner(name, origin, profile, signatures, signals, hasher)


def load_partners(paths: Sequence[str | os.PathLike[str]],
                  consortium_keys: Sequence[str | os.PathLike[str]],
                  config: FingerprintConfig, now: datetime | None = None) -> list[BundlePartner]:
    """Every imported bundle under ``paths``, checked and made a partner, named by its
    producer's org (with the bundle id where one org gave several)."""
    now = now or datetime.now(timezone.utc)
    if not consortium_keys:
        raise BundleError("--bundle needs --consortium-key: partners' signatures and prompt "
                          "keys are keyed with it")
    keys = {k.key_id: k for k in map(load_consortium_key, consortium_keys)}
    bundles = [read_imported(d, consortium_key_ids=set(keys), now=now)
               for d in bundle_dirs(paths)]
    ids = [b.bundle_id for b in bundles]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise BundleError(f"bundle {twice[0]} is given twice (--bundle): its evidence would "
                          f"count twice")
    orgs = [str(b.manifest["producer"].get("org")) for b in bundles]
    return [partner_from(b, org if orgs.count(org) == 1 else f"{org}#{b.bundle_id[:8]}",
                         keys[b.manifest["consortium_key_id"]], config, now)
            for b, org in zip(bundles, orgs)]


def attribute_with_bundles(index_paths: Sequence[str | os.PathLike[str]],
                           suspect_path: str | os.PathLike[str],
                           bundles: Sequence[str | os.PathLike[str]],
                           consortium_keys: Sequence[str | os.PathLike[str]], *,
                           now: datetime | None = None, **options: Any) -> AttributionResult:
    """attribution.attribute_file with partners' imported bundles joining (module docstring);
    ``options`` are attribute_file's keyword arguments."""
    from index import open_index

    with open_index(index_paths[0]) as index:
        config = index.config
    partners = load_partners(bundles, consortium_keys, config, now)
    return attribute_file(list(index_paths), suspect_path, partners=partners, **options)
