"""The "torch" embedding backend: the model's own sentence-transformers pipeline, fp32.

It is the reference the other backends are measured against, and the one that works for any
sentence-transformers model (other poolings, other architectures).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fingerprint.embed_model import (EMBEDDING_DTYPE, EmbeddingModelError, clip,
                                     quiet_transformers, resolve_model_path,
                                     set_offline_environment)


class TorchBackend:
    def __init__(self, model_name: str, device: str):
        set_offline_environment()
        from sentence_transformers import SentenceTransformer

        quiet_transformers()
        try:
            self.model = SentenceTransformer(resolve_model_path(model_name), device=device)
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(
                f"cannot load embedding model {model_name!r} offline: {exc}") from exc
        getter = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(getter())

    def embed(self, texts: Sequence[str], max_tokens: int, batch_size: int) -> np.ndarray:
        self.model.max_seq_length = max_tokens
        vectors = self.model.encode(clip(texts, max_tokens), batch_size=batch_size,
                                    convert_to_numpy=True, normalize_embeddings=True,
                                    show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=EMBEDDING_DTYPE)
