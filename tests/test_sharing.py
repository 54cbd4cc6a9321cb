"""Sharing (issue 16, foundations): keys, export, verify, import, through the real CLI on real
files. Every refusal is made from a real file: a byte changed, a part rewritten, a manifest
re-signed by a stranger, dates in the past or future, a zip with an escaping name."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from conftest import served_rows, served_text, write_jsonl

NOW = datetime.now(timezone.utc)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(*args, reason: str):
    result = run(*args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and reason in lines[0], \
        result.output
    return lines[0]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """ACME's signing key (trusted by the recipient), a stranger's (not trusted), a consortium
    key, and the recipient's trust directory holding acme.pub."""
    ok("share", "keygen", "--org", "ACME", "--out", tmp_path / "acme.signing.key")
    ok("share", "keygen", "--org", "Evil", "--out", tmp_path / "evil.signing.key")
    ok("share", "consortium-key", "--out", tmp_path / "consortium.key")
    ok("share", "consortium-key", "--out", tmp_path / "other.key")
    trust = tmp_path / "partners"
    trust.mkdir()
    (trust / "acme.pub").write_bytes((tmp_path / "acme.pub").read_bytes())
    return {"sign": tmp_path / "acme.signing.key", "evil": tmp_path / "evil.signing.key",
            "consortium": tmp_path / "consortium.key", "other": tmp_path / "other.key",
            "trust": trust}


def export(index: Path, keys: dict, out: Path, *extra) -> dict:
    return json.loads(ok("share", "export", "--index", index, "--consortium-key",
                         keys["consortium"], "--sign", keys["sign"], "--out", out, "--json",
                         *extra).stdout)


@pytest.fixture
def bundle(built_index: Path, keys: dict, tmp_path: Path) -> Path:
    out = tmp_path / "acme.bundle"
    export(built_index, keys, out)
    return out


def test_keygen_writes_private_0600_and_public_json_and_never_overwrites(tmp_path):
    out = tmp_path / "acme.signing.key"
    data = json.loads(ok("share", "keygen", "--org", "ACME", "--out", out, "--json").stdout)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in out.read_bytes()
    public = json.loads((tmp_path / "acme.pub").read_text())
    assert public["org"] == "ACME" and public["algorithm"] == "ed25519"
    assert public["key_id"] == data["key_id"] == hashlib.sha256(
        __import__("base64").b64decode(public["public_key"])).hexdigest()[:16]
    before = out.read_bytes()
    refused("share", "keygen", "--org", "ACME", "--out", out, reason="never overwritten")
    assert out.read_bytes() == before


def test_consortium_key_is_32_random_bytes_with_a_one_way_id_mode_0600(tmp_path):
    out = tmp_path / "c.key"
    data = json.loads(ok("share", "consortium-key", "--out", out, "--json").stdout)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    stored = json.loads(out.read_text())
    secret = bytes.fromhex(stored["secret"])
    assert len(secret) == 32 and stored["key_id"] == data["key_id"]
    assert data["key_id"] == hashlib.sha256(secret).hexdigest()[:16]
    assert stored["secret"] not in ok("share", "consortium-key", "--out", tmp_path / "d.key")\
        .output
    refused("share", "consortium-key", "--out", out, reason="never overwritten")


def test_round_trip_export_verify_import_and_reimport(built_index, keys, tmp_path):
    out = tmp_path / "acme.bundle"
    made = export(built_index, keys, out, "--valid-days", "30")
    assert made["counts"] == {"signatures": 24, "accounts": 0}
    assert made["producer"]["org"] == "ACME"
    checked = json.loads(ok("share", "verify", out, "--trust", keys["trust"],
                            "--consortium-key", keys["consortium"], "--json").stdout)
    assert checked["ok"] and checked["bundle_id"] == made["bundle_id"]
    until = datetime.fromisoformat(checked["valid_until"])
    assert timedelta(days=29.9) < until - datetime.fromisoformat(checked["valid_from"]) \
        <= timedelta(days=30)
    into = tmp_path / "signals"
    first = json.loads(ok("share", "import", out, "--trust", keys["trust"], "--into", into,
                          "--json").stdout)
    stored = Path(first["into"])
    assert first["imported"] and stored.parent == into
    assert sorted(p.name for p in stored.iterdir()) == [
        "manifest.json", "manifest.sig", "signatures.bin", "signatures.json", "style.bin",
        "style.json"]
    assert (stored / "signatures.bin").stat().st_size == 24 * 128 * 4
    snapshot = {p.name: p.read_bytes() for p in stored.iterdir()}
    again = json.loads(ok("share", "import", out, "--trust", keys["trust"], "--into", into,
                          "--json").stdout)
    assert not again["imported"] and sorted(p.name for p in into.iterdir()) == [stored.name]
    assert {p.name: p.read_bytes() for p in stored.iterdir()} == snapshot
    text = ok("share", "verify", out, "--trust", keys["trust"]).output
    assert "signed by   ACME" in text and "24 keyed signatures" in text


