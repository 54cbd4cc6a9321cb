import json
import random

import pytest

from attribution import AttributionOptions, attribute, attribute_file
from reports import markdown_report
from conftest import TOPICS, served_rows, served_text, write_jsonl
from fingerprint import ConfigError, FingerprintConfig, Fingerprinter, ResponseRecord
from index import ConfigMismatchError, build_index, open_index


def records(texts, prompts=None):
    prompts = prompts or [None] * len(texts)
    return [ResponseRecord(id=f"s{i}", response=t, prompt=p, line=i + 1)
            for i, (t, p) in enumerate(zip(texts, prompts))]


UNRELATED = [f"My grandmother kept {n} goats and a red tractor; she sold cheese at the market "
             f"every Saturday and told stories about the war, story {n}." for n in range(8)]


def test_verbatim_copies_are_near_duplicates_with_high_score(built_index, fingerprinter):
    copies = [served_text(i) + " Hope this helps!" for i in range(8)]
    with open_index(built_index) as idx:
        copied = attribute(idx, records(copies), fingerprinter=fingerprinter)
        independent = attribute(idx, records(UNRELATED), fingerprinter=fingerprinter)
    assert copied.signal("near_duplicate_rate").value == 1.0
    assert independent.signal("near_duplicate_rate").value == 0.0
    assert copied.score > 0.8 > 0.5 > independent.score
    first = copied.responses[0]
    assert first.lexical_matches[0].id == "resp-0" and first.lexical_matches[0].score > 0.8
    assert first.semantic_matches[0].id == "resp-0"
    assert first.paired is None and copied.counts["paired"] == 0
    assert copied.notes  # says the score rests on nearest matches only


def test_paired_comparison_uses_the_served_answer_to_the_same_prompt(built_index, fingerprinter):
    rows = served_rows(24)
    prompts = [rows[i]["prompt"].upper() for i in (2, 9)] + ["a prompt nobody served"]
    texts = [served_text(2), "Completely different words about other things entirely.",
             served_text(5)]
    with open_index(built_index) as idx:
        result = attribute(idx, records(texts, prompts), fingerprinter=fingerprinter)
    a, b, c = result.responses
    assert a.paired.id == "resp-2" and a.paired.jaccard == 1.0 and a.paired.served_answers == 1
    assert b.paired.id == "resp-9" and b.paired.jaccard < 0.1 and b.lexical == b.paired.jaccard
    assert c.paired is None and c.lexical == c.lexical_matches[0].score == 1.0
    assert result.counts["paired"] == 2
    assert result.signal("mean_paired_jaccard").n == 2
    assert result.signal("mean_paired_jaccard").value == pytest.approx(
        (1.0 + b.paired.jaccard) / 2)


def test_best_match_is_never_worse_than_the_paired_answer(built_index, fingerprinter):
    rows = served_rows(24)
    texts = [f"On {TOPICS[i % 16]}: practice matters more than theory, and beginners should "
             f"start small." for i in range(10)]
    with open_index(built_index) as idx:
        result = attribute(idx, records(texts, [rows[i]["prompt"] for i in range(10)]),
                           fingerprinter=fingerprinter)
    for e in result.responses:
        assert e.lexical_matches[0].score >= e.paired.jaccard
        assert e.semantic_matches[0].score >= e.paired.cosine - 1e-6


def test_answers_without_words_are_no_lexical_evidence(tmp_path, fingerprinter):
    """Two different emoji strings have the same (empty) shingle set: they are not near-duplicates,
    their pair has no Jaccard, and neither takes part in the rate's or the mean's denominator."""
    rows = served_rows(6)
    rows[0]["response"], rows[1]["response"] = "\U0001f600\U0001f389", "!!! ??? ..."
    path = tmp_path / "idx"
    build_index(path, [write_jsonl(tmp_path / "served.jsonl", rows)], fingerprinter)
    texts = ["\U0001f44d\U0001f44d", "***", served_text(2)]
    with open_index(path) as idx:
        result = attribute(idx, records(texts, [r["prompt"] for r in rows[:3]]),
                           fingerprinter=fingerprinter)
    emoji, symbols, copy = result.responses
    for e in (emoji, symbols):
        assert not e.has_shingles and not e.near_duplicate and e.lexical_matches == ()
        assert e.paired is not None and e.paired.jaccard is None and e.lexical == 0.0
    assert copy.near_duplicate and copy.paired.jaccard == 1.0
    assert result.signal("near_duplicate_rate").value == 1.0
    assert result.signal("near_duplicate_rate").n == 1
    assert result.signal("mean_paired_jaccard").n == 1
    assert result.counts["near_duplicates"] == 1
    assert result.top_pairs[0].suspect_id == "s2"  # the real copy leads the evidence
    assert json.loads(json.dumps(result.to_dict()))["responses"][0]["paired"]["jaccard"] is None


