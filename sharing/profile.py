"""The style profile part: what teacher identification knows a provider by, without its text.

Attribution recognises a provider by the style rows of its served responses (fingerprint.style:
hashed counts of every token and every pair of adjacent tokens, 2**18 buckets by default) and
fits its classifier on the answers to the suspect's prompts (attribution.classes). A bundle's
style profile therefore holds, for the exported responses (the export's selection, an even
spread of at most ``--style-rows``), exactly those rows, in index order, each with a keyed
pairing key for its prompt: ``HMAC(consortium subkey, public prompt hash)``. A recipient holding
the consortium key computes the same key from the public prompt hash of its suspect's and its
references' prompts (which it stores anyway), so it pairs by prompt as the provider's own index
would, and nobody without the key can test a guessed prompt. Given every row and every
feature (K=1 below), the recipient's ranking equals the one the raw index gives (a test checks
it).

Can a style row leak text? A row is a bag of unigram and bigram counts. The buckets are
MurmurHash3 with a public seed, so anyone with a dictionary can hash every candidate word and
bigram and read off which occur (at 2**18 buckets a dictionary word rarely collides), and the
bigrams chain words into phrases: the content of an answer, in large part, though not its text.
The defences, with their limits:
- Outsiders (anyone who obtains the bundle file without the consortium key): the bucket columns
  are permuted by a keyed permutation (the order of the buckets by keyed BLAKE2b of their
  number), so a dictionary lookup finds nothing (a test shows it). This is a substitution over
  262,144 symbols, not encryption: counting how often each column occurs over many rows can
  name the commonest features (punctuation, function words); rare content words stay unnamed.
- Partners (who hold the key and must compute the same features for their suspect): they can
  undo the permutation, so the profile keeps only features found in the exported answers to
  at least ``min_feature_responses`` (K, ``--min-feature-responses``, 20 by default) different
  prompts (common_features: prompts, not rows, are counted). What makes an answer's content
  identifiable (names, numbers, topic words and their pairs) is rare; style (function words,
  punctuation, stock phrases, layout) is common. Measured on AlpacaEval (benchmarks/README.md,
  sharing.py at 120 prompts; tests/test_sharing_use.py): with every feature kept a key-holding
  partner reads every distinct word of every exported answer; at K=20 it reads 2.6% of their
  content words (words outside the 200 commonest; K=10: 13.8%), 0.2% for one model's 120
  answers in the test (bound: under 1%). What remains: each kept feature is readable, and says
  "this answer is among those to at least K prompts with this word", not what it says; but K
  is a count, not a share, so the more an export covers, the more topic words reach K (a word
  in answers to 20 of 20,000 prompts is kept), and longer answers keep more (the two-model
  GPT-4 family, 83 content words an answer: most of the 2.6%). Raise K, or export fewer rows,
  when that matters.
- Cost: the recipient compares every class on the features all partners kept
  (attribution.classes.comparable_features), so the ranking is no longer the one the raw
  indexes give, only close to it: at 120 prompts and K=20, top-1 equal for 12 of 14 models,
  mean Spearman 0.90, largest share difference 0.33, students' teacher right for 10 of 11
  (raw: 9); with K=1 it is equal (a test checks it). The style part shrinks from 1.31 MB to
  0.26 MB for the three bundles (unzipped).
- Pooling (``--style-pool G``, 1 by default): each row the sum of G answers to different
  prompts, so no row is one answer. Measured, it does not earn its cost: a pooled row still
  holds each of its answers' kept words (the partner reads them, without knowing which of the
  G wrote them), and pooled rows cannot be paired with the suspect's prompts (topic no longer
  cancels) and are a different kind of document from the single answers they are compared
  with: at 120 prompts, G=4 and K=10, top-1 equal to the raw ranking for 6 of 14 models,
  students' teacher right for 3 of 11. It stays an option, not the default.
The part is written as ``style.bin`` (CSR: indptr ``<i8`` rows+1, indices ``<i4``, data ``<f4``,
concatenated) and ``style.json`` (the pairing key of each row, or null), the manifest's
``style`` section stating the configuration a recipient must share and the array sizes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from attribution.classes import spread_rows
from sharing.errors import StyleConfigError
from sharing.keyed import subkey

STYLE_PROMPT_DOMAIN = b"fingerprint-share/style-prompt/v1"
STYLE_COLUMNS_DOMAIN = b"fingerprint-share/style-columns/v1"
PERMUTATION = "blake2b-keyed-sort/v1"
DEFAULT_STYLE_ROWS = 20000
DEFAULT_MIN_FEATURE_RESPONSES = 20
DEFAULT_POOL = 1
CONFIG_FIELDS = ("style_version", "style_features", "normalizer_version")


def style_prompt_key(secret: bytes, public_hash: str) -> str:
    """The pairing key of a prompt in style profiles: keyed HMAC of its public prompt hash."""
    return hmac.new(subkey(secret, STYLE_PROMPT_DOMAIN), public_hash.encode("ascii"),
                    hashlib.sha256).hexdigest()[:32]


@lru_cache(maxsize=4)
def column_permutation(secret: bytes, n_features: int) -> np.ndarray:
    """Bucket b is written as column ``permutation[b]``: the buckets sorted by keyed BLAKE2b
    of their number (the same on every machine, whatever numpy's random streams)."""
    key = subkey(secret, STYLE_COLUMNS_DOMAIN)
    digests = b"".join(hashlib.blake2b(int(b).to_bytes(4, "little"), key=key,
                                       digest_size=8).digest() for b in range(n_features))
    order = np.argsort(np.frombuffer(digests, dtype="<u8"), kind="stable")
    permutation = np.empty(n_features, dtype=np.int64)
    permutation[order] = np.arange(n_features)
    return permutation


def style_config(config: Any) -> dict[str, int]:
    return {name: int(getattr(config, name)) for name in CONFIG_FIELDS}


def common_features(matrix: Any, min_responses: int,
                    hashes: Sequence[str | None] | None = None) -> Any:
    """``matrix`` with every feature (column) removed that occurs in answers to fewer than
    ``min_responses`` different prompts (``hashes``, one per row; a row without one counts as
    its own prompt; None: every row its own). What identifies one answer's content (names,
    numbers, topic words and their pairs) is rare; a provider's style is common. Prompts, not
    rows, are counted because a prompt asked again (or answered by two versions of a model)
    brings its topic words back each time: counting rows, a topic word of a prompt answered
    ten times would pass K=10 (measured: a family of two models answering 120 prompts gave a
    key-holding partner 30% of its content words at K=10, counting rows; 19%, counting
    prompts)."""
    from scipy import sparse

    if min_responses <= 1:
        return matrix
    keys = [h if h is not None else i for i, h in enumerate(hashes or [None] * matrix.shape[0])]
    group = {k: g for g, k in enumerate(dict.fromkeys(keys))}
    rows = np.array([group[k] for k in keys], dtype=np.int64)
    present = sparse.csr_matrix((np.ones(matrix.nnz, dtype=np.int32), matrix.indices.copy(),
                                 matrix.indptr.copy()), shape=matrix.shape)
    by_prompt = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32),
                                   (rows, np.arange(len(rows)))),
                                  shape=(len(group), len(rows))) @ present
    counts = np.bincount(by_prompt.tocsr().indices, minlength=matrix.shape[1])
    kept = matrix.copy()
    kept.data[counts[kept.indices] < min_responses] = 0
    kept.eliminate_zeros()
    return kept