def test_keyed_signatures_hide_from_outsiders_and_agree_between_partners(built_index, keys,
                                                                           tmp_path):
    from fingerprint import MinHasher
    from index import open_index

    bundles = {}
    for name, consortium in (("a", "consortium"), ("b", "consortium"), ("c", "other")):
        out = tmp_path / f"{name}.bundle"
        ok("share", "export", "--index", built_index, "--consortium-key", keys[consortium],
           "--sign", keys["sign"], "--out", out)
        with zipfile.ZipFile(out) as zf:
            bundles[name] = np.frombuffer(zf.read("signatures.bin"), "<u4").reshape(24, 128)
    with open_index(built_index) as index:
        public = index.signatures(list(range(24)))
        recomputed = MinHasher(index.config).signatures([served_text(i) for i in range(24)])
    assert np.array_equal(public, recomputed)  # what an outsider can compute from a guess
    assert np.array_equal(bundles["a"], bundles["b"])  # same key: partners can match
    assert (bundles["a"] == public).mean() < 0.01
    assert (bundles["a"] == bundles["c"]).mean() < 0.01
    # with the key, a guessed text is found: its keyed signature is a row of the bundle
    from sharing import KeyedMinHasher, load_consortium_key

    secret = load_consortium_key(keys["consortium"]).secret
    guess = KeyedMinHasher(index.config, secret).signatures([served_text(5)])[0]
    assert any(np.array_equal(row, guess) for row in bundles["a"])


def test_no_response_text_or_account_id_in_the_bundle_bytes(built_index, keys, tmp_path):
    risk = write_jsonl(tmp_path / "risk.jsonl", [
        {"account": "acct-1", "risk": 1.0, "flagged": True},
        {"account": "acct-2", "risk": 0.2, "flagged": False}])
    out = tmp_path / "x.bundle"
    made = export(built_index, keys, out, "--accounts", risk)
    assert made["counts"] == {"signatures": 24, "accounts": 1}
    raw = out.read_bytes()
    with zipfile.ZipFile(out) as zf:
        members = b"".join(zf.read(n) for n in zf.namelist())
    for row in served_rows(24):
        words = " ".join(row["response"].split()[:6]).encode()
        for blob in (raw, members):
            assert words not in blob and row["id"].encode() not in blob
            assert row["prompt"].encode() not in blob
    assert b"acct-1" not in members and b"acct-2" not in members
    assert served_text(3).split()[2].encode() in served_text(3).encode()  # the probe is real


def test_flagged_accounts_become_keyed_stix_indicators(built_index, keys, tmp_path):
    import stix2

    from sharing import account_hash, load_consortium_key

    risk = write_jsonl(tmp_path / "risk.jsonl", [
        {"account": "acct-1", "risk": 0.97, "flagged": True},
        {"account": "acct-2", "risk": 0.2, "flagged": False}])
    out = tmp_path / "x.bundle"
    export(built_index, keys, out, "--accounts", risk, "--valid-days", "10")
    with zipfile.ZipFile(out) as zf:
        parsed = stix2.parse(zf.read("accounts.json").decode(), allow_custom=False)
    indicators = [o for o in parsed.objects if o.type == "indicator"]
    assert len(indicators) == 1
    secret = load_consortium_key(keys["consortium"]).secret
    (ind,) = indicators
    assert ind.pattern == f"[user-account:user_id = '{account_hash(secret, 'acct-1')}']"
    assert ind.confidence == 97 and ind.description.startswith("Not proof")
    assert timedelta(days=9.9) < ind.valid_until - ind.valid_from <= timedelta(days=10)


