"""Bad input to sharing (issue 16), each from a real file, each refused with one line naming the
file and the reason; what tests/test_sharing.py already covers (a truncated bundle, a .pub file
missing a field, an empty trust directory, an export selecting nothing) is not repeated here.

Choices these tests pin down: a bundle of zero signals is refused at export, never written
empty (an empty signed bundle would read as "nothing was harvested"); importing a bundle of
one's own org is refused when the importer says who it is (``--own-key``); a duplicate import
changes nothing and says so."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from conftest import write_jsonl
from sharing_helpers import export, make_keys, ok, refused


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return make_keys(tmp_path)


@pytest.fixture
def bundle(built_index: Path, keys: dict, tmp_path: Path) -> Path:
    out = tmp_path / "acme.bundle"
    export(built_index, keys, out)
    return out


def test_a_bundle_of_zero_signals_is_refused_not_written_empty(built_index, keys, tmp_path):
    calm = write_jsonl(tmp_path / "risk.jsonl", [{"account": "a", "risk": 0.1,
                                                  "flagged": False}])
    out = tmp_path / "empty.bundle"
    line = refused("share", "export", "--index", built_index, "--consortium-key",
                   keys["consortium"], "--sign", keys["acme"], "--out", out, "--select",
                   "since:2099-01-01", "--accounts", calm, reason="nothing to export")
    assert "selects no response and the risk file flags no account" in line
    assert not out.exists()
    # accounts alone are a bundle: zero responses but one signal
    flagged = write_jsonl(tmp_path / "f.jsonl", [{"account": "a", "risk": 0.9, "flagged": True}])
    made = export(built_index, keys, out, "--select", "since:2099-01-01", "--accounts", flagged)
    assert made["counts"] == {"signatures": 0, "accounts": 1}
    checked = json.loads(ok("share", "verify", out, "--trust", keys["partners"],
                            "--json").stdout)
    assert checked["signals"]["responses"] == [] and len(checked["signals"]["accounts"]) == 1


def test_importing_your_own_bundle_is_refused_with_own_key(bundle, keys, tmp_path):
    into = tmp_path / "signals"
    line = refused("share", "import", bundle, "--trust", keys["reviewers"], "--into", into,
                   "--own-key", keys["acme.pub"], reason="is your own bundle")
    assert "'ACME'" in line and "partner's evidence" in line
    assert not into.exists()
    # a second key of the same org (a rotated key) is still your own
    ok("share", "keygen", "--org", "ACME", "--out", tmp_path / "acme2.signing.key")
    refused("share", "import", bundle, "--trust", keys["reviewers"], "--into", into,
            "--own-key", tmp_path / "acme2.pub", reason="is your own bundle")
    # a partner's bundle imports with the partner's own key given
    result = json.loads(ok("share", "import", bundle, "--trust", keys["partners"], "--into",
                           into, "--own-key", keys["globex.pub"], "--json").stdout)
    assert result["imported"]
    refused("share", "import", bundle, "--trust", keys["partners"], "--into", into,
            "--own-key", keys["globex"], reason="globex.signing.key: not a public key file")


def test_a_duplicate_import_changes_nothing_and_says_so(bundle, keys, tmp_path):
    into = tmp_path / "signals"
    first = ok("share", "import", bundle, "--trust", keys["partners"], "--into", into).output
    assert "imported    " in first
    stored = {p: p.read_bytes() for p in into.rglob("*") if p.is_file()}
    copy = tmp_path / "copy-of-acme.bundle"
    shutil.copy(bundle, copy)
    again = ok("share", "import", copy, "--trust", keys["partners"], "--into", into).output
    assert "already in  " in again and "imported    " not in again
    assert {p: p.read_bytes() for p in into.rglob("*") if p.is_file()} == stored


def public(keys: dict) -> dict:
    return json.loads(keys["acme.pub"].read_text())


@pytest.mark.parametrize("content, reason", [
    ("not json at all", "not a public key file (JSON)"),
    ("[1, 2]", "expected a JSON object"),
    (lambda p: {**p, "algorithm": "rsa"}, 'field "algorithm" is \'rsa\''),
    (lambda p: {**p, "public_key": "***"}, 'field "public_key" is not base64'),
    (lambda p: {**p, "public_key": base64.b64encode(b"short").decode()},
     'field "public_key" is not a 32-byte key'),
    (lambda p: {**p, "key_id": "0" * 16}, 'field "public_key" is not a 32-byte key whose id'),
    (lambda p: {**p, "org": 7}, 'field "org" is missing or not a string'),
])
def test_a_malformed_key_file_in_the_trust_directory_is_named(bundle, keys, content, reason):
    bad = keys["partners"] / "zeta.pub"
    if callable(content):
        bad.write_text(json.dumps(content(public(keys))))
    else:
        bad.write_text(content)
    line = refused("share", "verify", bundle, "--trust", keys["partners"], reason=reason)
    assert "zeta.pub" in line
    (keys["partners"] / "zeta.pub").write_bytes(b"\xff\xfe\x00")
    refused("share", "verify", bundle, "--trust", keys["partners"], reason="zeta.pub: not a "
            "public key file")


def test_malformed_signing_and_consortium_keys_are_named(built_index, keys, tmp_path):
    junk = tmp_path / "junk.key"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnope\n")
    refused("share", "export", "--index", built_index, "--consortium-key", keys["consortium"],
            "--sign", junk, "--out", tmp_path / "x.bundle", reason="junk.key: not a PEM")
    refused("share", "export", "--index", built_index, "--consortium-key", junk,
            "--sign", keys["acme"], "--out", tmp_path / "x.bundle",
            reason="junk.key: not a consortium key")
    secret = json.loads(keys["consortium"].read_text())
    (tmp_path / "short.key").write_text(json.dumps({**secret, "secret": "ab" * 16}))
    refused("share", "export", "--index", built_index, "--consortium-key", tmp_path / "short.key",
            "--sign", keys["acme"], "--out", tmp_path / "x.bundle",
            reason="short.key: the secret is not 32 bytes")
    refused("share", "feedback", tmp_path / "nothing.bundle", "--trust", keys["partners"],
            "--signal", "x", "--opinion", "confirmed", "--sign", keys["globex"], "--out",
            tmp_path / "f.json", reason="nothing.bundle")
