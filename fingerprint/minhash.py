"""Batched MinHash signatures, bit-identical to datasketch's.

Two shingle hash functions, both datasketch-compatible (tests/test_minhash.py proves each value
for value against ``datasketch.MinHash(num_perm, seed, scheme="affine32", hashfunc=...)`` fed the
same shingles; the permutation parameters are taken from datasketch itself):

- ``xxh32`` (default): ``hashfunc=xxhash.xxh32_intdigest``. Tokenising, shingling, hashing and
  permuting run in one compiled pass over the batch (fingerprint.minhash_kernels), many times
  faster than any per-shingle Python call (benchmarks/minhash_speed.py).
- ``sha1_32``: datasketch's default ``sha1_hash32``. Shingles are built in Python, hashed with
  hashlib, and the batch is permuted with one vectorised multiply-add and reduced per document
  with ``np.minimum.reduceat``; kept for indexes built with it and for users who need
  datasketch's defaults.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np

from fingerprint.config import FingerprintConfig
from fingerprint.errors import ConfigError
from fingerprint.folding import FoldedTexts, char_classes, fold_texts
from fingerprint.shingles import word_shingles

SIGNATURE_DTYPE = np.dtype("<u4")
EMPTY_HASH = np.uint32(0xFFFFFFFF)
# Fewest shingles a text needs to take part in lexical evidence (near-duplicates, paired Jaccard).
# A text with no word characters (emoji, punctuation, symbols only) has an empty shingle set, and
# the signature of every empty set is the same (all EMPTY_HASH): two different emoji strings would
# "match" at Jaccard 1.0. One shingle is enough otherwise: a text shorter than n words is one
# shingle of all its words (fingerprint.shingles), and a short answer that independent models give
# too is discounted by calibration, not by this rule.
MIN_SHINGLES = 1

# Cells of the (shingles x permutations) matrix materialised at once. Small enough to stay in
# the CPU cache (256K uint32 = 1 MB): at 64 MB the multiply-add and the reduction were memory
# bound and 5x slower (benchmarks/minhash_speed.py). It also bounds memory for any document size.
_MAX_CELLS = 1 << 18

_FMIX_M1 = np.uint32(0x85EBCA6B)
_FMIX_M2 = np.uint32(0xC2B2AE35)


def has_shingles(signatures: np.ndarray) -> np.ndarray:
    """Per row, whether the text had at least ``MIN_SHINGLES`` shingles: only an empty set gives
    the all-``EMPTY_HASH`` signature (a real shingle's minimum is below 2**32 - 1 for all but a
    vanishing share of hash values, and one such permutation still leaves the others)."""
    signatures = np.asarray(signatures)
    return ~np.all(signatures == EMPTY_HASH, axis=-1)


def sha1_hash32_array(shingles: Iterable[str]) -> np.ndarray:
    """datasketch's ``sha1_hash32`` (first 4 bytes of SHA-1, little-endian) over many shingles."""
    digests = b"".join(hashlib.sha1(s.encode("utf-8")).digest()[:4] for s in shingles)
    return np.frombuffer(digests, dtype="<u4").astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, which datasketch's affine32 scheme applies first."""
    h = h ^ (h >> np.uint32(16))
    h = h * _FMIX_M1
    h = h ^ (h >> np.uint32(13))
    h = h * _FMIX_M2
    return h ^ (h >> np.uint32(16))


class MinHasher:
    """Computes MinHash signatures for a fixed config; cheap to build, safe to reuse."""

    def __init__(self, config: FingerprintConfig):
        from datasketch import MinHash  # the source of truth for the permutations

        proto = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=config.minhash_scheme)
        a, b = proto.permutations
        self._a = np.ascontiguousarray(a, dtype=np.uint32)
        self._b = np.ascontiguousarray(b, dtype=np.uint32)
        self.config = config

    @property
    def num_perm(self) -> int:
        return self.config.num_perm

    def shingles(self, text: str) -> set[str]:
        return word_shingles(text, self.config.shingle_size, self.config.normalizer_version)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """One signature row per text, dtype uint32, shape (len(texts), num_perm)."""
        if self.config.hash_function == "xxh32":
            return self._compiled_signatures(texts)
        return self.signatures_from_hashes([sha1_hash32_array(self.shingles(t)) for t in texts])

    def signatures_from_shingles(self, shingle_sets: Sequence[Iterable[str]]) -> np.ndarray:
        """Signatures of given shingle sets, hashed with the config's hash function."""
        if self.config.hash_function == "xxh32":
            from fingerprint.minhash_kernels import xxh32_strings

            return self.signatures_from_hashes([xxh32_strings(list(s)) for s in shingle_sets])
        return self.signatures_from_hashes([sha1_hash32_array(s) for s in shingle_sets])

    def _compiled_signatures(self, texts: Sequence[str]) -> np.ndarray:
        return self.folded_signatures(fold_texts(texts))

    def folded_signatures(self, folded: FoldedTexts) -> np.ndarray:
        """``signatures`` of texts already folded (fingerprint.folding), as the fingerprinter
        folds a batch once for MinHash and style; xxh32 configurations only."""
        from fingerprint.minhash_kernels import folded_signatures

        if self.config.hash_function != "xxh32":
            raise ConfigError(f"folded signatures need hash_function 'xxh32', not "
                              f"{self.config.hash_function!r}")
        out = np.empty((len(folded), self.num_perm), dtype=SIGNATURE_DTYPE)
        folded_signatures(folded.codes, folded.offsets, char_classes(),
                          self.config.shingle_size, self._a, self._b, out)
        return out

    def signatures_from_hashes(self, hashes: Sequence[np.ndarray]) -> np.ndarray:
        out = np.full((len(hashes), self.num_perm), EMPTY_HASH, dtype=np.uint32)
        rows_per_chunk = max(1, _MAX_CELLS // self.num_perm)
        group: list[int] = []
        group_rows = 0
        for i, h in enumerate(hashes):
            if h.size == 0:
                continue  # an empty set keeps datasketch's empty signature (all max values)
            if h.size > rows_per_chunk:
                for start in range(0, h.size, rows_per_chunk):
                    piece = self._permute(h[start:start + rows_per_chunk]).min(axis=0)
                    np.minimum(out[i], piece, out=out[i])
                continue
            if group_rows + h.size > rows_per_chunk:
                self._reduce_group(hashes, group, out)
                group, group_rows = [], 0
            group.append(i)
            group_rows += h.size
        self._reduce_group(hashes, group, out)
        return out.astype(SIGNATURE_DTYPE, copy=False)

    def _permute(self, h: np.ndarray) -> np.ndarray:
        return _fmix32(h.astype(np.uint32, copy=False))[:, None] * self._a + self._b

    def _reduce_group(self, hashes: Sequence[np.ndarray], group: list[int], out: np.ndarray) -> None:
        if not group:
            return
        parts = [hashes[i] for i in group]
        offsets = np.cumsum([0] + [p.size for p in parts[:-1]])
        out[group] = np.minimum.reduceat(self._permute(np.concatenate(parts)), offsets, axis=0)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal hash values: the MinHash estimate of Jaccard similarity, row-wise."""
    return np.mean(np.asarray(a) == np.asarray(b), axis=-1)