def test_select_marked_and_since_and_nothing_to_export(built_index, keys, tmp_path):
    from index import AccountMark, mark_accounts

    mark_accounts(built_index, "monitor-flagged", [AccountMark("acct-1", 1.0, "risk.jsonl")])
    made = export(built_index, keys, tmp_path / "m.bundle", "--select", "marked:monitor-flagged")
    assert made["counts"]["signatures"] == 8  # acct-1 serves every third of 24 rows
    late = sum(r["timestamp"] >= "2026-11-20" for r in served_rows(24))
    made = export(built_index, keys, tmp_path / "s.bundle", "--select", "since:2026-11-20")
    assert made["counts"]["signatures"] == late > 0
    refused("share", "export", "--index", built_index, "--consortium-key", keys["consortium"],
            "--sign", keys["sign"], "--out", tmp_path / "n.bundle", "--select", "marked:none",
            reason="nothing to export")
    refused("share", "export", "--index", built_index, "--consortium-key", keys["consortium"],
            "--sign", keys["sign"], "--out", tmp_path / "n.bundle", "--select", "flagged",
            reason="--select must be")
    assert not (tmp_path / "n.bundle").exists()


def test_an_index_without_text_is_refused(tmp_path, keys, served_file, fingerprinter):
    from index import build_index

    idx = tmp_path / "notext"
    build_index(idx, [served_file], fingerprinter, store_text=False)
    refused("share", "export", "--index", idx, "--consortium-key", keys["consortium"],
            "--sign", keys["sign"], "--out", tmp_path / "x.bundle", reason="stores no response text")


# --- refusals: every one from a real file, each a one-line error naming its reason -----------

def rewrite(bundle: Path, out: Path, replace: dict | None = None, add: dict | None = None,
            resign=None) -> Path:
    """A copy of ``bundle`` with members replaced or added (valid zip CRCs: what someone who
    edits the file with zip tools makes); with ``resign`` (a SigningKey), the manifest is
    re-signed with it after ``replace["manifest"]`` (a function of the manifest dict)."""
    from sharing.bundle import canonical_json

    replace, add = dict(replace or {}), dict(add or {})
    with zipfile.ZipFile(bundle) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    if "manifest" in replace:
        members["manifest.json"] = canonical_json(
            replace.pop("manifest")(json.loads(members["manifest.json"])))
    if resign is not None:
        members["manifest.sig"] = resign.sign(members["manifest.json"])
    members.update(replace)
    members.update(add)
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def verify_refused(path, keys, *extra, reason):
    return refused("share", "verify", path, "--trust", keys["trust"], *extra, reason=reason)


def test_unknown_signer_is_refused(built_index, keys, tmp_path):
    out = tmp_path / "evil.bundle"
    ok("share", "export", "--index", built_index, "--consortium-key", keys["consortium"],
       "--sign", keys["evil"], "--out", out)
    line = verify_refused(out, keys, reason="signed by unknown key")
    assert "'Evil'" in line and "trust directory" in line


def test_a_manifest_changed_after_signing_or_signed_by_another_key_is_refused(bundle, keys,
                                                                             tmp_path):
    from sharing import load_signing_key

    def longer(m):
        return {**m, "valid_until": "2099-01-01T00:00:00+00:00"}

    verify_refused(rewrite(bundle, tmp_path / "a.bundle", {"manifest": longer}), keys,
                   reason="bad signature")
    verify_refused(rewrite(bundle, tmp_path / "b.bundle", {"manifest": longer},
                           resign=load_signing_key(keys["evil"])), keys, reason="bad signature")
    verify_refused(rewrite(bundle, tmp_path / "c.bundle", {"manifest.sig": b"\0" * 64}), keys,
                   reason="bad signature")


