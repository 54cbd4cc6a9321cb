"""Reference packs and reference facts: open models probed over a real local server, gathered in
a pack with their facts, installed into an index once, and a null matched to the suspect."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from conftest import styled_rows, write_jsonl
from replay import ReplayServer

ERAS = {1: "2023", 2: "2023", 3: "2023", 4: "2023", 5: "2023", 6: "2024"}
N = 40


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def prompts_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl",
                       [{"id": f"p{i}", "prompt": r["prompt"]}
                        for i, r in enumerate(styled_rows(0, N))])


def probe(tmp_path: Path, style: int) -> Path:
    """Model ``style`` answers the prompts over a real OpenAI-compatible server on 127.0.0.1;
    ``probe run`` keeps its answers."""
    out = tmp_path / f"open-{style}.jsonl"
    answers = {r["prompt"]: r["response"] for r in styled_rows(style, N)}
    with ReplayServer(answers, f"open-{style}") as server:
        result = invoke("probe", "run", prompts_file(tmp_path), "--endpoint", server.url,
                        "--model", f"open-{style}", "--out", out,
                        env={"OPENAI_API_KEY": "sk-test"})
    assert result.exit_code == 0, result.output
    return out


def served_index(tmp_path: Path, fingerprinter) -> Path:
    from index import build_index

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "idx"
    build_index(path, [write_jsonl(tmp_path / "served.jsonl", styled_rows(0, N))], fingerprinter)
    return path


def pack_of(tmp_path: Path, styles=range(1, 7), probed: bool = False) -> Path:
    """A pack of models ``styles``, each with its era and base model."""
    pack = tmp_path / "pack"
    for style in styles:
        answers = probe(tmp_path, style) if probed else write_jsonl(
            tmp_path / f"open-{style}.jsonl", styled_rows(style, N))
        result = invoke("reference", "pack", "add", pack, answers, "--name", f"open-{style}",
                        "--era", ERAS[style], "--base-model", f"base-{style % 2}")
        assert result.exit_code == 0, result.output
    return pack


def test_probed_open_models_installed_with_their_facts_and_a_matched_null(tmp_path,
                                                                           fingerprinter):
    index = served_index(tmp_path, fingerprinter)
    pack = pack_of(tmp_path, probed=True)
    listed = invoke("reference", "pack", "list", pack, "--json")
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.output)
    assert sorted(entries) == [f"open-{s}" for s in range(1, 7)]
    first = entries["open-1"]
    assert first["responses"] == N and first["meta"] == {"base_model": "base-1", "era": "2023"}
    assert first["probe"]["models"] == ["open-1"] and first["probe"]["answered"] == N

    done = invoke("reference", "pack", "install", pack, "--index", index, "--json")
    assert done.exit_code == 0, done.output
    assert [d["status"] for d in json.loads(done.output)] == ["added"] * 6
    manifest = (index / "manifest.json").read_bytes()
    again = invoke("reference", "pack", "install", pack, "--index", index)
    assert again.exit_code == 0 and again.output.count("already installed") == 6
    assert (index / "manifest.json").read_bytes() == manifest  # nothing written twice
    refs = json.loads(invoke("reference", "list", "--index", index, "--json").output)
    assert refs["open-6"]["meta"]["era"] == "2024"
    assert refs["open-6"]["meta"]["source_sha256"] == entries["open-6"]["sha256"]

    suspect = write_jsonl(tmp_path / "suspect.jsonl", styled_rows(0, N))
    everyone = json.loads(invoke("attribute", suspect, "--index", index, "--json").output)
    matched = invoke("attribute", suspect, "--index", index, "--json",
                     "--match-references", "era=2023")
    assert matched.exit_code == 0, matched.output
    out = json.loads(matched.output)
    assert everyone["provenance"]["references"] == [f"open-{s}" for s in range(1, 7)]
    assert out["provenance"]["references"] == [f"open-{s}" for s in range(1, 6)]
    assert out["provenance"]["reference_match"] == {"era": "2023"}
    share = out["signals"]["provider_share"]
    assert share["references"] == 5 and share["p_value"] == pytest.approx(1 / 6)
    assert any("cannot go below 1/6" in n for n in out["notes"])
    assert any(n.startswith("the references are the 5 matching era=2023") for n in out["notes"])
    both = json.loads(invoke("attribute", suspect, "--index", index, "--json",
                             "--match-references", "era=2023",
                             "--match-references", "base_model=BASE-1").output)
    assert both["provenance"]["references"] == ["open-1", "open-3", "open-5"]  # case folded
    # too few matching references for a p-value: said, never a number
    assert both["p_value"] is None and "p-value needs at least 5 references on shared " \
        "prompts; have 3" in " ".join(both["notes"])

    none = invoke("attribute", suspect, "--index", index, "--match-references", "era=1999")
    assert none.exit_code == 1
    assert "none of the 6 references has era=1999 (era: 2023, 2024)" in none.output
    with_files = invoke("attribute", suspect, "--index", index, "--match-references", "era=2023",
                        "--reference", tmp_path / "open-1.jsonl")
    assert with_files.exit_code == 2 and "not with --no-references or --reference" in \
        with_files.output


def test_an_interrupted_install_is_finished_by_a_rerun_and_a_clash_installs_nothing(
        tmp_path, fingerprinter):
    index = served_index(tmp_path, fingerprinter)
    pack = pack_of(tmp_path, styles=(1, 2, 3))
    first = invoke("reference", "pack", "install", pack, "--index", index, "--only", "open-2")
    assert first.exit_code == 0 and "open-2" in first.output and "open-1" not in first.output
    rest = invoke("reference", "pack", "install", pack, "--index", index)
    assert rest.exit_code == 0
    assert [line.split()[:2] for line in rest.output.splitlines()] == [
        ["open-1", "added"], ["open-2", "already"], ["open-3", "added"]]

    other = served_index(tmp_path / "other", fingerprinter)
    from index import add_reference
    add_reference(other, "open-3", [write_jsonl(tmp_path / "x.jsonl", styled_rows(5, N))],
                  fingerprinter)
    before = (other / "manifest.json").read_bytes()
    clash = invoke("reference", "pack", "install", pack, "--index", other)
    assert clash.exit_code == 1
    assert "already holds reference(s) open-3 from other answers than the pack's; nothing " \
           "was installed" in clash.output
    assert (other / "manifest.json").read_bytes() == before
    unknown = invoke("reference", "pack", "install", pack, "--index", other, "--only", "nope")
    assert unknown.exit_code == 1 and "holds no reference nope" in unknown.output


def rewrite(pack: Path, change) -> None:
    """Edit pack.json as an attacker would: change it, then make its checksum match again."""
    data = json.loads((pack / "pack.json").read_text())
    data.pop("checksum")
    change(data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    data["checksum"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    (pack / "pack.json").write_text(json.dumps(data))


def test_a_damaged_or_edited_pack_is_refused_naming_what_and_installs_nothing(
        tmp_path, fingerprinter):
    index = served_index(tmp_path, fingerprinter)
    before = (index / "manifest.json").read_bytes()
    pack = pack_of(tmp_path, styles=(1, 2))
    good = (pack / "pack.json").read_bytes()
    answers = pack / "answers" / "open-2.jsonl"
    data = bytearray(answers.read_bytes())
    data[100] ^= 0x01
    answers.write_bytes(bytes(data))
    out = invoke("reference", "pack", "install", pack, "--index", index)
    assert out.exit_code == 1 and f"{answers}: changed since it was added" in out.output
    assert invoke("reference", "pack", "list", pack).exit_code == 1
    assert (index / "manifest.json").read_bytes() == before  # open-1 was not installed either

    cases = {
        "checksum mismatch": lambda p: (p / "pack.json").write_text(
            good.decode().replace('"responses": 40', '"responses": 41')),
        "not valid JSON": lambda p: (p / "pack.json").write_bytes(good[:len(good) // 2]),
        "inside the pack": lambda p: rewrite(p, lambda d: d["references"]["open-1"].update(
            file="answers/open-1/../../../../etc/passwd")),
        "(upgrade the toolkit)": lambda p: rewrite(p, lambda d: d.update(version=2)),
        "is not a lower-case identifier": lambda p: rewrite(
            p, lambda d: d["references"]["open-1"]["meta"].update({"Bad Key": "x"})),
        "not a reference pack": lambda p: (p / "pack.json").unlink(),
    }
    for expected, damage in cases.items():
        (pack / "pack.json").write_bytes(good)
        damage(pack)
        out = invoke("reference", "pack", "install", pack, "--index", index)
        assert out.exit_code == 1 and expected in out.output, (expected, out.output)
        assert len(out.output.strip().splitlines()) == 1
    assert (index / "manifest.json").read_bytes() == before


def test_adding_to_a_pack_checks_names_answers_and_facts_first(tmp_path):
    pack = tmp_path / "pack"
    answers = write_jsonl(tmp_path / "a.jsonl", styled_rows(1, 5))
    assert invoke("reference", "pack", "add", pack, answers, "--name", "m").exit_code == 0
    again = invoke("reference", "pack", "add", pack, answers, "--name", "m")
    assert again.exit_code == 1 and "already holds reference 'm'; give --replace" in again.output
    replaced = invoke("reference", "pack", "add", pack, write_jsonl(
        tmp_path / "b.jsonl", styled_rows(2, 7)), "--name", "m", "--replace", "--era", "2023")
    assert replaced.exit_code == 0 and "added 7 answers" in replaced.output
    bad = {"--name": ("../evil", "reference name '../evil'"),
           "--meta": ("nokey", "'nokey' is not KEY=VALUE"),
           "--era": ("two\nlines", "must be 1 to 200 characters on one line")}
    for option, (value, message) in bad.items():
        args = ["--name", "x"] if option != "--name" else []
        out = invoke("reference", "pack", "add", pack, answers, option, value, *args)
        assert out.exit_code == 1 and message in out.output, out.output
    empty = write_jsonl(tmp_path / "e.jsonl", [{"prompt": "p", "response": ""}])
    out = invoke("reference", "pack", "add", pack, empty, "--name", "e")
    assert out.exit_code == 1 and "no non-empty answer (1 empty)" in out.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "p", "response": "r"}\n{"prompt": \n')
    out = invoke("reference", "pack", "add", pack, broken, "--name", "b")
    assert out.exit_code == 1 and f"{broken} line 2" in out.output
    names = json.loads(invoke("reference", "pack", "list", pack, "--json").output)
    assert list(names) == ["m"] and names["m"]["meta"] == {"era": "2023"}
    # what was refused left no copy behind; what is stored is what was counted
    assert sorted(p.name for p in (pack / "answers").iterdir()) == ["m.jsonl"]
    assert (pack / "answers" / "m.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_reference_facts_are_set_merged_removed_and_kept_by_compaction(tmp_path, fingerprinter):
    from fingerprint.errors import ConfigError
    from index import add_reference, compact_index, describe_reference, open_index

    index = served_index(tmp_path, fingerprinter)
    for part in range(2):  # two segments, so compaction merges them
        add_reference(index, "m1", [write_jsonl(tmp_path / f"m{part}.jsonl",
                                                styled_rows(1, 10, start=10 * part))],
                      fingerprinter, meta={"era": "2023"} if part == 0 else {"vendor": "acme"})
    shown = invoke("reference", "describe", "m1", "--index", index)
    assert shown.exit_code == 0 and shown.output.strip() == "m1: era=2023, vendor=acme"
    changed = invoke("reference", "describe", "m1", "--index", index, "--era", "",
                     "--base-model", "llama-2-13b", "--json")
    assert json.loads(changed.output)["meta"] == {"base_model": "llama-2-13b", "vendor": "acme"}
    compact_index(index)
    with open_index(index) as idx:
        assert len(idx.references["m1"].segments) == 1
        assert idx.manifest.reference_meta == {"m1": {"base_model": "llama-2-13b",
                                                      "vendor": "acme"}}
    missing = invoke("reference", "describe", "m2", "--index", index, "--era", "2023")
    assert missing.exit_code == 1 and "holds no reference 'm2' (it holds: m1)" in missing.output
    with pytest.raises(ConfigError, match="key 'Era' is not a lower-case identifier"):
        describe_reference(index, "m1", {"Era": "2023"})
    # facts go in with the rows, in one swap: no rows, no facts
    empty = write_jsonl(tmp_path / "none.jsonl", [{"prompt": "p", "response": ""}])
    add_reference(index, "m3", [empty], fingerprinter, meta={"era": "2024"})
    with open_index(index) as idx:
        assert "m3" not in idx.manifest.reference_meta and "m3" not in idx.references


def test_facts_of_a_reference_the_index_does_not_hold_are_an_edited_manifest(tmp_path,
                                                                               fingerprinter):
    from index import IndexCorruptedError, add_reference, open_index

    index = served_index(tmp_path, fingerprinter)
    add_reference(index, "m1", [write_jsonl(tmp_path / "m.jsonl", styled_rows(1, 5))],
                  fingerprinter, meta={"era": "2023"})
    for edit, message in ((lambda d: d["reference_meta"].update(ghost={"era": "2023"}),
                           "names references the index does not hold: ghost"),
                          (lambda d: d["reference_meta"]["m1"].update(era=""),
                           "reference_meta.m1: era='' must be 1 to 200 characters")):
        data = json.loads((index / "manifest.json").read_text())
        data.pop("checksum")
        edit(data)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        data["checksum"] = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
        saved = (index / "manifest.json").read_bytes()
        (index / "manifest.json").write_text(json.dumps(data))
        with pytest.raises(IndexCorruptedError, match=message):
            open_index(index)
        (index / "manifest.json").write_bytes(saved)


def test_probe_until_decided_draws_its_null_from_matching_references(tmp_path, fingerprinter):
    from index import add_reference

    index = served_index(tmp_path, fingerprinter)
    for style in range(1, 6):
        add_reference(index, f"open-{style}", [write_jsonl(tmp_path / f"r{style}.jsonl",
                                                           styled_rows(style, N))],
                      fingerprinter, meta={"era": ERAS[style], "vendor": f"v{style % 2}"})
    answers = {r["prompt"]: r["response"] for r in styled_rows(0, N)}
    with ReplayServer(answers, "suspect") as server:
        def probe_run(*extra):
            return invoke("probe", "run", prompts_file(tmp_path), "--endpoint", server.url,
                          "--model", "suspect", "--out", tmp_path / "out.jsonl",
                          "--until-decided", "--index", index, "--concurrency", "1", *extra,
                          env={"OPENAI_API_KEY": "sk-test"})

        nothing = probe_run("--match-references", "vendor=v7")
        assert nothing.exit_code == 1
        assert "none of the 5 references has vendor=v7 (vendor: v0, v1)" in nothing.output
        assert not server.log.events  # refused before any request
        files = probe_run("--match-references", "era=2023", "--reference", tmp_path / "r1.jsonl")
        assert files.exit_code == 2 and "not with --reference" in files.output
        matched = probe_run("--match-references", "vendor=v1")  # open-1, open-3, open-5
        assert matched.exit_code == 0, matched.output
        assert "sequential test: derived after" in matched.output
    alone = invoke("probe", "run", prompts_file(tmp_path), "--endpoint", "http://127.0.0.1:9",
                   "--model", "m", "--out", tmp_path / "o.jsonl", "--match-references", "era=1")
    assert alone.exit_code == 2 and "used only with --until-decided" in alone.output


def test_a_reference_created_meanwhile_is_not_appended_to(built_index, fingerprinter, tmp_path):
    """An install checks clashes before it writes; the write itself refuses (under the writer
    lock) a reference another writer created in between, so two models' answers never mix."""
    from index import IndexExistsError, add_reference, read_manifest

    first = write_jsonl(tmp_path / "first.jsonl", styled_rows(1, 4))
    other = write_jsonl(tmp_path / "other.jsonl", styled_rows(2, 4))
    add_reference(built_index, "m", [first], fingerprinter, new_reference=True)
    before = read_manifest(built_index)
    with pytest.raises(IndexExistsError, match="reference 'm' exists"):
        add_reference(built_index, "m", [other], fingerprinter, new_reference=True)
    assert read_manifest(built_index) == before
    add_reference(built_index, "m", [other], fingerprinter)  # appending is still the default
    assert read_manifest(built_index).references["m"] != before.references["m"]
