"""Privacy of shared bundles (issue 16): without the consortium key the signatures in a bundle do
not tell whether a given text is in it, with the key they do; and no bundle kind the toolkit
writes holds served text (responses or prompts) except with --include-text.

The guessing attack: the attacker holds 200 candidate texts, 100 of which (chosen at random) are
in the producer's bundle, and scores each candidate against every bundle row; knowing that half
are in, it calls the 100 best-scoring candidates "in" (ties broken at random), so without
information its accuracy is 0.5 with the spread of a binomial(200, 1/2) / 200 (sd 0.035). The
bound below is that binomial's two-sided 1e-6 quantile, so a correct implementation fails it
about once in a million runs per attack (the consortium key is new at every run). Attacks
without the key: (1) public-seed MinHash of each candidate (what an index holds and what a
public-seed bundle would leak), best fraction of equal values over the rows; (2) the same with
keyed MinHash under a key of the attacker's own; (3) a length attack: a MinHash row's values
reveal roughly how many distinct shingles the text has, so the attacker compares the mean of
each row with the mean of its own keyed signature of the candidate. The control: run on the
public-seed signatures of the same rows, attack (1) is right about every candidate, which is
what shows the test can fail.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import TOPICS, served_text, write_jsonl
from sharing_helpers import export, make_keys, ok

CANDIDATES = 200
FAILURE = 1e-6


def chance_bound(n: int, failure: float) -> float:
    """Half-width of the accuracy interval around 0.5 that a binomial(n, 1/2) leaves with
    probability ``failure`` (two-sided)."""
    tail, k = 0.0, n
    while True:
        tail += math.comb(n, k) / 2 ** n
        if 2 * tail > failure:
            return (k + 1) / n - 0.5
        k -= 1


def top_half_accuracy(scores: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> float:
    """Call the best-scoring half "in" (random order among ties); the fraction called right."""
    order = np.lexsort((rng.random(len(scores)), -scores))
    called = np.zeros(len(scores), bool)
    called[order[:len(scores) // 2]] = True
    return float((called == truth).mean())


def best_match(candidates: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per candidate, the largest fraction of equal values with any bundle row."""
    return np.array([(rows == c).mean(axis=1).max() for c in candidates])


