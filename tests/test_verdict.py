"""The verdict sentence, the per-prompt evidence against the references, and the provenance."""

import hashlib
import json

import pytest

from attribution import ALPHA, attribute, reference_from_records, verdict_of
from attribution.result import AttributionResult, ResponseEvidence, Signal
from conftest import served_rows, served_text, write_jsonl
from fingerprint import ResponseRecord
from fingerprint.provenance import file_sha256, probe_details
from index import build_index, open_index


def result_with(p_value, flags=(), reference_rates=None, calibrated=True, notes=()):
    share = Signal("provider_share", sum(flags) / max(len(flags), 1), "", len(flags),
                   p_value=p_value, reference_values=dict(reference_rates or {}))
    responses = tuple(ResponseEvidence(str(i), i, None, (), (), None, 0.0, 0.0, False, 0.0,
                                       provider_like=bool(f)) for i, f in enumerate(flags))
    return AttributionResult("s", "idx", 0.0, (share,), responses, (), {}, {}, p_value=p_value,
                             calibrated=calibrated, notes=tuple(notes))


RATES = {f"ref{i}": r for i, r in enumerate((0.10, 0.14, 0.12, 0.08, 0.11, 0.13))}


def test_a_small_p_value_is_derived_and_says_so():
    v = verdict_of(result_with(0.001, [1] * 50, RATES))
    assert v.decision == "derived" and v.sentence.startswith("Derived from the provider: p = 0.001")


def test_no_p_value_is_no_verdict_with_the_reason():
    v = verdict_of(result_with(None, notes=["needs at least 5 references; have 1"]))
    assert v.decision == "no_verdict" and "have 1" in v.sentence


def test_a_rate_like_the_references_is_shown_not_derived():
    flags = [1] * 12 + [0] * 88  # 0.12, the references' own rate, over 100 answers
    v = verdict_of(result_with(0.6, flags * 4, RATES))
    assert v.decision == "not_derived" and v.sequential["e_value_not_derived"] >= 1 / ALPHA
    assert "derived fraction below 0.2" in v.sentence


def test_few_answers_at_a_high_rate_are_undecided_with_how_many_more():
    flags = [1] * 6 + [0] * 4  # 0.6 over 10 answers: far above the references, little data
    v = verdict_of(result_with(0.3, flags, RATES))
    assert v.decision == "undecided" and v.more_answers > 0
    assert f"about {v.more_answers:,} more answers would decide (towards derived)" in v.sentence
    more = verdict_of(result_with(0.3, flags * (1 + v.more_answers // 10), RATES))
    assert more.sequential["e_value_derived"] >= 1 / ALPHA  # the estimate was honest


def test_the_verdict_is_in_the_json_and_the_same_as_the_property():
    result = result_with(0.001, [1] * 50, RATES)
    assert result.to_dict()["verdict"] == result.verdict.to_dict()


def test_strongest_pairs_are_ranked_by_excess_over_the_references(tmp_path, fingerprinter):
    """An answer every reference also gives is not evidence: the copy of a distinctive answer
    leads, the copy of a stock answer that references share comes after it."""
    rows = served_rows(12)
    stock = "The capital of France is Paris, a city on the Seine with many museums and cafes."
    rows[0]["response"] = stock
    idx = tmp_path / "idx"
    build_index(idx, [write_jsonl(tmp_path / "served.jsonl", rows)], fingerprinter)
    prompts = [r["prompt"] for r in rows[:2]]
    refs = [reference_from_records(f"ref{n}", [ResponseRecord("a", stock, prompts[0]),
                                               ResponseRecord("b", f"Other words {n}.",
                                                              prompts[1])], fingerprinter)
            for n in range(2)]
    suspect = [ResponseRecord("stock", stock, prompts[0], line=1),
               ResponseRecord("copy", served_text(1), prompts[1], line=2)]
    with open_index(idx) as index:
        result = attribute(index, suspect, fingerprinter=fingerprinter, references=refs)
    first, second = result.top_pairs
    assert first.suspect_id == "copy" and first.excess > 0.9
    assert second.suspect_id == "stock" and second.excess == pytest.approx(0.0)
    assert [a.name for a in second.reference_answers] == ["ref0", "ref1"]
    assert second.reference_answers[0].text == stock
    assert second.reference_answers[0].jaccard == 1.0
    table = {p.suspect_id: p for p in result.prompts}
    assert table["stock"].reference_max == 1.0 and table["copy"].reference_max < 0.2


def test_provenance_of_a_probe_file(tmp_path):
    lines = [{"id": str(i), "prompt": f"p{i}", "response": "r" if i else "", "model": "m",
              "timestamp": f"2026-11-27T10:0{i}:00+00:00", "status": "ok" if i else "failed",
              "params": {"model": "m", "temperature": 0.0}, "endpoint": "http://h/v1"}
             for i in range(3)]
    path = write_jsonl(tmp_path / "probe.jsonl", lines)
    details = probe_details(path)
    assert details == {"endpoints": ["http://h/v1"], "models": ["m"],
                       "params": [{"model": "m", "temperature": 0.0}],
                       "first_answer": "2026-11-27T10:00:00+00:00",
                       "last_answer": "2026-11-27T10:02:00+00:00", "answered": 2, "failed": 1}
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"response": "x"}])
    assert probe_details(plain) is None and file_sha256("-") is None
    array = tmp_path / "model_outputs.json"
    array.write_text(json.dumps(lines), encoding="utf-8")
    table = tmp_path / "probe.csv"
    table.write_text("id,response\n1,x\n", encoding="utf-8")
    assert probe_details(array) is None and probe_details(table) is None


def test_attribute_file_records_provenance(built_index, tmp_path, fingerprinter):
    from attribution import attribute_file

    path = write_jsonl(tmp_path / "suspect.jsonl", [{"response": served_text(1)}])
    result = attribute_file(built_index, path, fingerprinter=fingerprinter)
    prov = json.loads(json.dumps(result.to_dict()))["provenance"]
    assert prov["suspect"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = (built_index / "manifest.json").read_bytes()
    assert prov["indexes"][0]["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert prov["libraries"]["numpy"] and prov["generated_at"].endswith("+00:00")


@pytest.mark.parametrize("module, suffix", [("matplotlib", ".html"), ("weasyprint", ".pdf")])
def test_a_missing_report_library_says_how_to_install_it(monkeypatch, built_index, fingerprinter,
                                                         tmp_path, module, suffix):
    import sys

    from reports import ReportError, write_report

    with open_index(built_index) as index:
        result = attribute(index, [ResponseRecord("a", served_text(1))],
                           fingerprinter=fingerprinter)
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(ReportError, match=r"pip install 'output-fingerprint\[report\]'"):
        write_report(result, tmp_path / f"r{suffix}")
    assert not (tmp_path / f"r{suffix}").exists()


def test_a_ranked_teacher_is_named_in_the_verdict():
    import dataclasses
    from types import SimpleNamespace

    ranking = SimpleNamespace(teacher=SimpleNamespace(provider="chatgpt"))
    result = dataclasses.replace(result_with(0.001, [1] * 50, RATES), teachers=ranking)
    assert verdict_of(result).sentence.startswith(
        "Derived from the provider chatgpt (the likeliest teacher ranked): p = 0.001")


def test_no_verdict_gives_the_reason_about_the_p_value_not_another_note():
    result = result_with(None, notes=["the suspect has only 3 responses (fewer than 30): its "
                                      "p-value and derived fraction rest on little data",
                                      "provider_share: needs at least 5 references; have 2"])
    assert "have 2" in verdict_of(result).sentence
