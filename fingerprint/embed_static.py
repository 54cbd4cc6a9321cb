"""The "static" embedding backend: one vector per vocabulary token, distilled from the model.

A text's embedding is the mean of its tokens' vectors, L2-normalised: a table look-up instead of
a transformer, over 1,000x faster than sentence-transformers' fp32 ``encode`` on two CPU cores
once tokenising is compiled (fingerprint/wordpiece.py; benchmarks/README.md), at the price of
ignoring word order and context.

The table is distilled locally and offline with the model2vec recipe (Tulkens & van Dongen,
2024), re-implemented here because model2vec's ``distill`` (and sentence-transformers'
``StaticEmbedding.from_distillation``, which calls it) needs transformers < 5.4 and would
downgrade the transformers this toolkit runs on. The recipe, with model2vec's defaults:

1. every vocabulary token except ``[unusedN]`` is run through the transformer on its own, as
   ``[CLS] token [SEP]``, and its output states are mean-pooled;
2. PCA (centred, eigendecomposition of the covariance) down to 256 dimensions, each component's
   sign fixed so that its largest score is positive: the common direction all token vectors
   share is removed and the build is deterministic;
3. each token vector is scaled by a SIF weight ``1e-4 / (1e-4 + p)``, where ``p`` is a Zipf
   estimate of the token's frequency from its rank in the vocabulary (WordPiece vocabularies
   list whole words roughly by frequency): frequent tokens count less.

Beyond model2vec, the table has one extra last row, the same projection of the transformer's
embedding of an empty text (``[CLS] [SEP]``), used for texts without any token. As for the
other backends, ``max_tokens`` counts [CLS] and [SEP], so every backend sees the same window.
"""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fingerprint.embed_cache import load_or_build
from fingerprint.embed_model import (EMBEDDING_DTYPE, check_mean_pooling, clip, load_tokenizer,
                                     local_model_dir, normalise_rows, quiet_transformers,
                                     set_offline_environment)

RECIPE = "static"
RECIPE_VERSION = 1
WHAT = "static token table"
BUILD_SECONDS = 20  # a first build on two cores (benchmarks/README.md), for the log message
FILES = ("vectors.npy",)
PCA_DIMS = 256
SIF_COEFFICIENT = 1e-4
TOKEN_REMOVE_PATTERN = r"\[unused\d+\]"
FORWARD_BATCH = 1024


def _template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a text ([CLS], [SEP])."""
    encoding = tokenizer.encode("word")
    mask = encoding.special_tokens_mask
    first = mask.index(0)
    last = len(mask) - mask[::-1].index(0)
    return encoding.ids[:first], encoding.ids[last:]


def build(model_dir: Path, out: Path) -> dict[str, Any]:
    """Distil the table into ``out/vectors.npy``; returns the recipe's facts."""
    set_offline_environment()
    import torch
    from transformers import AutoModel

    quiet_transformers()

    tokenizer = load_tokenizer(model_dir, 16)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    remove = re.compile(TOKEN_REMOVE_PATTERN)
    kept = sorted(i for t, i in vocab.items() if not remove.fullmatch(t))
    prefix, suffix = _template(tokenizer)

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    started = time.perf_counter()
    sequences = [prefix + [i] + suffix for i in kept]
    states = np.empty((len(kept), model.config.hidden_size), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(sequences), FORWARD_BATCH):
            states[start:start + FORWARD_BATCH] = _mean_states(
                model, sequences[start:start + FORWARD_BATCH])
        empty = _mean_states(model, [prefix + suffix])[0]
    forward_seconds = time.perf_counter() - started

    mean = states.mean(axis=0)
    centred = states - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / (len(states) - 1))
    dims = min(PCA_DIMS, states.shape[1])
    components = eigenvectors[:, ::-1][:, :dims]
    scores = centred @ components
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(dims)])
    components *= signs
    scores *= signs

    inverse_rank = 1.0 / np.arange(2, len(kept) + 2)
    probability = inverse_rank / inverse_rank.sum()
    weights = SIF_COEFFICIENT / (SIF_COEFFICIENT + probability)

    table = np.zeros((size + 1, dims), dtype=EMBEDDING_DTYPE)
    table[kept] = scores * weights[:, None]
    table[size] = (empty - mean) @ components
    np.save(out / "vectors.npy", table, allow_pickle=False)
    explained = eigenvalues[::-1][:dims].sum() / eigenvalues.sum()
    return {"pca_dims": dims, "sif_coefficient": SIF_COEFFICIENT,
            "token_remove_pattern": TOKEN_REMOVE_PATTERN, "vocabulary": size,
            "tokens_distilled": len(kept), "explained_variance": round(float(explained), 4),
            "forward_seconds": round(forward_seconds, 2),
            "versions": {"torch": torch.__version__}}


def _mean_states(model: Any, sequences: list[list[int]]) -> np.ndarray:
    import torch

    ids = torch.tensor(sequences, dtype=torch.long)  # all of one length: no padding
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    hidden = model(**inputs).last_hidden_state
    return hidden.mean(dim=1).double().numpy()


class StaticBackend:
    def __init__(self, model_name: str):
        set_offline_environment()
        model_dir = local_model_dir(model_name, RECIPE)
        check_mean_pooling(model_dir, RECIPE)
        self.model_dir = model_dir
        self.entry, self.record = load_or_build(RECIPE, RECIPE_VERSION, model_dir, FILES,
                                                lambda out: build(model_dir, out), WHAT,
                                                BUILD_SECONDS)
        self.table = np.load(self.entry / "vectors.npy", allow_pickle=False)
        self.dim = int(self.table.shape[1])
        self.empty_row = self.table.shape[0] - 1
        self._tokenizers: dict[int, tuple[Any, Any]] = {}

    def embed(self, texts: Sequence[str], max_tokens: int, batch_size: int) -> np.ndarray:
        """``batch_size`` is ignored: a look-up needs no batching.

        The tokenizers library would take most of the time here, so a compiled WordPiece
        (fingerprint.wordpiece), tested to give exactly its ids, tokenises instead. The library
        still tokenises words with non-ASCII characters, and whole texts for a tokenizer the
        compiled one does not support.
        """
        loaded = self._tokenizers.get(max_tokens)
        if loaded is None:  # the imports wait until here: numba loads with them
            from fingerprint.wordpiece import FastWordPiece

            tokenizer = load_tokenizer(self.model_dir, max_tokens)
            loaded = self._tokenizers[max_tokens] = (tokenizer,
                                                     FastWordPiece.from_tokenizer(tokenizer))
        tokenizer, fast = loaded
        texts = clip(texts, max_tokens)
        if fast:
            return normalise_rows(fast.row_sums(texts, self.table, self.empty_row))
        from fingerprint.wordpiece import row_sums

        ids, offsets = _tokenizer_ids(tokenizer, texts)
        return normalise_rows(row_sums(ids, offsets, self.table, self.empty_row))


def _tokenizer_ids(tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The tokenizer's ids of each text, without [CLS] and [SEP], as FastWordPiece.encode."""
    prefix, suffix = _template(tokenizer)
    rows = [e.ids[len(prefix):len(e.ids) - len(suffix)] for e in tokenizer.encode_batch(texts)]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=offsets[-1])
    return ids, offsets
