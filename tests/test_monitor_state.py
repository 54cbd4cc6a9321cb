"""The monitor's state store on real files: what was flushed survives closing, crashes (a real
process killed with SIGKILL while writing), torn and corrupted files, a full disk; a foreign
configuration or format is refused with expected vs actual; nothing is followed outside the
directory."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerprint import __version__
from monitor import (Recovery, StateCorruptedError, StateEntryError, StateError,
                     StateLockedError, StateStore, StateVersionError)

CONFIG = "sha256:cfg-1"
HEADER = 16  # magic + generation


def filled(directory: Path, rounds: list[dict[str, bytes]]) -> list[int]:
    """Write each round as one flush; returns the journal's length after each."""
    ends = []
    with StateStore(directory, CONFIG) as store:
        for entries in rounds:
            for account, blob in entries.items():
                store.put(account, blob)
            store.flush()
            ends.append(store.journal_bytes)
    return ends


def contents(directory: Path) -> dict[str, bytes]:
    with StateStore(directory, CONFIG) as store:
        return {a: store.get(a) for a in store.accounts()}


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_flushed_entries_come_back_after_a_restart(tmp_path):
    with StateStore(tmp_path / "state", CONFIG) as store:
        assert store.recovery == Recovery() and len(store) == 0
        store.put("acct-1", b"\x00\x01binary")
        store.put("ünï-cödé 账户", b"")
        store.put("acct-2", bytearray(b"x" * 20_000))
        assert store.pending == 3 and store.get("acct-1") == b"\x00\x01binary"
        assert store.flush() == 3 and store.pending == 0 and store.flush() == 0
        store.put("acct-1", b"newer")
    with StateStore(tmp_path / "state", CONFIG) as store:  # close() flushed "newer"
        assert store.get("acct-1") == b"newer" and store.get("ünï-cödé 账户") == b""
        assert store.get("acct-2") == b"x" * 20_000 and store.get("never") is None
        assert len(store) == 3 and "acct-2" in store
        assert store.recovery == Recovery(journal_frames=2, journal_entries=4)
    manifest = json.loads((tmp_path / "state" / "manifest.json").read_text())
    assert manifest == {"format": "fingerprint-monitor-state", "format_version": 1,
                        "toolkit_version": __version__, "config_fingerprint": CONFIG}
    assert sorted(os.listdir(tmp_path / "state")) == ["journal.bin", "manifest.json",
                                                      "snapshot.bin"]


def test_a_snapshot_folds_the_journal_in_and_later_flushes_go_on_top(tmp_path):
    with StateStore(tmp_path, CONFIG) as store:
        for i in range(50):
            store.put(f"a{i}", bytes([i]) * 100)
        store.flush()
        store.put("a0", b"pending at snapshot time")
        store.snapshot()
        assert store.journal_bytes == HEADER and store.pending == 0
        store.put("a1", b"after the snapshot")
        store.flush()
    with StateStore(tmp_path, CONFIG) as store:
        assert store.recovery == Recovery(snapshot_entries=50, journal_frames=1,
                                          journal_entries=1)
        assert store.get("a0") == b"pending at snapshot time"
        assert store.get("a1") == b"after the snapshot" and store.get("a49") == bytes([49]) * 100


def test_a_journal_older_than_the_snapshot_is_not_replayed_over_it(tmp_path):
    """A crash between writing the snapshot and emptying the journal leaves the old journal:
    replaying it would put back values the snapshot already superseded."""
    with StateStore(tmp_path, CONFIG) as store:
        store.put("a", b"old")
        store.flush()
        old_journal = (tmp_path / "journal.bin").read_bytes()
        store.put("a", b"new")
        store.snapshot()
    (tmp_path / "journal.bin").write_bytes(old_journal)  # as if the crash came before the reset
    with StateStore(tmp_path, CONFIG) as store:
        assert store.get("a") == b"new"
        assert store.recovery.stale_journal and store.journal_bytes == HEADER
    assert (tmp_path / "journal.bin").stat().st_size == HEADER


