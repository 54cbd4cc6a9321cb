"""Watermarks that survive distillation: mark served text with a secret key, and test a
suspect's outputs for the mark with exact p-values.

Two marks share one key. The token mark (Kirchenbauer et al. 2023) biases generation towards a
keyed "green list" of the vocabulary chosen by the preceding tokens: ``logits_processor`` for
transformers, ``bias_logits`` or ``green_masks`` for any other stack. The post-hoc mark
(``mark_text``) makes keyed choices in text already generated: synonyms, serial commas and
contractions (version 2, fingerprint.watermark.posthoc; keys made before it: synonyms only).
A student trained on marked text inherits a measurable excess of green pairs
("radioactivity", Sander et al. 2024), which ``detect_texts`` / ``detect_lexical`` test with
exact binomial p-values; ``shift_test`` tests a suspect for the excess use of green pairs a
student inherits, against the provider's unmarked text (fingerprint.watermark.shift);
``compare_windows`` is its key-free half, for testing many keys on the same texts.

Importing this package does not import torch or transformers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fingerprint.watermark.config import LexicalConfig, PosthocConfig, WatermarkConfig
from fingerprint.watermark.detect import (Detection, Score, binomial_tail, detect_texts,
                                          detect_token_ids)
from fingerprint.watermark.files import (MarkSummary, WatermarkReport, detect_file,
                                         detect_records, mark_file, read_reference)
from fingerprint.watermark.key import (WatermarkKey, WatermarkKeyError, generate_key, load_key,
                                       save_key)
from fingerprint.watermark.lexical import MarkedText, detect_lexical, mark_text
from fingerprint.watermark.lexicon import LexiconError, load_lexicon
from fingerprint.watermark.shift import (ComparedWindows, ShiftTest, compare_windows, shift_test,
                                         shift_test_ids)
from fingerprint.watermark.tokenizer import TokenizerMismatchError, load_tokenizer


def green_masks(key: WatermarkKey, contexts: np.ndarray, vocab_size: int) -> np.ndarray:
    """Boolean (batch, vocab_size): the green next tokens after each row of ``contexts`` (the
    last ``key.tokens.context_width`` token ids). Add ``key.tokens.delta`` to their logits."""
    from fingerprint.watermark.green import green_masks as masks
    from fingerprint.watermark.green import last_columns

    contexts = np.asarray(contexts, dtype=np.int64).reshape(len(contexts), -1)
    return masks(key.secret, key.tokens.gamma,
                 last_columns(contexts, key.tokens.context_width), vocab_size)


def bias_logits(key: WatermarkKey, logits: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """Marked logits (batch, vocab) for a serving stack that is not transformers."""
    from fingerprint.watermark.processor import bias_logits as bias

    return bias(key, logits, contexts)


def logits_processor(key: WatermarkKey, tokenizer: Any) -> Any:
    """A ``transformers`` LogitsProcessor that marks generation (imports transformers)."""
    from fingerprint.watermark.processor import logits_processor as make

    return make(key, tokenizer)


__all__ = [
    "Detection", "LexicalConfig", "LexiconError", "MarkSummary", "MarkedText", "PosthocConfig",
    "Score", "ShiftTest", "shift_test", "shift_test_ids", "ComparedWindows", "compare_windows",
    "TokenizerMismatchError", "WatermarkConfig", "WatermarkKey", "WatermarkKeyError",
    "WatermarkReport", "bias_logits", "binomial_tail", "detect_file", "detect_lexical",
    "detect_records", "read_reference", "detect_texts", "detect_token_ids", "generate_key",
    "green_masks",
    "load_key", "load_lexicon", "load_tokenizer", "logits_processor", "mark_file", "mark_text",
    "save_key",
]
