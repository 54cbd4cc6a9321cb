"""Large segments: streamed writing, approximate (IVF) indexes and their exact re-ranking.

The switch to approximate indexes happens at ``ANN_MIN_ROWS`` (100k rows); these tests lower it so
that a few thousand rows take the same code path. Embeddings are clustered random unit vectors
(the index layer does not care where vectors come from), signatures are real MinHash signatures
of generated texts.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from scipy import sparse

from fingerprint import FingerprintConfig, MinHasher
from fingerprint.fingerprinter import Fingerprints
from fingerprint.records import ResponseRecord
from index import segment_writer as segment_module
from index.codes import one_bit_codes
from index.search import search_embeddings, search_minhash
from index.segment import Segment
from index.segment_writer import (SegmentWriter, embedding_index_name, ivf_lists,
                                  pq_subquantizers)

ROWS, DIM, STYLE = 3000, 64, 2**10


def texts(rng: np.random.Generator, n: int) -> list[str]:
    vocab = [f"w{i}" for i in range(5000)]
    return [" ".join(rng.choice(vocab, size=60)) for _ in range(n)]


def edited(text: str, rng: np.random.Generator, share: float) -> str:
    words = text.split()
    for i in rng.choice(len(words), size=int(share * len(words)), replace=False):
        words[i] = f"edit{rng.integers(1_000_000)}"
    return " ".join(words)


def clustered_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = rng.normal(size=(50, DIM))
    x = centres[rng.integers(50, size=n)] + 0.5 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def large_segment(tmp_path_factory):
    rng = np.random.default_rng(7)
    docs = texts(rng, ROWS)
    vectors = clustered_vectors(rng, ROWS)
    hasher = MinHasher(FingerprintConfig())
    directory = tmp_path_factory.mktemp("scale") / "seg"
    patch = pytest.MonkeyPatch()
    patch.setattr(segment_module, "ANN_MIN_ROWS", 1000)
    writer = SegmentWriter(directory, "seg", first_row=500, num_perm=128, embedding_dim=DIM,
                           style_features=STYLE, store_text=False)
    for start in range(0, ROWS, 700):  # several blocks: the .npy files grow as rows stream in
        chunk = slice(start, start + 700)
        n = len(docs[chunk])
        records = [ResponseRecord(id=f"r{start + i}", response=docs[start + i], prompt=None,
                                  source="gen", line=start + i + 1) for i in range(n)]
        prints = Fingerprints(hasher.signatures(docs[chunk]), vectors[chunk],
                              sparse.random(n, STYLE, density=0.01, format="csr",
                                            dtype=np.float32, random_state=start))
        writer.add(records, prints, [None] * n)
    entry = writer.finish(0, 0)
    patch.undo()
    return Segment(directory, entry, 128, STYLE), docs, vectors, hasher, rng


def test_large_segment_records_approximate_index_types(large_segment):
    seg, docs, vectors, hasher, _ = large_segment
    nlist = ivf_lists(ROWS)
    m = pq_subquantizers(DIM)
    assert seg.entry.embedding_index == embedding_index_name(nlist, m) == "RR,IVF256,PQ32x4fs(L2)"
    index = seg.embedding_index
    assert isinstance(faiss.downcast_index(faiss.extract_index_ivf(index).quantizer),
                      faiss.IndexFlatL2)  # queries find their lists exactly
    assert seg.entry.minhash_index == "Bands3(minhash values)"
    assert "minhash_bands.npy" in seg.files and "minhash_codes.faiss" not in seg.files
    assert seg.approximate
    assert np.array_equal(seg.signatures, hasher.signatures(docs))  # streamed blocks, in order
    assert np.allclose(seg.embeddings(np.arange(ROWS)), vectors, atol=1e-3)
    assert seg.style.shape == (ROWS, STYLE)


def test_approximate_embedding_search_recalls_exact_neighbours(large_segment):
    seg, _, vectors, _, rng = large_segment
    queries = clustered_vectors(rng, 200)
    hits = search_embeddings([seg], queries, k=10)
    exact = np.argsort(-(queries @ seg.embeddings(np.arange(ROWS)).T), axis=1)[:, :10] + 500
    recall = np.mean([len(set(h) & set(e)) / 10 for h, e in zip(hits.rows, exact)])
    assert recall >= 0.9
    # reported scores are exact cosines of the stored vectors, not PQ approximations
    stored = seg.embeddings(hits.rows - 500)
    assert np.allclose(hits.scores, np.einsum("qkd,qd->qk", stored, queries), atol=1e-5)


def test_more_probed_lists_find_more_and_probing_all_is_exact(large_segment):
    seg, _, _, _, rng = large_segment
    queries = clustered_vectors(rng, 100)
    exact = np.argsort(-(queries @ seg.embeddings(np.arange(ROWS)).T), axis=1)[:, :10] + 500

    def recall(nprobe):
        hits = search_embeddings([seg], queries, k=10, nprobe=nprobe)
        return np.mean([len(set(h) & set(e)) / 10 for h, e in zip(hits.rows, exact)])

    few, every = recall(1), recall(ivf_lists(ROWS))
    assert few < 0.8 < every  # the candidates of every list, re-ranked exactly
    assert every >= 0.99
    with pytest.raises(ValueError, match="nprobe"):
        search_embeddings([seg], queries, k=10, nprobe=0)


def test_default_probes_follow_the_number_of_lists():
    from index.search import default_nprobe

    assert default_nprobe(4096) == 256 and default_nprobe(16384) == 1024
    assert default_nprobe(1024) == 64 and default_nprobe(16) == 16


def test_compiled_cosines_equal_numpy_on_half_precision_rows():
    from index.scan_kernels import HALF_TO_FLOAT, candidate_cosines

    rng = np.random.default_rng(3)
    stored = rng.normal(size=(500, 48)).astype(np.float16)
    queries = rng.normal(size=(7, 48)).astype(np.float32)
    candidates = rng.integers(-1, 500, size=(7, 30))
    out = np.empty(candidates.shape, dtype=np.float32)
    candidate_cosines(stored.view(np.uint16), HALF_TO_FLOAT, queries, candidates, out)
    expected = np.einsum("qkd,qd->qk", stored[candidates].astype(np.float32), queries)
    assert np.array_equal(out == -np.inf, candidates < 0)
    assert np.allclose(out[candidates >= 0], expected[candidates >= 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", ["exact scan", "1-bit codes", "bands"])
def test_minhash_search_finds_near_duplicates_with_exact_scores(large_segment, path, monkeypatch):
    from index import search

    seg, docs, _, hasher, _ = large_segment
    rng = np.random.default_rng(11)
    if path != "exact scan":
        monkeypatch.setattr(search, "EXACT_SCAN_ROWS", 0)  # take a candidate path
    if path == "1-bit codes":  # a segment between the two thresholds: flat binary index
        monkeypatch.setattr(type(seg), "approximate", property(lambda s: False))
        codes = faiss.IndexBinaryFlat(128)
        codes.add(one_bit_codes(np.asarray(seg.signatures)))
        monkeypatch.setitem(seg.__dict__, "code_index", codes)
    sources = rng.choice(ROWS, size=100, replace=False)
    queries = hasher.signatures([edited(docs[i], rng, 0.1) for i in sources])
    hits = search_minhash([seg], queries, k=5)
    found = np.mean(hits.rows[:, 0] == sources + 500)
    if path == "bands":
        # LSH with 3 bands of one value finds a pair at Jaccard J with probability 1-(1-J)^3
        # (about 0.9 for these edits, J ~ 0.55)
        jaccard = np.mean(seg.signatures[sources] == queries, axis=1)
        assert found >= np.mean(1 - (1 - jaccard) ** 3) - 0.08
    else:
        assert found >= 0.95
    answered = hits.rows[:, 0] >= 0  # bands can find no candidate at all (score -inf)
    best = hits.rows[answered, 0] - 500
    assert np.allclose(hits.scores[answered, 0],
                       np.mean(seg.signatures[best] == queries[answered], axis=1))


def test_small_segments_stay_exact(tmp_path):
    writer = SegmentWriter(tmp_path / "small", "small", 0, 128, DIM, STYLE, False)
    rng = np.random.default_rng(1)
    docs = texts(rng, 10)
    prints = Fingerprints(MinHasher(FingerprintConfig()).signatures(docs),
                          clustered_vectors(rng, 10), sparse.csr_matrix((10, STYLE),
                                                                        dtype=np.float32))
    writer.add([ResponseRecord(id=str(i), response=d, prompt=None, source="s", line=i)
                for i, d in enumerate(docs)], prints, [None] * 10)
    entry = writer.finish(0, 0)
    assert (entry.embedding_index, entry.minhash_index) == ("Flat(inner product)",
                                                            "BinaryFlat(1-bit minhash)")


def test_ivf_sizes_follow_the_number_of_rows():
    assert ivf_lists(100_000) == 1024 and ivf_lists(1_000_000) == 4096
    assert ivf_lists(10_000_000) == 16384
    assert pq_subquantizers(384) == 128 and pq_subquantizers(256) == 128
    assert pq_subquantizers(64) == 32 and pq_subquantizers(6) == 2
