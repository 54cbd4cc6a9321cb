"""benchmarks/lineage.py's bookkeeping, on a made-up lineage table (the classifier is the
library's, tested elsewhere): vendors and lineage groups come from the table, and the reference
check places each reference among the others exactly as a suspect is placed."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "lineage_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "lineage.py")
lineage_benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lineage_benchmark)


def row(role, family="", group="", base=""):
    return {"role": role, "provider_family": family, "lineage_group": group, "base_model": base,
            "teacher": "unknown"}


LINEAGE = {
    "p1": row("provider", "fam", "p1", "Acme p1 (closed API)"),
    "p2": row("provider", "fam", "p2", "Acme p2 (closed API)"),
    "q1": row("provider", "other", "q1", "Beta q1 (closed API)"),
    "v1": row("vendor", group="qwen"), "v2": row("vendor", group="qwen"),
    "v3": row("vendor", group="solo"),
}


def test_vendor_comes_from_base_model_and_lolgo_drops_the_whole_group():
    families, classes, _ = lineage_benchmark.roles(LINEAGE)
    assert lineage_benchmark.vendors(LINEAGE, families) == {"fam": "Acme", "other": "Beta"}
    drops = lineage_benchmark.drop_sets(LINEAGE, classes)
    assert drops["pooled"]["vendor:v1"] == {"vendor:v1"}
    assert drops["lolgo"]["vendor:v1"] == {"vendor:v1", "vendor:v2"}
    assert drops["lolgo"]["vendor:v3"] == {"vendor:v3"}
    assert drops["lolgo"]["provider:fam"] == {"provider:fam"}
    bad = {**LINEAGE, "p2": row("provider", "fam", "p2", "Other p2")}
    with pytest.raises(SystemExit, match="different vendors"):
        lineage_benchmark.vendors(bad, lineage_benchmark.roles(bad)[0])


def test_reference_check_ranks_each_reference_among_the_others():
    null = {"provider:fam": {f"vendor:r{i}": v for i, v in enumerate([0.0] * 5 + [0.5])}}
    rows = {f"vendor:r{i}": 100 for i in range(6)}
    check = lineage_benchmark.calibration_check(null, rows, "rank")["fam"]
    assert check["reference_p_values"]["r5"] == pytest.approx(1 / 6)  # above its 5 others
    assert check["reference_p_values"]["r0"] == 1.0  # tied with 4 others, below one
    assert check["n_references"] == 6 and check["share_below_0_05"] == 0.0


def test_per_model_classes_count_for_their_family_and_are_left_out_with_it():
    families, classes, _ = lineage_benchmark.roles(LINEAGE, per_model=True)
    assert {"provider:fam/p1", "provider:fam/p2", "provider:other/q1"} <= set(classes)
    targets = lineage_benchmark.members(classes, families)
    assert targets["provider:fam"] == {"provider:fam/p1", "provider:fam/p2"}
    drops = lineage_benchmark.drop_sets(LINEAGE, classes, ("lolgo",))
    assert drops["lolgo"]["provider:fam/p1"] == {"provider:fam/p1", "provider:fam/p2"}
    assert list(drops) == ["lolgo"]  # the pooled null only when asked for
    # every class labels its own rows as itself: the family's share counts both of its models,
    # and a family's own models are never draws of its null
    fits = {drop: {c: [c] * 4 for c in classes} for drop in set(drops["lolgo"].values())}
    null = lineage_benchmark.nulls(fits, drops, classes, targets)["lolgo"]
    assert set(null["provider:fam"]) == {"provider:other/q1", "vendor:v1", "vendor:v2",
                                         "vendor:v3"}
    assert lineage_benchmark.shares_of(["provider:fam/p1", "provider:fam/p2", "vendor:v1",
                                        "vendor:v3"], targets)["provider:fam"] == 0.5


def test_normalised_identification_is_not_won_by_the_family_everyone_resembles():
    """Every model shares much with "fam" (references too), little with "other": a student of
    "other" that reads 40% "fam" and 30% "other" is named "fam" by the raw share but "other"
    once each share is placed among the references'; the vendor accuracy balanced over the
    teachers' vendors gives "always Acme" 1 / vendors, not Acme's share of the students."""
    fam_null = {f"vendor:r{i}": v for i, v in enumerate([0.35, 0.4, 0.45, 0.5, 0.38, 0.42])}
    other_null = {f"vendor:r{i}": v for i, v in enumerate([0.0, 0.01, 0.02, 0.0, 0.01, 0.02])}
    z = {f: lineage_benchmark.normalised(share, null, 800)
         for f, share, null in (("fam", 0.4, fam_null), ("other", 0.3, other_null))}
    assert z["other"] > 3 > z["fam"]
    assert lineage_benchmark.normalised(0.3, {}, 800) == float("-inf")  # nothing to place it in

    vendor_of = {"fam": "Acme", "other": "Beta"}
    students = [{"teacher": "fam", "raw": "fam", "norm": "fam"} for _ in range(3)]
    students.append({"teacher": "other", "raw": "fam", "norm": "other"})
    raw = lineage_benchmark.identification(students, "raw", vendor_of)
    assert raw["top1_vendor"] == 0.75 and raw["vendor_balanced"] == 0.5
    assert raw["per_vendor"] == {"Acme": "3/3", "Beta": "0/1"}
    norm = lineage_benchmark.identification(students, "norm", vendor_of)
    assert norm["top1_family"] == norm["top1_vendor"] == norm["vendor_balanced"] == 1.0
    assert lineage_benchmark.identification([], "raw", vendor_of)["top1_vendor"] is None
