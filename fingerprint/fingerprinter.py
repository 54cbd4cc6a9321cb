"""All fingerprints of a batch of texts, computed from one config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fingerprint.config import FingerprintConfig
from fingerprint.embed import Embedder
from fingerprint.folding import fold_texts
from fingerprint.minhash import MinHasher
from fingerprint.style import StyleVectorizer


@dataclass(frozen=True)
class Fingerprints:
    """Row i of each array belongs to text i."""

    signatures: np.ndarray  # (n, num_perm) uint32
    embeddings: np.ndarray | None  # (n, dim) float32, L2-normalised; None if not computed
    style: Any  # scipy.sparse CSR (n, style_features), float32 hashed feature counts

    def __len__(self) -> int:
        return int(self.signatures.shape[0])


class Fingerprinter:
    """MinHash, embedding and style fingerprints for a config; the model loads on first use."""

    def __init__(self, config: FingerprintConfig = FingerprintConfig(), batch_size: int = 32):
        self.config = config
        self.batch_size = batch_size
        self.minhasher = MinHasher(config)
        self.embedder = Embedder(config.embedding_model, config.embedding_max_tokens,
                                 batch_size=batch_size, backend=config.embedding_backend)
        self.styler = StyleVectorizer(config.style_features, config.style_version,
                                   config.style_extras)

    @property
    def embedding_dim(self) -> int:
        return self.embedder.dim

    def fingerprint(self, texts: Sequence[str], embed: bool = True) -> Fingerprints:
        """``embed=False`` skips the embedding (reference sets). The batch is folded once
        (fingerprint.folding) for the MinHash words and the style tokens."""
        folded = fold_texts(texts)
        signatures = (self.minhasher.folded_signatures(folded)
                      if self.config.hash_function == "xxh32"
                      else self.minhasher.signatures(texts))
        return Fingerprints(signatures, self.embedder.embed(texts) if embed else None,
                            self.styler.transform_folded(folded))
