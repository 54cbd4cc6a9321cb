"""What else a bundle can carry (issue 16): keyed prompt hashes of a campaign's requests (and a
partner matching its own traffic against them), and raw response text only with
--include-text, recorded in the signed manifest and announced loudly by verify."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import served_text, write_jsonl
from sharing_helpers import export, make_keys, ok, refused

CAMPAIGN = ["Write a haiku about rust", "Explain quicksort step by step",
            "List ten facts about owls", "Translate 'good morning' to Welsh",
            "Summarise the French revolution"]
BENIGN = ["What is the weather like in Oslo", "Help me plan a birthday party"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return make_keys(tmp_path)


@pytest.fixture
def risk(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "risk.jsonl", [
        {"account": "acct-1", "risk": 0.95, "flagged": True},
        {"account": "acct-2", "risk": 0.1, "flagged": False}])


@pytest.fixture
def requests(tmp_path: Path) -> Path:
    """acct-1 (flagged) sends the campaign's five prompts, the first one twice; acct-2 (not
    flagged) sends benign prompts."""
    rows = [{"id": f"r{i}", "account": "acct-1", "prompt": p,
             "timestamp": f"2026-11-20T10:00:{i:02d}Z"}
            for i, p in enumerate(CAMPAIGN + CAMPAIGN[:1])]
    rows += [{"id": f"b{i}", "account": "acct-2", "prompt": p,
              "timestamp": f"2026-11-20T11:00:{i:02d}Z"} for i, p in enumerate(BENIGN)]
    return write_jsonl(tmp_path / "requests.jsonl", rows)


def members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_the_flagged_accounts_prompts_go_in_as_keyed_hashes(built_index, keys, risk, requests,
                                                            tmp_path):
    from sharing import load_consortium_key, prompt_key

    out = tmp_path / "p.bundle"
    made = export(built_index, keys, out, "--accounts", risk, "--requests", requests)
    assert made["counts"] == {"signatures": 24, "accounts": 1, "prompts": 5}
    secret = load_consortium_key(keys["consortium"]).secret
    rows = json.loads(members(out)["prompts.json"])
    assert {r["prompt"]: r["requests"] for r in rows} == {
        prompt_key(secret, p): 2 if p == CAMPAIGN[0] else 1 for p in CAMPAIGN}
    assert [r["prompt"] for r in rows] == sorted(r["prompt"] for r in rows)
    raw = out.read_bytes() + b"".join(members(out).values())
    for prompt in CAMPAIGN + BENIGN:
        assert prompt.encode() not in raw and prompt.split()[-1].encode() not in raw
    other = load_consortium_key(keys["other"]).secret
    assert prompt_key(other, CAMPAIGN[0]) not in {r["prompt"] for r in rows}
    text = ok("share", "verify", out, "--trust", keys["partners"]).output
    assert "1 flagged accounts, 5 keyed prompts" in text


def test_a_partner_matches_its_own_traffic_against_the_campaign(built_index, keys, risk,
                                                                requests, tmp_path):
    out = tmp_path / "p.bundle"
    export(built_index, keys, out, "--accounts", risk, "--requests", requests)
    mine = write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "m1", "account": "globex-77", "prompt": "  WRITE a haiku\nabout   Rust ",
         "timestamp": "2026-11-21T09:00:00Z"},
        {"id": "m2", "account": "globex-77", "prompt": CAMPAIGN[2],
         "timestamp": "2026-11-21T09:00:05Z"},
        {"id": "m3", "account": "globex-12", "prompt": BENIGN[0],
         "timestamp": "2026-11-21T09:01:00Z"},
        {"id": "m4", "account": "globex-12", "prompt": "Write a haiku about rusty nails",
         "timestamp": "2026-11-21T09:02:00Z"}])
    got = json.loads(ok("share", "match-prompts", out, "--trust", keys["partners"],
                        "--consortium-key", keys["consortium"], "--requests", mine,
                        "--json").stdout)
    assert (got["campaign_prompts"], got["requests"], got["matched_requests"],
            got["matched_prompts"]) == (5, 4, 2, 2)
    assert got["accounts"] == {"globex-77": 2} and got["producer"] == "ACME"
    text = ok("share", "match-prompts", out, "--trust", keys["partners"], "--consortium-key",
              keys["consortium"], "--requests", mine).output
    assert "matched     2 of your 4 requests (2 distinct prompts)" in text
    refused("share", "match-prompts", out, "--trust", keys["partners"], "--consortium-key",
            keys["other"], "--requests", mine, reason="which you do not hold")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(mine.read_text() + '{"id": "m5", "prompt": \n')
    refused("share", "match-prompts", out, "--trust", keys["partners"], "--consortium-key",
            keys["consortium"], "--requests", bad, reason="bad.jsonl line 5: malformed JSON")


def test_requests_need_flagged_accounts(built_index, keys, risk, requests, tmp_path):
    base = ("share", "export", "--index", built_index, "--consortium-key", keys["consortium"],
            "--sign", keys["acme"], "--out", tmp_path / "x.bundle", "--requests", requests)
    refused(*base, reason="give --accounts")
    none = write_jsonl(tmp_path / "none.jsonl", [
        {"account": "acct-1", "risk": 0.2, "flagged": False}])
    refused(*base, "--accounts", none, reason="flags at least one account")
    assert not (tmp_path / "x.bundle").exists()


def test_text_leaves_only_with_include_text_and_verify_says_so(built_index, keys, tmp_path):
    plain = tmp_path / "plain.bundle"
    export(built_index, keys, plain)
    assert "texts.json" not in members(plain)
    checked = json.loads(ok("share", "verify", plain, "--trust", keys["partners"],
                            "--json").stdout)
    assert checked["include_text"] is False
    assert "RAW RESPONSE TEXT" not in ok("share", "verify", plain, "--trust",
                                         keys["partners"]).output
    loud = tmp_path / "text.bundle"
    made = ok("share", "export", "--index", built_index, "--consortium-key", keys["consortium"],
              "--sign", keys["acme"], "--out", loud, "--include-text").output
    assert "WARNING     THIS BUNDLE CONTAINS RAW RESPONSE TEXT (24 responses" in made
    texts = json.loads(members(loud)["texts.json"])
    assert sorted(t["response"] for t in texts) == sorted(served_text(i) for i in range(24))
    assert [t["signal"] for t in texts] == \
        [s["signal"] for s in json.loads(members(loud)["signatures.json"])]
    checked = json.loads(ok("share", "verify", loud, "--trust", keys["partners"],
                            "--json").stdout)
    assert checked["include_text"] is True and checked["counts"]["texts"] == 24
    lines = ok("share", "verify", loud, "--trust", keys["partners"]).output.splitlines()
    assert any(line.startswith("WARNING     THIS BUNDLE CONTAINS RAW RESPONSE TEXT")
               for line in lines)
    into = tmp_path / "signals"
    result = json.loads(ok("share", "import", loud, "--trust", keys["partners"], "--into", into,
                           "--json").stdout)
    assert result["include_text"] and (Path(result["into"]) / "texts.json").is_file()


def test_verify_warns_of_text_the_manifest_does_not_flag(built_index, keys, tmp_path):
    """A texts.json part warns even if the (signed) manifest lacks include_text: what the bundle
    holds decides, not what its producer says it holds."""
    plain = tmp_path / "plain.bundle"
    export(built_index, keys, plain)
    parts = members(plain)
    text = json.dumps([{"signal": s["signal"], "response": served_text(0)}
                       for s in json.loads(parts["signatures.json"])]).encode()
    sneaky = signed_with_texts(parts, text, keys, tmp_path / "sneaky.bundle")
    assert "RAW RESPONSE TEXT" in ok("share", "verify", sneaky, "--trust",
                                     keys["partners"]).output


def signed_with_texts(parts: dict, text: bytes, keys: dict, out: Path) -> Path:
    """The bundle of ``parts`` with ``text`` as its texts.json, signed again by ACME (so only
    the texts part's content can be wrong, never its signature)."""
    import hashlib

    from sharing import load_signing_key
    from sharing.bundle import canonical_json

    parts = dict(parts)
    manifest = json.loads(parts["manifest.json"])
    manifest["parts"]["texts.json"] = {"sha256": hashlib.sha256(text).hexdigest(),
                                       "bytes": len(text)}
    parts["manifest.json"] = canonical_json(manifest)
    parts["manifest.sig"] = load_signing_key(keys["acme"]).sign(parts["manifest.json"])
    parts["texts.json"] = text
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return out


@pytest.mark.parametrize("texts", [
    [{"signal": "not-a-signal", "response": "x"}],  # a text for no signal in the bundle
    "one text",  # not a list
    None,  # one entry short (built below)
])
def test_texts_that_do_not_match_the_signals_are_refused(built_index, keys, tmp_path, texts):
    plain = tmp_path / "plain.bundle"
    export(built_index, keys, plain)
    parts = members(plain)
    if texts is None:
        texts = [{"signal": s["signal"], "response": "x"}
                 for s in json.loads(parts["signatures.json"])][1:]
    bad = signed_with_texts(parts, json.dumps(texts).encode(), keys, tmp_path / "bad.bundle")
    refused("share", "verify", bad, "--trust", keys["partners"],
            reason="texts.json is not a list of 24 {signal, response} objects")
    refused("share", "import", bad, "--trust", keys["partners"], "--into", tmp_path / "into",
            reason="texts.json is not a list")
    assert not (tmp_path / "into").exists()