def test_a_torn_last_frame_is_dropped_counted_and_cut_off_at_every_byte(tmp_path):
    """SIGKILL during a write leaves a prefix of the frame: wherever it stops, the frames before
    it are whole, the torn one is dropped and counted, and the next flush follows a whole frame."""
    ends = filled(tmp_path / "base", [{"a": b"1", "b": b"1"}, {"a": b"2"}, {"a": b"3", "c": b"3"}])
    whole = (tmp_path / "base" / "journal.bin").read_bytes()
    for cut in range(ends[1], ends[2]):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        for name in ("manifest.json", "snapshot.bin"):
            (directory / name).write_bytes((tmp_path / "base" / name).read_bytes())
        (directory / "journal.bin").write_bytes(whole[:cut])
        with StateStore(directory, CONFIG) as store:
            assert store.get("a") == b"2" and store.get("b") == b"1" and "c" not in store
            torn = cut - ends[1]
            assert store.recovery == Recovery(journal_frames=2, journal_entries=3,
                                              torn_frames=1 if torn else 0, torn_bytes=torn)
            assert (directory / "journal.bin").stat().st_size == ends[1]
            store.put("c", b"after")
        assert contents(directory) == {"a": b"2", "b": b"1", "c": b"after"}


def test_a_zero_filled_tail_is_a_torn_write(tmp_path):
    filled(tmp_path, [{"a": b"1"}])
    with open(tmp_path / "journal.bin", "ab") as f:
        f.write(b"\0" * 4096)  # a power cut can leave allocated but unwritten blocks
    with StateStore(tmp_path, CONFIG) as store:
        assert store.get("a") == b"1" and store.recovery.torn_bytes == 4096


def test_damage_in_the_last_frame_is_taken_for_a_crash(tmp_path):
    ends = filled(tmp_path, [{"a": b"1"}, {"a": b"2"}])
    flip(tmp_path / "journal.bin", ends[1] - 6)  # inside the last frame's payload
    with StateStore(tmp_path, CONFIG) as store:
        assert store.get("a") == b"1" and store.recovery.torn_frames == 1


@pytest.mark.parametrize("where,problem", [(0, "frame header checksum mismatch"),
                                           (14, "frame checksum mismatch")])
def test_damage_before_the_last_frame_is_corruption_naming_file_and_offset(tmp_path, where,
                                                                         problem):
    ends = filled(tmp_path, [{"a": b"1"}, {"a": b"2"}, {"a": b"3"}])
    flip(tmp_path / "journal.bin", ends[0] + where)
    before = (tmp_path / "journal.bin").read_bytes()
    with pytest.raises(StateCorruptedError, match=rf"journal\.bin: {problem} at byte offset "
                                                  rf"{ends[0]}\b"):
        StateStore(tmp_path, CONFIG)
    assert (tmp_path / "journal.bin").read_bytes() == before  # nothing cut on a guess
    with pytest.raises(StateCorruptedError):  # not StateLockedError: the lock was released
        StateStore(tmp_path, CONFIG)


def snapshotted(directory: Path) -> Path:
    with StateStore(directory, CONFIG) as store:
        store.put("a", b"x" * 100)
        store.put("b", b"y" * 100)
        store.snapshot()
    return directory / "snapshot.bin"


@pytest.mark.parametrize("damage,message", [
    (lambda p: flip(p, 40), r"frame checksum mismatch at byte offset 16"),
    (lambda p: flip(p, 17), r"frame header checksum mismatch at byte offset 16"),
    (lambda p: p.write_bytes(p.read_bytes()[:-30]), r"frame cut short at byte offset 16"),
    (lambda p: p.write_bytes(p.read_bytes() + b"extra"), r"trailing bytes at byte offset \d+"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + p.read_bytes()[4:]), r"no FPMSNAP1 header"),
    (lambda p: p.unlink(), r" is missing"),
])
def test_a_damaged_snapshot_is_corruption_not_a_crash(tmp_path, damage, message):
    """The snapshot is replaced atomically, so no crash can tear it: any damage is reported."""
    damage(snapshotted(tmp_path))
    with pytest.raises(StateCorruptedError, match=r"snapshot\.bin.*" + message):
        StateStore(tmp_path, CONFIG)


def test_a_journal_newer_than_its_snapshot_is_corruption(tmp_path):
    snapshotted(tmp_path)
    journal = tmp_path / "journal.bin"
    journal.write_bytes(journal.read_bytes()[:8] + (7).to_bytes(8, "little"))
    with pytest.raises(StateCorruptedError, match="generation 7 .* newer than the snapshot's"):
        StateStore(tmp_path, CONFIG)


