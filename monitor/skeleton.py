"""Taking an account's own template off its prompts before they are compared with benign traffic.

Benign API customers often wrap every end user's message in a fixed text ("You are ACME's
support assistant. Customer: {message}. Answer politely."). Every prompt of such an account then
looks alike and unlike benign traffic, although what varies, the users' messages, is as benign
as any. A harvesting campaign fills templates too, but with what it wants answered (passages,
questions, tasks). So the monitor judges what varies: each prompt loses the longest word prefix
and suffix it shares with one of the account's recent prompts, when together they are at least
``MIN_SKELETON_WORDS`` words and something is left. Measured on the simulated traffic
(benchmarks/monitor_bench.py): three apps' MMD^2 to benign prompts fell from 0.38-0.51 to
0.007-0.010 (benign accounts: 0.005, the null's 99.9% quantile at 480 requests: 0.012), while
T0 campaigns kept 0.06-0.13 and self-instruct and AlpacaEval campaigns 0.018-0.024.

Only each recent prompt's first and last ``EDGE_WORDS`` words are kept (a wrapper sits at the
edges), ``RECENT`` of them per account: a few KB whatever the prompts' length.

The templates an account fills are also counted, by id: the coordination check (monitor.groups)
links accounts that fill the same templates. A prompt whose first or last words are a kept
template's counts as one more filling of it even when no recent prompt shares them (a campaign
cycling through many templates rarely sends two fillings of one within ``RECENT`` prompts), and
``filled`` counts the prompts that filled any template. A stripped prefix of at least
``ID_MIN_WORDS`` words counts as one template (its id: a hash of its first ``ID_WORDS``
words) and a stripped suffix as another (its last ``ID_WORDS`` words). Only a few words at the outer edge make the id
because what two prompts share runs past the template whenever their fillings begin alike (T0's
question templates ask several questions about one passage, so two fillings share the passage
too): the whole shared prefix would give one template many ids. At most
``TEMPLATES_KEPT`` ids are kept per account, the most used ones (the space-saving sketch of
Metwally et al. 2005: a new id takes the place of the least counted one and inherits its count
plus one, so a count is an upper bound and a template used often is never lost).
"""

from __future__ import annotations

import hashlib
import sys
from itertools import chain

from monitor.errors import StateEntryError

MIN_SKELETON_WORDS = 4
EDGE_WORDS = 48
RECENT = 8
TEMPLATES_KEPT = 8
ID_WORDS = 4  # words at a template's outer edge that identify it
ID_MIN_WORDS = 3  # a shorter stripped prefix or suffix is not counted as a template


