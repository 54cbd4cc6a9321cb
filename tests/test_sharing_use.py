"""Using partners' bundles (issue 16, "Use"): ``attribute --bundle`` on real AlpacaEval answers.

Two partners (ACME serves gpt-3.5-turbo's answers, Beta claude-2's) export bundles with style
profiles; the recipient (its own index: gpt4's answers, with five stored references) imports
them and attributes suspects through the real CLI: vicuna-7b, a real student of ChatGPT, must
rank ACME first. The ranking with bundles must equal the ranking with
the partners' raw indexes side by side, a suspect copying ACME's answers must show near-
duplicates attributed to ACME, and no text may be in the style part (or readable from it
without the key).
"""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main

N = 120  # prompts each provider served
SHARE_TOLERANCE = 0.1  # default profile against raw indexes (benchmarks/README.md: measured)
REFERENCES = ("guanaco-33b", "guanaco-7b", "oasst-sft-pythia-12b", "Meta-Llama-3-8B-Instruct",
              "Mistral-7B-Instruct-v0.2")  # independent of the providers, 5: p-values


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(*args, reason: str) -> str:
    result = run(*args)
    lines = [line for line in result.output.splitlines() if line]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") \
        and reason in lines[0], result.output
    return lines[0]


def answers(alpacaeval: Path, model: str, rows) -> list[dict]:
    lines = (alpacaeval / "outputs" / f"{model}.jsonl").read_text().splitlines()
    out = []
    for i in rows:
        row = json.loads(lines[i])
        if row["output"].strip():
            out.append({"id": f"{model}-{row['prompt_id']}", "prompt": row["instruction"],
                        "response": row["output"]})
    return out


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(alpacaeval, tmp_path_factory) -> dict:
    """Keys, three indexes (ACME, Beta, the recipient's own with references), two bundles
    exported with style profiles and imported into the recipient's partner-signals."""
    tmp = tmp_path_factory.mktemp("share-use")
    w = {"tmp": tmp, "trust": tmp / "partners", "consortium": tmp / "consortium.key",
         "other": tmp / "other.key", "signals": tmp / "partner-signals"}
    w["trust"].mkdir()
    for org in ("ACME", "Beta"):
        ok("share", "keygen", "--org", org, "--out", tmp / f"{org.lower()}.signing.key")
        (w["trust"] / f"{org.lower()}.pub").write_bytes((tmp / f"{org.lower()}.pub").read_bytes())
    ok("share", "consortium-key", "--out", w["consortium"])
    ok("share", "consortium-key", "--out", w["other"])
    for name, model in (("ACME", "gpt-3.5-turbo-0301"), ("Beta", "claude-2"), ("own", "gpt4")):
        w[f"{name}-rows"] = answers(alpacaeval, model, range(N))
        served = write(tmp / f"{name}.jsonl", w[f"{name}-rows"])
        ok("index", "build", "--index", tmp / name, served)
        w[name] = tmp / name
    for ref in REFERENCES:
        ok("reference", "add", "--index", w["own"], "--name", ref,
           write(tmp / f"{ref}.jsonl", answers(alpacaeval, ref, range(N))))
    # the default export, and the one before rare features were dropped (every feature kept)
    for org, suffix, extra in [(o, s, e) for o in ("ACME", "Beta")
                               for s, e in (("", ()), ("-all", ("--min-feature-responses", 1)))]:
        out = tmp / f"{org}{suffix}.bundle"
        w[f"{org}{suffix}-export"] = json.loads(ok(
            "share", "export", "--index", w[org], "--consortium-key", w["consortium"],
            "--sign", tmp / f"{org.lower()}.signing.key", "--out", out, "--json",
            *extra).stdout)
        shown = ok("share", "import", out, "--trust", w["trust"], "--into",
                   w["signals"].with_name(w["signals"].name + suffix)).stdout
        assert f"{len(w[org + '-rows'])} style rows" in shown
        w[f"{org}{suffix}-bundle"] = out
    w["signals-all"] = w["signals"].with_name(w["signals"].name + "-all")
    # a real student of ChatGPT (lineage.csv: vicuna-7b, teacher chatgpt), on the same prompts
    w["suspect"] = write(tmp / "vicuna.jsonl", answers(alpacaeval, "vicuna-7b", range(N)))
    return w