def test_another_configuration_is_refused_naming_expected_and_actual(tmp_path):
    filled(tmp_path, [{"a": b"1"}])
    with pytest.raises(StateVersionError, match="expected monitor config fingerprint "
                                                "'sha256:cfg-2', found 'sha256:cfg-1'"):
        StateStore(tmp_path, "sha256:cfg-2")
    assert contents(tmp_path) == {"a": b"1"}  # untouched


def test_a_store_from_a_future_format_version_is_refused(tmp_path):
    filled(tmp_path, [{"a": b"1"}])
    manifest = tmp_path / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "format_version": 2, "toolkit_version": "9.0.0"}))
    with pytest.raises(StateVersionError, match=r"expected state format version 1, found 2 "
                                                r"\(written by a newer toolkit, '9.0.0'"):
        StateStore(tmp_path, CONFIG)


@pytest.mark.parametrize("text,error,message", [
    ("{not json", StateCorruptedError, r"manifest\.json: not valid JSON"),
    ('{"format": "something-else"}', StateError, "not a monitor state manifest"),
    ('["fingerprint-monitor-state"]', StateError, "not a monitor state manifest"),
])
def test_a_manifest_that_is_not_ours_is_refused(tmp_path, text, error, message):
    filled(tmp_path, [{"a": b"1"}])
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(error, match=message):
        StateStore(tmp_path, CONFIG)


def test_a_directory_of_other_files_is_not_taken_over(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StateError, match="not a monitor state directory"):
        StateStore(tmp_path, CONFIG)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_an_interrupted_creation_is_made_again(tmp_path):
    (tmp_path / "snapshot.bin").write_bytes(b"half written")  # no manifest: nothing was kept yet
    (tmp_path / ".snapshot.bin.tmp-123").write_bytes(b"left by a crash")
    (tmp_path / ".manifest.json.tmp-124").write_bytes(b"{")
    with StateStore(tmp_path, CONFIG) as store:
        assert len(store) == 0
    assert sorted(os.listdir(tmp_path)) == ["journal.bin", "manifest.json", "snapshot.bin"]


@pytest.mark.parametrize("name", ["journal.bin", "snapshot.bin", "manifest.json"])
def test_no_state_file_is_followed_through_a_link(tmp_path, name):
    filled(tmp_path / "state", [{"a": b"1"}])
    outside = tmp_path / "outside"
    outside.write_bytes((tmp_path / "state" / name).read_bytes())
    (tmp_path / "state" / name).unlink()
    (tmp_path / "state" / name).symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(StateError, match="symbolic link"):
        StateStore(tmp_path / "state", CONFIG)
    assert outside.read_bytes() == before


def test_one_process_at_a_time(tmp_path):
    store = StateStore(tmp_path, CONFIG)
    with pytest.raises(StateLockedError, match="in use by another process"):
        StateStore(tmp_path, CONFIG)
    store.close()
    store.close()  # twice is harmless
    StateStore(tmp_path, CONFIG).close()


@pytest.mark.parametrize("account,blob,message", [
    ("", b"x", "non-empty string"), (7, b"x", "non-empty string"),
    ("a" * 1025, b"x", "at most 1024"), ("\ud800", b"x", "UTF-8"),
    ("a", "text", "must be bytes"), ("a", b"x" * (1 << 20 | 1), "at most 1048576"),
])
def test_an_entry_the_store_cannot_keep_is_a_typed_error(tmp_path, account, blob, message):
    with StateStore(tmp_path, CONFIG) as store:
        with pytest.raises(StateEntryError, match=message):
            store.put(account, blob)
        assert len(store) == 0 and store.pending == 0


def test_a_closed_store_refuses_use(tmp_path):
    store = StateStore(tmp_path, CONFIG)
    store.close()
    for call in (lambda: store.put("a", b""), lambda: store.get("a"), store.flush,
                 store.snapshot):
        with pytest.raises(StateError, match="closed"):
            call()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from("abcde"), st.binary(max_size=40)),
    st.tuples(st.sampled_from(["flush", "snapshot", "reopen"])))))
