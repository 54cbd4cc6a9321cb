import subprocess
import sys

import numpy as np


def test_import_does_not_load_torch():
    code = ("import sys, fingerprint, index, attribution, probing, replay, reports, cli; "
            "from fingerprint import Fingerprinter, FingerprintConfig; "
            "from fingerprint.config import EMBEDDING_BACKENDS; "
            "[Fingerprinter(FingerprintConfig(embedding_backend=b)) for b in EMBEDDING_BACKENDS]; "
            "bad = [m for m in ('torch', 'sentence_transformers', 'transformers', 'onnxruntime', "
            "'onnx', 'tokenizers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_embeddings_are_normalised_float32_of_the_real_model(fingerprinter):
    """The default backend's vectors (static: 256 dimensions; torch and onnx-int8: 384)."""
    texts = ["The cat sat on the mat.", "A cat was sitting on a rug.",
             "Quarterly tax filings are due in April."]
    vectors = fingerprinter.embedder.embed(texts)
    expected_dim = {"static": 256}.get(fingerprinter.config.embedding_backend, 384)
    assert vectors.dtype == np.float32 and vectors.shape == (3, expected_dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.5 > sims[0, 2]  # a paraphrase is closer than an unrelated sentence


def test_embeddings_are_deterministic_and_batch_independent(fingerprinter):
    texts = [f"sentence number {i} about embeddings" for i in range(5)]
    together = fingerprinter.embedder.embed(texts)
    alone = fingerprinter.embedder.embed(texts[3:4])
    assert np.allclose(together[3], alone[0], atol=1e-5)


def test_empty_batch_has_the_model_dimension(fingerprinter):
    assert fingerprinter.embedder.embed([]).shape == (0, fingerprinter.embedding_dim)
