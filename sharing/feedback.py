"""``share feedback`` and ``share feedback-summary``: signed opinions on a partner's signals that
travel back to the producer, as ThreatExchange's opinions do.

A reviewer who imported a bundle says, per signal (a response row's keyed id or an account
indicator's STIX id, both listed by ``share verify --json``), what its own evidence showed:
``confirmed``, ``false-positive`` or ``investigating``. The opinion is a small JSON file whose
``feedback`` object (bundle id and the signed manifest's sha256, producer org and key id,
signal, opinion, reviewer org and key id, created, note) is signed with the reviewer's Ed25519
key over its canonical bytes (sorted keys, no spaces, ASCII, as a bundle's manifest), so any
changed field breaks the signature. The producer checks each file against its trust directory
(its reviewers' .pub files) and counts how its signals fared; a file it cannot verify stops the
count rather than being skipped, because a summary that silently drops evidence would be
misread in a dispute.

An opinion on an account indicator may carry a STIX 2.1 Sighting (``--sighting``): the reviewer
saw the indicator's account in its own traffic (it hashed its own account ids with the
consortium key, ``sharing.account_hash``, and one matched), which STIX says with a Sighting
referencing the indicator and the reviewer's Identity. It goes with the signed opinion and not
with an import, because only the reviewer knows it saw the account, and it has to travel back
to the producer signed, as the opinion does. Only the latest opinion of a reviewer on a signal
counts (an "investigating" becomes "confirmed"); earlier ones are counted as superseded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from fingerprint.atomic import atomic_write_bytes
from sharing.accounts import stix, stix_id
from sharing.bundle import Bundle, canonical_json, read_bundle, utc_iso
from sharing.errors import FeedbackError
from sharing.keys import PublicKey, load_signing_key, read_trust_dir

FEEDBACK_FORMAT = "fingerprint-share-feedback"
FEEDBACK_SCHEMA = 1
OPINIONS = ("confirmed", "false-positive", "investigating")
KINDS = {"responses": "response", "accounts": "account"}


@dataclass(frozen=True)
class Opinion:
    """A verified feedback file: the signed ``feedback`` object and the reviewer's key."""

    path: str
    body: dict[str, Any]
    reviewer: PublicKey

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.reviewer.key_id, self.body["bundle_id"], self.body["signal"])


