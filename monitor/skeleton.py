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
"""

from __future__ import annotations

import re

MIN_SKELETON_WORDS = 4
EDGE_WORDS = 48
RECENT = 8
_WORD = re.compile(r"\S+")


class Skeleton:
    """The recent prompts' edges of one account, and the stripping they allow."""

    def __init__(self, edges: list[tuple[list[str], list[str]]] | None = None):
        self.edges = edges if edges is not None else []

    def strip(self, prompt: str) -> str:
        """The prompt without the longest prefix and suffix (in words) it shares with one recent
        prompt, if those make a template; then remember its edges."""
        words = _WORD.findall(prompt)
        best = (0, 0)
        for head, tail in self.edges:
            front = _common(words, head)
            back = _common(list(reversed(words[front:])), list(reversed(tail)))
            if front + back > sum(best):
                best = (front, back)
        self.edges.append((words[:EDGE_WORDS], words[-EDGE_WORDS:]))
        del self.edges[:-RECENT]
        front, back = best
        if front + back >= MIN_SKELETON_WORDS and len(words) > front + back:
            return " ".join(words[front:len(words) - back])
        return prompt

    def to_json(self) -> list[list[list[str]]]:
        return [[head, tail] for head, tail in self.edges]

    @classmethod
    def from_json(cls, data: list) -> "Skeleton":
        return cls([(list(head), list(tail)) for head, tail in data])


def _common(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def stripped(prompts: list[str]) -> list[str]:
    """An account's prompts, in order, each without the template it shares with recent ones."""
    skeleton = Skeleton()
    return [skeleton.strip(p) for p in prompts]
