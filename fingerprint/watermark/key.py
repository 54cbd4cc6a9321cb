"""Watermark keys: a 256-bit secret with the parameters and vocabulary it was made for.

The secret is what makes the mark unforgeable and undetectable to others, so it never leaves the
key file: ``repr`` hides it, outputs name a key only by ``key_id`` (a one-way digest of the
secret), and the file is written atomically, readable by its owner only, with a checksum so a
damaged key is refused instead of silently detecting nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fingerprint.atomic import atomic_write_bytes
from fingerprint.errors import ConfigError, WatermarkKeyError
from fingerprint.watermark.config import LexicalConfig, PosthocConfig, WatermarkConfig
from fingerprint.watermark.tokenizer import TokenizerIdentity, identify, load_tokenizer

KEY_FORMAT = "fingerprint-watermark-key"
KEY_VERSION = 2
KEY_VERSIONS = (1, 2)  # 1: post-hoc mark version 1 only (read and used as it was made)
SECRET_BYTES = 32


@dataclass(frozen=True)
class WatermarkKey:
    """Everything detection needs to agree with marking. ``lexicon_sha256`` pins the synonym
    lexicon of the post-hoc mark (None: the key serves the token mark only). ``posthoc`` is the
    post-hoc mark's version 2 (several channels, fingerprint.watermark.posthoc); a key without it
    (key format 1, made before it existed) keeps marking and detecting with version 1, the
    synonyms of ``lexical`` alone, so text marked with an old key stays detectable."""

    secret: bytes = field(repr=False)
    tokens: WatermarkConfig
    tokenizer: TokenizerIdentity
    lexical: LexicalConfig = LexicalConfig()
    lexicon_sha256: str | None = None
    posthoc: PosthocConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != SECRET_BYTES:
            raise ConfigError(f"a watermark secret is {SECRET_BYTES} bytes")

    @property
    def key_id(self) -> str:
        """A public name for the key: safe to print and to put in reports."""
        return hashlib.sha256(b"fp-wm-key-id" + self.secret).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        body = {"format": KEY_FORMAT, "version": 1 if self.posthoc is None else KEY_VERSION,
                "key_id": self.key_id,
                "secret": self.secret.hex(), "tokens": self.tokens.to_dict(),
                "tokenizer": self.tokenizer.to_dict(), "lexical": self.lexical.to_dict(),
                "lexicon_sha256": self.lexicon_sha256}
        if self.posthoc is not None:
            body["posthoc"] = self.posthoc.to_dict()
        return {**body, "checksum": _checksum(body)}


def generate_key(tokenizer: Any = None, *, config: WatermarkConfig = WatermarkConfig(),
                 lexical: LexicalConfig = LexicalConfig(),
                 posthoc: PosthocConfig | None = PosthocConfig(),
                 source: str | None = None) -> WatermarkKey:
    """A fresh key for ``tokenizer`` (a ``tokenizers.Tokenizer``, a transformers tokenizer, a
    path to a tokenizer.json or a directory with one; default: the bundled all-MiniLM-L6-v2's).

    ``source`` is recorded as where detection can load the tokenizer from; it defaults to the
    path given, and must be given for a tokenizer object to be findable later. The synonym
    lexicon of the post-hoc mark is pinned when WordNet is installed (otherwise the key serves
    the token mark only).
    """
    from fingerprint.watermark.lexicon import lexicon_available, load_lexicon
    from fingerprint.watermark.tokenizer import DEFAULT_TOKENIZER

    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        spec = str(tokenizer) if tokenizer is not None else DEFAULT_TOKENIZER
        tokenizer, source = load_tokenizer(spec), source or _portable(spec)
    identity = identify(tokenizer, source or "<tokenizer object>")
    lexicon_sha256 = load_lexicon().sha256 if lexicon_available() else None
    posthoc = posthoc if lexicon_sha256 is not None else None
    return WatermarkKey(secret=secrets.token_bytes(SECRET_BYTES), tokens=config,
                        tokenizer=identity, lexical=lexical, lexicon_sha256=lexicon_sha256,
                        posthoc=posthoc)


def save_key(key: WatermarkKey, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write the key file (mode 0600). An existing file is kept unless ``overwrite``: replacing
    a key by accident would make everything marked with it undetectable."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise WatermarkKeyError(f"{target}: already exists; a key is not overwritten unless "
                                "asked (--force)")
    data = json.dumps(key.to_dict(), indent=2).encode("utf-8") + b"\n"
    atomic_write_bytes(target, data, mode=0o600)


def load_key(path: str | os.PathLike[str]) -> WatermarkKey:
    """Read and verify a key file; every failure names the file and what is wrong."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise WatermarkKeyError(f"{source}: no such key file") from None
    if not raw.strip():
        raise WatermarkKeyError(f"{source}: the key file is empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WatermarkKeyError(f"{source}: not a watermark key (not JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise WatermarkKeyError(f"{source}: not a watermark key (field 'format' is not "
                                f"{KEY_FORMAT!r}; make one with 'fingerprint watermark keygen')")
    version = data.get("version")
    if version not in KEY_VERSIONS:
        raise WatermarkKeyError(f"{source}: key format version {version!r}; this release reads "
                                f"versions {', '.join(map(str, KEY_VERSIONS))}")
    body = {k: v for k, v in data.items() if k != "checksum"}
    if data.get("checksum") != _checksum(body):
        raise WatermarkKeyError(f"{source}: the key file is damaged (its checksum does not "
                                "match its contents); restore it from a backup")
    try:
        key = WatermarkKey(secret=bytes.fromhex(data["secret"]),
                           tokens=WatermarkConfig.from_dict(data["tokens"]),
                           tokenizer=TokenizerIdentity(**data["tokenizer"]),
                           lexical=LexicalConfig.from_dict(data["lexical"]),
                           lexicon_sha256=data["lexicon_sha256"],
                           posthoc=_posthoc(data, version))
    except (KeyError, TypeError, ValueError) as exc:
        raise WatermarkKeyError(f"{source}: invalid key field ({exc})") from None
    if key.key_id != data.get("key_id"):
        raise WatermarkKeyError(f"{source}: field 'key_id' does not belong to this secret")
    return key


def _posthoc(data: dict[str, Any], version: int) -> PosthocConfig | None:
    """Format 1 has no version-2 post-hoc mark; format 2 must have one."""
    if version == 1:
        if "posthoc" in data:
            raise KeyError("posthoc (not in key format 1)")
        return None
    return PosthocConfig.from_dict(data["posthoc"])


def _checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _portable(spec: str) -> str:
    """Record names as names and paths as absolute paths, so detection finds the tokenizer from
    another working directory."""
    path = Path(spec)
    return str(path.resolve()) if path.exists() else spec