@pytest.fixture(scope="module")
def setting(tmp_path_factory, fingerprinter):
    """An index of 100 of the 200 candidates (chosen at random), its bundle, and the keys."""
    from index import build_index

    tmp = tmp_path_factory.mktemp("privacy")
    keys = make_keys(tmp)
    rng = np.random.default_rng(16)
    texts = [served_text(i) for i in range(CANDIDATES)]
    members = np.zeros(CANDIDATES, bool)
    members[rng.permutation(CANDIDATES)[:CANDIDATES // 2]] = True
    rows = [{"id": f"resp-{i}", "prompt": f"Tell me about {TOPICS[i % len(TOPICS)]} ({i})",
             "response": texts[i], "model": "provider-1", "account": f"acct-{i % 3}"}
            for i in np.flatnonzero(members)]
    build_index(tmp / "idx", [write_jsonl(tmp / "served.jsonl", rows)], fingerprinter)
    export(tmp / "idx", keys, tmp / "acme.bundle")
    with zipfile.ZipFile(tmp / "acme.bundle") as zf:
        signatures = np.frombuffer(zf.read("signatures.bin"), "<u4").reshape(len(rows), -1)
    return {"tmp": tmp, "keys": keys, "texts": texts, "members": members, "rows": signatures}


def attacks_without_the_key(setting) -> dict[str, np.ndarray]:
    from fingerprint import MinHasher
    from index import open_index
    from sharing import KeyedMinHasher

    with open_index(setting["tmp"] / "idx") as index:
        config = index.config
    rows, texts = setting["rows"], setting["texts"]
    wrong = [KeyedMinHasher(config, bytes([k]) * 32).signatures(texts) for k in range(4)]
    own_means = np.mean([w.astype(float).mean(axis=1) for w in wrong], axis=0)
    row_means = rows.astype(float).mean(axis=1)
    return {"public-seed": best_match(MinHasher(config).signatures(texts), rows),
            "wrong key": best_match(wrong[0], rows),
            "length": -np.abs(row_means[None, :] - own_means[:, None]).min(axis=1)}


def test_without_the_key_a_guessing_attack_does_no_better_than_chance(setting):
    bound = chance_bound(CANDIDATES, FAILURE)
    assert 0.15 < bound < 0.2
    rng = np.random.default_rng(0)
    for name, scores in attacks_without_the_key(setting).items():
        accuracy = top_half_accuracy(scores, setting["members"], rng)
        assert abs(accuracy - 0.5) <= bound, (name, accuracy, bound)


def test_with_the_key_the_same_attack_finds_every_member(setting):
    from index import open_index
    from sharing import KeyedMinHasher, load_consortium_key

    secret = load_consortium_key(setting["keys"]["consortium"]).secret
    with open_index(setting["tmp"] / "idx") as index:
        keyed = KeyedMinHasher(index.config, secret).signatures(setting["texts"])
    scores = best_match(keyed, setting["rows"])
    assert top_half_accuracy(scores, setting["members"], np.random.default_rng(0)) == 1.0
    assert (scores[setting["members"]] == 1).all() and (scores[~setting["members"]] < 1).all()


def test_the_attack_can_fail_it_finds_every_member_of_public_seed_signatures(setting):
    from index import open_index

    with open_index(setting["tmp"] / "idx") as index:
        public = index.signatures(list(range(len(index))))
        from fingerprint import MinHasher

        guesses = MinHasher(index.config).signatures(setting["texts"])
    scores = best_match(guesses, public)
    assert top_half_accuracy(scores, setting["members"], np.random.default_rng(0)) == 1.0


# --- no served text in any bundle kind -------------------------------------------------------

def windows(text: str, n: int = 5) -> set[str]:
    words = text.split()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def bundle_bytes(path: Path) -> bytes:
    """The file's bytes and every member's bytes, decompressed (deflate hides text from a grep
    of the file alone)."""
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
        return path.read_bytes() + b"".join(zf.read(n) for n in zf.namelist())


def test_no_bundle_kind_holds_served_text_except_with_include_text(built_index, served_file,
                                                                  tmp_path):
    from index import AccountMark, mark_accounts

    (tmp_path / "k").mkdir()
    keys = make_keys(tmp_path / "k")
    served = [json.loads(line) for line in served_file.read_text().splitlines()]
    risk = write_jsonl(tmp_path / "risk.jsonl", [{"account": a, "risk": 0.9, "flagged": True}
                                                 for a in ("acct-0", "acct-1")])
    mark_accounts(built_index, "monitor-flagged", [AccountMark("acct-1", 1.0, "risk.jsonl")])
    kinds = {"plain": (), "accounts": ("--accounts", risk),
             "prompts": ("--accounts", risk, "--requests", served_file),
             "marked": ("--select", "marked:monitor-flagged"),
             "since": ("--select", "since:2026-11-10", "--accounts", risk)}
    probes = set()
    for row in served:
        probes |= windows(row["response"]) | {row["prompt"], row["id"], row["account"]}
    for kind, extra in kinds.items():
        out = tmp_path / f"{kind}.bundle"
        export(built_index, keys, out, *extra)
        ok("share", "import", out, "--trust", keys["partners"], "--into", tmp_path / "in")
        blob = bundle_bytes(out)
        found = sorted(p for p in probes if p.encode() in blob)
        assert found == [], (kind, found[:5])
    stored = b"".join(p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file())
    assert not [p for p in probes if p.encode() in stored]
    out = tmp_path / "text.bundle"
    export(built_index, keys, out, "--include-text")
    blob = bundle_bytes(out)
    assert all(w.encode() in blob for row in served for w in windows(row["response"]))
    assert not [row["prompt"] for row in served if row["prompt"].encode() in blob]
