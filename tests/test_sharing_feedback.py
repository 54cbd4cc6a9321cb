"""Sharing feedback (issue 16): a partner's signed opinions on a producer's signals, STIX
sightings, and the producer's summary; every refusal made from a real file (a stranger's key, a
field edited after signing, an opinion about another bundle, a signal id the bundle lacks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_jsonl
from sharing_helpers import export, make_keys, ok, refused


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return make_keys(tmp_path)


@pytest.fixture
def bundle(built_index: Path, keys: dict, tmp_path: Path) -> Path:
    risk = write_jsonl(tmp_path / "risk.jsonl", [
        {"account": "acct-1", "risk": 0.9, "flagged": True},
        {"account": "acct-2", "risk": 0.8, "flagged": True}])
    out = tmp_path / "acme.bundle"
    export(built_index, keys, out, "--accounts", risk)
    return out


def signals(bundle: Path, keys: dict) -> dict:
    data = json.loads(ok("share", "verify", bundle, "--trust", keys["partners"],
                         "--json").stdout)
    return data["signals"]


def feedback(bundle, keys, signal, opinion, out, *extra, sign="globex"):
    return ok("share", "feedback", bundle, "--trust", keys["partners"], "--signal", signal,
              "--opinion", opinion, "--sign", keys[sign], "--out", out, *extra)


def summary(keys, *files, extra=()):
    return json.loads(ok("share", "feedback-summary", *files, "--trust", keys["reviewers"],
                         "--json", *extra).stdout)


def test_verify_lists_stable_signal_ids_for_responses_and_indicators(built_index, bundle, keys,
                                                                     tmp_path):
    ids = signals(bundle, keys)
    assert len(ids["responses"]) == 24 and len(set(ids["responses"])) == 24
    assert len(ids["accounts"]) == 2 and all(i.startswith("indicator--") for i in ids["accounts"])
    again = tmp_path / "again.bundle"
    export(built_index, keys, again, "--accounts", tmp_path / "risk.jsonl", "--valid-days", "5")
    assert signals(again, keys) == ids  # a later export names the same signals alike


def test_feedback_round_trip_counts_per_signal_and_reviewer(bundle, keys, tmp_path):
    ids = signals(bundle, keys)
    response, account = ids["responses"][3], ids["accounts"][0]
    a = tmp_path / "a.json"
    text = feedback(bundle, keys, response, "investigating", a).output
    assert "investigating on response signal" in text and "signed by Globex" in text
    b = tmp_path / "b.json"
    feedback(bundle, keys, response, "confirmed", b, "--note", "matched our own logs")
    c = tmp_path / "c.json"
    text = feedback(bundle, keys, account, "false-positive", c, "--sighting").output
    assert "STIX 2.1 Sighting" in text
    s = summary(keys, a, b, c, extra=("--bundle", bundle))
    assert (s["files"], s["counted"], s["superseded"]) == (3, 2, 1)  # a superseded by b
    assert s["opinions"] == {"confirmed": 1, "false-positive": 1, "investigating": 0}
    rows = {r["signal"]: r for r in s["signals"]}
    assert rows[response]["kind"] == "response" and rows[response]["confirmed"] == 1
    assert rows[account]["kind"] == "account" and rows[account]["sightings"] == 1
    assert [(r["org"], r["confirmed"], r["false-positive"]) for r in s["reviewers"]] == \
        [("Globex", 1, 1)]
    out = ok("share", "feedback-summary", a, b, c, "--trust", keys["reviewers"]).output
    assert "3 files verified, 2 opinions counted (1 superseded" in out
    assert f"signal      {response} (response" in out and "reviewer    Globex" in out


def test_a_sighting_is_a_stix_sighting_of_the_producers_indicator(bundle, keys, tmp_path):
    import stix2

    account = signals(bundle, keys)["accounts"][1]
    out = tmp_path / "s.json"
    feedback(bundle, keys, account, "confirmed", out, "--sighting")
    body = json.loads(out.read_text())["feedback"]
    parsed = stix2.parse(json.dumps(body["sighting"]), allow_custom=False)
    (seen,) = [o for o in parsed.objects if o.type == "sighting"]
    (where,) = [o for o in parsed.objects if o.type == "identity"]
    assert seen.sighting_of_ref == account and seen.where_sighted_refs == [where.id]
    assert where.name == "Globex"
    line = refused("share", "feedback", bundle, "--trust", keys["partners"], "--signal",
                   signals(bundle, keys)["responses"][0], "--opinion", "confirmed", "--sign",
                   keys["globex"], "--out", tmp_path / "x.json", "--sighting",
                   reason="--sighting reports an account")
    assert "not an account indicator" in line


def test_a_signal_the_bundle_does_not_hold_or_an_own_bundle_is_refused(bundle, keys, tmp_path):
    refused("share", "feedback", bundle, "--trust", keys["partners"], "--signal", "nope",
            "--opinion", "confirmed", "--sign", keys["globex"], "--out", tmp_path / "x.json",
            reason="holds no signal 'nope'")
    signal = signals(bundle, keys)["responses"][0]
    refused("share", "feedback", bundle, "--trust", keys["partners"], "--signal", signal,
            "--opinion", "confirmed", "--sign", keys["acme"], "--out", tmp_path / "x.json",
            reason="is your own bundle")
    assert not (tmp_path / "x.json").exists()


def summary_refused(keys, *files, reason, extra=()):
    return refused("share", "feedback-summary", *files, "--trust", keys["reviewers"], *extra,
                   reason=reason)


def test_unknown_reviewer_bad_signature_and_tampered_fields_are_refused(bundle, keys,
                                                                       tmp_path):
    signal = signals(bundle, keys)["responses"][0]
    good = tmp_path / "good.json"
    feedback(bundle, keys, signal, "false-positive", good)
    stranger = tmp_path / "evil.json"
    feedback(bundle, keys, signal, "confirmed", stranger, sign="evil")
    line = summary_refused(keys, good, stranger, reason="signed by unknown reviewer key")
    assert "evil.json" in line and "'Evil'" in line
    document = json.loads(good.read_text())
    for field, value in (("opinion", "confirmed"), ("signal", "x" * 32), ("note", "edited"),
                         ("created", "2099-01-01T00:00:00+00:00")):
        changed = {**document, "feedback": {**document["feedback"], field: value}}
        path = write_jsonl(tmp_path / f"{field}.json", [changed])
        summary_refused(keys, good, path, reason=f"{field}.json: bad signature")
    posing = {**document, "feedback": {**document["feedback"],
                                       "reviewer": {"org": "ACME", "key_id": document[
                                           "feedback"]["reviewer"]["key_id"]}}}
    summary_refused(keys, write_jsonl(tmp_path / "posing.json", [posing]),
                    reason="bad signature")
    summary_refused(keys, write_jsonl(tmp_path / "junk.json", [{"x": 1}]),
                    reason="junk.json: not a feedback file")
    (tmp_path / "cut.json").write_text(good.read_text()[:40])
    summary_refused(keys, tmp_path / "cut.json", reason="cut.json: not a feedback file (JSON)")


def test_feedback_about_another_bundle_is_refused_with_bundle(built_index, bundle, keys,
                                                              tmp_path):
    other = tmp_path / "other.bundle"
    export(built_index, keys, other, "--valid-days", "7")
    signal = signals(bundle, keys)["responses"][0]
    mine, theirs = tmp_path / "mine.json", tmp_path / "theirs.json"
    feedback(bundle, keys, signal, "confirmed", mine)
    feedback(other, keys, signal, "confirmed", theirs)
    assert summary(keys, mine, extra=("--bundle", bundle))["counted"] == 1
    line = summary_refused(keys, mine, theirs, extra=("--bundle", bundle),
                           reason="theirs.json: is about bundle")
    assert str(bundle) in line
    # without --bundle both count, each under its own bundle id
    s = summary(keys, mine, theirs)
    assert len({r["bundle_id"] for r in s["signals"]}) == 2 and s["counted"] == 2


def test_feedback_on_an_expired_bundle_is_still_written(built_index, keys, tmp_path):
    from datetime import datetime, timedelta, timezone

    from sharing import export_bundle

    old = tmp_path / "old.bundle"
    export_bundle(built_index, keys["consortium"], keys["acme"], old, valid_days=1,
                  now=datetime.now(timezone.utc) - timedelta(days=30))
    refused("share", "verify", old, "--trust", keys["partners"], reason="expired on")
    from sharing import read_bundle, read_trust_dir

    signal = read_bundle(old, read_trust_dir(keys["partners"]), check_period=False) \
        .signals()["responses"][0]
    feedback(old, keys, signal, "confirmed", tmp_path / "late.json")
    assert summary(keys, tmp_path / "late.json", extra=("--bundle", old))["counted"] == 1


def test_a_reviewer_key_signing_in_another_orgs_name_is_refused(bundle, keys, tmp_path):
    import base64

    from sharing import load_signing_key
    from sharing.bundle import canonical_json

    signal = signals(bundle, keys)["responses"][0]
    good = tmp_path / "good.json"
    feedback(bundle, keys, signal, "confirmed", good)
    document = json.loads(good.read_text())
    body = {**document["feedback"], "reviewer": {**document["feedback"]["reviewer"],
                                                 "org": "ACME"}}
    signature = load_signing_key(keys["globex"]).sign(canonical_json(body))
    posing = {**document, "feedback": body,
              "signature": base64.b64encode(signature).decode()}
    summary_refused(keys, write_jsonl(tmp_path / "posing.json", [posing]),
                    reason="names reviewer 'ACME' but is signed by 'Globex'")
