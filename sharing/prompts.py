"""Keyed prompt hashes of a campaign's requests: which prompts the flagged accounts sent, in a
form only consortium members can test.

A harvesting campaign tends to send the same prompts to several providers. The producer hashes
the prompts of its flagged accounts' requests (``share export --accounts risk.jsonl --requests
requests.jsonl``) with HMAC-SHA256 under a subkey of the consortium secret, after the toolkit's
normalisation (``fingerprint.normalize`` version 1: NFKC, case folding, whitespace runs), so a
re-wrapped or re-cased copy of a prompt still matches. The part ``prompts.json`` holds one
``{"prompt": hex, "requests": n}`` per distinct prompt, sorted by hash (so its order tells
nothing of when the prompts were sent). A recipient holding the key hashes its own traffic the
same way (``share match-prompts``, ``match_prompts``) and learns which of its requests carried
a prompt of the campaign; without the key a guessed prompt cannot be tested.

Requests are read with the toolkit's one input reader (``fingerprint.io.read_records``, the
answer optional, every format and shape it reads: the monitor's request logs, OpenAI chat
logs); the risk file as sharing.accounts reads it. Sharing does not import the monitor (a
capability beside it).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from fingerprint.io import read_records
from fingerprint.normalize import normalize
from sharing.errors import BundleError, ExportError
from sharing.keyed import keyed_id
from sharing.keys import load_consortium_key
from sharing.store import verify_bundle

PROMPT_DOMAIN = b"fingerprint-share/prompt/v1"
PROMPT_HASH = "hmac-sha256/normalize-v1"
NORMALIZER_VERSION = 1


def prompt_key(secret: bytes, prompt: str) -> str:
    """Hex HMAC-SHA256 of the normalised prompt under the secret's prompt subkey."""
    return keyed_id(secret, PROMPT_DOMAIN, normalize(prompt, NORMALIZER_VERSION))


def campaign_prompts(requests: str | os.PathLike[str], accounts: set[str],
                     secret: bytes) -> bytes:
    """``prompts.json`` for the requests of ``accounts`` in the log (b"" when none)."""
    counts: Counter[str] = Counter()
    for record in read_records(requests, require_response=False):
        if record.account in accounts and record.prompt:
            counts[prompt_key(secret, record.prompt)] += 1
    if not counts:
        return b""
    rows = [{"prompt": h, "requests": n} for h, n in sorted(counts.items())]
    return json.dumps(rows, separators=(",", ":")).encode("utf-8")


def prompt_part(requests: str | os.PathLike[str] | None, flagged: list[tuple[str, float]],
                secret: bytes) -> dict[str, bytes]:
    """The ``prompts.json`` part an export adds for ``--requests`` (refused without
    ``--accounts``, which says whose requests are the campaign's)."""
    if requests is None:
        return {}
    if not flagged:
        raise ExportError("--requests hashes the prompts of the flagged accounts' requests: give "
                          "--accounts with a risk file that flags at least one account")
    data = campaign_prompts(requests, {a for a, _ in flagged}, secret)
    return {"prompts.json": data} if data else {}


def bundle_prompts(path: str, parts: dict[str, bytes]) -> dict[str, int]:
    """The bundle's keyed prompt hashes with their request counts."""
    try:
        rows = json.loads(parts.get("prompts.json", b"[]").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: prompts.json is not JSON ({exc})") from None
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("prompt"), str)
            and isinstance(r.get("requests"), int) for r in rows):
        raise BundleError(f"{path}: prompts.json is not a list of {{prompt, requests}}")
    return {r["prompt"]: r["requests"] for r in rows}


def match_prompts(bundle_path: str | os.PathLike[str], trust_dir: str | os.PathLike[str],
                  consortium_key: str | os.PathLike[str],
                  requests: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify the bundle (with the consortium key, which must be the one it was keyed with),
    then hash the prompts of your own request log and say which match the campaign's: counts,
    and per own account the requests that matched (your ids stay on your machine)."""
    bundle = verify_bundle(bundle_path, trust_dir, consortium_keys=(consortium_key,))
    campaign = bundle_prompts(bundle.path, bundle.parts)
    secret = load_consortium_key(consortium_key).secret
    requests_read, matched, by_account, hit = 0, 0, Counter(), set()
    for record in read_records(requests, require_response=False):
        requests_read += 1
        key = prompt_key(secret, record.prompt) if record.prompt else None
        if key in campaign:
            matched += 1
            hit.add(key)
            by_account[record.account or "(no account)"] += 1
    return {"bundle_id": bundle.bundle_id, "producer": bundle.signer.org,
            "campaign_prompts": len(campaign), "requests": requests_read,
            "matched_requests": matched, "matched_prompts": len(hit),
            "accounts": dict(by_account.most_common())}
