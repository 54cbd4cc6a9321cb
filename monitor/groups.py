"""Coordinated accounts: groups that fill the same templates, tested as one account.

A "hydra" campaign spreads one query set over many accounts, each small enough to stay under a
per-account test (a few dozen requests: before the first checkpoint, or too few to show a
shift). What the accounts share is the query set: a templated set leaves the same templates in
every account. So two accounts are linked when they share at least ``MIN_SHARED_TEMPLATES``
templates (the same template ids, monitor.skeleton), each filled at least ``MIN_TEMPLATE_USES``
times by both, and a group is a connected set of linked accounts (at least two). One shared
template is not enough: real users share phrasings too (a browser extension's "Please write in
English language." after every prompt, a course's exercise wording): on the simulated traffic,
single shared templates chained benign users, apps and campaigns into one component of 808
accounts (benchmarks/monitor_bench.py).
A template filled by more than ``MAX_TEMPLATE_ACCOUNTS`` accounts links none of them: it is
common phrasing, and the pairs it would make grow with the square of its users.

A group is tested as one account: its members' sums pooled (requests, random Fourier features,
openings not continued) and compared with the benign nulls of the largest checkpoint not above
its size at which the baseline calibrated one of the pooled signals (``single_turn`` only if
the log shows every member's conversations): chosen from sizes, never from values. That null is
wider than the null at the group's own size would be (a larger benign account
averages over more conversations), so the test is conservative there. Only ``shift`` and
``single_turn`` are pooled: grouping selects accounts that reuse templates, so ``reuse`` would be
tested on what chose the group; the other two are computed on prompts without their templates
and on the conversation depth, which the grouping does not look at. The group's p-value is the
Bonferroni combination over those signals times the number of groups tested in the scan, and a
group is flagged at ``alpha``: if no member of any group is an extraction account and template
sharing is independent of what the pooled signals measure, the chance that the scan flags any
group is at most alpha.

Only accounts whose traffic fills templates in good part join: at least ``MIN_FILLED`` of their
requests, and at least ``MIN_MEMBER_SHARE`` of them, fill templates (monitor.skeleton's
``filled``). A flagged group is evidence about templated traffic, so every member of a flagged
group is flagged with it ("flagged_by": "group"). Without that condition, accounts whose traffic
is mostly their own were chained in by two shared templates and diluted the pooled test: on the
simulated traffic, benign users whose conversations a campaign had reused as cover, apps, and
mixed campaigns made one component of 629 accounts and 137,900 requests that no test could
flag (benchmarks/monitor_bench.py).

What it does not find: a hydra whose query set has no templates (free-form instructions, such
as AlpacaEval's) leaves no shared template, and linking accounts by shared timing or topics is
not done (benign users share both all the time; a test for it would need its own null).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping

from monitor.detector import AccountState, risk_of
from monitor.scoring import AccountScorer, Totals

MIN_TEMPLATE_USES = 2  # fillings of a template, in each of two accounts, for it to count
MIN_SHARED_TEMPLATES = 2  # templates two accounts must share to be linked
MIN_MEMBER_SHARE = 0.2  # share of an account's requests that fill templates, to join a group
MIN_FILLED = 5  # and at least this many
MAX_TEMPLATE_ACCOUNTS = 1000  # a template filled by more accounts is common phrasing: no link
GROUP_SIGNALS = ("shift", "single_turn")


@dataclass(frozen=True)
class Group:
    """A set of accounts linked by the templates they fill, and its pooled test."""

    id: str
    members: tuple[str, ...]
    requests: int
    templates: tuple[str, ...]  # template ids filled by at least two members
    p_value: float | None  # None: the pooled traffic reaches no tested checkpoint
    flagged: bool
    risk: float
    reasons: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def flags(self) -> tuple[str, ...]:
        """The members flagged with the group: all of them, if it is flagged."""
        return self.members if self.flagged else ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "members": list(self.members), "requests": self.requests,
                "templates": list(self.templates), "p_value": self.p_value,
                "flagged": self.flagged, "risk": self.risk, "reasons": list(self.reasons)}


def templated(state: AccountState) -> bool:
    """Whether enough of the account's traffic fills templates for it to join a group."""
    filled = state.skeleton.filled
    return filled >= MIN_FILLED and filled >= MIN_MEMBER_SHARE * state.n


def link_accounts(states: Mapping[str, AccountState]) -> list[tuple[list[str], list[str]]]:
    """Connected sets of accounts linked by at least ``MIN_SHARED_TEMPLATES`` common templates,
    each with the templates its links share, largest first (then by first member)."""
    users: dict[str, list[str]] = defaultdict(list)
    for account, state in states.items():
        if not templated(state):
            continue
        for tid, count in state.skeleton.templates.items():
            if count >= MIN_TEMPLATE_USES:
                users[tid].append(account)
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tid, accounts in sorted(users.items()):
        if 1 < len(accounts) <= MAX_TEMPLATE_ACCOUNTS:
            accounts.sort()
            for i, a in enumerate(accounts):
                for b in accounts[i + 1:]:
                    pairs[(a, b)].append(tid)
    parent: dict[str, str] = {}

    def root(a: str) -> str:
        while parent.get(a, a) != a:
            parent[a] = parent.get(parent[a], parent[a])  # path halving: finds stay short
            a = parent[a]
        return a

    links = {pair: tids for pair, tids in pairs.items() if len(tids) >= MIN_SHARED_TEMPLATES}
    for a, b in sorted(links):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = defaultdict(list)
    for account in sorted({a for pair in links for a in pair}):
        members[root(account)].append(account)
    shared: dict[str, set[str]] = defaultdict(set)
    for (a, _), tids in links.items():
        shared[root(a)].update(tids)
    out = [(members[r], sorted(shared[r])) for r in members]
    out.sort(key=lambda g: (-len(g[0]), g[0][0]))
    return out


def find_groups(scorer: AccountScorer, states: Mapping[str, AccountState]) -> list[Group]:
    """Every group of linked accounts with its pooled test (the module docstring says what a
    flag guarantees)."""
    linked = link_accounts(states)
    sizes = scorer.sizes
    pooled = [Totals.pooled([states[a] for a in accounts]) for accounts, _ in linked]
    tested_at = []
    for totals in pooled:
        ks = [k for k in range(len(sizes)) if sizes[k] <= totals.n
              and scorer.usable(totals, k, GROUP_SIGNALS)]
        tested_at.append(ks[-1] if ks else None)
    count = sum(k is not None for k in tested_at)
    alpha = scorer.config.alpha
    groups = []
    for (accounts, templates), totals, k in zip(linked, pooled, tested_at):
        gid = "group-" + hashlib.sha256("\n".join(accounts).encode("utf-8",
                                                                    "surrogatepass")).hexdigest()[:10]
        if k is None:
            groups.append(Group(gid, tuple(accounts), totals.n, tuple(templates), None, False,
                                0.0))
            continue
        p, reasons = scorer.checkpoint_test(totals, k, GROUP_SIGNALS)
        p = min(1.0, p * count)
        groups.append(Group(gid, tuple(accounts), totals.n, tuple(templates), p, p <= alpha,
                            risk_of(p, alpha), tuple(reasons)))
    return groups
