"""Request logs as the monitor reads them: accounts, prompts and times from every shape."""

import datetime

import pytest

from conftest import write_jsonl
from fingerprint import FieldMap, InputError
from monitor.detector import conversation_key
from monitor.requests import RequestStats, parse_timestamp, read_requests


def chat_line(user, prompt, when, answer="an answer", **extra):
    line = {"request": {"model": "m", "user": user,
                        "messages": [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": prompt}]},
            "timestamp": when, **extra}
    if answer is not None:
        line["response"] = {"id": "c", "choices": [{"message": {"content": answer}}]}
    return line


@pytest.mark.parametrize("text, seconds", [
    ("2026-11-27T10:00:00Z", 1795773600.0),
    ("2026-11-27T11:00:00+01:00", 1795773600.0),
    ("2026-11-27T10:00:00", 1795773600.0),  # no offset: UTC
    ("1795773600", 1795773600.0),
    ("1795773600.5", 1795773600.5),
    ("1795773600000", 1795773600.0),  # milliseconds
    (" 1795773600 ", 1795773600.0),
])
def test_timestamps_iso_and_epoch(text, seconds):
    assert parse_timestamp(text) == seconds
    assert datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).year == 2026


@pytest.mark.parametrize("text", ["yesterday", "", "NaN", "inf", "2026-13-01T00:00:00"])
def test_unparseable_timestamps_are_none(text):
    assert parse_timestamp(text) is None


def test_a_chat_log_with_and_without_answers(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [
        chat_line("acct-1", "first question", "2026-11-27T10:00:00Z"),
        chat_line("acct-2", "second question", 1795773601, answer=None),
        chat_line("acct-1", "third", "2026-11-27T10:00:02Z", account="override")])
    requests = list(read_requests(path))
    assert [(r.account, r.prompt, r.timestamp) for r in requests] == [
        ("acct-1", "first question", 1795773600.0), ("acct-2", "second question", 1795773601.0),
        ("override", "third", 1795773602.0)]
    assert [r.line for r in requests] == [1, 2, 3]


def test_a_log_of_requests_only_is_detected_as_chat(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl",
                       [chat_line("a", "q", 1795773600, answer=None) for _ in range(2)])
    assert [r.account for r in read_requests(path)] == ["a", "a"]


def test_skips_are_counted_by_reason_with_their_lines(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [
        {"prompt": "ok", "account": "a", "timestamp": 1795773600},
        {"prompt": "no who", "timestamp": 1795773600},
        {"prompt": "no when", "account": "a"},
        {"prompt": "bad when", "account": "a", "timestamp": "tomorrow"},
        {"prompt": "   ", "account": "a", "timestamp": 1795773600},
        {"prompt": "ok too", "account": "b", "timestamp": "2026-11-27T10:00:00Z"}])
    stats = RequestStats()
    assert [r.prompt for r in read_requests(path, stats=stats)] == ["ok", "ok too"]
    assert stats.to_dict() == {
        "requests": 2,
        "skipped": {"no account": 1, "no timestamp": 1, "bad timestamp": 1, "no prompt": 1},
        "skipped_lines": {"no account": [2], "no timestamp": [3], "bad timestamp": [4],
                          "no prompt": [5]}}


def test_account_and_timestamp_fields_can_be_mapped(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [
        {"prompt": "q", "meta": {"org": "acme", "t": "1795773600"}},
        {"prompt": "r", "meta": {"org": "acme", "t": "1795773601"}}])
    fields = FieldMap(account="meta.org", timestamp="meta.t")
    assert [(r.account, r.timestamp) for r in read_requests(path, fields)] == [
        ("acme", 1795773600.0), ("acme", 1795773601.0)]


def test_a_csv_log(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("account,timestamp,prompt\nacme,1795773600,hello\nbeta,,hi\n",
                    encoding="utf-8")
    stats = RequestStats()
    assert [r.account for r in read_requests(path, stats=stats)] == ["acme"]
    assert stats.skipped == {"no timestamp": 1}


def test_a_malformed_line_is_still_an_error_naming_it(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"prompt": "q", "account": "a", "timestamp": 1}\n{"prompt": \n',
                    encoding="utf-8")
    with pytest.raises(InputError, match="line 2: malformed JSON"):
        list(read_requests(path))
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"prompt": "q", "account": {"id": 1},
                                                    "timestamp": 1}])
    with pytest.raises(InputError, match='line 1: field "account"'):
        list(read_requests(wrong))


def test_a_request_knows_how_deep_in_its_conversation_it_is(tmp_path):
    follow_up = chat_line("a", "and then?", 1795773600, answer=None)
    follow_up["request"]["messages"][1:1] = [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"}]
    path = write_jsonl(tmp_path / "log.jsonl", [chat_line("a", "q", 1795773600), follow_up])
    assert [r.prior_turns for r in read_requests(path)] == [0, 2]
    # the conversation is known by its first user message, which a follow-up carries again
    assert [r.conversation for r in read_requests(path)] == [conversation_key("q"),
                                                              conversation_key("first")]
    served = write_jsonl(tmp_path / "served.jsonl",
                         [{"prompt": "q", "account": "a", "timestamp": 1}])
    assert [(r.prior_turns, r.conversation) for r in read_requests(served)] == [(None, None)]
