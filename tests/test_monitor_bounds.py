"""The monitor's memory does not grow with an account's volume or its prompts' length: one
account sending thousands of requests, some of them giant prompts, keeps a state of the same
size (the issue's "a single account with millions of requests" and "giant prompts"). Real
prompt text from ../shared/data (skipped without it)."""

from __future__ import annotations

import json

from monitor import AccountScorer, Baseline
from monitor_fixtures import DATA

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline_dir


def _turns(n: int) -> list[str]:
    with open(DATA / "benign" / "sharegpt.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for line, _ in zip(f, range(n))]


def test_an_accounts_state_stays_the_same_size_however_much_it_sends(baseline_dir):  # noqa: F811
    scorer = AccountScorer(Baseline.load(baseline_dir))
    state = scorer.new_state()
    turns = _turns(500)
    giant = " ".join(turns * 2)  # about 240 KB of words in one prompt
    sizes = []
    for batch in range(12):  # 6,000 requests: every 50th a giant prompt, wrapped in a template
        prompts = [giant if i % 50 == 0 else
                   f"Rewrite this for a child: {turns[(batch * 500 + i) % 500]} Keep it short."
                   for i in range(500)]
        scorer.score([(state, p, 1_795_000_000.0 + batch * 500 + i, None, None)
                      for i, p in enumerate(prompts)])
        sizes.append(len(state.to_bytes()))
    assert state.n == 6000 and len(giant) > 200_000
    assert max(sizes) - min(sizes) < 600, sizes  # only the reasons' numbers change length
    assert max(sizes) < 20_000
    words = sum(len(w) for head, tail in state.skeleton.edges for w in head + tail)
    assert words < 8 * 2 * 48 * 50  # edges keep 48 words a side of 8 prompts, not the prompts
