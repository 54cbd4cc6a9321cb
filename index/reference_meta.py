"""What is known about a reference model: era, base model, vendor, and any other plain facts.

A rank p-value is only as good as its references: a suspect should be compared with models of its
own kind (trained in the same year, on the same base), not with whatever happens to be stored.
So each reference set in an index carries a small mapping of facts, stored in the manifest (and
so covered by its checksum), given when the reference is added (``fingerprint reference add
--era 2023 --base-model llama-2-13b``, or a reference pack) or later (``reference describe``).
Attribution then uses only the references whose facts match the suspect's
(``attribute --match-references era=2023``).

Keys are lower-case identifiers; values are short single-line strings. Matching is exact after
case folding and trimming: "LLaMA-2-13B" matches "llama-2-13b", "2023" does not match "2023-06"
(say what you mean: store the year in ``era`` and the month elsewhere).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from fingerprint.errors import ConfigError

META_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_KEYS = 16
MAX_VALUE_CHARS = 200


def check_reference_meta(meta: Mapping[str, Any], where: str = "reference metadata"
                         ) -> dict[str, str]:
    """``meta`` validated, as a plain dict sorted by key; ConfigError naming the bad entry.

    An empty value is refused here; ``describe`` treats it as "remove this key" before calling."""
    if not isinstance(meta, Mapping):
        raise ConfigError(f"{where}: expected an object of key: value, got "
                          f"{type(meta).__name__}")
    if len(meta) > MAX_KEYS:
        raise ConfigError(f"{where}: {len(meta)} keys; at most {MAX_KEYS}")
    out: dict[str, str] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not META_KEY.fullmatch(key):
            raise ConfigError(f"{where}: key {key!r} is not a lower-case identifier "
                              f"(letters, digits, '_', at most 32, starting with a letter)")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {type(value).__name__}")
        text = value.strip()
        if not text or len(text) > MAX_VALUE_CHARS or any(c in text for c in "\r\n\x00"):
            raise ConfigError(f"{where}: {key}={value!r} must be 1 to {MAX_VALUE_CHARS} "
                              f"characters on one line")
        out[key] = text
    return dict(sorted(out.items()))


def parse_meta_pairs(pairs: Any, where: str = "metadata", allow_empty: bool = False
                     ) -> dict[str, str]:
    """``["era=2023", "vendor=meta"]`` -> ``{"era": "2023", "vendor": "meta"}``, validated;
    with ``allow_empty``, ``"era="`` is kept as ``{"era": ""}`` (describe: remove that fact)."""
    meta: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep:
            raise ConfigError(f"{where}: {pair!r} is not KEY=VALUE")
        key = key.strip().lower().replace("-", "_")
        if key in meta:
            raise ConfigError(f"{where}: {key} given twice")
        meta[key] = value
    removed = {k for k, v in meta.items() if allow_empty and not v.strip()}
    for key in removed:
        check_reference_meta({key: "x"}, where)  # the key must still be one
    kept = check_reference_meta({k: v for k, v in meta.items() if k not in removed}, where)
    return {**kept, **{k: "" for k in sorted(removed)}}


def meta_matches(meta: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Every wanted key is present with the same value (case folded). A reference that does not
    say its era does not match ``era=2023``: unknown is not a match."""
    return all(k in meta and meta[k].strip().casefold() == v.strip().casefold()
               for k, v in wanted.items())