def test_result_json_has_top_level_score_and_room_for_p_values(built_index, fingerprinter):
    with open_index(built_index) as idx:
        result = attribute(idx, records(UNRELATED[:2]), fingerprinter=fingerprinter)
    data = json.loads(json.dumps(result.to_dict()))
    assert isinstance(data["score"], float) and data["p_value"] is None
    assert data["calibrated"] is False
    assert set(data["signals"]) == {"near_duplicate_rate", "mean_paired_jaccard",
                                    "mean_paired_cosine", "mean_best_jaccard",
                                    "mean_best_cosine"}
    assert all("p_value" in s for s in data["signals"].values())
    assert len(data["responses"]) == 2 and data["counts"]["indexed_responses"] == 24


def test_report_shows_pairs_side_by_side(built_index, fingerprinter):
    text = served_text(4) + " | with a pipe <and> markup"
    with open_index(built_index) as idx:
        result = attribute(idx, records([text], [served_rows(5)[4]["prompt"]]),
                           fingerprinter=fingerprinter)
    report = markdown_report(result)
    assert "| suspect response | served response |" in report
    assert "suspect `s0` ~ served `resp-4` (paired)" in report
    assert "&#124; with a pipe &lt;and&gt; markup" in report
    assert "- `mean_best_jaccard`: MinHash search over the whole index; not calibrated" in report


def test_attribute_file_reads_and_counts_empty(built_index, tmp_path, fingerprinter):
    path = write_jsonl(tmp_path / "suspect.jsonl", [{"response": served_text(1)},
                                                   {"response": "   "}])
    result = attribute_file(built_index, path, fingerprinter=fingerprinter)
    assert result.counts["responses"] == 1 and result.counts["skipped_empty"] == 1


def test_fingerprinter_must_match_the_index(built_index):
    with open_index(built_index) as idx:
        with pytest.raises(ConfigMismatchError, match="seed"):
            attribute(idx, records(["x"]), fingerprinter=Fingerprinter(FingerprintConfig(seed=3)))


def test_options_are_validated():
    with pytest.raises(ConfigError, match="near_duplicate_threshold"):
        AttributionOptions(near_duplicate_threshold=0)
    with pytest.raises(ConfigError, match="k must be"):
        AttributionOptions(k=0)


# --- calibrated attribution: what it can and cannot compute ---------------------------------
@pytest.fixture
def styled_index(tmp_path, fingerprinter):
    from conftest import styled_rows
    from index import add_reference

    path = tmp_path / "styled"
    build_index(path, [write_jsonl(tmp_path / "p.jsonl", styled_rows(0, 40))], fingerprinter)
    for style in range(1, 7):
        add_reference(path, f"model{style}",
                      [write_jsonl(tmp_path / f"m{style}.jsonl", styled_rows(style, 40))],
                      fingerprinter)
    return path


def styled_records(style, n, start=0, with_prompts=True):
    from conftest import styled_rows

    return [ResponseRecord(id=r["id"], response=r["response"],
                           prompt=r["prompt"] if with_prompts else None, line=i + 1)
            for i, r in enumerate(styled_rows(style, n, start))]


def test_calibrated_result_for_a_student_and_an_independent_model(styled_index, fingerprinter):
    with open_index(styled_index) as idx:
        student = attribute(idx, styled_records(0, 40), fingerprinter=fingerprinter)
        independent = attribute(idx, styled_records(7, 40), fingerprinter=fingerprinter)
    # provider_share's p-value is a rank among the 6 references: above all of them it is 1/7,
    # its floor, and the result says so; the combined p-value is smaller (the other signals)
    assert student.calibrated and student.p_value < 0.01 and student.score > 0.8
    assert student.signal("provider_share").p_value == pytest.approx(1 / 7)
    assert any(n.startswith("provider_share: the p-value is a rank among 6 references and "
                            "cannot go below 1/7 = 0.143") for n in student.notes)
    assert independent.calibrated and independent.p_value > 0.05 and independent.score < 0.2
    assert all(e.provider_like for e in student.responses)
    assert not any(e.provider_like for e in independent.responses)
    assert student.signal("provider_share").references == 6


def test_a_tiny_suspect_says_it_rests_on_little_data(styled_index, fingerprinter):
    with open_index(styled_index) as idx:
        result = attribute(idx, styled_records(0, 3), fingerprinter=fingerprinter)
    assert any("only 3 responses" in n for n in result.notes)
    assert result.p_value > 1e-3  # three responses cannot make a very small p-value