def pool_members(hashes: Sequence[str | None], pool: int) -> np.ndarray:
    """The pooled row each row goes into, ``pool`` rows to a pooled row, answers to different
    prompts where the rows allow it: sorted by prompt hash, pooled row j takes sorted rows
    j, j + m, j + 2m, ... (m pooled rows), so equal prompts, adjacent after sorting, part."""
    order = sorted(range(len(hashes)), key=lambda i: (hashes[i] or "", i))
    member = np.empty(len(order), dtype=np.int64)
    member[order] = np.arange(len(order)) % -(-len(order) // pool)
    return member


def pooled_rows(matrix: Any, hashes: Sequence[str | None], pool: int) -> Any:
    """Rows summed ``pool`` at a time (pool_members)."""
    from scipy import sparse

    member = pool_members(hashes, pool)
    summing = sparse.csr_matrix((np.ones(len(member), dtype=np.float32),
                                 (member, np.arange(len(member)))),
                                shape=(int(member.max()) + 1, len(member)))
    out = (summing @ matrix).tocsr()
    out.sort_indices()
    return out


def style_parts(index: Any, rows: Sequence[int], secret: bytes,
                limit: int = DEFAULT_STYLE_ROWS,
                min_feature_responses: int = DEFAULT_MIN_FEATURE_RESPONSES,
                pool: int = DEFAULT_POOL) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The style part of the selected rows (an even spread of at most ``limit``), features in
    fewer than ``min_feature_responses`` of them removed and rows summed ``pool`` at a time,
    and its manifest section; nothing when no row is selected."""
    chosen = spread_rows(sorted(rows), limit)
    if not chosen:
        return {}, {}
    by_row: dict[int, str] = {}
    for h, hash_rows in index.prompt_hashes().items():
        for row in hash_rows:
            by_row[row] = h
    hashes = [by_row.get(r) for r in chosen]
    matrix = common_features(index.style(chosen).tocsr(), min_feature_responses, hashes)
    if pool > 1:
        matrix, keys = pooled_rows(matrix, hashes, pool), [None] * -(-len(chosen) // pool)
    else:
        keys = [style_prompt_key(secret, h) if h is not None else None for h in hashes]
    columns = column_permutation(secret, matrix.shape[1])[matrix.indices]
    data = (matrix.indptr.astype("<i8").tobytes() + columns.astype("<i4").tobytes()
            + matrix.data.astype("<f4").tobytes())
    section = {**style_config(index.config), "rows": len(keys), "nnz": int(matrix.nnz),
               "responses": len(chosen), "min_feature_responses": min_feature_responses,
               "pool": pool, "permutation": PERMUTATION,
               "prompt_key": "hmac-sha256-style-prompt/v1"}
    return ({"style.bin": data, "style.json": json.dumps(keys, separators=(",", ":"))
             .encode("utf-8")}, section)


def read_style(name: str, manifest: dict[str, Any], parts: dict[str, bytes], secret: bytes,
               expected: dict[str, int]) -> tuple[Any, list[str | None]] | None:
    """The profile's rows (CSR, columns back in the public bucket order) and pairing keys, or
    None when the bundle has none; refuses a style config other than ``expected``."""
    from scipy import sparse

    section = manifest.get("style")
    if not section or "style.bin" not in parts:
        return None
    actual = {k: section.get(k) for k in CONFIG_FIELDS}
    if actual != expected or section.get("permutation") != PERMUTATION:
        raise StyleConfigError(f"{name}: style profile made with {actual} "
                               f"({section.get('permutation')}), your index uses {expected} "
                               f"({PERMUTATION}): its rows cannot be compared with yours")
    rows, nnz, width = section.get("rows"), section.get("nnz"), expected["style_features"]
    data = parts["style.bin"]
    try:
        keys = json.loads(parts.get("style.json", b"").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        keys = None
    if not (isinstance(rows, int) and isinstance(nnz, int) and rows >= 0 and nnz >= 0
            and len(data) == 8 * (rows + 1) + 8 * nnz and isinstance(keys, list)
            and len(keys) == rows and all(k is None or isinstance(k, str) for k in keys)):
        raise StyleConfigError(f"{name}: style.bin/style.json do not hold the {rows} rows and "
                               f"{nnz} values the manifest states")
    indptr = np.frombuffer(data, "<i8", rows + 1)
    columns = np.frombuffer(data, "<i4", nnz, offset=8 * (rows + 1))
    values = np.frombuffer(data, "<f4", nnz, offset=8 * (rows + 1) + 4 * nnz)
    if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0) or \
            (nnz and (columns.min() < 0 or columns.max() >= width)):
        raise StyleConfigError(f"{name}: style.bin is not a ({rows} x {width}) sparse matrix")
    inverse = np.argsort(column_permutation(secret, width))
    matrix = sparse.csr_matrix((values.astype(np.float32), inverse[columns].astype(np.int32),
                                indptr.astype(np.int64)), shape=(rows, width))
    matrix.sort_indices()
    return matrix, keys
