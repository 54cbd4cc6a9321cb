"""Style fingerprints: what a student inherits from its teacher is mostly idiosyncrasy.

Distilled students rarely copy their teacher's answers, but they do pick up its word choice,
stock phrases, punctuation and formatting habits (Sun et al. 2025, "Idiosyncrasies in Large
Language Models"). A style fingerprint keeps exactly that, per response, in a form that needs no
vocabulary fitted on any particular models and so can be stored once and compared forever:
hashed counts of token unigrams and bigrams.

Version 1, applied in this order:
1. Unicode NFKC and case folding (as the text normaliser, but whitespace is *not* collapsed);
2. tokens: runs of word characters (``\\w+``), every other non-space character on its own
   (punctuation, markdown, emoji), and every newline, so list and paragraph layout is kept;
3. features: every token and every pair of consecutive tokens, as ``token`` and ``a b``;
4. each feature is hashed with MurmurHash3 (32-bit, seed 0, scikit-learn's implementation) into
   ``style_features`` buckets; the value is the count.
No feature list is chosen by hand: which features matter is learned per provider at attribution
time, against reference models.

The config's ``style_extras`` may add named feature sets to these counts (fingerprint.style_extras:
openings and closings, function-word templates), hashed into the same buckets; "" (the default,
and what every index built before it existed holds) adds none.

``StyleVectorizer`` computes these counts with a compiled kernel (fingerprint.style_kernels, about
ten times faster); ``reference_transform`` is the same definition through scikit-learn's
HashingVectorizer, kept as the reference the kernel is tested against bucket for bucket.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import numpy as np

from fingerprint.errors import ConfigError
from fingerprint.folding import FoldedTexts, char_classes, fold, fold_texts
from fingerprint.style_extras import extra_counts, parse_extras

STYLE_VERSIONS = frozenset({1})
COUNT_DTYPE = np.dtype("<f4")
INDEX_DTYPE = np.dtype("<i4")

_TOKEN = re.compile(r"\w+|[^\w\s]|\n")


def style_tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def style_features(text: str) -> list[str]:
    tokens = style_tokens(text)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


class StyleVectorizer:
    """Texts to a CSR matrix of hashed feature counts (rows: texts, columns: buckets)."""

    def __init__(self, n_features: int, version: int = 1, extras: str = ""):
        if version not in STYLE_VERSIONS:
            raise ConfigError(f"unknown style version {version}")
        self.n_features = n_features
        self.version = version
        self.extras = parse_extras(extras)
        self._hasher = None

    def transform(self, texts: Sequence[str]):
        """scipy.sparse CSR (len(texts), n_features), float32 counts, sorted indices."""
        return self.transform_folded(fold_texts(texts))

    def transform_folded(self, folded: FoldedTexts):
        """``transform`` of texts already folded (fingerprint.folding), as the fingerprinter
        folds a batch once for MinHash and style."""
        from scipy.sparse import csr_matrix

        from fingerprint.style_kernels import style_counts

        indptr, indices, counts = style_counts(folded.codes, folded.offsets, char_classes(),
                                               self.n_features)
        if indptr[-1] < 2**31:
            indptr = indptr.astype(np.int32)
        matrix = csr_matrix((counts, indices, indptr), shape=(len(folded), self.n_features))
        if not self.extras:
            return matrix
        texts = [folded.codes[a:b].tobytes().decode("utf-32-le", "surrogatepass")
                 for a, b in zip(folded.offsets[:-1], folded.offsets[1:])]
        matrix = matrix + extra_counts(texts, self.extras, self.n_features)
        matrix.sort_indices()
        return matrix

    def reference_transform(self, texts: Sequence[str]):
        """The same matrix through scikit-learn (slow: the definition the kernel is tested
        against)."""
        if self._hasher is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._hasher = HashingVectorizer(analyzer=style_features, n_features=self.n_features,
                                             alternate_sign=False, norm=None,
                                             dtype=np.float32)
        matrix = self._hasher.transform(list(texts)).tocsr()
        if self.extras:
            matrix = matrix + extra_counts([fold(t) for t in texts], self.extras, self.n_features)
        matrix.sort_indices()
        return matrix