def test_suspect_prompts_not_in_the_index(styled_index, fingerprinter):
    with open_index(styled_index) as idx:
        result = attribute(idx, styled_records(0, 40, start=500), fingerprinter=fingerprinter)
    assert result.counts["paired"] == 0
    assert result.signal("mean_paired_jaccard").value is None
    assert any("no suspect prompt is among the indexed prompts" in n for n in result.notes)
    assert result.signal("provider_share").p_value is not None  # style needs no shared prompts


def test_references_without_overlapping_prompts(styled_index, fingerprinter):
    from attribution import reference_from_records

    refs = [reference_from_records(f"far{s}", styled_records(s, 40, start=900), fingerprinter)
            for s in range(1, 7)]
    with open_index(styled_index) as idx:
        result = attribute(idx, styled_records(0, 40), fingerprinter=fingerprinter,
                           references=refs)
    jaccard = result.signal("mean_paired_jaccard")
    assert jaccard.p_value is None and "have 0" in jaccard.reason
    assert sum("shares 0 prompts with the suspect" in n for n in result.notes) == 6
    assert result.signal("provider_share").p_value is not None


def test_a_single_reference_gives_no_p_value_and_says_why(styled_index, fingerprinter):
    from attribution import reference_from_records

    ref = reference_from_records("only", styled_records(3, 40), fingerprinter)
    with open_index(styled_index) as idx:
        result = attribute(idx, styled_records(0, 40), fingerprinter=fingerprinter,
                           references=[ref])
    assert result.p_value is None and not result.calibrated and result.derived_fraction is None
    assert "needs at least 5 references on shared prompts; have 1" in \
        result.signal("provider_share").reason


def test_shared_word_trigrams_are_highlighted():
    from reports import highlight_shared

    text = "Paris is the capital of France. It has <many> museums."
    other = "the capital of france is paris; it has many museums"
    assert highlight_shared(text, other) == (
        "Paris is <mark>the capital of France</mark>. "
        "<mark>It has &lt;many&gt; museums</mark>.")
    assert highlight_shared("nothing in common here", other) == "nothing in common here"


def test_html_report_plots_every_reference_and_shows_the_config(styled_index, fingerprinter):
    from reports import html_report

    with open_index(styled_index) as idx:
        result = attribute(idx, styled_records(0, 40), fingerprinter=fingerprinter)
    page = html_report(result, {"index_versions": {"faiss-cpu": "x"}})
    share = result.signal("provider_share")
    assert len(share.reference_values) == 6
    block = page[page.index("id='signal-provider_share'"):]
    block = block[:block.index("</svg>")]
    for name in share.reference_values:
        assert f">{name}</text>" in block  # labelled on the plot, not only on hover
    assert page.count(">suspect</text>") == 3  # one plot per calibrated signal
    assert "<mark>" in page and "Derived fraction" in page and '"faiss-cpu": "x"' in page
    assert "<code>provider_share</code>: a linear SVM" in page  # how it is computed, once
    assert "rank among theirs, (1 + references at least as high)" in page
    assert page.startswith("<!doctype html>") and "src=" not in page  # nothing fetched


def test_paired_cosine_is_calibrated_on_references_stored_with_embeddings(tmp_path,
                                                                           fingerprinter):
    from conftest import styled_rows
    from index import add_reference

    path = tmp_path / "emb"
    build_index(path, [write_jsonl(tmp_path / "p.jsonl", styled_rows(0, 25))], fingerprinter)
    for style in range(1, 6):
        add_reference(path, f"model{style}",
                      [write_jsonl(tmp_path / f"m{style}.jsonl", styled_rows(style, 25))],
                      fingerprinter, embed=True)
    with open_index(path) as idx:
        assert all(g.has_embeddings for g in idx.references.values())
        result = attribute(idx, styled_records(0, 25), fingerprinter=fingerprinter)
    cosine = result.signal("mean_paired_cosine")
    assert cosine.references == 5 and cosine.p_value is not None and cosine.value > 0.99
    assert set(cosine.reference_values) == {f"model{s}" for s in range(1, 6)}
    assert all(v < cosine.value for v in cosine.reference_values.values())


def test_the_interval_does_not_depend_on_the_order_responses_arrive_in(styled_index,
                                                                       fingerprinter):
    """A probe writes answers as they come; the same answers in another order must give the same
    derived fraction and interval, with the bootstrap's seed recorded."""
    mixed = styled_records(0, 40)[:25] + styled_records(7, 40)[25:]
    with open_index(styled_index) as idx:
        forward = attribute(idx, mixed, fingerprinter=fingerprinter)
        shuffled = attribute(idx, random.Random(1).sample(mixed, len(mixed)),
                             fingerprinter=fingerprinter)
    assert 0 < forward.derived_fraction < 1
    assert forward.derived_fraction_ci[0] < forward.derived_fraction_ci[1]
    assert forward.derived_fraction_ci == shuffled.derived_fraction_ci
    assert forward.settings["bootstrap"] == {"resamples": 1000, "seed": 0}