def test_any_changed_part_byte_is_refused(bundle, keys, tmp_path):
    with zipfile.ZipFile(bundle) as zf:
        signatures = bytearray(zf.read("signatures.bin"))
    signatures[1000] ^= 1
    line = verify_refused(rewrite(bundle, tmp_path / "a.bundle",
                                  {"signatures.bin": bytes(signatures)}), keys,
                          reason="changed after signing")
    assert "'signatures.bin'" in line
    added = rewrite(bundle, tmp_path / "b.bundle", add={"accounts.json": b"{}"})
    verify_refused(added, keys, reason="'accounts.json' is not in the signed manifest")
    # a flipped byte anywhere in the file: refused, or (a byte of the zip's container only,
    # e.g. a member's timestamp) every member read is still exactly what was signed
    from sharing import BundleError, read_bundle, read_trust_dir

    trust = read_trust_dir(keys["trust"])
    original = read_bundle(bundle, trust)
    raw, refusals = bundle.read_bytes(), 0
    for offset in range(len(raw)):
        damaged = bytearray(raw)
        damaged[offset] ^= 0x40
        (tmp_path / "c.bundle").write_bytes(bytes(damaged))
        try:
            got = read_bundle(tmp_path / "c.bundle", trust)
        except BundleError:
            refusals += 1
            continue
        assert (got.manifest_bytes, got.signature, got.parts) == \
            (original.manifest_bytes, original.signature, original.parts), offset
    assert refusals > 0.9 * len(raw)


def test_expired_and_not_yet_valid_bundles_are_refused(built_index, keys, tmp_path):
    from sharing import export_bundle

    old, future = tmp_path / "old.bundle", tmp_path / "future.bundle"
    export_bundle(built_index, keys["consortium"], keys["sign"], old, valid_days=90,
                  now=NOW - timedelta(days=200))
    export_bundle(built_index, keys["consortium"], keys["sign"], future, valid_days=90,
                  now=NOW + timedelta(days=10))
    assert "ask 'ACME' for a fresh export" in verify_refused(old, keys, reason="expired on")
    verify_refused(future, keys, reason="not valid before")
    refused("share", "import", old, "--trust", keys["trust"], "--into", tmp_path / "in",
            reason="expired on")
    assert not (tmp_path / "in").exists()


def test_a_consortium_key_the_recipient_does_not_hold_is_refused(bundle, keys):
    line = verify_refused(bundle, keys, "--consortium-key", keys["other"],
                          reason="which you do not hold")
    ok("share", "verify", bundle, "--trust", keys["trust"], "--consortium-key", keys["other"],
       "--consortium-key", keys["consortium"])  # rotation: holding both old and new is enough
    assert json.loads(keys["other"].read_text())["key_id"] in line


def test_a_schema_from_the_future_is_refused_and_an_older_one_is_read(bundle, keys, tmp_path):
    """Bundles are written at schema 2 (style, prompts and texts parts came with it); a reader
    reads 1 (a bundle with a subset of the parts) and 2, and refuses 3 with the upgrade line."""
    from sharing import SCHEMA_VERSION, load_signing_key

    assert SCHEMA_VERSION == 2
    with zipfile.ZipFile(bundle) as zf:
        assert json.loads(zf.read("manifest.json"))["schema"] == 2
    signer = load_signing_key(keys["sign"])
    future = rewrite(bundle, tmp_path / "f.bundle", {"manifest": lambda m: {**m, "schema": 3}},
                     resign=signer)
    verify_refused(future, keys, reason="schema version 3 is newer than this fingerprint "
                                        "reads (2); upgrade fingerprint")
    refused("share", "import", future, "--trust", keys["trust"], "--into", tmp_path / "in",
            reason="schema version 3 is newer")
    assert not (tmp_path / "in").exists() or not any((tmp_path / "in").iterdir())

    def as_version_1(m: dict) -> dict:  # what a schema-1 producer wrote: no style part
        parts = {k: v for k, v in m["parts"].items() if not k.startswith("style.")}
        return {k: v for k, v in m.items() if k != "style"} | {"schema": 1, "parts": parts}

    with zipfile.ZipFile(bundle) as zf:
        kept = {n: zf.read(n) for n in zf.namelist() if not n.startswith("style.")}
    old = tmp_path / "v1.bundle"
    with zipfile.ZipFile(old, "w") as zf:
        for name, data in kept.items():
            zf.writestr(name, data)
    rewrite(old, old, {"manifest": as_version_1}, resign=signer)
    shown = json.loads(ok("share", "verify", old, "--trust", keys["trust"], "--json").stdout)
    assert shown["schema"] == 1 and shown["style"] is None and shown["counts"]["signatures"] > 0
    ok("share", "import", old, "--trust", keys["trust"], "--into", tmp_path / "in")
    assert len([p for p in (tmp_path / "in").iterdir()]) == 1


