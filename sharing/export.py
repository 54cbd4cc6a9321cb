"""``share export``: selected served responses as keyed signatures, flagged accounts as STIX
indicators, in one signed bundle.

A keyed signature must be computed from the text (the index stores public-seed signatures,
which cannot be re-keyed), so export reads the stored texts: an index built without stored
text is refused, naming the fix. The texts never leave: the bundle holds keyed signatures,
keyed signal ids and the model name of each response, nothing else of it.

Selections: ``all``, ``marked:LABEL`` (rows carrying an index mark, e.g. ``monitor-flagged``
from ``monitor export-flagged``), ``since:DATE`` (rows whose timestamp is that ISO date or
later; rows without one are left out). The style profile (sharing.profile, on unless
``style=False``) covers the same selection.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import numpy as np

from sharing.accounts import flagged_accounts, indicators
from sharing.bundle import utc_iso, write_bundle
from sharing.errors import ExportError
from sharing.keyed import KEYED_HASH, KeyedMinHasher, signal_id
from sharing.keys import load_consortium_key, load_signing_key
from sharing.profile import (DEFAULT_MIN_FEATURE_RESPONSES, DEFAULT_POOL, DEFAULT_STYLE_ROWS,
                             style_parts)
from sharing.prompts import PROMPT_HASH, prompt_part

BATCH_ROWS = 512


@dataclass(frozen=True)
class ExportResult:
    out: str
    bundle_id: str
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {"out": self.out, "bundle_id": self.bundle_id, "producer": m["producer"],
                "consortium_key_id": m["consortium_key_id"], "select": m["select"],
                "valid_from": m["valid_from"], "valid_until": m["valid_until"],
                "counts": m["counts"], "bytes": os.path.getsize(self.out),
                "style_rows": (m.get("style") or {}).get("rows", 0)}


def select_rows(index: Any, select: str) -> list[int]:
    """The served rows a selection names (module docstring)."""
    kind, _, value = select.partition(":")
    if select == "all":
        return list(range(len(index)))
    if kind == "marked" and value:
        return index.marked_rows(value)
    if kind == "since" and value:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ExportError(f"--select since:DATE needs an ISO date, got {value!r}") from None
        rows = []
        for batch in _batches(list(range(len(index)))):
            stored = index.responses(batch)
            rows += [r for r in batch if (stored[r].timestamp or "") >= value]
        return rows
    raise ExportError(f"--select must be all, marked:LABEL or since:DATE, got {select!r}")


def _batches(rows: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(rows), BATCH_ROWS):
        yield rows[start:start + BATCH_ROWS]


def keyed_parts(index: Any, rows: list[int], secret: bytes) -> dict[str, bytes]:
    """``signatures.bin`` (rows x num_perm little-endian uint32) and ``signatures.json`` (one
    {signal, model} per row, same order); nothing when no row is selected."""
    if not rows:
        return {}
    if not all(s.store_text for s in index.manifest.segments):
        raise ExportError(f"{index.path}: this index stores no response text (built with "
                          f"--no-store-text?), and keyed signatures are computed from the text; "
                          f"rebuild the index with text stored to export")
    hasher = KeyedMinHasher(index.config, secret)
    blocks, signals = [], []
    for batch in _batches(rows):
        stored = index.responses(batch)
        blocks.append(hasher.signatures([stored[r].response or "" for r in batch]))
        signals += [{"signal": signal_id(secret, stored[r].id), "model": stored[r].model}
                    for r in batch]
    signatures = np.concatenate(blocks).astype("<u4", copy=False)
    return {"signatures.bin": signatures.tobytes(),
            "signatures.json": json.dumps(signals, separators=(",", ":")).encode("utf-8")}


def text_part(index: Any, rows: list[int], secret: bytes) -> dict[str, bytes]:
    """``texts.json`` (``--include-text`` only): one {signal, response} per exported row, in the
    order of signatures.json: the one way raw served text leaves, asked for explicitly and
    recorded in the signed manifest (``include_text``) so that ``verify`` says so loudly."""
    texts = []
    for batch in _batches(rows):
        stored = index.responses(batch)
        texts += [{"signal": signal_id(secret, stored[r].id), "response": stored[r].response or ""}
                  for r in batch]
    return {"texts.json": json.dumps(texts, ensure_ascii=False).encode("utf-8")} if texts else {}


def check_options(valid_days: float, **counts: int) -> None:
    """Refuse a validity that is not positive and a count option below 1, by its name."""
    for option, value in counts.items():
        if not (isinstance(value, int) and value >= 1):
            raise ExportError(f"{option} must be a positive whole number, got {value}")
    if not (valid_days > 0):
        raise ExportError(f"--valid-days must be a positive number of days, got {valid_days}")


def export_bundle(index_path: str | os.PathLike[str], consortium_key: str | os.PathLike[str],
                  signing_key: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  select: str = "all", accounts: str | os.PathLike[str] | None = None,
                  valid_days: float = 90, now: datetime | None = None,
                  requests: str | os.PathLike[str] | None = None,
                  include_text: bool = False, style: bool = True,
                  style_rows: int = DEFAULT_STYLE_ROWS,
                  min_feature_responses: int = DEFAULT_MIN_FEATURE_RESPONSES,
                  style_pool: int = DEFAULT_POOL) -> ExportResult:
    """Write a signed bundle of the index's selected rows (and the risk file's flagged
    accounts, and with ``requests`` the keyed prompt hashes of their requests; with
    ``include_text`` the raw response texts too) to ``out``, valid from ``now`` for
    ``valid_days``; with ``style``, the style profile of at most ``style_rows`` of the
    selected rows too, keeping only features in at least ``min_feature_responses`` of them and
    summing rows ``style_pool`` at a time (sharing.profile)."""
    from index import open_index

    check_options(valid_days, **({"--style-rows": style_rows,
                                  "--min-feature-responses": min_feature_responses,
                                  "--style-pool": style_pool} if style else {}))
    key, consortium = load_signing_key(signing_key), load_consortium_key(consortium_key)
    start = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    end = start + timedelta(days=valid_days)
    with open_index(index_path) as index:
        rows = select_rows(index, select)
        parts = keyed_parts(index, rows, consortium.secret)
        if include_text and parts:
            parts.update(text_part(index, rows, consortium.secret))
        style_part, style_section = (style_parts(index, rows, consortium.secret, style_rows,
                                                 min_feature_responses, style_pool)
                                     if style else ({}, {}))
        parts.update(style_part)
        config = {k: getattr(index.config, k) for k in
                  ("normalizer_version", "shingle_size", "num_perm", "seed", "minhash_scheme")}
    flagged = flagged_accounts(accounts) if accounts is not None else []
    if flagged:
        parts["accounts.json"] = indicators(flagged, consortium.secret, key.org, start, end)
    parts.update(prompt_part(requests, flagged, consortium.secret))
    prompts = len(json.loads(parts["prompts.json"])) if "prompts.json" in parts else 0
    signatures = len(parts.get("signatures.bin", b"")) // (4 * config["num_perm"])
    if not signatures and not flagged:
        raise ExportError(f"nothing to export: --select {select} selects no response"
                          + (" and the risk file flags no account" if accounts else ""))
    manifest = {"created": utc_iso(start), "valid_from": utc_iso(start),
                "valid_until": utc_iso(end), "consortium_key_id": consortium.key_id,
                "select": select, "config": {**config, "keyed_hash": KEYED_HASH},
                "counts": {"signatures": signatures, "accounts": len(flagged)}}
    if requests is not None:
        manifest["counts"]["prompts"] = prompts
        manifest["config"]["prompt_hash"] = PROMPT_HASH
    if "texts.json" in parts:
        manifest["include_text"] = True
        manifest["counts"]["texts"] = signatures
    if style_section:
        manifest["style"] = style_section
    data = write_bundle(out, manifest, parts, key)
    return ExportResult(str(out), hashlib.sha256(data).hexdigest()[:16], json.loads(data))