class Skeleton:
    """The recent prompts' edges of one account, and the stripping they allow.

    An edge is one string: its words joined by single spaces (words hold no whitespace, so the
    string splits back into exactly them). One string per edge instead of a list of words keeps
    a decoded account at a few KB (a list of 48 words takes ~3 KB of Python objects) and its
    encoding cheap; the words two edges share are counted on the strings (``_common_words``),
    with the same result as comparing the lists word by word."""

    def __init__(self, edges: list[tuple[str, str]] | None = None,
                 templates: dict[str, int] | None = None):
        self.edges = edges if edges is not None else []  # (first words, last words)
        self.templates = templates if templates is not None else {}  # id -> prompts that filled it
        self.filled = 0  # prompts that filled a template (stripped, or with a kept template's edge)

    def strip(self, prompt: str) -> str:
        """The prompt without the longest prefix and suffix (in words) it shares with one recent
        prompt, if those make a template; then remember its edges."""
        words = prompt.split()  # the same words as the regex \S+ (both split at str.isspace)
        head = " ".join(words[:EDGE_WORDS])
        tail = head if len(words) <= EDGE_WORDS else " ".join(words[-EDGE_WORDS:])
        best = (0, 0)
        if words:
            # most edges differ in their first or last word already: no call for those
            first, last = words[0] + " ", " " + words[-1]
            for their_head, their_tail in self.edges:
                front = _common_words(head, their_head) \
                    if their_head.startswith(first) or their_head == words[0] else 0
                back = _common_words(tail, their_tail, from_end=True) \
                    if their_tail.endswith(last) or their_tail == words[-1] else 0
                back = min(back, len(words) - front)
                if front + back > sum(best):
                    best = (front, back)
        self.edges.append((head, tail))
        del self.edges[:-RECENT]
        front, back = best
        if front + back >= MIN_SKELETON_WORDS and len(words) > front + back:
            self.filled += 1
            if front >= ID_MIN_WORDS:
                self._count(template_id("prefix", words[:front][:ID_WORDS]))
            if back >= ID_MIN_WORDS:
                self._count(template_id("suffix", words[len(words) - back:][-ID_WORDS:]))
            return " ".join(words[front:len(words) - back])
        self.filled += self._known(words)
        return prompt

    def _known(self, words: list[str]) -> bool:
        """Whether the prompt begins or ends like a template the account filled before (one
        further back than the recent prompts), counting the filling if so."""
        if not self.templates:
            return False
        found = False
        for k in range(ID_MIN_WORDS, ID_WORDS + 1):
            if len(words) <= k:
                break
            for tid in (template_id("prefix", words[:k]), template_id("suffix", words[-k:])):
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

    def to_json(self) -> list[list[str]]:
        return [[head, tail] for head, tail in self.edges]

    @classmethod
    def from_json(cls, data: list) -> "Skeleton":
        return cls.from_edges([(head, tail) for head, tail in data])

    def edges_text(self) -> str:
        """The edges as one text, heads and tails in turn, one a line (an edge holds no line
        break: it is words joined by spaces): what the account's stored state keeps."""
        return "\n".join(chain.from_iterable(self.edges))

    def templates_text(self) -> str:
        """The template counts as lines of id and count (an id is hex digits: template_id)."""
        if self.templates and not "".join(self.templates).isalnum():
            raise StateEntryError(f"template ids must be letters and digits, got "
                                  f"{list(self.templates)}")
        return "\n".join([f"{tid} {count}" for tid, count in self.templates.items()])

    @staticmethod
    def templates_from_text(text: str) -> dict[str, int]:
        """The counts ``templates_text`` wrote; ids interned (accounts of a group share them)."""
        counts = {}
        for line in text.split("\n") if text else ():
            tid, count = line.split(" ")
            counts[sys.intern(tid)] = int(count)
        return counts

    @classmethod
    def from_edges_text(cls, text: str, count: int) -> Skeleton:
        """The skeleton of ``count`` edges ``edges_text`` gave (no templates)."""
        parts = text.split("\n") if count else []
        if len(parts) != 2 * count or (not count and text):
            raise StateEntryError(f"an account's stored edges: expected {count}, found "
                                  f"{len(parts) / 2:g}")
        return cls.from_edges(list(zip(parts[::2], parts[1::2])))

    @classmethod
    def from_edges(cls, edges: list[tuple[str, str]]) -> Skeleton:
        """A skeleton of these edges; a tail equal to its head (a prompt of at most
        ``EDGE_WORDS`` words) shares the head's string, as when it was made."""
        kept = []
        for head, tail in edges:
            if not isinstance(head, str) or not isinstance(tail, str):
                raise StateEntryError("an account's stored edge is not two strings")
            kept.append((head, head if tail == head else tail))
        return cls(kept)


def template_id(edge: str, words: list[str]) -> str:
    """A template's id: 16 hex digits of the SHA-256 of its edge ("prefix" or "suffix") and
    words."""
    text = edge + "\x1e" + "\x1f".join(words)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _common_words(a: str, b: str, from_end: bool = False) -> int:
    """How many leading (or, ``from_end``, trailing) words two edges share, each edge its words
    joined by single spaces: the characters they share, cut back to the last word both end."""
    if not a or not b:
        return 0
    if from_end:
        shared = _common_suffix(a, b)
        words = a.count(" ", len(a) - shared)
        whole = (shared == len(a) or a[-shared - 1] == " ") and \
            (shared == len(b) or b[-shared - 1] == " ")
    else:
        shared = _common_prefix(a, b)
        words = a.count(" ", 0, shared)
        whole = (shared == len(a) or a[shared] == " ") and (shared == len(b) or b[shared] == " ")
    return words + whole


def _common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix: a binary search that compares each character
    once (``a[:low] == b[:low]`` holds throughout)."""
    low, high = 0, min(len(a), len(b))
    if a[:1] != b[:1]:
        return 0
    while low < high:
        middle = (low + high + 1) // 2
        if b.startswith(a[low:middle], low):
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str) -> int:
    """The length of the longest common suffix (as ``_common_prefix``, from the end)."""
    low, high = 0, min(len(a), len(b))
    if a[-1:] != b[-1:]:
        return 0
    la, lb = len(a), len(b)
    while low < high:
        middle = (low + high + 1) // 2
        if b.endswith(a[la - middle:la - low], 0, lb - low):
            low = middle
        else:
            high = middle - 1
    return low


def stripped(prompts: list[str]) -> list[str]:
    """An account's prompts, in order, each without the template it shares with recent ones."""
    skeleton = Skeleton()
    return [skeleton.strip(p) for p in prompts]
