"""1-bit MinHash codes: 16 bytes per 128-permutation signature for fast candidate search.

Keeping only the lowest bit of each hash value (Li & Koenig, "b-Bit Minwise Hashing", 2010)
turns a signature into a bit vector whose Hamming distance estimates Jaccard similarity:
two bits agree with probability J + (1 - J) / 2. FAISS binary indexes search these codes at
memory-bandwidth speed; candidates are then re-ranked on the full signatures.
"""

from __future__ import annotations

import numpy as np


def one_bit_codes(signatures: np.ndarray) -> np.ndarray:
    """(n, num_perm) uint32 signatures -> (n, num_perm / 8) uint8 packed codes."""
    bits = (np.asarray(signatures) & 1).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little")


def jaccard_from_hamming(distance: np.ndarray, num_bits: int) -> np.ndarray:
    """Unbiased-in-expectation Jaccard estimate from 1-bit code distances, clipped to [0, 1]."""
    return np.clip(1.0 - 2.0 * np.asarray(distance, dtype=np.float64) / num_bits, 0.0, 1.0)
