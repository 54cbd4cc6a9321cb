"""Flagged accounts as STIX 2.1 indicators, keyed so no account id leaves.

The monitor's risk file (``fingerprint monitor scan --out``) names accounts by the provider's
own ids; a partner cannot use those and must not learn them. Each flagged account becomes an
Indicator whose pattern matches ``user-account:user_id`` against the keyed HMAC of the id
(sharing.keyed.account_hash): a partner holding the consortium key hashes its own account ids
the same way and compares, nobody else learns anything. Confidence is the risk in percent;
the description says what Lantern's signals say: a lead, not proof. STIX ids are UUIDv5 of the
keyed account hash (and of the org, for the producer's Identity), so an account's indicator keeps
its id from one export to the next and feedback on it (``share feedback --signal``) adds up
across bundles; the id reveals nothing the pattern does not already hold. Read here (and not through
the monitor, a capability beside this one) with the toolkit's one input reader, every line
checked, errors naming file, line and field.
"""

from __future__ import annotations

import math
import os
import uuid
from datetime import datetime
from typing import Any

from fingerprint.errors import InputError
from fingerprint.io import BLANK, decode_json_line, open_input, source_name
from sharing.errors import SharingDependencyError
from sharing.keyed import account_hash
from sharing.keys import SHARE_HINT

NOT_PROOF = ("Not proof: an account the producer's extraction monitor flagged for traffic that "
             "looks like systematic harvesting of model outputs. A lead to check against your "
             "own evidence, never a verdict on its own.")
STIX_NAMESPACE = uuid.UUID("5f0c1c52-3a7e-4d0b-9a55-6f1d2a8e4b17")


def stix_id(kind: str, value: str) -> str:
    """A deterministic STIX id (UUIDv5 in this toolkit's namespace)."""
    return f"{kind}--{uuid.uuid5(STIX_NAMESPACE, f'{kind}:{value}')}"


def stix() -> Any:
    try:
        import stix2
    except ImportError:
        raise SharingDependencyError(f"sharing accounts needs the stix2 package: "
                                     f"{SHARE_HINT}") from None
    return stix2


def _field(row: dict, name: str, kind: type, source: str, line: int) -> Any:
    value = row.get(name)
    if name not in row or isinstance(value, bool) != (kind is bool) or \
            not isinstance(value, (int, float) if kind is float else kind):
        raise InputError(source, line, f'field "{name}" is missing or not a {kind.__name__} '
                                       f"(is this a risk file from 'fingerprint monitor scan'?)",
                         field=name)
    return value


def flagged_accounts(path: str | os.PathLike[str]) -> list[tuple[str, float]]:
    """(account, risk) of every flagged row of a risk file, in file order."""
    source = source_name(path)
    out: list[tuple[str, float]] = []
    with open_input(path, source) as stream:
        for number, raw in enumerate(stream, 1):
            row = decode_json_line(raw, source, number)
            if row is BLANK:
                continue
            if not isinstance(row, dict):
                raise InputError(source, number, "expected a JSON object (one account's row)")
            account = _field(row, "account", str, source, number)
            risk = _field(row, "risk", float, source, number)
            if not account or not (math.isfinite(risk) and 0 <= risk <= 1):
                raise InputError(source, number, "an empty account or a risk outside [0, 1]",
                                 field="account" if not account else "risk")
            if _field(row, "flagged", bool, source, number):
                out.append((account, float(risk)))
    return out


def indicators(accounts: list[tuple[str, float]], secret: bytes, org: str,
               valid_from: datetime, valid_until: datetime) -> bytes:
    """A STIX 2.1 bundle (JSON bytes): the producer's Identity and one Indicator per account."""
    stix2 = stix()
    producer = stix2.Identity(id=stix_id("identity", org), name=org,
                              identity_class="organization")
    objects: list[Any] = [producer]
    for account, risk in accounts:
        hashed = account_hash(secret, account)
        objects.append(stix2.Indicator(
            id=stix_id("indicator", hashed), name="Account flagged for model-output extraction",
            description=NOT_PROOF, indicator_types=["anomalous-activity"],
            pattern=f"[user-account:user_id = '{hashed}']",
            pattern_type="stix", confidence=round(risk * 100),
            valid_from=valid_from, valid_until=valid_until, created_by_ref=producer.id))
    return stix2.Bundle(objects=objects).serialize(sort_keys=True).encode("utf-8")
