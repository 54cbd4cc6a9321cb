"""Marking at generation time: add delta to the green tokens' logits before sampling.

``bias_logits`` works on plain numpy arrays, for any serving stack that exposes the logits of a
step; ``logits_processor`` wraps the same arithmetic as a ``transformers`` LogitsProcessor
(this module imports transformers, and so torch: load it only when a processor is asked for).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import LogitsProcessor

from fingerprint.watermark.green import green_masks, last_columns
from fingerprint.watermark.key import WatermarkKey
from fingerprint.watermark.tokenizer import check_tokenizer


def bias_logits(key: WatermarkKey, logits: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """``logits`` (batch, vocab) plus delta on each row's green tokens; ``contexts`` (batch,
    context_width) holds the ids before the token being sampled. Returns a new array."""
    logits = np.asarray(logits)
    contexts = np.asarray(contexts, dtype=np.int64).reshape(len(logits), -1)
    mask = green_masks(key.secret, key.tokens.gamma,
                       last_columns(contexts, key.tokens.context_width), logits.shape[-1])
    return logits + key.tokens.delta * mask.astype(logits.dtype)


class GreenListProcessor(LogitsProcessor):
    """The green-list mark as a transformers LogitsProcessor (pass it in ``logits_processor``
    of ``generate``). Steps with fewer than context_width ids so far are left unmarked."""

    def __init__(self, key: WatermarkKey):
        self._key = key

    def __repr__(self) -> str:
        return f"GreenListProcessor(key_id={self._key.key_id!r})"

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        width = self._key.tokens.context_width
        if input_ids.shape[-1] < width:
            return scores
        contexts = last_columns(input_ids.detach().cpu().numpy(), width)
        mask = green_masks(self._key.secret, self._key.tokens.gamma, contexts, scores.shape[-1])
        return scores + self._key.tokens.delta * torch.from_numpy(mask).to(scores.device,
                                                                          scores.dtype)


def logits_processor(key: WatermarkKey, tokenizer: Any) -> GreenListProcessor:
    """A processor for ``tokenizer``'s model, refused if the key was made for another vocabulary."""
    check_tokenizer(key.tokenizer, tokenizer, getattr(tokenizer, "name_or_path", None)
                    or "<tokenizer object>")
    return GreenListProcessor(key)
