import numpy as np
from datasketch import LeanMinHash, MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerprint import FingerprintConfig, MinHasher, estimated_jaccard
from fingerprint.minhash import sha1_hash32_array
from datasketch.hashfunc import sha1_hash32


def datasketch_signature(shingles, num_perm=128, seed=1):
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch([s.encode("utf-8") for s in shingles])
    return m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(st.text(min_size=1, max_size=20), max_size=60), min_size=1, max_size=8),
       st.sampled_from([8, 64, 128, 256]), st.integers(0, 2**32 - 1))
def test_signatures_equal_datasketch_bit_for_bit(shingle_sets, num_perm, seed):
    hasher = MinHasher(FingerprintConfig(num_perm=num_perm, seed=seed))
    ours = hasher.signatures_from_shingles(shingle_sets)
    assert ours.dtype == np.dtype("<u4") and ours.shape == (len(shingle_sets), num_perm)
    for row, shingles in zip(ours, shingle_sets):
        reference = datasketch_signature(shingles, num_perm, seed)
        assert reference.hashvalues.dtype == np.uint32
        assert np.array_equal(row, reference.hashvalues)
        assert np.array_equal(row, LeanMinHash(reference).hashvalues)


def test_texts_go_through_shingles_then_the_same_hashing():
    hasher = MinHasher(FingerprintConfig())
    text = "MinHash estimates the Jaccard similarity of two sets of shingles."
    assert np.array_equal(hasher.signatures([text])[0],
                          datasketch_signature(hasher.shingles(text)).hashvalues)


def test_sha1_hash_matches_datasketch_hashfunc():
    shingles = ["a b c", "ünïcode ßhingle", "x"]
    assert sha1_hash32_array(shingles).tolist() == [sha1_hash32(s.encode()) for s in shingles]


def test_large_document_and_batch_chunking_give_the_same_values():
    hasher = MinHasher(FingerprintConfig())
    big = " ".join(f"word{i}" for i in range(300_000))  # > one chunk of the hash matrix
    texts = [big, "", "tiny", big[:5000]] + [f"text number {i} with words" for i in range(300)]
    batch = hasher.signatures(texts)
    assert np.array_equal(batch[0], datasketch_signature(hasher.shingles(big)).hashvalues)
    assert np.all(batch[1] == np.uint32(0xFFFFFFFF))  # empty set: datasketch's empty MinHash
    for i in (2, 3, 150, 303):
        assert np.array_equal(batch[i], hasher.signatures([texts[i]])[0])


def test_estimated_jaccard_tracks_true_jaccard():
    hasher = MinHasher(FingerprintConfig(num_perm=256))
    a = {f"s{i}" for i in range(1000)}
    b = {f"s{i}" for i in range(500, 1500)}  # true Jaccard 1/3
    sa, sb = hasher.signatures_from_shingles([a, b])
    assert abs(estimated_jaccard(sa, sb) - 1 / 3) < 0.08
    assert estimated_jaccard(sa, sa) == 1.0