def attribute_json(*args) -> dict:
    return json.loads(ok("attribute", *args, "--json").stdout)


def test_a_partners_provider_is_ranked_teacher_and_equals_the_raw_index_ranking(world):
    report = world["tmp"] / "shared.md"
    shared = attribute_json(world["suspect"], "--index", world["own"], "--bundle",
                            world["signals"], "--consortium-key", world["consortium"],
                            "--report", report)
    raw = attribute_json(world["suspect"], "--index", world["own"], "--index", world["ACME"],
                         "--index", world["Beta"], "--name", "own", "--name", "ACME",
                         "--name", "Beta")
    t = shared["teachers"]
    assert t["teacher"] == "ACME" and t["ranking"][0]["origin"]["org"] == "ACME"
    assert t["ranking"][0]["origin"]["bundle_id"] == world["ACME-export"]["bundle_id"]
    assert 0 <= t["ranking"][0]["origin"]["age_days"] < 1
    # every feature kept (--min-feature-responses 1): the ranking the raw indexes give, exactly
    every = attribute_json(world["suspect"], "--index", world["own"], "--bundle",
                           world["signals-all"], "--consortium-key", world["consortium"])
    key = [(s["provider"], s["share"], s["p_value"], s["derived_fraction"])
           for s in every["teachers"]["ranking"]]
    assert key == [(s["provider"], s["share"], s["p_value"], s["derived_fraction"])
                   for s in raw["teachers"]["ranking"]]
    assert every["teachers"]["margin"] == raw["teachers"]["margin"] > 0
    # the default (rare features dropped): the same order, shares within SHARE_TOLERANCE
    assert [s["provider"] for s in t["ranking"]] == [s[0] for s in key]
    assert max(abs(a["share"] - b[1]) for a, b in zip(t["ranking"], key)) <= SHARE_TOLERANCE
    assert t["margin"] > 0
    assert [s["origin"]["org"] for s in t["ranking"] if "origin" in s] != []
    assert "origin" not in raw["teachers"]["ranking"][0]  # raw indexes: no partner origin
    assert any("partner's provider, ACME" in n for n in shared["notes"])
    assert shared["index"] == str(world["own"])  # the full attribution is against an index
    assert {p["name"] for p in shared["partners"]} == {"ACME", "Beta"}
    markdown = report.read_text()
    assert "It is a partner's provider" in markdown and f"`{world['own']}`" in markdown
    assert "Partners' shared signals" in markdown and \
        f"bundle {world['ACME-export']['bundle_id']} of ACME" in markdown


def test_a_suspect_copying_a_partner_gets_near_duplicates_attributed_to_it(world):
    copied = [{**r, "id": f"copy-{i}", "response": r["response"] + " Hope that helps."}
              for i, r in enumerate(world["ACME-rows"][:30])]
    suspect = write(world["tmp"] / "copier.jsonl", copied)
    data = attribute_json(suspect, "--index", world["own"], "--bundle", world["signals"],
                          "--consortium-key", world["consortium"])
    partners = {p["name"]: p for p in data["partners"]}
    acme, beta = partners["ACME"], partners["Beta"]
    assert acme["near_duplicates"] == acme["compared"] == 30
    assert acme["signatures"] == len(world["ACME-rows"])
    assert acme["origin"]["org"] == "ACME" and \
        acme["origin"]["bundle_id"] == world["ACME-export"]["bundle_id"]
    assert {m["suspect_id"] for m in acme["matches"]} <= {f"copy-{i}" for i in range(30)}
    assert all(m["jaccard"] > 0.8 for m in acme["matches"]) and len(acme["matches"]) == 10
    assert beta["near_duplicates"] == 0 and beta["best"] < 0.5
    text = ok("attribute", suspect, "--index", world["own"], "--bundle", world["signals"],
              "--consortium-key", world["consortium"]).stdout
    lines = [line for line in text.splitlines() if line.startswith("partner ")]
    assert len(lines) == 2 and any("ACME" in x and "30 of 30 responses near-duplicate" in x
                                   for x in lines), text


