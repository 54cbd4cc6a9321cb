"""The three embedding backends on the real model (no mocks), and their artefact cache.

The onnx-int8 graph and the static table are built once per machine into the normal cache
($FINGERPRINT_CACHE_DIR or ~/.cache/fingerprint): on a fresh machine the first test that needs
them builds them (a few seconds and well under a minute), later runs only verify them. The cache
tests work on a copy in a temporary directory.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fingerprint.config import EMBEDDING_BACKENDS
from fingerprint.embed import Embedder, load_backend
from fingerprint.embed_cache import CACHE_ENV, ENTRY_FILE, verify
from fingerprint.embed_onnx import OnnxInt8Backend
from fingerprint.io import read_records

pytestmark = pytest.mark.slow  # real data and model loads: deselected by pytest -m "not slow"

PARAPHRASES = ["The cat sat on the mat.", "A cat was sitting on a rug.",
               "Quarterly tax filings are due in April."]
# Words that are one WordPiece token each, so a cut after k words is a cut after k tokens.
WORDS = ("apple river music table garden window school friend summer market letter doctor "
         "bridge forest island winter").split()


@pytest.fixture(scope="session")
def embedders():
    return {b: Embedder(backend=b) for b in EMBEDDING_BACKENDS}


@pytest.fixture(scope="session")
def real_texts(alpacaeval):
    """48 real answers of 24 models, a fixed sample, some longer than 256 tokens."""
    texts = []
    for path in sorted((alpacaeval / "outputs").glob("*.jsonl")):
        records = list(read_records(path))
        texts += [records[i].response for i in (7, 400)]
    return texts


@pytest.mark.parametrize("backend", EMBEDDING_BACKENDS)
def test_each_backend_gives_unit_float32_vectors(embedders, backend):
    embedder = embedders[backend]
    vectors = embedder.embed(PARAPHRASES + ["", "🙂"])
    assert vectors.dtype == np.float32 and vectors.shape == (5, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, embedder.dim)


@pytest.mark.parametrize("backend", EMBEDDING_BACKENDS)
def test_each_backend_ranks_a_paraphrase_above_an_unrelated_text(embedders, backend):
    vectors = embedders[backend].embed(PARAPHRASES)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[1, 2] + 0.2


def test_onnx_int8_agrees_with_fp32_on_real_answers(embedders, real_texts):
    fp32 = embedders["torch"].embed(real_texts)
    int8 = embedders["onnx-int8"].embed(real_texts)
    cosines = np.sum(fp32 * int8, axis=1)
    assert cosines.mean() >= 0.99 and cosines.min() >= 0.98, (cosines.mean(), cosines.min())


def test_onnx_int8_vector_does_not_depend_on_the_batch(embedders, real_texts):
    together = embedders["onnx-int8"].embed(real_texts[:6])
    alone = embedders["onnx-int8"].embed(real_texts[3:4])
    assert np.array_equal(together[3], alone[0])


def test_static_scores_real_answers_like_the_transformer(embedders, real_texts):
    """Not the same vector space, but the same notion of similar: pairwise cosines correlate."""
    upper = np.triu_indices(len(real_texts), 1)
    fp32 = embedders["torch"].embed(real_texts)
    static = embedders["static"].embed(real_texts)
    correlation = np.corrcoef((fp32 @ fp32.T)[upper], (static @ static.T)[upper])[0, 1]
    assert correlation > 0.7, correlation


@pytest.mark.parametrize("backend", EMBEDDING_BACKENDS)
def test_max_tokens_is_respected(backend):
    """16 tokens = [CLS] + 14 words + [SEP]: a longer text embeds like its first 14 words."""
    short = Embedder(max_tokens=16, backend=backend)
    long_text = " ".join(WORDS * 4)
    cut = " ".join(WORDS[:14])
    vectors = short.embed([long_text, cut])
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)
    wider = Embedder(max_tokens=64, backend=backend).embed([long_text, cut])
    assert float(wider[0] @ wider[1]) < 0.99  # the limit, not the text, made them equal


def test_a_damaged_cache_entry_is_rebuilt_not_trusted(embedders, tmp_path, monkeypatch):
    trusted = load_backend("onnx-int8", embedders["onnx-int8"].model_name)
    copy = tmp_path / trusted.entry.name
    shutil.copytree(trusted.entry, copy)
    model = copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    model.write_bytes(bytes(data))
    assert "model.onnx: sha256" in verify(copy, ("model.onnx",))[1]

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    rebuilt = OnnxInt8Backend(embedders["onnx-int8"].model_name)
    assert rebuilt.entry == copy and rebuilt.record["built_at"] != trusted.record["built_at"]
    assert verify(copy, ("model.onnx",))[0] is not None
    # Two builds of the same recipe must embed alike; here they are even bit-identical.
    assert rebuilt.record["files"] == trusted.record["files"]
    texts = PARAPHRASES + [" ".join(WORDS * 3)]
    old = embedders["onnx-int8"].embed(texts)
    new = rebuilt.embed(texts, 256, 32)
    assert np.sum(old * new, axis=1).min() > 0.999


def test_cache_verification_names_what_is_wrong(embedders, tmp_path):
    static = load_backend("static", embedders["static"].model_name)
    copy = tmp_path / "entry"
    shutil.copytree(static.entry, copy)
    assert verify(copy, ("vectors.npy",))[0] is not None
    vectors = copy / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-100])
    assert "vectors.npy: size" in verify(copy, ("vectors.npy",))[1]
    vectors.unlink()
    assert verify(copy, ("vectors.npy",))[1] == "vectors.npy missing"
    (copy / ENTRY_FILE).write_text("{not json")
    assert "unreadable" in verify(copy, ("vectors.npy",))[1]
    record = json.loads(json.dumps(static.record))
    assert record["files"]["vectors.npy"]["sha256"] and record["recipe"] == "static"


def test_derived_backends_run_without_torch_once_built(embedders):
    """Loading torch costs seconds per process; with their cache built, onnx-int8 and static
    need only onnxruntime, tokenizers and numpy."""
    for backend in ("onnx-int8", "static"):
        embedders[backend].embed(["warm the cache"])
    code = ("import sys; from fingerprint.embed import Embedder; "
            "[Embedder(backend=b).embed(['a text']) for b in ('onnx-int8', 'static')]; "
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_backend_loaded_from_one_cache_does_not_answer_for_another(embedders, tmp_path,
                                                                     monkeypatch):
    """A process that changes $FINGERPRINT_CACHE_DIR (a CLI test, a user's script) must use
    the entry in the directory now in force, not the instance loaded from the old one."""
    name = embedders["static"].model_name
    before = load_backend("static", name)
    shutil.copytree(before.entry, tmp_path / before.entry.name)  # verified there, not rebuilt
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    after = load_backend("static", name)
    assert after is not before and after.entry == tmp_path / before.entry.name
    monkeypatch.delenv(CACHE_ENV)
    assert load_backend("static", name) is before
