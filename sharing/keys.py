"""Signing keys (Ed25519), their public halves, the trust directory, and consortium keys.

A producer signs a bundle's manifest with its private key; a recipient trusts the public keys it
put in its trust directory (one ``*.pub`` file per partner: ``{org, algorithm, public_key,
key_id}``, key_id the first 16 hex digits of SHA-256 of the raw public key), so a bundle names
its signer by key id and nothing in the bundle itself can make it trusted.

The consortium key is the secret partners agree on; every keyed hash in a bundle is derived
from it, so a recipient without it cannot test guessed texts against the signatures. Its key id
is the first 16 hex digits of SHA-256 of the secret: a one-way digest, safe to print and to put
in a bundle, that lets a recipient tell which of its keys (rotation) a bundle needs.

Private key files are written with mode 0600 from the first byte and never overwritten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fingerprint.atomic import atomic_write_bytes
from sharing.errors import (ConsortiumKeyError, KeyFileError, SharingDependencyError,
                            TrustStoreError)

SHARE_HINT = "pip install 'output-fingerprint[share]'"
ALGORITHM = "ed25519"
SECRET_BYTES = 32


def crypto() -> Any:
    """The ``cryptography`` Ed25519 module, or a one-line install hint."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SharingDependencyError(f"sharing needs the cryptography package: {SHARE_HINT}") \
            from None
    return ed25519


def serialization() -> Any:
    crypto()  # the install hint first
    from cryptography.hazmat.primitives import serialization as module

    return module


def key_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    org: str
    key_id: str
    raw: bytes  # the 32-byte Ed25519 public key

    def to_dict(self) -> dict[str, str]:
        return {"org": self.org, "algorithm": ALGORITHM,
                "public_key": base64.b64encode(self.raw).decode("ascii"), "key_id": self.key_id}

    def verify(self, signature: bytes, data: bytes) -> bool:
        public = crypto().Ed25519PublicKey.from_public_bytes(self.raw)
        from cryptography.exceptions import InvalidSignature

        try:
            public.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    org: str
    private: Any  # cryptography's Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        formats = serialization()
        raw = self.private.public_key().public_bytes(formats.Encoding.Raw,
                                                     formats.PublicFormat.Raw)
        return PublicKey(self.org, key_id(raw), raw)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


@dataclass(frozen=True)
class ConsortiumKey:
    key_id: str
    secret: bytes
    created: str


def public_path(private_path: Path) -> Path:
    """``acme.signing.key`` -> ``acme.pub`` (the name before the first dot)."""
    return private_path.with_name(private_path.name.split(".")[0] + ".pub")


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            raise KeyFileError(f"{path}: exists; keys are never overwritten (move it away "
                               f"first)")


def generate_signing_key(org: str, out: str | os.PathLike[str]) -> PublicKey:
    """Write a new Ed25519 private key (PEM, mode 0600) to ``out`` and its public half, with the
    org name, to ``public_path(out)``; refuses if either exists."""
    formats = serialization()
    if not org.strip():
        raise KeyFileError("--org must name the organisation that signs")
    out = Path(out)
    pub_path = public_path(out)
    _refuse_existing(out, pub_path)
    key = SigningKey(org.strip(), crypto().Ed25519PrivateKey.generate())
    pem = key.private.private_bytes(formats.Encoding.PEM, formats.PrivateFormat.PKCS8,
                                    formats.NoEncryption())
    header = f"# fingerprint signing key of {key.org}\n".encode("utf-8")
    atomic_write_bytes(out, header + pem, mode=0o600)
    atomic_write_bytes(pub_path, _json_bytes(key.public.to_dict()))
    return key.public


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """The private key at ``path``; its org comes from the header line keygen wrote."""
    formats = serialization()
    path = Path(path)
    data = path.read_bytes()
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    prefix = "# fingerprint signing key of "
    try:
        private = formats.load_pem_private_key(data.split(b"\n", 1)[-1], password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not a PEM private key (made by 'fingerprint share "
                           f"keygen'?)") from None
    if not first.startswith(prefix) or not isinstance(private, crypto().Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not a fingerprint Ed25519 signing key")
    return SigningKey(first[len(prefix):], private)


def read_public_key(path: Path) -> PublicKey:
    """One .pub file, every field checked; a malformed one names the file and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrustStoreError(f"{path}: not a public key file (JSON): {exc}") from None
    if not isinstance(data, dict):
        raise TrustStoreError(f"{path}: not a public key file (expected a JSON object)")
    for name in ("org", "algorithm", "public_key", "key_id"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise TrustStoreError(f'{path}: field "{name}" is missing or not a string')
    if data["algorithm"] != ALGORITHM:
        raise TrustStoreError(f'{path}: field "algorithm" is {data["algorithm"]!r}, only '
                              f"{ALGORITHM!r} is known")
    try:
        raw = base64.b64decode(data["public_key"], validate=True)
    except binascii.Error:
        raise TrustStoreError(f'{path}: field "public_key" is not base64') from None
    if len(raw) != 32 or key_id(raw) != data["key_id"]:
        raise TrustStoreError(f'{path}: field "public_key" is not a 32-byte key whose id is '
                              f'"key_id" ({data["key_id"]})')
    return PublicKey(data["org"], data["key_id"], raw)


def read_trust_dir(path: str | os.PathLike[str]) -> dict[str, PublicKey]:
    """Every trusted key of the directory's *.pub files, by key id."""
    path = Path(path)
    if not path.is_dir():
        raise TrustStoreError(f"{path}: trust directory not found (a directory of partners' "
                              f".pub files)")
    keys = {k.key_id: k for k in map(read_public_key, sorted(path.glob("*.pub")))}
    if not keys:
        raise TrustStoreError(f"{path}: no .pub file, so no signer is trusted")
    return keys


def generate_consortium_key(out: str | os.PathLike[str]) -> ConsortiumKey:
    """Write a new 32-byte random consortium secret with its key id (JSON, mode 0600)."""
    out = Path(out)
    _refuse_existing(out)
    secret = secrets.token_bytes(SECRET_BYTES)
    key = ConsortiumKey(key_id(secret), secret,
                        datetime.now(timezone.utc).isoformat(timespec="seconds"))
    atomic_write_bytes(out, _json_bytes({"key_id": key.key_id, "secret": secret.hex(),
                                         "created": key.created}), mode=0o600)
    return key


def load_consortium_key(path: str | os.PathLike[str]) -> ConsortiumKey:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        secret = bytes.fromhex(data["secret"])
        kid, created = data["key_id"], data["created"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConsortiumKeyError(f"{path}: not a consortium key (made by 'fingerprint share "
                                 f"consortium-key'?): {type(exc).__name__} {exc}") from None
    if len(secret) != SECRET_BYTES or kid != key_id(secret):
        raise ConsortiumKeyError(f"{path}: the secret is not {SECRET_BYTES} bytes or its key id "
                                 f"{kid!r} does not match it")
    return ConsortiumKey(kid, secret, str(created))


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
