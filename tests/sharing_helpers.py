"""Helpers of the sharing tests that came after tests/test_sharing.py (feedback, prompt hashes,
text, privacy): run the real CLI, expect success or a one-line refusal, make keys for a producer
(ACME), a reviewer (Globex) and a stranger, and export a bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(*args, reason: str) -> str:
    result = run(*args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and reason in lines[0], \
        result.output
    return lines[0]


def make_keys(tmp_path: Path) -> dict[str, Path]:
    """Signing keys of ACME (producer), Globex (reviewer, a partner) and Evil (trusted by
    nobody); a consortium key and a second one; trust directories: ``partners`` (Globex's,
    holding acme.pub) and ``reviewers`` (ACME's, holding globex.pub and its own acme.pub)."""
    keys: dict[str, Path] = {}
    for org, name in (("ACME", "acme"), ("Globex", "globex"), ("Evil", "evil")):
        ok("share", "keygen", "--org", org, "--out", tmp_path / f"{name}.signing.key")
        keys[name] = tmp_path / f"{name}.signing.key"
        keys[f"{name}.pub"] = tmp_path / f"{name}.pub"
    for name in ("consortium", "other"):
        ok("share", "consortium-key", "--out", tmp_path / f"{name}.key")
        keys[name] = tmp_path / f"{name}.key"
    for trust, pubs in (("partners", ["acme"]), ("reviewers", ["globex", "acme"])):
        (tmp_path / trust).mkdir()
        for pub in pubs:
            shutil.copy(tmp_path / f"{pub}.pub", tmp_path / trust / f"{pub}.pub")
        keys[trust] = tmp_path / trust
    return keys


def export(index: Path, keys: dict, out: Path, *extra, sign: str = "acme") -> dict:
    return json.loads(ok("share", "export", "--index", index, "--consortium-key",
                         keys["consortium"], "--sign", keys[sign], "--out", out, "--json",
                         *extra).stdout)