def test_truncated_and_non_bundle_files_are_refused(bundle, keys, tmp_path):
    data = bundle.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 1):
        (tmp_path / "t.bundle").write_bytes(data[:size])
        verify_refused(tmp_path / "t.bundle", keys, reason="not a bundle")
    verify_refused(write_jsonl(tmp_path / "x.jsonl", served_rows(2)), keys,
                   reason="not a bundle")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("manifest.sig", "")
    verify_refused(tmp_path / "other.zip", keys, reason="not a fingerprint bundle manifest")


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/evil", "parts/../../x", "a\\..\\b",
                                  "unknown.bin"])
def test_a_member_name_that_could_escape_or_is_not_a_part_is_refused(bundle, keys, tmp_path,
                                                                     name):
    evil = rewrite(bundle, tmp_path / "z.bundle", add={name: b"owned"})
    into = tmp_path / "signals"
    line = refused("share", "import", evil, "--trust", keys["trust"], "--into", into,
                   reason="refused")
    assert ("would escape" if name != "unknown.bin" else "not a part of the format") in line
    assert not into.exists() and not (tmp_path / "escape.txt").exists()


def test_a_malformed_trust_directory_is_named(bundle, keys, tmp_path):
    (keys["trust"] / "bad.pub").write_text('{"org": "X", "algorithm": "ed25519"}')
    verify_refused(bundle, keys, reason='bad.pub: field "public_key" is missing')
    empty = tmp_path / "empty"
    empty.mkdir()
    refused("share", "verify", bundle, "--trust", empty, reason="no .pub file")


def test_an_import_that_fails_midway_leaves_nothing(bundle, keys, tmp_path, monkeypatch):
    import sharing.store
    from sharing import import_bundle

    into = tmp_path / "signals"

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sharing.store.os, "replace", crash)
    with pytest.raises(OSError):
        import_bundle(bundle, keys["trust"], into)
    assert list(into.iterdir()) == []
    monkeypatch.undo()
    assert import_bundle(bundle, keys["trust"], into).imported


def test_a_missing_dependency_gives_the_install_line(keys, tmp_path, monkeypatch):
    import sys

    for name in [n for n in sys.modules if n.split(".")[0] == "cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)
    refused("share", "keygen", "--org", "X", "--out", tmp_path / "x.key",
            reason="pip install 'output-fingerprint[share]'")


def test_a_trusted_key_cannot_sign_in_another_org_name(bundle, keys, tmp_path):
    from sharing import load_signing_key

    acme = load_signing_key(keys["sign"])
    posing = rewrite(bundle, tmp_path / "p.bundle",
                     {"manifest": lambda m: {**m, "producer": {**m["producer"], "org": "Globex"}}},
                     resign=acme)
    verify_refused(posing, keys, reason="names producer 'Globex' but is signed by 'ACME'")


def test_signatures_that_disagree_with_the_signed_counts_are_refused(bundle, keys, tmp_path):
    from sharing import load_signing_key

    with zipfile.ZipFile(bundle) as zf:
        short = zf.read("signatures.bin")[:-512]

    def fix_checksum(m):
        entry = {"sha256": hashlib.sha256(short).hexdigest(), "bytes": len(short)}
        return {**m, "parts": {**m["parts"], "signatures.bin": entry}}

    bad = rewrite(bundle, tmp_path / "s.bundle", {"manifest": fix_checksum,
                                                  "signatures.bin": short},
                  resign=load_signing_key(keys["sign"]))
    verify_refused(bad, keys, reason="does not hold counts.signatures (24) rows")