def test_any_sequence_of_operations_reads_back_what_was_written(operations):
    with tempfile.TemporaryDirectory() as directory:
        model: dict[str, bytes] = {}
        store = StateStore(directory, CONFIG)
        try:
            for op in operations:
                if op[0] == "put":
                    store.put(op[1], op[2])
                    model[op[1]] = op[2]
                elif op[0] == "reopen":
                    store.close()
                    store = StateStore(directory, CONFIG)
                else:
                    getattr(store, op[0])()
                assert {a: store.get(a) for a in store.accounts()} == model
        finally:
            store.close()
        assert contents(Path(directory)) == model


KILLED_WRITER = """
import sys
from monitor import StateStore
store = StateStore(sys.argv[1], "sha256:cfg-1", fsync=sys.argv[2] == "1")
round_ = 0
while True:
    for j in range(200):  # 200 accounts x 20 KB: a 4 MB frame, long enough to be cut
        store.put(f"acct-{j}", f"{round_}:{j}:".encode() + bytes([round_ % 251]) * 20_000)
    store.flush()
    print(round_, flush=True)
    round_ += 1
"""


@pytest.mark.slow
@pytest.mark.parametrize("fsync", [True, False])
def test_a_process_killed_while_writing_loses_nothing_it_flushed(tmp_path, fsync):
    """A real writer, killed with SIGKILL at a random moment after a few flushes: every round it
    reported flushed is there, byte for byte; at most the one round in flight is newer."""
    rng = random.Random(7 + fsync)
    for attempt in range(3):
        directory = tmp_path / f"state{attempt}"
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(directory),
                                  "1" if fsync else "0"], stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(3):
                assert child.stdout.readline(), "the writer died on its own"
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            child.send_signal(signal.SIGKILL)
            rest = child.communicate(timeout=30)[0]
        flushed = int(([line for line in rest.split()] or ["2"])[-1])
        with StateStore(directory, CONFIG) as store:
            assert len(store) == 200
            for j in range(200):
                blob = store.get(f"acct-{j}")
                round_ = int(blob.split(b":")[0])
                assert round_ in (flushed, flushed + 1), (j, round_, flushed)
                assert blob == f"{round_}:{j}:".encode() + bytes([round_ % 251]) * 20_000
            assert store.recovery.torn_frames in (0, 1)


FULL_DISK = """
import json, os, resource, signal, sys
from monitor import StateStore, StateWriteError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
directory, out = sys.argv[1], {}
with StateStore(directory, "sha256:cfg-1") as store:
    for j in range(20):
        store.put(f"a{j}", b"x" * 100)
    store.flush()
    out["before"] = store.journal_bytes
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (store.journal_bytes + 1000, hard))
    store.put("big", b"y" * 100_000)
    store.put("a0", b"changed")
    for call in ("flush", "snapshot"):
        try:
            getattr(store, call)()
            out[call] = "ok"
        except StateWriteError as exc:
            out[call] = str(exc)
    out["pending"] = store.pending
    out["journal_size"] = os.path.getsize(os.path.join(directory, "journal.bin"))
    out["files"] = sorted(os.listdir(directory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    out["retried"] = store.flush()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_full_disk_fails_the_write_keeps_what_was_flushed_and_lets_a_later_flush_retry(
        tmp_path):
    if resource.getrlimit(resource.RLIMIT_FSIZE)[1] != resource.RLIM_INFINITY:
        pytest.skip("needs an unlimited hard RLIMIT_FSIZE to lower and raise again")
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, check=True)
    out = json.loads(done.stdout)
    assert "journal.bin: could not append" in out["flush"]
    assert "File too large" in out["flush"] and "2 unwritten entries stay pending" in out["flush"]
    assert "snapshot.bin: could not write a new snapshot" in out["snapshot"]
    assert out["pending"] == 2 and out["journal_size"] == out["before"]  # cut back, whole frames
    assert out["files"] == ["journal.bin", "manifest.json", "snapshot.bin"]  # no temp left
    assert out["retried"] == 2
    with StateStore(tmp_path, CONFIG) as store:
        assert store.get("big") == b"y" * 100_000 and store.get("a0") == b"changed"
        assert store.get("a19") == b"x" * 100 and store.recovery.torn_frames == 0
