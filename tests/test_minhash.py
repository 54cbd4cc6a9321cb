import numpy as np
import pytest
import xxhash
from datasketch import LeanMinHash, MinHash
from datasketch.hashfunc import sha1_hash32
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerprint import FingerprintConfig, MinHasher, estimated_jaccard
from fingerprint.minhash import sha1_hash32_array
from fingerprint.minhash_kernels import xxh32_strings
from fingerprint.io import read_records
from fingerprint.shingles import word_shingles

HASHFUNCS = {"xxh32": xxhash.xxh32_intdigest, "sha1_32": sha1_hash32}


def datasketch_signature(shingles, num_perm=128, seed=1, hash_function="xxh32"):
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=HASHFUNCS[hash_function])
    m.update_batch([s.encode("utf-8") for s in shingles])
    return m


def hasher_for(hash_function, **kwargs):
    return MinHasher(FingerprintConfig(hash_function=hash_function, **kwargs))


@pytest.mark.parametrize("hash_function", sorted(HASHFUNCS))
@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.text(min_size=1, max_size=20), max_size=60), min_size=1, max_size=8),
       st.sampled_from([8, 64, 128, 256]), st.integers(0, 2**32 - 1))
def test_signatures_equal_datasketch_bit_for_bit(hash_function, shingle_sets, num_perm, seed):
    hasher = hasher_for(hash_function, num_perm=num_perm, seed=seed)
    ours = hasher.signatures_from_shingles(shingle_sets)
    assert ours.dtype == np.dtype("<u4") and ours.shape == (len(shingle_sets), num_perm)
    for row, shingles in zip(ours, shingle_sets):
        reference = datasketch_signature(shingles, num_perm, seed, hash_function)
        assert reference.hashvalues.dtype == np.uint32
        assert np.array_equal(row, reference.hashvalues)
        assert np.array_equal(row, LeanMinHash(reference).hashvalues)


# Text that exercises the compiled tokeniser: ASCII words, digits, underscores, punctuation and
# every kind of whitespace, next to non-ASCII letters, ligatures, full-width forms, combining marks,
# dashes and emoji (which NFKC, casefolding and \w treat in their own ways).
_ALPHABET = st.sampled_from(list("aZb9_ -.,;:!?'\"()[]#*\t\n\r\x0b\x0c\x00\x7f")
                            + ["é", "ß", "ﬁ", "Ａ", "ǅ", "İ", "\u0301", "—", "’", "\u00a0",
                               "\u2003", "😀", "中", "١", "ⅸ", "Σ", "ς", "\u200b"])
_TEXT = st.lists(st.one_of(_ALPHABET, st.sampled_from(["alpha", "Beta", "GAMMA", "δέλτα"])),
                 max_size=80).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=6), st.sampled_from([1, 2, 3, 5]))
def test_compiled_text_path_equals_datasketch_over_python_shingles(texts, shingle_size):
    hasher = hasher_for("xxh32", shingle_size=shingle_size, num_perm=64)
    ours = hasher.signatures(texts)
    for row, text in zip(ours, texts):
        shingles = word_shingles(text, shingle_size)
        assert np.array_equal(row, datasketch_signature(shingles, 64).hashvalues), (text, shingles)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=60), min_size=1,
                max_size=6))
def test_compiled_text_path_equals_datasketch_on_any_unicode(texts):
    """The kernel reads words through a code point table made from ``\\w`` itself: any code
    point, not only the alphabet above, splits words as the regular expression does."""
    hasher = hasher_for("xxh32", shingle_size=2, num_perm=32)
    for row, text in zip(hasher.signatures(texts), texts):
        assert np.array_equal(row, datasketch_signature(word_shingles(text, 2), 32).hashvalues)


def test_compiled_path_on_real_responses(alpacaeval):
    texts = [r.response for name in ("gemini-pro", "baize-v2-7b")  # many non-ASCII answers
             for r in read_records(alpacaeval / "outputs" / f"{name}.jsonl")]
    hasher = hasher_for("xxh32")
    ours = hasher.signatures(texts)
    for row, text in zip(ours, texts):
        assert np.array_equal(row, datasketch_signature(hasher.shingles(text)).hashvalues)


@given(st.lists(st.binary(max_size=70).map(lambda b: b.decode("latin-1")), max_size=30))
def test_xxh32_matches_the_reference_implementation(strings):
    # lengths 0..70 cross the 16-byte stripes, the 4-byte words and the byte tail of XXH32
    assert xxh32_strings(strings).tolist() == [xxhash.xxh32_intdigest(s.encode()) for s in strings]


def test_sha1_hash_matches_datasketch_hashfunc():
    shingles = ["a b c", "ünïcode ßhingle", "x"]
    assert sha1_hash32_array(shingles).tolist() == [sha1_hash32(s.encode()) for s in shingles]


@pytest.mark.parametrize("hash_function", sorted(HASHFUNCS))
def test_large_document_and_batch_chunking_give_the_same_values(hash_function):
    hasher = hasher_for(hash_function)
    big = " ".join(f"word{i}" for i in range(300_000))  # > one chunk of the hash matrix
    texts = [big, "", "  ...  ", "tiny", big[:5000]] + [f"text number {i} with words"
                                                       for i in range(300)]
    batch = hasher.signatures(texts)
    assert np.array_equal(
        batch[0], datasketch_signature(hasher.shingles(big), hash_function=hash_function).hashvalues)
    assert np.all(batch[1:3] == np.uint32(0xFFFFFFFF))  # no words: datasketch's empty MinHash
    for i in (3, 4, 150, 304):
        assert np.array_equal(batch[i], hasher.signatures([texts[i]])[0])


def test_hash_functions_give_different_but_equally_good_estimates():
    a = {f"s{i}" for i in range(1000)}
    b = {f"s{i}" for i in range(500, 1500)}  # true Jaccard 1/3
    estimates = {}
    for name in HASHFUNCS:
        sa, sb = hasher_for(name, num_perm=256).signatures_from_shingles([a, b])
        assert abs(estimated_jaccard(sa, sb) - 1 / 3) < 0.08
        assert estimated_jaccard(sa, sa) == 1.0
        estimates[name] = sa
    assert not np.array_equal(estimates["xxh32"], estimates["sha1_32"])
