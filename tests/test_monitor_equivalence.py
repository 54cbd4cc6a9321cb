"""The online monitor made faster and smaller without changing a result: every figure the
optimised code gives is compared with the code it replaced, kept here as the reference (the
versions of monitor.skeleton, monitor.detector.is_reuse, the static embedding and the RFF of
commit 3af4e39).

- the small simulated traffic (real prompt text, tests/monitor_fixtures.py) scored request
  by request both ways: every assessment (risk, p-value, flag, reasons, activity), every reuse
  flag and, per account, the RFF sums, signature rings, skeleton edges, template counts, and the
  state after a ``to_bytes``/``from_bytes`` round trip are the same, bit for bit;
- the embeddings of the traffic's prompts, one by one and in batches, equal the tokenizers
  library's ids summed and normalised as before (this is also what fitting a baseline uses);
- the skeleton on random prompts built to share prefixes and suffixes, and ``is_reuse`` at every
  count of matches and awkward thresholds;
- a decoded account with long prompts takes at most 20 KB (issue 15's goal; it took ~55 KB).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import monitor.scoring
from fingerprint.embed import load_backend
from fingerprint.embed_model import (EMBEDDING_DTYPE, clip, load_tokenizer,
                                     local_model_dir)
from monitor import AccountScorer, MonitorConfig
from monitor.detector import STATE_FORMAT, AccountState, conversation_key, is_reuse
from monitor.errors import StateEntryError
from monitor.features import PromptFeatures
from monitor.requests import parse_timestamp
from monitor.skeleton import (EDGE_WORDS, ID_MIN_WORDS, ID_WORDS, MIN_SKELETON_WORDS, RECENT,
                              TEMPLATES_KEPT, Skeleton)

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline(_dir)

REQUESTS = 1200  # the log's first requests in time order: campaigns flagged among them


# -- the reference: the code before the optimisation, verbatim but for names ---------------

_WORD = re.compile(r"\S+")


def _reference_id(edge: str, words: list[str]) -> str:
    text = edge + "\x1e" + "\x1f".join(words)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _reference_common(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ReferenceSkeleton:
    def __init__(self):
        self.edges: list[tuple[list[str], list[str]]] = []
        self.templates: dict[str, int] = {}
        self.filled = 0

    def strip(self, prompt: str) -> str:
        words = _WORD.findall(prompt)
        best = (0, 0)
        for head, tail in self.edges:
            front = _reference_common(words, head)
            back = _reference_common(list(reversed(words[front:])), list(reversed(tail)))
            if front + back > sum(best):
                best = (front, back)
        self.edges.append((words[:EDGE_WORDS], words[-EDGE_WORDS:]))
        del self.edges[:-RECENT]
        front, back = best
        if front + back >= MIN_SKELETON_WORDS and len(words) > front + back:
            self.filled += 1
            if front >= ID_MIN_WORDS:
                self._count(_reference_id("prefix", words[:front][:ID_WORDS]))
            if back >= ID_MIN_WORDS:
                self._count(_reference_id("suffix", words[len(words) - back:][-ID_WORDS:]))
            return " ".join(words[front:len(words) - back])
        self.filled += self._known(words)
        return prompt

    def _known(self, words: list[str]) -> bool:
        if not self.templates:
            return False
        found = False
        for k in range(ID_MIN_WORDS, ID_WORDS + 1):
            if len(words) <= k:
                break
            for tid in (_reference_id("prefix", words[:k]), _reference_id("suffix", words[-k:])):
                if tid in self.templates:
                    self.templates[tid] += 1
                    found = True
        return found

    def _count(self, tid: str) -> None:
        if tid in self.templates or len(self.templates) < TEMPLATES_KEPT:
            self.templates[tid] = self.templates.get(tid, 0) + 1
            return
        least = min(self.templates, key=lambda k: (self.templates[k], k))
        self.templates[tid] = self.templates.pop(least) + 1


def reference_is_reuse(recent, count, signature, threshold) -> bool:
    if count == 0:
        return False
    ring = recent[:min(count, len(recent))]
    return bool(np.max(np.mean(ring == signature, axis=1)) >= threshold)


def reference_reuse_and_distance(recent, count, signature, threshold):
    """Reuse as the float mean of equalities, and the distance from it, computed apart."""
    if count == 0:
        return False, None
    ring = recent[:min(count, len(recent))]
    return (reference_is_reuse(recent, count, signature, threshold),
            1.0 - float(np.max(np.mean(ring == signature, axis=1))))


def reference_embeddings(features: PromptFeatures, texts: list[str]) -> np.ndarray:
    """The tokenizers library's ids (no compiled WordPiece, no cache), each text's table rows
    summed as before, normalised with np.linalg.norm."""
    from fingerprint.wordpiece import row_sums

    embedder = features.embedder
    backend = load_backend(embedder.backend, embedder.model_name)
    tokenizer = load_tokenizer(local_model_dir(embedder.model_name, "static"),
                               embedder.max_tokens)
    max_tokens = embedder.max_tokens
    rows = [e.ids[1:-1] for e in tokenizer.encode_batch(clip(texts, max_tokens))]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    ids = np.array([i for r in rows for i in r], dtype=np.int32)
    sums = row_sums(ids, offsets, backend.table, backend.empty_row)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(sums / norms, dtype=EMBEDDING_DTYPE)


class ReferenceFeatures(PromptFeatures):
    def embed(self, prompts):
        return np.asarray(reference_embeddings(self, list(prompts)), dtype=np.float32)

    def rff(self, embeddings):
        weights, offsets = self._weights(embeddings.shape[1])
        out = np.cos(embeddings @ weights + offsets)
        out *= np.float32(np.sqrt(2.0 / self.config.rff_features))
        return out.astype(np.float32, copy=False)

    def signatures(self, prompts):
        # two texts or more take the batch packing, which the single-text path skips
        return self.minhasher.signatures(list(prompts) + ["", "x"])[:len(prompts)]


# -- the traffic -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def requests(traffic) -> list[tuple[str, str, float, int]]:
    rows = []
    with gzip.open(traffic / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            messages = row["request"]["messages"]
            rows.append((row["account"], messages[-1]["content"],
                         parse_timestamp(row["timestamp"]),
                         sum(m["role"] == "assistant" for m in messages[:-1]),
                         conversation_key(messages[0]["content"])))
    rows.sort(key=lambda r: r[2])
    return rows


def _fields(state: AccountState) -> dict:
    skeleton = state.skeleton
    edges = [(" ".join(h) if isinstance(h, list) else h, " ".join(t) if isinstance(t, list)
              else t) for h, t in skeleton.edges]
    return {"counts": (state.n, state.reuse_hits, state.recent_count, state.openings,
                       state.followed, state.turns_known, state.next_checkpoint,
                       state.flagged_at),
            "openings": (state.open_keys.tobytes(), state.open_followed.tobytes()),
            "figures": (state.risk, state.p_value, state.first_seen, state.last_seen),
            "reasons": state.reasons, "edges": edges, "templates": skeleton.templates,
            "filled": skeleton.filled, "rff": state.rff_sum.tobytes(),
            "recent": state.recent.tobytes(), "activity": state.activity.to_bytes()}


def test_the_traffic_scores_as_the_reference_scores_it(baseline, requests, monkeypatch):
    fast = AccountScorer(baseline)
    reference = AccountScorer(baseline, ReferenceFeatures(baseline.config, baseline.median))
    fast_states: dict[str, AccountState] = {}
    reference_states: dict[str, AccountState] = {}
    fast_seen, reference_seen = [], []
    for account, prompt, timestamp, turns, key in requests[:REQUESTS]:
        state = fast_states.setdefault(account, fast.new_state())
        reused = fast.score([(state, prompt, timestamp, turns, key)])
        fast_seen.append((reused, fast.assessment(account, state).to_dict()))
    with monkeypatch.context() as patch:
        patch.setattr(monitor.scoring, "reuse_and_distance", reference_reuse_and_distance)
        for account, prompt, timestamp, turns, key in requests[:REQUESTS]:
            if account not in reference_states:
                reference_states[account] = reference.new_state()
                reference_states[account].skeleton = ReferenceSkeleton()
            state = reference_states[account]
            reused = reference.score([(state, prompt, timestamp, turns, key)])
            reference_seen.append((reused, reference.assessment(account, state).to_dict()))

    assert fast_seen == reference_seen  # every risk, p-value, flag, reason and activity figure
    flagged = {a for a, s in fast_states.items() if s.flagged}
    assert flagged and len(flagged) < len(fast_states)  # the comparison covers both kinds
    assert sum(r[0] for r, _ in fast_seen) > 0  # and requests that reuse a template
    for account, state in fast_states.items():
        expected = _fields(reference_states[account])
        assert _fields(state) == expected, account
        back = AccountState.from_bytes(state.to_bytes(), baseline.config, fast.features.dim)
        assert _fields(back) == expected, account
        assert back.to_bytes() == state.to_bytes()


def test_embeddings_one_by_one_and_in_batches_equal_the_tokenizers_ones(baseline, requests):
    """Bit for bit, ASCII and non-ASCII prompts alike, and again once the cache of non-ASCII
    runs holds them."""
    features = baseline.features()
    prompts = [p for _, p, _, _, _ in requests[:1500]] + ["", " ", "\x00", "naïve café 文字 🙂"]
    assert 0 < sum(not p.isascii() for p in prompts) < len(prompts) // 2
    expected = reference_embeddings(features, prompts)
    for _ in range(2):
        one_by_one = np.concatenate([features.embed([p]) for p in prompts])
        assert one_by_one.tobytes() == expected.tobytes()
    batches = np.concatenate([features.embed(prompts[i:i + 64])
                              for i in range(0, len(prompts), 64)])
    assert batches.tobytes() == expected.tobytes()
    reference = ReferenceFeatures(baseline.config, baseline.median)
    assert features.rff(expected).tobytes() == reference.rff(expected).tobytes()
    assert np.array_equal(np.concatenate([features.signatures([p]) for p in prompts]),
                          reference.signatures(prompts))


# -- the skeleton and is_reuse on made-up inputs ---------------------------------------------

_WORDS = st.sampled_from(["a", "b", "ab", "ba", "the", "x\x00y", "é", "文字", "?", "a?",
                          "[CLS]", "\udcff"])
_GAPS = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u2003", "\x1c", " \r\n"])
_PROMPT = st.lists(st.tuples(_WORDS, _GAPS), max_size=60).map(
    lambda parts: "".join(w + g for w, g in parts)) | st.sampled_from(["", " ", "a"])
_TEMPLATE = st.tuples(st.lists(_WORDS, max_size=8), st.lists(_WORDS, max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), _PROMPT), min_size=1, max_size=40),
       st.lists(_TEMPLATE, min_size=4, max_size=4))
def test_a_skeleton_strips_and_counts_as_the_word_lists_did(fills, templates):
    """Prompts that fill a few templates (so that prefixes and suffixes are shared) with
    Unicode spaces, control characters, empty prompts and lone surrogates among them."""
    fast, reference = Skeleton(), ReferenceSkeleton()
    for which, filling in fills:
        head, tail = templates[which]
        prompt = " ".join(head) + " " + filling + " " + " ".join(tail)
        assert fast.strip(prompt) == reference.strip(prompt)
        assert fast.edges == [(" ".join(h), " ".join(t)) for h, t in reference.edges]
        assert (fast.templates, fast.filled) == (reference.templates, reference.filled)
    assert Skeleton.from_edges_text(fast.edges_text(), len(fast.edges)).edges == fast.edges


@pytest.mark.parametrize("perm", [8, 16, 24, 40])
@pytest.mark.parametrize("threshold", [1e-9, 0.1, 0.3, 1 / 3, 0.5, 0.6, 0.7, 0.7 + 1e-16,
                                       0.875, 0.9999999999999999, 1.0])
def test_is_reuse_gives_the_float_means_booleans_at_every_count(perm, threshold):
    ring = np.zeros((32, perm), dtype=np.uint32)
    signature = np.ones(perm, dtype=np.uint32)
    for matches in range(perm + 1):
        ring[5, :matches] = 1
        for count in (0, 5, 6, 40):
            assert is_reuse(ring, count, signature, threshold) == \
                reference_is_reuse(ring, count, signature, threshold), (matches, count)


# -- the stored state -----------------------------------------------------------------------

CONFIG = MonitorConfig(checkpoints=2, null_accounts=2001)


def test_a_states_bytes_follow_its_reasons_and_refuse_damage():
    state = AccountState.new(CONFIG, 12)
    state.skeleton.strip("one two three four five")
    state.skeleton.strip("")
    state.reasons = [{"signal": "reuse", "value": 0.25, "meaning": "share"}]
    first = state.to_bytes()
    state.reasons = [{"signal": "reuse", "value": 0.5, "meaning": "share"}]  # a checkpoint
    back = AccountState.from_bytes(state.to_bytes(), CONFIG, 12)
    assert back.reasons == state.reasons and first != state.to_bytes()
    assert back.skeleton.edges == [("one two three four five",) * 2, ("", "")]
    assert back.skeleton.edges[0][0] is back.skeleton.edges[0][1]  # one string, as made
    blob = state.to_bytes()
    edges_at = blob.index("\n".join(["one two three four five"] * 2 + ["", ""]).encode())
    damaged = bytearray(blob)
    damaged[edges_at - 20] += 1  # the edge count, first of the sizes before the edges
    with pytest.raises(StateEntryError, match="expected 3, found 2"):
        AccountState.from_bytes(bytes(damaged), CONFIG, 12)
    with pytest.raises(StateEntryError, match="not valid"):
        AccountState.from_bytes(blob[:-3], CONFIG, 12)
    state.skeleton.templates = {"0123abcd": 3, "not an id": 1}  # would not read back
    with pytest.raises(StateEntryError, match="letters and digits"):
        state.to_bytes()
    state.skeleton.templates = {"0123abcd": 3}
    older = (STATE_FORMAT - 1).to_bytes(2, "little") + state.to_bytes()[2:]
    with pytest.raises(StateEntryError, match=f"format {STATE_FORMAT}"):
        AccountState.from_bytes(older, CONFIG, 12)


def test_a_decoded_account_of_long_prompts_takes_at_most_20_kb(baseline, requests):
    """Issue 15's memory goal, on the worst realistic case in the traffic: an account whose
    300 prompts are the log's longest (its skeleton keeps 48 words at each edge of 8 of them)."""
    longest = sorted({p for _, p, _, _, _ in requests}, key=len)[-300:]
    assert len(longest[0]) > 1000
    scorer = AccountScorer(baseline)
    state = scorer.new_state()
    for i, prompt in enumerate(longest):
        scorer.score([(state, prompt, 1_795_000_000.0 + i, 0, None)])
    assert state.reasons  # tested at a checkpoint: its reasons are kept too
    blob = state.to_bytes()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [AccountState.from_bytes(blob, baseline.config, scorer.features.dim)
                for _ in range(20)]
        per_account = (tracemalloc.get_traced_memory()[0] - before) / len(held)
    finally:
        tracemalloc.stop()
    assert per_account <= 20_000, per_account