def write_feedback(bundle_path: str | os.PathLike[str], trust_dir: str | os.PathLike[str],
                   signal: str, opinion: str, signing_key: str | os.PathLike[str],
                   out: str | os.PathLike[str], *, note: str | None = None,
                   sighting: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Verify the bundle (signer, signature, checksums; not its validity period: an opinion may
    come after it expired), then write a signed opinion on one of its signals to ``out``."""
    if opinion not in OPINIONS:
        raise FeedbackError(f"--opinion must be one of {', '.join(OPINIONS)}, got {opinion!r}")
    bundle = read_bundle(bundle_path, read_trust_dir(trust_dir), check_period=False)
    key = load_signing_key(signing_key)
    kind = signal_kind(bundle, signal)
    if sighting and kind != "account":
        raise FeedbackError(f"--sighting reports an account seen in your traffic; {signal!r} "
                            f"is a response signal, not an account indicator")
    if key.public.key_id == bundle.signer.key_id or key.org == bundle.signer.org:
        raise FeedbackError(f"{bundle.path}: is your own bundle (signed by {bundle.signer.org!r},"
                            f" key {bundle.signer.key_id}); feedback is for a partner's signals")
    created = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    body: dict[str, Any] = {
        "bundle_id": bundle.bundle_id,
        "manifest_sha256": hashlib.sha256(bundle.manifest_bytes).hexdigest(),
        "producer": {"org": bundle.signer.org, "key_id": bundle.signer.key_id},
        "signal": signal, "signal_kind": kind, "opinion": opinion,
        "reviewer": {"org": key.org, "key_id": key.public.key_id},
        "created": utc_iso(created), "note": note}
    if sighting:
        body["sighting"] = sighting_stix(signal, key.org, note, created)
    document = {"format": FEEDBACK_FORMAT, "schema": FEEDBACK_SCHEMA, "feedback": body,
                "signature": base64.b64encode(key.sign(canonical_json(body))).decode("ascii")}
    atomic_write_bytes(out, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    return document


def signal_kind(bundle: Bundle, signal: str) -> str:
    """``response`` or ``account``; an id the bundle does not hold is refused."""
    for group, ids in bundle.signals().items():
        if signal in ids:
            return KINDS[group]
    raise FeedbackError(f"{bundle.path}: holds no signal {signal!r} ('fingerprint share verify "
                        f"--json' lists its signal ids)")


def sighting_stix(indicator: str, org: str, note: str | None,
                  created: datetime) -> dict[str, Any]:
    """A STIX 2.1 bundle: the reviewer's Identity and a Sighting of the producer's indicator."""
    stix2 = stix()
    where = stix2.Identity(id=stix_id("identity", org), name=org, identity_class="organization",
                           created=created, modified=created)
    seen = stix2.Sighting(sighting_of_ref=indicator, where_sighted_refs=[where.id],
                          created_by_ref=where.id, created=created, modified=created,
                          description=note or "The indicator's account was seen here too.")
    return json.loads(stix2.Bundle(objects=[where, seen]).serialize(sort_keys=True))


def read_feedback(path: str | os.PathLike[str], trust: Mapping[str, PublicKey]) -> Opinion:
    """One feedback file, verified: a trusted reviewer key, a good signature over the signed
    object, the reviewer org that key belongs to, every field of the expected type."""
    name = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedbackError(f"{name}: not a feedback file (JSON): {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FEEDBACK_FORMAT:
        raise FeedbackError(f"{name}: not a feedback file ('fingerprint share feedback')")
    schema = document.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema > FEEDBACK_SCHEMA:
        raise FeedbackError(f"{name}: feedback schema {schema!r} is not one this fingerprint "
                            f"reads ({FEEDBACK_SCHEMA})")
    body = document.get("feedback")
    reviewer = body.get("reviewer") if isinstance(body, dict) else None
    key_id = reviewer.get("key_id") if isinstance(reviewer, dict) else None
    if not isinstance(key_id, str):
        raise FeedbackError(f'{name}: field "feedback.reviewer.key_id" is missing')
    key = trust.get(key_id)
    if key is None:
        raise FeedbackError(f"{name}: signed by unknown reviewer key {key_id} (org "
                            f"{reviewer.get('org')!r}); its .pub file is not in the trust "
                            f"directory")
    if not key.verify(_signature(name, document), canonical_json(body)):
        raise FeedbackError(f"{name}: bad signature: the feedback was not signed by {key.org}'s "
                            f"key {key.key_id} (a field changed after signing?)")
    if reviewer.get("org") != key.org:
        raise FeedbackError(f"{name}: names reviewer {reviewer.get('org')!r} but is signed by "
                            f"{key.org!r}'s key {key.key_id}")
    _check_fields(name, body)
    return Opinion(name, body, key)


def _signature(name: str, document: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(str(document.get("signature")), validate=True)
    except binascii.Error:
        raise FeedbackError(f'{name}: field "signature" is not base64') from None


def _check_fields(name: str, body: dict[str, Any]) -> None:
    """Signed fields a trusted reviewer could still get wrong (another tool, a bug)."""
    for field in ("bundle_id", "manifest_sha256", "signal", "created"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise FeedbackError(f'{name}: field "feedback.{field}" is missing or not a string')
    if body.get("opinion") not in OPINIONS or body.get("signal_kind") not in KINDS.values():
        raise FeedbackError(f'{name}: field "feedback.opinion" or "feedback.signal_kind" is '
                            f"not one this fingerprint knows")
    producer = body.get("producer")
    if not isinstance(producer, dict) or not isinstance(producer.get("org"), str):
        raise FeedbackError(f'{name}: field "feedback.producer" is missing or malformed')


def summarize_feedback(paths: Iterable[str | os.PathLike[str]],
                       trust_dir: str | os.PathLike[str], *,
                       bundle: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """How the producer's signals fared: every file verified (the first that is not stops the
    summary, naming it), only each reviewer's latest opinion on a signal counted. With
    ``bundle`` (the producer's own bundle file, its .pub in the trust directory), every opinion
    must be about that bundle and one of its signals."""
    trust = read_trust_dir(trust_dir)
    opinions = [read_feedback(p, trust) for p in paths]
    if not opinions:
        raise FeedbackError("no feedback file given")
    own = read_bundle(bundle, trust, check_period=False) if bundle is not None else None
    if own is not None:
        digest = hashlib.sha256(own.manifest_bytes).hexdigest()
        for o in opinions:
            if (o.body["bundle_id"], o.body["manifest_sha256"]) != (own.bundle_id, digest):
                raise FeedbackError(f"{o.path}: is about bundle {o.body['bundle_id']}, not "
                                    f"{own.path} ({own.bundle_id})")
            signal_kind(own, o.body["signal"])
    latest: dict[tuple[str, str, str], Opinion] = {}
    for o in opinions:
        kept = latest.get(o.key)
        if kept is None or o.body["created"] >= kept.body["created"]:
            latest[o.key] = o
    return _tally(list(latest.values()), len(opinions), own)


def _tally(opinions: list[Opinion], files: int, own: Bundle | None) -> dict[str, Any]:
    signals: dict[tuple[str, str], dict[str, Any]] = {}
    reviewers: dict[str, dict[str, Any]] = {}
    for o in sorted(opinions, key=lambda o: (o.body["bundle_id"], o.body["signal"])):
        b = o.body
        row = signals.setdefault((b["bundle_id"], b["signal"]), {
            "bundle_id": b["bundle_id"], "producer": b["producer"]["org"], "signal": b["signal"],
            "kind": b["signal_kind"], **{k: 0 for k in OPINIONS}, "sightings": 0})
        row[b["opinion"]] += 1
        row["sightings"] += "sighting" in b
        who = reviewers.setdefault(o.reviewer.key_id, {
            "org": o.reviewer.org, "key_id": o.reviewer.key_id, **{k: 0 for k in OPINIONS}})
        who[b["opinion"]] += 1
    totals = Counter(o.body["opinion"] for o in opinions)
    return {"files": files, "counted": len(opinions), "superseded": files - len(opinions),
            "bundle": own.bundle_id if own is not None else None,
            "opinions": {k: totals.get(k, 0) for k in OPINIONS},
            "sightings": sum(r["sightings"] for r in signals.values()),
            "signals": list(signals.values()),
            "reviewers": sorted(reviewers.values(), key=lambda r: (r["org"], r["key_id"]))}