def words_read(world: dict, org: str, suffix: str = "") -> dict[str, int]:
    """A dictionary attack on a bundle's style profile: hash every distinct word of each
    exported answer to its bucket and look it up in the answer's row, with the consortium key
    (the columns back in bucket order: a partner) and without it (the stored columns: an
    outsider). Content words: those outside the 200 commonest of all the world's answers."""
    from collections import Counter

    from fingerprint.style import StyleVectorizer, style_tokens
    from index import open_index
    from sharing import load_consortium_key, read_imported
    from sharing.profile import read_style, style_config

    with open_index(world["own"]) as idx:
        config = idx.config
    bundle_id = world[f"{org}{suffix}-export"]["bundle_id"]
    bundle = read_imported(world["signals" + suffix] / bundle_id)
    key = load_consortium_key(world["consortium"])
    with_key, _ = read_style(bundle.path, bundle.manifest, bundle.parts, key.secret,
                             style_config(config))
    section, raw = bundle.manifest["style"], bundle.parts["style.bin"]
    rows, nnz = section["rows"], section["nnz"]
    columns = np.frombuffer(raw, "<i4", nnz, offset=8 * (rows + 1))
    indptr = np.frombuffer(raw, "<i8", rows + 1)
    counts = Counter(t for name in ("ACME", "Beta", "own") for r in world[f"{name}-rows"]
                     for t in style_tokens(r["response"]) if t.isalnum())
    common = {w for w, _ in counts.most_common(200)}
    vectorizer = StyleVectorizer(config.style_features)
    out = Counter()
    for i, row in enumerate(world[f"{org}-rows"]):
        words = sorted({t for t in style_tokens(row["response"]) if t.isalnum()})
        # A single word's row holds its own bucket: the dictionary attacker's lookup table.
        buckets = vectorizer.transform(words).indices
        public = set(columns[indptr[i]:indptr[i + 1]].tolist())
        keyed = set(with_key[i].indices.tolist())
        for word, b in zip(words, buckets):
            kind = "word" if word in common else "content"
            out[kind] += 1
            out[f"{kind}_read"] += b in keyed
            out[f"{kind}_read_without_key"] += b in public
    return dict(out)


def test_no_text_in_the_style_part_and_no_word_readable_without_the_key(world):
    for suffix in ("", "-all"):
        with zipfile.ZipFile(world[f"ACME{suffix}-bundle"]) as zf:
            style_bytes = zf.read("style.bin") + zf.read("style.json")
            everything = b"".join(zf.read(n) for n in zf.namelist())
        for row in world["ACME-rows"]:
            for blob in (style_bytes, everything):
                assert row["response"][:40].encode() not in blob
                assert row["prompt"][:40].encode() not in blob and row["id"].encode() not in blob
        read = words_read(world, "ACME", suffix)
        total = read["word"] + read["content"]
        without = read["word_read_without_key"] + read["content_read_without_key"]
        assert without < 0.02 * total  # without the key, chance (nnz / 2**18 per lookup)


def test_a_partner_with_the_key_reads_few_content_words_only_every_one_with_k_1(world):
    """The default export drops every feature found in answers to fewer than 20 different
    prompts; a key-holding partner then reads under 1% of the answers' content words
    (measured: 10 of 5,436 here; benchmarks/README.md for more) and still 68% of their common
    words (the style); with every feature kept, as before (--min-feature-responses 1), it
    reads every word of every answer."""
    before, after = words_read(world, "ACME", "-all"), words_read(world, "ACME")
    assert before["content_read"] == before["content"] > 1000
    assert before["word_read"] == before["word"]
    assert world["ACME-export"]["style_rows"] == len(world["ACME-rows"])
    assert after["content"] == before["content"]
    assert after["content_read"] < 0.01 * after["content"]
    assert after["word_read"] > 0.5 * after["word"]  # style (common words) stays


