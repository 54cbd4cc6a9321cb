"""Attribution on real model outputs with known lineage (../shared/data/alpacaeval)."""

import json

import pytest

from attribution import attribute
from fingerprint import read_records
from index import build_index, open_index

pytestmark = pytest.mark.slow  # real data and model loads: deselected by pytest -m "not slow"

N_PROMPTS = 150


def subset(path, tmp_path, n=N_PROMPTS):
    out = tmp_path / path.name
    with open(path) as f, open(out, "w") as g:
        for line, _ in zip(f, range(n)):
            g.write(line)
    return out


@pytest.fixture(scope="module")
def chatgpt_index(alpacaeval, tmp_path_factory, fingerprinter):
    tmp = tmp_path_factory.mktemp("real")
    path = tmp / "idx"
    build_index(path, [subset(alpacaeval / "outputs" / "gpt-3.5-turbo-0301.jsonl", tmp)],
                fingerprinter)
    return path


def attribute_model(index_path, alpacaeval, model, fingerprinter):
    records = list(read_records(alpacaeval / "outputs" / f"{model}.jsonl"))[:N_PROMPTS]
    with open_index(index_path) as idx:
        return attribute(idx, records, fingerprinter=fingerprinter)


def test_lineage_labels_are_what_the_test_assumes(alpacaeval):
    rows = {r.split(",")[0]: r.split(",")[1:3] for r in
            (alpacaeval / "lineage.csv").read_text().splitlines()[1:]}
    assert rows["vicuna-7b"] == ["student", "chatgpt"]
    assert rows["guanaco-7b"] == ["non-student", "none-human"]


def test_chatgpt_student_scores_above_human_data_model(chatgpt_index, alpacaeval, fingerprinter):
    student = attribute_model(chatgpt_index, alpacaeval, "vicuna-7b", fingerprinter)
    human = attribute_model(chatgpt_index, alpacaeval, "guanaco-7b", fingerprinter)
    assert student.counts["paired"] == human.counts["paired"] >= N_PROMPTS - 5
    assert student.score > human.score
    for name in ("mean_paired_jaccard", "mean_paired_cosine"):
        assert student.signal(name).value > human.signal(name).value, name
    print(json.dumps({"vicuna-7b": student.score, "guanaco-7b": human.score}))


REFERENCE_ROLES = ("provider", "vendor")


def lineage_rows(alpacaeval):
    import csv

    with open(alpacaeval / "lineage.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_calibrated_p_values_on_real_human_data_models(chatgpt_index, alpacaeval,
                                                       fingerprinter, tmp_path):
    """Against the ChatGPT index, with every other provider and vendor model as a reference, no
    human-data model may look derived (p >= 0.01), and the style signal ranks a ChatGPT student
    above them."""
    from attribution import reference_from_records

    rows = lineage_rows(alpacaeval)
    refs = []
    for row in rows:
        if row["role"] in REFERENCE_ROLES and row["provider_family"] != "chatgpt":
            records = list(read_records(alpacaeval / "outputs" / f"{row['model']}.jsonl"))
            refs.append(reference_from_records(row["model"], records[:N_PROMPTS], fingerprinter))
    assert len(refs) >= 5
    humans = [r["model"] for r in rows if r["role"] == "non-student"]
    shares = {}
    for model in humans + ["vicuna-7b"]:
        records = list(read_records(alpacaeval / "outputs" / f"{model}.jsonl"))[:N_PROMPTS]
        with open_index(chatgpt_index) as idx:
            result = attribute(idx, records, fingerprinter=fingerprinter, references=refs)
        assert result.calibrated and len(result.references) == len(refs)
        if model in humans:
            assert result.p_value >= 0.01, (model, result.p_value)
            assert all(s.p_value is None or s.p_value >= 0.01 for s in result.signals), model
        shares[model] = result.signal("provider_share").value
    assert shares["vicuna-7b"] > max(shares[h] for h in humans)
