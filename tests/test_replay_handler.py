"""The replay model as a pure function: every request gets an answer in OpenAI's shape, with no
socket involved (test_probe.py takes the same handler over real HTTP)."""

from __future__ import annotations

import json

import pytest

from fingerprint import read_prompts
from replay import ReplayFaults, ReplayHandler

ANSWERS = {"What is 2 + 2?": "4", "Name a colour.": "Blue."}


def chat(prompt, model="m", **extra):
    return json.dumps({"model": model, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "ok"}, {"role": "user", "content": prompt}],
        **extra}).encode()


@pytest.fixture
def handler():
    return ReplayHandler(ANSWERS, "m")


def test_answers_the_last_user_message(handler):
    reply = handler.handle("POST", "/v1/chat/completions/", {}, chat("What is 2 + 2?"))
    body = json.loads(reply.body)
    assert reply.status == 200 and body["choices"][0]["message"]["content"] == "4"
    assert body["model"] == "m" and not reply.drop and reply.delay == 0


@pytest.mark.parametrize("method,path,body,status,code", [
    ("GET", "/v1/nothing", b"", 404, "unknown_route"),
    ("GET", "/v1/chat/completions", b"", 405, "method_not_allowed"),
    ("PUT", "/v1/models", b"", 405, "method_not_allowed"),
    ("POST", "/v1/chat/completions", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/chat/completions", b"\xff\xfe", 400, "invalid_json"),
    ("POST", "/v1/chat/completions", b'{"model": "caf\xc3"}', 400, "invalid_json"),
    ("POST", "/v1/chat/completions", b"\xef\xbb\xbf{}", 400, "invalid_json"),
    ("POST", "/v1/chat/completions", b"[" * 100_000, 400, "invalid_json"),
    ("POST", "/v1/chat/completions", b"[1, 2]", 400, "invalid_json"),
    ("POST", "/v1/chat/completions", chat("What is 2 + 2?", model="other"), 404,
     "model_not_found"),
    ("POST", "/v1/chat/completions", chat("never recorded"), 404, "prompt_not_recorded"),
    ("POST", "/v1/chat/completions", b'{"model": "m", "messages": "not a list"}', 404,
     "prompt_not_recorded"),
])
def test_bad_requests_get_openai_shaped_errors(handler, method, path, body, status, code):
    reply = handler.handle(method, path, {}, body)
    error = json.loads(reply.body)["error"]
    assert reply.status == status and error["code"] == code and error["message"]


def test_a_wrong_method_says_which_one_the_route_takes(handler):
    reply = handler.handle("DELETE", "/v1/chat/completions", {}, b"")
    assert reply.status == 405 and reply.headers["Allow"] == "POST"
    assert "takes POST" in json.loads(reply.body)["error"]["message"]
    assert handler.handle("HEAD", "/v1/models", {}, b"").status == 200  # a GET, body unsent


def test_models_route_and_api_key(handler):
    locked = ReplayHandler(ANSWERS, "m", api_key="sk-secret")
    assert locked.handle("GET", "/v1/models", {}, b"").status == 401
    ok = locked.handle("GET", "/v1/models", {"Authorization": "Bearer sk-secret"}, b"")
    assert ok.status == 200 and json.loads(ok.body)["data"][0]["id"] == "m"
    assert all("sk-secret" not in json.dumps(e) for e in locked.log.events)


def test_faults_become_replies_the_http_layer_only_copies():
    faults = ReplayFaults(rate_limit=0.5, drop=0.5, retry_after=3, max_faults_per_prompt=1)
    handler = ReplayHandler(ANSWERS, "m", faults=faults)
    first = handler.handle("POST", "/v1/chat/completions", {}, chat("Name a colour."))
    second = handler.handle("POST", "/v1/chat/completions", {}, chat("Name a colour."))
    assert first.status == 429 and first.headers["Retry-After"] == "3" or first.drop
    assert second.status == 200 and not second.drop  # at most one fault in a row


def test_read_prompts_reads_standard_input_in_one_pass(monkeypatch):
    import io
    import sys

    data = b'{"prompt": "a", "id": 1}\n{"prompt": "b"}\n{"prompt": "a"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    prompts = read_prompts("-")
    assert [(p.id, p.text) for p in prompts] == [("1", "a"), ("<stdin>:2", "b")]