def test_a_prompt_answered_again_counts_once_toward_the_feature_threshold():
    """A topic word in ten answers to one prompt (asked again, or answered by two versions of
    a model) is still one prompt's content: counting rows would keep it."""
    from scipy import sparse

    from sharing.profile import common_features

    matrix = sparse.csr_matrix(np.array([[1, 1, 0]] * 10 + [[0, 1, 2]] * 10, dtype=np.float32))
    same = ["p"] * 10 + [f"q{i}" for i in range(10)]
    kept = common_features(matrix, 10, same).toarray()
    assert kept[:, 0].sum() == 0  # ten answers, one prompt: dropped
    assert (kept[:, 1] == 1).all() and (kept[10:, 2] == 2).all()  # 11 and 10 prompts: kept
    assert common_features(matrix, 10).toarray()[:, 0].sum() == 10  # rows as their own prompts
    assert common_features(matrix, 10, [None] * 20).toarray()[:, 0].sum() == 10


def test_a_pooled_profile_sums_responses_and_carries_no_prompt_key(world):
    """--style-pool 4: a quarter as many rows, each the sum of four answers, none paired with
    a prompt; together they hold exactly the counts of the unpooled profile."""
    from index import open_index
    from sharing import load_consortium_key, load_partners

    into = world["tmp"] / "pooled-signals"
    made = json.loads(ok("share", "export", "--index", world["ACME"], "--consortium-key",
                         world["consortium"], "--sign", world["tmp"] / "acme.signing.key",
                         "--out", world["tmp"] / "pooled.bundle", "--style-pool", 4,
                         "--min-feature-responses", 1, "--json").stdout)
    ok("share", "import", world["tmp"] / "pooled.bundle", "--trust", world["trust"],
       "--into", into)
    with open_index(world["own"]) as idx:
        config = idx.config
    pooled, = load_partners([into], [world["consortium"]], config)
    every = next(p for p in load_partners([world["signals-all"]], [world["consortium"]], config)
                 if p.name == "ACME")
    assert made["style_rows"] == len(pooled.profile) == -(-len(world["ACME-rows"]) // 4)
    assert set(pooled.profile.prompt_keys) == {None} and pooled.profile.all_features
    assert np.array_equal(np.asarray(pooled.profile.style_rows.sum(axis=0)),
                          np.asarray(every.profile.style_rows.sum(axis=0)))
    sizes = np.diff(pooled.profile.style_rows.indptr)
    assert sizes.min() > np.diff(every.profile.style_rows.indptr).mean()  # four answers each
    key = load_consortium_key(world["consortium"])
    assert key.key_id == pooled.origin["consortium_key_id"]
    for bundle, k, pool in (("pooled.bundle", 1, 4), ("ACME.bundle", 20, 1)):
        style = json.loads(ok("share", "verify", world["tmp"] / bundle, "--trust",
                              world["trust"], "--json").stdout)["style"]
        assert (style["min_feature_responses"], style["pool"], style["responses"]) == \
            (k, pool, len(world["ACME-rows"]))


def test_a_mismatched_style_config_is_refused_naming_expected_and_actual(world, fingerprinter):
    from fingerprint import FingerprintConfig, Fingerprinter
    from index import build_index

    other = world["tmp"] / "own-2e17"
    build_index(other, [write(world["tmp"] / "own-small.jsonl", world["own-rows"][:20])],
                Fingerprinter(FingerprintConfig(style_features=2**17)))
    line = refused("attribute", world["suspect"], "--index", other, "--bundle",
                   world["signals"], "--consortium-key", world["consortium"],
                   reason="style profile made with")
    assert "'style_features': 262144" in line and "'style_features': 131072" in line


def test_a_bundle_keyed_with_a_key_the_user_does_not_hold_is_refused(world):
    line = refused("attribute", world["suspect"], "--index", world["own"], "--bundle",
                   world["signals"], "--consortium-key", world["other"],
                   reason="which you do not hold")
    assert json.loads(world["consortium"].read_text())["key_id"] in line
    refused("attribute", world["suspect"], "--index", world["own"], "--bundle",
            world["signals"], reason="--bundle needs --consortium-key")
    refused("attribute", world["suspect"], "--index", world["own"], "--bundle",
            world["signals"], "--bundle", world["signals"] / world["ACME-export"]["bundle_id"],
            "--consortium-key", world["consortium"], reason="is given twice")


def test_an_expired_bundle_is_refused_at_use(world):
    from sharing import ExpiredBundleError, load_partners
    from index import open_index

    with open_index(world["own"]) as idx:
        config = idx.config
    later = datetime.now(timezone.utc) + timedelta(days=91)
    with pytest.raises(ExpiredBundleError, match="expired on"):
        load_partners([world["signals"]], [world["consortium"]], config, now=later)
    partners = load_partners([world["signals"]], [world["consortium"]], config)
    assert sorted(p.name for p in partners) == ["ACME", "Beta"]
    assert all(p.profile is not None and len(p.profile) == len(world[f"{p.name}-rows"])
               for p in partners)


def test_without_a_style_profile_a_partner_gives_near_duplicates_only(world):
    out = world["tmp"] / "nostyle.bundle"
    made = json.loads(ok("share", "export", "--index", world["ACME"], "--consortium-key",
                         world["consortium"], "--sign", world["tmp"] / "acme.signing.key",
                         "--out", out, "--no-style", "--json").stdout)
    assert made["style_rows"] == 0
    assert world["ACME-export"]["style_rows"] == len(world["ACME-rows"])
    with zipfile.ZipFile(out) as zf:
        assert "style.bin" not in zf.namelist()
    into = world["tmp"] / "nostyle-signals"
    ok("share", "import", out, "--trust", world["trust"], "--into", into)
    copier = write(world["tmp"] / "copier-2.jsonl", world["ACME-rows"][:5])
    data = attribute_json(copier, "--index", world["own"], "--bundle", into,
                          "--consortium-key", world["consortium"])
    assert data["teachers"] is None  # one index and no profile: nothing to rank
    assert [(p["name"], p["near_duplicates"]) for p in data["partners"]] == [("ACME", 5)]
    text = ok("attribute", copier, "--index", world["own"], "--bundle", into / made["bundle_id"],
              "--consortium-key", world["consortium"]).stdout
    assert "partner   ACME: bundle" in text and "no style profile" in text, text


def test_a_reference_that_is_a_partners_outputs_is_refused(world):
    """The partner's answers given as a reference would put the candidate teacher into the
    null; with no public signature shared, equal style rows give it away."""
    refused("attribute", world["suspect"], "--index", world["own"], "--bundle",
            world["signals"], "--consortium-key", world["consortium"], "--reference",
            write(world["tmp"] / "acme-outputs.jsonl", world["ACME-rows"]),
            reason="gives the same answers as provider 'ACME'")


def test_an_imported_bundle_changed_on_disk_is_refused_at_use(world, tmp_path):
    import shutil

    copy = tmp_path / world["ACME-export"]["bundle_id"]
    shutil.copytree(world["signals"] / world["ACME-export"]["bundle_id"], copy)
    data = bytearray((copy / "style.bin").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "style.bin").write_bytes(bytes(data))
    refused("attribute", world["suspect"], "--index", world["own"], "--bundle", copy,
            "--consortium-key", world["consortium"], reason="part 'style.bin' has sha256")
    (copy / "stray.txt").write_text("x")
    refused("attribute", world["suspect"], "--index", world["own"], "--bundle", copy,
            "--consortium-key", world["consortium"], reason="'stray.txt' is not a part")
    refused("attribute", world["suspect"], "--index", world["own"], "--bundle",
            tmp_path / "nowhere", "--consortium-key", world["consortium"],
            reason="no such import directory")
