import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import served_rows, served_text, write_jsonl
from fingerprint import FingerprintConfig, Fingerprinter, InputError
from index import (ConfigMismatchError, DuplicateIdError, IndexCorruptedError, IndexExistsError,
                   IndexLockedError, NotAnIndexError, WriterLock, add_files, build_index,
                   create_index, open_index)


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file below path, except the (empty, reusable) lock file."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".writer.lock"}


def test_build_stores_every_fingerprint_and_field(built_index, fingerprinter):
    with open_index(built_index) as idx:
        assert len(idx) == 24 and idx.manifest.embedding_dim == fingerprinter.embedding_dim
        texts = [served_text(i) for i in range(24)]
        assert np.array_equal(idx.signatures(list(range(24))),
                              fingerprinter.minhasher.signatures(texts))
        assert np.allclose(idx.embeddings([0, 23]),
                           fingerprinter.embedder.embed([texts[0], texts[23]]),
                           atol=1e-3)  # stored as float16
        stored = idx.responses([5])[5]
        assert (stored.id, stored.model, stored.account, stored.response) == \
            ("resp-5", "provider-1", "acct-2", served_text(5))


def test_search_finds_each_response_as_its_own_best_match(built_index):
    with open_index(built_index) as idx:
        rows = list(range(24))
        lexical = idx.search_minhash(idx.signatures(rows), k=3)
        semantic = idx.search_embeddings(idx.embeddings(rows), k=3)
        assert lexical.rows[:, 0].tolist() == rows and np.all(lexical.scores[:, 0] == 1.0)
        assert semantic.rows[:, 0].tolist() == rows
        assert np.allclose(semantic.scores[:, 0], 1.0, atol=2e-3)  # float16 storage
        assert np.all(lexical.scores[:, 1] < 1.0)


