"""The templates an account's prompts fill, as a reviewer is shown them.

The scan strips from each prompt the longest word prefix and suffix it shares with one of the
account's recent prompts (monitor.skeleton), so that a wrapper is not mistaken for the traffic.
A reviewer wants the converse: what those shared skeletons are, and how many of the account's
prompts fill each. ``find_templates`` takes a small sample of prompts (only their first and last
``EDGE_WORDS`` words, as the skeleton keeps them: a few KB whatever the prompts' length), finds
every prefix + suffix two of them share by the same rule as the scan (at least
``MIN_SKELETON_WORDS`` words together, something left in between), and keeps greedily the ones
that cover the most sampled prompts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.skeleton import EDGE_WORDS, MIN_SKELETON_WORDS

MAX_TEMPLATES = 3
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Edges:
    """A prompt's first and last words and its length in words."""

    head: tuple[str, ...]
    tail: tuple[str, ...]
    words: int

    @classmethod
    def of(cls, prompt: str) -> "Edges":
        words = _WORD.findall(prompt)
        return cls(tuple(words[:EDGE_WORDS]), tuple(words[-EDGE_WORDS:]), len(words))


@dataclass(frozen=True)
class Template:
    """A skeleton: words every prompt of it starts with, words they end with, and how many of
    the sampled prompts fill it."""

    prefix: tuple[str, ...]
    suffix: tuple[str, ...]
    prompts: int


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _shared(a: Edges, b: Edges) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The prefix and suffix two prompts share, if they make a template (the scan's rule)."""
    shortest = min(a.words, b.words)
    front = _common(a.head, b.head)
    back = min(_common(a.tail[::-1], b.tail[::-1]), shortest - front)
    if front + back < MIN_SKELETON_WORDS or front + back >= shortest:
        return None
    return a.head[:front], a.tail[len(a.tail) - back:] if back else ()


def _fills(edges: Edges, prefix: tuple[str, ...], suffix: tuple[str, ...]) -> bool:
    if edges.words <= len(prefix) + len(suffix):
        return False
    return edges.head[:len(prefix)] == prefix and \
        (not suffix or edges.tail[len(edges.tail) - len(suffix):] == suffix)


def find_templates(sample: list[Edges], limit: int = MAX_TEMPLATES) -> list[Template]:
    """Up to ``limit`` templates, each filled by at least two sampled prompts, the one covering
    the most prompts first (then the longer); a prompt counts for one template only."""
    candidates = set()
    for i, a in enumerate(sample):
        for b in sample[i + 1:]:
            found = _shared(a, b)
            if found is not None:
                candidates.add(found)
    left = list(sample)
    chosen: list[Template] = []
    while candidates and len(chosen) < limit:
        scored = [(sum(_fills(e, p, s) for e in left), len(p) + len(s), p, s)
                  for p, s in candidates]
        count, _, prefix, suffix = max(scored)
        if count < 2:
            break
        chosen.append(Template(prefix, suffix, count))
        left = [e for e in left if not _fills(e, prefix, suffix)]
        candidates.discard((prefix, suffix))
    return chosen
