from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ALPACAEVAL = Path(os.environ.get("ALPACAEVAL", Path(__file__).resolve().parents[2] / "shared"
                                 / "data" / "alpacaeval"))

TOPICS = ["gardening", "compilers", "sailing", "baking bread", "tax law", "volcanoes",
          "chess openings", "bird migration", "jazz harmony", "solar panels", "beekeeping",
          "roman history", "knitting", "quantum computing", "marathon training", "cheese making"]


def served_text(i: int) -> str:
    """A distinct multi-sentence answer per i, so near-duplicate tests have clear ground truth."""
    topic = TOPICS[i % len(TOPICS)]
    return (f"Here is answer number {i} about {topic}. The first thing to know about {topic} is "
            f"that practice matters more than theory, number {i * 7 % 13}. Many people start "
            f"with {topic} because it is rewarding; variant {i} adds {i * 3} extra details and "
            f"ends with a summary of {topic} for beginners.")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def served_rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"resp-{i}", "prompt": f"Tell me about {TOPICS[i % len(TOPICS)]} ({i})",
             "response": served_text(i), "model": "provider-1", "timestamp": f"2026-11-{i % 28 + 1:02d}",
             "account": f"acct-{i % 3}"} for i in range(start, start + n)]


@pytest.fixture(scope="session")
def fingerprinter():
    from fingerprint import Fingerprinter

    return Fingerprinter()


@pytest.fixture
def served_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "served.jsonl", served_rows(24))


@pytest.fixture
def built_index(tmp_path: Path, served_file: Path, fingerprinter) -> Path:
    from index import build_index

    path = tmp_path / "idx"
    build_index(path, [served_file], fingerprinter)
    return path


@pytest.fixture(scope="session")
def alpacaeval() -> Path:
    if not (ALPACAEVAL / "lineage.csv").is_file():
        pytest.skip(f"real lineage data not found at {ALPACAEVAL} (set ALPACAEVAL=...)")
    return ALPACAEVAL
