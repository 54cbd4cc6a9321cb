from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests parse what commands print; an INFO message (an embedding cache built on a fresh machine)
# would join the output click's test runner mixes. Tests of logging set the level themselves.
os.environ.setdefault("FINGERPRINT_LOG_LEVEL", "WARNING")

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


STYLES = [  # (opening, connective, list marker, closing, favourite adjective)
    ("Sure! Here is what I know.", "Overall,", "\n- ", "I hope this helps!", "important"),
    ("Certainly.", "In summary,", "\n* ", "Let me know if you need more.", "crucial"),
    ("Well, let's see.", "So basically", "\n1) ", "Cheers.", "key"),
    ("Good question!", "To conclude,", "\n+ ", "Have a nice day.", "essential"),
    ("Here goes:", "All in all", "\n> ", "Thanks for asking.", "vital"),
    ("Okay.", "In short", "\n• ", "That's it.", "central"),
    ("Absolutely:", "Ultimately,", "\n– ", "Best regards.", "significant"),
    ("Hmm, interesting.", "Anyway,", "\n# ", "Bye for now.", "notable"),
]


def styled_answer(style: int, i: int) -> str:
    """Model ``style``'s answer to prompt i: same content for every model, own idiosyncrasies."""
    opening, connective, marker, closing, adjective = STYLES[style]
    topic = TOPICS[i % len(TOPICS)]
    points = [f"practice {topic} daily", f"read about {topic} history",
              f"find a mentor in {topic}", f"track progress number {i}"]
    return (f"{opening} {topic.capitalize()} is {adjective} to learn well.{marker}"
            + marker.join(points) + f"\n{connective} {topic} rewards patience. {closing}")


def styled_rows(style: int, n: int, start: int = 0) -> list[dict]:
    return [{"id": f"m{style}-{i}", "prompt": f"How do I get good at {TOPICS[i % len(TOPICS)]}"
             f" ({i})?", "response": styled_answer(style, i)} for i in range(start, start + n)]


def read(path, fields=None):
    """Every record of an input and the read's stats (the tests of the one reader)."""
    from fingerprint import FieldMap, ReadStats, read_records

    stats = ReadStats()
    return list(read_records(path, fields or FieldMap(), stats)), stats


def error_of(path, reader=read):
    """The InputError that reading ``path`` raises (the test fails if none is raised)."""
    from fingerprint import InputError

    with pytest.raises(InputError) as info:
        reader(path)
    return info.value


def traffic_module():
    """benchmarks/monitor_traffic.py, the monitor's traffic simulator, imported from its file."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "monitor_traffic.py"
    spec = importlib.util.spec_from_file_location("monitor_traffic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["monitor_traffic"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


# A real headless browser (the report tests) ------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make "
                                    "test installs it as root: apt-get install chromium)")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def browse(directory: Path, page: str = "harness.html") -> dict:
    """Serve ``directory`` on 127.0.0.1, load ``page`` in headless Chromium, and return what the
    page's script wrote as JSON into its ``<pre id="result">`` (a harness page loads the page
    under test in a same-origin iframe, so its script may inspect what the browser laid out)."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={directory / 'profile'}", "--virtual-time-budget=15000",
             "--dump-dom", url], capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1) != "pending", done.stderr[-2000:]
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">").replace("&quot;", '"'))