def test_manifest_records_versions_config_counts_and_checksums(built_index):
    manifest = json.loads((built_index / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["counts"]["responses"] == 24
    assert manifest["config"] == FingerprintConfig().to_dict()
    assert {"datasketch", "faiss-cpu", "numpy", "sentence-transformers"} <= set(manifest["versions"])
    (segment,) = manifest["segments"]
    for f in segment["files"]:
        path = built_index / "segments" / segment["name"] / f["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f["sha256"]
    assert np.load(built_index / "segments" / segment["name"] / "signatures.npy").dtype == "<u4"


def test_add_appends_a_segment_and_rows_continue(built_index, tmp_path, fingerprinter):
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(6, start=100))
    result = add_files(built_index, [more], fingerprinter)
    assert (result.added, result.total) == (6, 30)
    with open_index(built_index) as idx:
        assert [s.rows for s in idx.segments] == [24, 6]
        assert idx.responses([29])[29].id == "resp-105"
        hit = idx.search_minhash(fingerprinter.minhasher.signatures([served_text(103)]), k=1)
        assert hit.rows[0, 0] == 27 and hit.scores[0, 0] == 1.0


def test_bad_line_mid_batch_leaves_the_index_exactly_as_it_was(built_index, tmp_path,
                                                               fingerprinter):
    before = snapshot(built_index)
    rows = [json.dumps(r) for r in served_rows(300, start=200)]
    rows[290] = '{"id": "broken", "response": '
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl line 291: malformed JSON"):
        add_files(built_index, [bad], fingerprinter)  # fails after a whole chunk was embedded
    assert snapshot(built_index) == before
    assert list((built_index / "segments").iterdir()) == \
        [built_index / "segments" / json.loads((built_index / "manifest.json").read_text())
         ["segments"][0]["name"]]


def test_duplicate_ids_are_refused_or_counted(built_index, tmp_path, fingerprinter):
    again = write_jsonl(tmp_path / "again.jsonl", served_rows(2, start=23))  # resp-23 is stored
    before = snapshot(built_index)
    with pytest.raises(DuplicateIdError, match=r'again.jsonl line 1: id "resp-23" is already in'):
        add_files(built_index, [again], fingerprinter)
    assert snapshot(built_index) == before
    twice = write_jsonl(tmp_path / "twice.jsonl", served_rows(1, start=50) * 2)
    with pytest.raises(DuplicateIdError, match="line 2: .* earlier in this batch"):
        add_files(built_index, [twice], fingerprinter)
    result = add_files(built_index, [again, twice], fingerprinter, skip_duplicates=True)
    assert (result.added, result.skipped_duplicates) == (2, 2)
    assert open_index(built_index).manifest.segments[-1].skipped_duplicates == 2


def test_no_store_text_keeps_fingerprints_and_metadata_only(tmp_path, served_file, fingerprinter):
    build_index(tmp_path / "idx", [served_file], fingerprinter, store_text=False)
    with open_index(tmp_path / "idx") as idx:
        stored = idx.responses([0])[0]
        assert (stored.id, stored.prompt, stored.response) == ("resp-0", None, None)
        assert stored.prompt_hash is not None
        assert idx.manifest.segments[0].store_text is False


def test_second_writer_is_refused_while_the_first_holds_the_lock(built_index, tmp_path,
                                                                 fingerprinter):
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(1, start=500))
    with WriterLock(built_index):
        with pytest.raises(IndexLockedError, match=r"another writer .*pid \d+"):
            add_files(built_index, [more], fingerprinter)
    assert add_files(built_index, [more], fingerprinter).added == 1  # released afterwards


def test_lock_held_by_another_process(built_index, tmp_path, fingerprinter):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from index import WriterLock; "
         "l = WriterLock(__import__('pathlib').Path(sys.argv[1])); l.__enter__(); "
         "print('locked', flush=True); time.sleep(60)", str(built_index)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        more = write_jsonl(tmp_path / "more.jsonl", served_rows(1, start=600))
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            add_files(built_index, [more], fingerprinter)
    finally:
        holder.kill()
        holder.wait()
    assert add_files(built_index, [more], fingerprinter).added == 1  # the kernel freed the lock


def test_writer_killed_mid_batch_leaves_index_intact_and_debris_is_cleaned(built_index,
                                                                           fingerprinter):
    before = snapshot(built_index)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "cli", "index", "add", "-", "--index",
           str(built_index)]
    writer = subprocess.Popen(cli, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    for r in served_rows(300, start=1000):  # more than one chunk, then the input stays open
        writer.stdin.write((json.dumps(r) + "\n").encode())
    writer.stdin.flush()
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the first chunk is in the unfinished segment
        tmp = list((built_index / "segments").glob(".tmp-*"))
        if tmp and (tmp[0] / "metadata.sqlite").exists() and \
                (tmp[0] / "metadata.sqlite").stat().st_size > 8192:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the writer never started its segment")
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert {k: v for k, v in snapshot(built_index).items() if ".tmp-" not in k} == before
    with open_index(built_index) as idx:
        assert len(idx) == 24
    more = write_jsonl(built_index.parent / "after.jsonl", served_rows(2, start=2000))
    assert add_files(built_index, [more], fingerprinter).total == 26
    assert not list((built_index / "segments").glob(".tmp-*"))


def test_opening_with_another_config_says_expected_and_actual(built_index):
    with pytest.raises(ConfigMismatchError,
                       match=r"num_perm: index has 128, got 64; seed: index has 1, got 2"):
        open_index(built_index, expected_config=FingerprintConfig(num_perm=64, seed=2))
    with pytest.raises(ConfigMismatchError, match="num_perm"):
        add_files(built_index, [], Fingerprinter(FingerprintConfig(num_perm=64)))


def test_an_index_refuses_another_embedding_backend(built_index):
    """Backends' vectors live in different spaces (even the same model's int8 and fp32 differ),
    so an index built with one must not be searched or extended with another."""
    from fingerprint.config import EMBEDDING_BACKENDS

    built = FingerprintConfig().embedding_backend
    other = next(b for b in EMBEDDING_BACKENDS if b != built)
    with pytest.raises(ConfigMismatchError,
                       match=f"embedding_backend: index has '{built}', got '{other}'"):
        open_index(built_index, expected_config=FingerprintConfig(embedding_backend=other))
    with pytest.raises(ConfigMismatchError, match="embedding_backend"):
        add_files(built_index, [], Fingerprinter(FingerprintConfig(embedding_backend=other)))


def test_directory_that_is_not_an_index(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NotAnIndexError, match="not an index"):
        open_index(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(NotAnIndexError, match="expected format 'fingerprint-index'"):
        open_index(tmp_path)
    with pytest.raises(IndexExistsError, match="not an empty directory"):
        create_index(tmp_path / "notes.txt", FingerprintConfig())


def test_build_refuses_an_existing_index(built_index, served_file, fingerprinter):
    before = snapshot(built_index)
    with pytest.raises(IndexExistsError, match="already exists"):
        build_index(built_index, [served_file], fingerprinter)
    assert snapshot(built_index) == before


def test_failed_build_removes_the_new_directory(tmp_path, fingerprinter):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "fine"}\n{"oops": 1}\n')
    with pytest.raises(InputError):
        build_index(tmp_path / "idx", [bad], fingerprinter)
    assert not (tmp_path / "idx").exists()


def _segment_file(index_path: Path, name: str) -> Path:
    return next((index_path / "segments").glob(f"seg-*/{name}"))


def test_truncated_segment_file_is_reported_with_sizes(built_index):
    path = _segment_file(built_index, "signatures.npy")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(IndexCorruptedError,
                       match=rf"signatures.npy: size is {size - 100} bytes, expected {size}"):
        open_index(built_index)


def test_damaged_segment_file_fails_its_checksum(built_index):
    path = _segment_file(built_index, "embeddings.faiss")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    idx = open_index(built_index)  # sizes still agree
    with pytest.raises(IndexCorruptedError, match=r"embeddings.faiss: checksum mismatch "
                                                   r"\(expected sha256 [0-9a-f]{64}, actual"):
        idx.search_embeddings(np.zeros((1, idx.embedding_dim), dtype=np.float32), k=1)


def test_missing_segment_file(built_index):
    _segment_file(built_index, "metadata.sqlite").unlink()
    with pytest.raises(IndexCorruptedError, match="metadata.sqlite: file is missing"):
        open_index(built_index)


def test_edited_manifest_fails_its_checksum(built_index):
    path = built_index / "manifest.json"
    path.write_text(path.read_text().replace('"num_perm": 128', '"num_perm": 64'))
    with pytest.raises(IndexCorruptedError, match="manifest.json: checksum mismatch"):
        open_index(built_index)


def test_candidate_search_on_1bit_codes_finds_near_duplicates(built_index, fingerprinter,
                                                              monkeypatch):
    import index.search

    monkeypatch.setattr(index.search, "EXACT_SCAN_ROWS", 0)  # force the large-segment path
    edited = [served_text(i).replace("practice", "patience") + " One more line." for i in
              range(24)]
    signatures = fingerprinter.minhasher.signatures(edited)
    with open_index(built_index) as idx:
        hits = idx.search_minhash(signatures, k=2)
        truth = np.array([[np.mean(signatures[i] == s) for s in idx.signatures(list(range(24)))]
                          for i in range(24)])
    assert hits.rows[:, 0].tolist() == list(range(24))
    assert np.allclose(hits.scores[:, 0], truth.max(axis=1))  # exact re-ranked estimate
    assert np.all(hits.scores[:, 0] > 0.5)


def test_exact_scan_ranks_like_brute_force(built_index, fingerprinter):
    queries = fingerprinter.minhasher.signatures([served_text(3)[:120], "compilers practice"])
    with open_index(built_index) as idx:
        hits = idx.search_minhash(queries, k=5)
        stored = idx.signatures(list(range(24)))
    for q in range(2):
        truth = np.sort(np.mean(stored == queries[q], axis=1))[::-1][:5]
        assert np.allclose(hits.scores[q], truth)


def test_five_megabyte_response_is_indexed_whole(tmp_path, fingerprinter):
    words = [f"w{i % 50_000}x{i // 50_000}" for i in range(800_000)]
    big = " ".join(words)[:5_000_000]
    path = write_jsonl(tmp_path / "big.jsonl", [{"id": "big", "response": big},
                                                {"id": "small", "response": served_text(1)}])
    build_index(tmp_path / "idx", [path], fingerprinter)
    with open_index(tmp_path / "idx") as idx:
        assert len(idx) == 2 and len(idx.responses([0])[0].response) == 5_000_000
        excerpt = " ".join(words[400_000:700_000])
        hit = idx.search_minhash(fingerprinter.minhasher.signatures([excerpt]), k=1)
        # a large excerpt still matches the whole, at its true Jaccard within MinHash's error
        a, b = fingerprinter.minhasher.shingles(big), fingerprinter.minhasher.shingles(excerpt)
        true = len(a & b) / len(a | b)
        assert hit.rows[0, 0] == 0 and abs(hit.scores[0, 0] - true) < 4 * (true / 128) ** 0.5
        assert np.array_equal(idx.signatures([0])[0], fingerprinter.minhasher.signatures([big])[0])


def test_reference_sets_are_stored_apart_without_embeddings(built_index, tmp_path,
                                                            fingerprinter):
    from index import add_reference

    before = json.loads((built_index / "manifest.json").read_text())["segments"]
    ref = write_jsonl(tmp_path / "ref.jsonl", served_rows(5, start=300))
    result = add_reference(built_index, "other-model", [ref], fingerprinter)
    assert (result.added, result.total) == (5, 5)
    more = write_jsonl(tmp_path / "ref2.jsonl", served_rows(2, start=400))
    assert add_reference(built_index, "other-model", [more], fingerprinter).total == 7
    with open_index(built_index) as idx:
        assert len(idx) == 24 and json.loads((built_index / "manifest.json").read_text())[
            "segments"] == before
        group = idx.references["other-model"]
        assert len(group) == 7 and not group.has_embeddings
        assert group.responses([6])[6].id == "resp-401"
        texts = [served_text(i) for i in range(300, 305)]
        assert np.array_equal(group.signatures(list(range(5))),
                              fingerprinter.minhasher.signatures(texts))
        assert (group.style([4, 0]) != fingerprinter.styler.transform([texts[4], texts[0]])).nnz == 0
        assert group.rows_for_prompts([]) == {}
        assert len(group.prompt_hashes()) == 7
        info = idx.info()["references"]["other-model"]
        assert info["responses"] == 7 and info["embeddings"] is False
    with pytest.raises(DuplicateIdError, match="already in the index"):
        add_reference(built_index, "other-model", [more], fingerprinter)
    from index import IndexStoreError
    with pytest.raises(IndexStoreError, match="reference name"):
        add_reference(built_index, "../escape", [more], fingerprinter)


@pytest.mark.slow
def test_worker_processes_store_exactly_what_one_process_stores(tmp_path, fingerprinter,
                                                                monkeypatch):
    from fingerprint import parallel

    monkeypatch.setattr(parallel, "START_AFTER", 40)  # the pool starts after the first chunks
    submitted = []
    real_submit = parallel.ProcessPoolExecutor.submit
    monkeypatch.setattr(parallel.ProcessPoolExecutor, "submit",
                        lambda pool, fn, texts, embed: submitted.append(len(texts)) or
                        real_submit(pool, fn, texts, embed))
    rows = served_rows(150)
    path = write_jsonl(tmp_path / "served.jsonl", rows)
    build_index(tmp_path / "serial", [path], fingerprinter, chunk_size=16)
    build_index(tmp_path / "parallel", [path], fingerprinter, chunk_size=16, workers=2)
    with open_index(tmp_path / "serial") as a, open_index(tmp_path / "parallel") as b:
        everything = list(range(150))
        assert len(a) == len(b) == 150
        assert np.array_equal(a.signatures(everything), b.signatures(everything))
        assert np.allclose(a.embeddings(everything), b.embeddings(everything), atol=2e-3)
        assert (a.style(everything) != b.style(everything)).nnz == 0
        assert [r.id for r in a.responses(everything).values()] == \
            [r.id for r in b.responses(everything).values()] == [r["id"] for r in rows]
    assert sum(submitted) == 150 - 48  # all but the first three chunks went to the workers


def rewrite_manifest(root: Path, edit) -> None:
    """Edit a manifest as an attacker would: change it and recompute its (unkeyed) checksum."""
    data = json.loads((root / "manifest.json").read_text())
    data.pop("checksum")
    edit(data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    data["checksum"] = "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()
    (root / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize("edit", [
    lambda d: d["references"].update({"../../victim": d["segments"]}),
    lambda d: d["references"].update({"/tmp/victim": d["segments"]}),
    lambda d: d["segments"][0].update(name="../../victim"),
    lambda d: d["segments"][0]["files"][0].update(name="../../../victim/x"),
], ids=["reference-dotdot", "reference-absolute", "segment-dotdot", "file-dotdot"])
def test_names_from_an_edited_manifest_never_reach_outside_the_index(built_index, tmp_path,
                                                                     fingerprinter, edit):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    rewrite_manifest(built_index, edit)
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(2, start=100))
    with pytest.raises(IndexCorruptedError, match="not plain file names"):
        add_files(built_index, [more], fingerprinter)
    with pytest.raises(IndexCorruptedError, match="not plain file names"):
        open_index(built_index)
    assert (victim / "precious.txt").read_text() == "keep me"


def test_a_symlink_planted_in_the_index_is_not_followed_by_cleanup(built_index, tmp_path,
                                                                   fingerprinter):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (built_index / "segments" / "stray-link").symlink_to(victim)  # unlisted: debris
    (built_index / "references").symlink_to(victim)  # would be cleaned of unlisted sets
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(2, start=100))
    with pytest.raises(IndexCorruptedError, match="outside the index"):
        add_files(built_index, [more], fingerprinter)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (built_index / "segments" / "stray-link").exists()  # the link went, not its target


WORKER_SCRIPT = """
import multiprocessing, time
from fingerprint import Fingerprinter
from fingerprint.parallel import ParallelFingerprinter

def chunks():
    i = 0
    while True:
        yield i, [f"answer number {i} about something"]
        i += 1

results = ParallelFingerprinter(Fingerprinter(), workers=2, start_after=0).map(chunks(),
                                                                              embed=False)
next(results)  # the workers are up and answering
print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state  # a zombie has exited; only its parent's wait is missing


@pytest.mark.slow
def test_workers_die_with_a_killed_writer(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) >= 2 and all(alive(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(p) for p in pids), "workers outlived the killed writer"
    finally:
        proc.kill()


@pytest.mark.parametrize("name", ["embeddings.npy", "minhash_codes.faiss", "signatures.npy",
                                  "metadata.sqlite", "style_counts.npy", "embeddings.faiss"])
def test_verify_finds_damage_in_any_file(built_index, name):
    from click.testing import CliRunner

    from cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(built_index)])
    assert ok.exit_code == 0 and ": ok" in ok.output
    (segment,) = (built_index / "segments").iterdir()
    path = segment / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size: only a checksum sees it
    path.write_bytes(bytes(data))
    bad = runner.invoke(main, ["verify", str(built_index), "--json"])
    report = json.loads(bad.output)
    assert bad.exit_code == 1 and not report["ok"]
    assert len(report["problems"]) == 1 and name in report["problems"][0]
    assert "checksum mismatch" in report["problems"][0]


def test_files_hashed_side_by_side_keep_their_order(tmp_path):
    from index.files import sha256_files

    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate((0, 5, 3 << 20, 1 << 20)):  # empty, tiny, several read blocks
        path = tmp_path / f"f{i}"
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        paths.append(path)
    expected = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert sha256_files(paths) == expected
    assert sha256_files(paths[::-1], fsync=True) == expected[::-1]
    assert sha256_files(paths[2:3]) == expected[2:3] and sha256_files([]) == []
    with pytest.raises(FileNotFoundError):
        sha256_files(paths + [tmp_path / "missing"])
