"""Writes as stage + commit: a staged segment is invisible until committed; commit checks what
it is given (config, rows, files) before anything is renamed; the executor is a seam another
engine can fill."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import served_rows, write_jsonl
from fingerprint import FingerprintConfig, read_records
from index import (ConfigMismatchError, IndexCorruptedError, WriteOptions, WriterLock, commit,
                   local_executor, open_index, stage_segment)


def stage(root: Path, path: Path, fingerprinter, **kwargs):
    with open_index(root) as idx:
        return idx.manifest, stage_segment(idx, read_records(path), fingerprinter, **kwargs)


def test_staged_segment_is_invisible_until_committed(built_index, fingerprinter, tmp_path):
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(5, start=100))
    with WriterLock(built_index):
        manifest, result = stage(built_index, more, fingerprinter)
        assert result.staged is not None and result.staged.directory.is_dir()
        with open_index(built_index) as idx:
            assert len(idx) == 24  # staged, not yet part of the index
        commit(built_index, manifest, [result.staged], verify=True)
    with open_index(built_index) as idx:
        assert len(idx) == 29
        assert idx.existing_ids(["resp-100", "resp-104"]) == {"resp-100", "resp-104"}
    assert not result.staged.directory.exists() and result.staged.final_directory.is_dir()


def test_commit_refuses_a_segment_staged_against_an_older_manifest(built_index, fingerprinter,
                                                                  tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", served_rows(3, start=100))
    second = write_jsonl(tmp_path / "b.jsonl", served_rows(3, start=200))
    with WriterLock(built_index):
        manifest, a = stage(built_index, first, fingerprinter)
        _, b = stage(built_index, second, fingerprinter)  # also starts at row 24
        with pytest.raises(IndexCorruptedError, match="starts at row 24, but its group ends at 27"):
            commit(built_index, manifest, [a.staged, b.staged])
        assert a.staged.directory.is_dir()  # nothing was renamed
        with open_index(built_index) as idx:
            assert len(idx) == 24


def test_commit_checks_config_and_files_before_renaming(built_index, fingerprinter, tmp_path):
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(3, start=100))
    with WriterLock(built_index):
        manifest, result = stage(built_index, more, fingerprinter)
        staged = result.staged
        other = FingerprintConfig(num_perm=64)
        with pytest.raises(ConfigMismatchError, match="num_perm"):
            commit(built_index, manifest, [dataclasses.replace(staged, config=other)])
        signatures = staged.directory / "signatures.npy"
        data = bytearray(signatures.read_bytes())
        data[-1] ^= 0xFF  # same size, other content: only the checksum sees it
        signatures.write_bytes(bytes(data))
        with pytest.raises(IndexCorruptedError, match="checksum mismatch"):
            commit(built_index, manifest, [staged], verify=True)
        (staged.directory / "metadata.sqlite").unlink()
        with pytest.raises(IndexCorruptedError, match="missing"):
            commit(built_index, manifest, [staged])
        staged.discard()
    with open_index(built_index) as idx:
        assert len(idx) == 24


class CountingExecutor:
    """Another engine behind the seam: here the local one, counting what passes through it."""

    def __init__(self, fingerprinter):
        self.inner = local_executor(fingerprinter)
        self.texts = 0

    def map(self, chunks, embed=True):
        for payload, prints in self.inner.map(self._count(chunks), embed=embed):
            yield payload, prints

    def _count(self, chunks):
        for payload, texts in chunks:
            self.texts += len(texts)
            yield payload, texts

    def close(self):
        self.inner.close()


def test_any_executor_can_fingerprint_a_staged_segment(built_index, fingerprinter, tmp_path):
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(7, start=100))
    executor = CountingExecutor(fingerprinter)
    with WriterLock(built_index):
        manifest, result = stage(built_index, more, fingerprinter, executor=executor,
                                 options=WriteOptions(chunk_size=3))
        commit(built_index, manifest, [result.staged])
    assert executor.texts == 7
    with open_index(built_index) as idx:
        assert len(idx) == 31


def test_a_reference_set_is_staged_and_committed_like_served_rows(built_index, fingerprinter,
                                                                  tmp_path):
    ref = write_jsonl(tmp_path / "ref.jsonl", served_rows(4, start=300))
    with WriterLock(built_index):
        manifest, result = stage(built_index, ref, fingerprinter, reference="other",
                                 options=WriteOptions(embed=False))
        assert result.first_row == 0
        commit(built_index, manifest, [result.staged])
    with open_index(built_index) as idx:
        assert len(idx) == 24 and len(idx.references["other"]) == 4
        assert not idx.references["other"].has_embeddings


def test_debris_of_an_uncommitted_stage_is_removed_by_the_next_writer(built_index, fingerprinter,
                                                                      tmp_path):
    from index import add_files

    more = write_jsonl(tmp_path / "more.jsonl", served_rows(3, start=100))
    with WriterLock(built_index):
        _, result = stage(built_index, more, fingerprinter)
    debris = result.staged.directory
    assert debris.is_dir()  # a writer that died before commit
    again = write_jsonl(tmp_path / "again.jsonl", served_rows(3, start=100))
    assert add_files(built_index, [again], fingerprinter).added == 3
    assert not debris.exists()


def test_commit_fsyncs_the_directory_of_every_rename(built_index, fingerprinter, tmp_path,
                                                     monkeypatch):
    """After a power cut the manifest must not list a segment whose rename was lost: the
    segments directory reaches disk before the manifest is replaced."""
    import index.staging as staging

    order = []
    monkeypatch.setattr(staging, "fsync_path", lambda p: order.append(("fsync", Path(p))))
    real_write = staging.write_manifest
    monkeypatch.setattr(staging, "write_manifest",
                        lambda root, m: (order.append(("manifest", root)), real_write(root, m)))
    more = write_jsonl(tmp_path / "more.jsonl", served_rows(2, start=100))
    with WriterLock(built_index):
        manifest, result = stage(built_index, more, fingerprinter)
        commit(built_index, manifest, [result.staged])
    assert order == [("fsync", built_index / "segments"), ("manifest", built_index)]


def test_the_bulk_duplicate_check_changes_nothing_unless_all_are_fresh(built_index):
    from index import DuplicateFilter

    with open_index(built_index) as index:
        stored = "resp-0"
        assert index.existing_ids([stored, "nope"]) == {stored}
        check = DuplicateFilter(index, skip=False)
        assert check.all_fresh(["a", "b"]) and check.seen == {"a", "b"}
        for refused in (["c", "c"], ["d", "a"], ["e", stored]):  # repeat, seen, stored
            assert not check.all_fresh(refused) and check.seen == {"a", "b"}
        assert check.all_fresh([]) and check.skipped == 0
