"""The Ray engine's driver-side plan and worker-side staging, without a cluster: the parts that
decide which rows go where, and what a worker refuses."""

from __future__ import annotations

import json

import pytest

from conftest import served_text, write_jsonl
from distributed.errors import EngineError
from distributed.plan import Scan, Shard, StageTask, digest_ids, plan_tasks
from distributed.tasks import SegmentStager, scan_shard
from distributed.transport import error_payload, rebuild_error
from fingerprint import FingerprintConfig
from fingerprint.errors import FingerprintError, InputError
from fingerprint.records import FieldMap
from index import DuplicateIdError, create_index, open_index


@pytest.fixture()
def empty_index(tmp_path):
    create_index(tmp_path / "idx", FingerprintConfig())
    with open_index(tmp_path / "idx") as idx:
        yield idx


def scan(index: int, name: str, ids: list[str], empty: int = 0) -> Scan:
    return Scan(Shard(index, f"/abs/{name}", name), ids, list(range(1, len(ids) + 1)), empty)


def test_tasks_are_contiguous_and_follow_the_index(empty_index):
    scans = [scan(0, "a", [f"a{i}" for i in range(5)], empty=2),
             scan(1, "b", ["b0", "a1", "b1", "b2"])]  # a1: a duplicate across inputs
    plan = plan_tasks(empty_index, scans, skip_duplicates=True, workers=2, first_number=1)
    assert (plan.added, plan.skipped_empty, plan.skipped_duplicates, plan.read) == (8, 2, 1, 11)
    first, second = plan.tasks
    assert (first.first_row, first.rows, second.first_row, second.rows) == (0, 4, 4, 4)
    assert [(p.name, p.ranges) for p in first.parts] == [("a", [(0, 4)])]
    assert [(p.name, p.ranges) for p in second.parts] == [("a", [(4, 5)]),
                                                         ("b", [(0, 1), (2, 4)])]
    assert second.digest == digest_ids(["a4", "b0", "b1", "b2"])
    assert (first.skipped_empty, first.skipped_duplicates) == (2, 1)  # on the first segment
    assert (second.skipped_empty, second.skipped_duplicates) == (0, 0)
    assert StageTask.from_json(second.to_json()) == second


def test_a_file_given_twice_is_two_shards(empty_index):
    """Its second copy is all duplicates: skipped with skip_duplicates, else the local error."""
    ids = ["x", "y"]
    plan = plan_tasks(empty_index, [scan(0, "f", ids), scan(1, "f", ids)],
                      skip_duplicates=True, workers=1, first_number=1)
    assert plan.added == 2 and plan.skipped_duplicates == 2
    with pytest.raises(DuplicateIdError, match='f line 1: id "x" is earlier in this batch'):
        plan_tasks(empty_index, [scan(0, "f", ids), scan(1, "f", ids)],
                   skip_duplicates=False, workers=1, first_number=1)


def test_errors_cross_the_process_boundary_typed(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "response": "ok"},
                                               {"id": "b", "response": 3}])
    row = scan_shard({"shard": json.dumps({"index": 0, "path": str(bad), "name": "bad.jsonl"})},
                     FieldMap())
    error = rebuild_error(row["error"])
    assert type(error) is InputError
    assert (error.source, error.line, error.field) == ("bad.jsonl", 2, "response")
    assert str(error).startswith("bad.jsonl line 2: ")

    class Foreign(FingerprintError):  # not in a toolkit errors module: kept as its base
        pass

    assert type(rebuild_error(error_payload(Foreign("why")))) is FingerprintError


def test_a_worker_refuses_records_that_changed_since_the_scan(tmp_path):
    """The digest of the ids it read differs from the plan's: an EngineError, and nothing
    staged is left."""
    served = write_jsonl(tmp_path / "s.jsonl", [{"id": f"r{i}", "response": served_text(i)}
                                                for i in range(6)])
    (tmp_path / "segments").mkdir()
    stager = SegmentStager(FingerprintConfig(), 32, str(tmp_path / "segments"), FieldMap(), True,
                           4)
    task = StageTask("seg-000001-abcd", 0, 6, [], 0, 0, digest_ids(f"r{i}" for i in range(6)))
    task = StageTask.from_json(json.dumps({**json.loads(task.to_json()), "parts": [
        {"path": str(served), "name": "s.jsonl", "ranges": [[0, 6]]}]}))
    assert stager.stage(task).rows == 6
    changed = StageTask.from_json(json.dumps({**json.loads(task.to_json()),
                                              "name": "seg-000002-abcd",
                                              "digest": digest_ids(["other"])}))
    with pytest.raises(EngineError, match="not those scanned"):
        stager.stage(changed)
    assert not (tmp_path / "segments" / ".tmp-seg-000002-abcd").exists()
    out = stager({"task": [changed.to_json()]})
    assert out["entry"] == [""] and "not those scanned" in rebuild_error(out["error"][0]).args[0]
