"""Keyed hashes: what a bundle holds in place of text and account ids.

A public-seed MinHash signature lets anyone holding a guessed text test whether it is in a
bundle (compute its signature, compare); min-hash with a secret hash does not (Liang et al.,
IACR CiC 2025). Here each shingle is hashed with keyed BLAKE2b (a PRF) under a subkey derived
from the consortium secret, then permuted and reduced exactly as fingerprint.MinHasher does for
public hashes (``signatures_from_hashes``): the same shingles (the index's shingle size and
normalizer) give the same signature at every partner holding the key, and estimated Jaccard
works on them unchanged. Without the key the shingle hashes are unpredictable, so a guess cannot
be tested. Account ids are replaced by keyed HMAC-SHA256 digests under another subkey (domain
separation: one hash cannot be turned into the other).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Sequence

import numpy as np

from fingerprint import FingerprintConfig, MinHasher

SHINGLE_DOMAIN = b"fingerprint-share/minhash-shingle/v1"
ACCOUNT_DOMAIN = b"fingerprint-share/account/v1"
SIGNAL_DOMAIN = b"fingerprint-share/signal/v1"
KEYED_HASH = "blake2b-32-keyed"


def subkey(secret: bytes, domain: bytes) -> bytes:
    return hmac.new(secret, domain, hashlib.sha256).digest()


def keyed_hash32(shingles: Iterable[str], key: bytes) -> np.ndarray:
    """32-bit keyed BLAKE2b of each shingle (little-endian), as MinHasher's hash arrays."""
    digests = b"".join(hashlib.blake2b(s.encode("utf-8"), key=key, digest_size=4).digest()
                       for s in shingles)
    return np.frombuffer(digests, dtype="<u4").astype(np.uint32)


class KeyedMinHasher:
    """MinHash signatures under a consortium secret, with the index's shingling."""

    def __init__(self, config: FingerprintConfig, secret: bytes):
        self._hasher = MinHasher(config)
        self._key = subkey(secret, SHINGLE_DOMAIN)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """One keyed signature row per text, uint32, shape (len(texts), num_perm)."""
        hashes = [keyed_hash32(self._hasher.shingles(t), self._key) for t in texts]
        return self._hasher.signatures_from_hashes(hashes)


def keyed_id(secret: bytes, domain: bytes, value: str) -> str:
    """Hex HMAC-SHA256 of ``value`` under the secret's subkey for ``domain``."""
    return hmac.new(subkey(secret, domain), value.encode("utf-8"), hashlib.sha256).hexdigest()


def account_hash(secret: bytes, account: str) -> str:
    return keyed_id(secret, ACCOUNT_DOMAIN, account)


def signal_id(secret: bytes, response_id: str) -> str:
    """A response's opaque id in bundles: stable across exports (feedback can name it), and
    without the key nothing links it to the response id."""
    return keyed_id(secret, SIGNAL_DOMAIN, response_id)[:32]
