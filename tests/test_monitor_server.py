"""The online monitor over real HTTP on 127.0.0.1 (monitor.server, ``fingerprint monitor
serve``): the same requests give the same decisions through the Python callable and over HTTP,
in both body shapes; hostile bodies get a 4xx JSON error and the server stays up; a server
killed with SIGKILL mid-traffic and started again has every acknowledged request's effect
(requests, risk, limiter state); SIGTERM writes the state of a flush window and exits cleanly."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor import ALLOW, Monitor, MonitorServer
from monitor.service import check_arguments
from monitor_fixtures import START

pytest_plugins = ("monitor_fixtures",)  # its fixtures: traffic, baseline(_dir), rising

ROOT = Path(__file__).resolve().parents[1]
ACCOUNTS = ("acct-0", "acct-1", "acct-2")


def request(port: int, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        conn.close()


def check(port: int, payload: dict) -> dict:
    status, body, _ = request(port, "POST", "/v1/check", json.dumps(payload).encode())
    assert status == 200, body
    return body


def interleaved(prompts) -> list[dict]:
    """Every account sends the campaign's requests, one second apart, accounts interleaved."""
    return [{"account": account, "prompt": prompt, "timestamp": START + i, "prior_turns": turns,
             "conversation": first}
            for i, (prompt, turns, first) in enumerate(prompts) for account in ACCOUNTS]


def observe(monitor: Monitor, payload: dict) -> dict:
    return monitor.observe(payload["account"], payload["prompt"], payload.get("timestamp"),
                           payload.get("prior_turns"), payload.get("conversation")).to_dict()


@pytest.fixture
def server(baseline, rising, tmp_path):
    _, policy, _ = rising
    with Monitor(baseline, tmp_path / "served", policy) as monitor:
        with MonitorServer(monitor) as running:
            yield running


@pytest.fixture(scope="module")
def shared_server(baseline, tmp_path_factory):
    """One server for the many hostile bodies (none of them may change its state)."""
    with Monitor(baseline, tmp_path_factory.mktemp("hostile") / "state") as monitor:
        with MonitorServer(monitor) as running:
            yield running


# decisions over HTTP ----------------------------------------------------------------------------

def test_http_and_the_python_callable_give_the_same_decisions(server, rising, baseline,
                                                               tmp_path):
    prompts, policy, _ = rising
    sequence = interleaved(prompts)
    over_http = [check(server.port, payload) for payload in sequence]
    with Monitor(baseline, tmp_path / "direct", policy) as monitor:
        direct = [observe(monitor, payload) for payload in sequence]
    assert over_http == direct
    assert {d["decision"] for d in over_http} == {"allow", "throttle", "block"}
    assert set(over_http[0]) == {"decision", "risk", "retry_after", "reasons", "requests",
                                 "flagged", "group"}


def test_the_openai_chat_body_is_checked_as_its_last_user_message(server):
    conversation = [{"role": "system", "content": "be brief"},
                    {"role": "user", "content": "what is a prime number?"},
                    {"role": "assistant", "content": "a number with two divisors"},
                    {"role": "user", "content": [{"type": "text", "text": "and 7?"}]}]
    chat = check(server.port, {"model": "gpt-x", "user": "chat-user", "messages": conversation,
                               "temperature": 0.2, "timestamp": START})
    plain = check(server.port, {"account": "plain-user", "prompt": "and 7?", "prior_turns": 1,
                                "conversation": "what is a prime number?", "timestamp": START})
    assert chat == plain and chat["requests"] == 1
    health = request(server.port, "GET", "/v1/health")[1]
    assert health["status"] == "ok" and health["stats"]["requests"] == 2
    assert health["accounts_stored"] == 2  # both flushed before they were answered


def test_timestamps_may_be_iso_or_milliseconds_and_default_to_now(server):
    first = check(server.port, {"account": "t", "prompt": "a", "timestamp":
                                "2026-11-18T00:00:00Z"})
    again = check(server.port, {"account": "t", "prompt": "b", "timestamp": 1795046400000})
    now = check(server.port, {"account": "t", "prompt": "c"})
    assert [first["requests"], again["requests"], now["requests"]] == [1, 2, 3]
    assert request(server.port, "GET", "/v1/health")[1]["stats"]["late"] == 0


HOSTILE = [
    (b'{"account": "a", "prompt": ', 400, "not JSON"),
    (b"\xff\xfe{}", 400, "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nests too deeply"),
    (b'["a", "b"]', 400, "not a JSON object"),
    (b'{"account": 5, "prompt": "p"}', 400, "account must be a string"),
    (b'{"account": "", "prompt": "p"}', 400, "account must be a non-empty string"),
    (b'{"prompt": "p"}', 400, "account (or user"),
    (b'{"account": "a"}', 400, "prompt (or messages"),
    (b'{"account": "a", "prompt": ["p"]}', 400, "prompt must be a string"),
    (b'{"account": "a", "prompt": "\\ud800"}', 400, "lone surrogate"),
    (b'{"account": "\\udfffx", "prompt": "p"}', 400, "lone surrogate"),
    (b'{"account": "a", "prompt": "p", "timestamp": "yesterday"}', 400, "timestamp"),
    (b'{"account": "a", "prompt": "p", "timestamp": 1e400}', 400, "timestamp"),
    (b'{"account": "a", "prompt": "p", "timestamp": [1]}', 400, "timestamp"),
    (b'{"account": "a", "prompt": "p", "prior_turns": "2"}', 400, "prior_turns"),
    (b'{"account": "a", "prompt": "p", "conversation": 7}', 400, "conversation must be a string"),
    (b'{"account": "a", "prompt": "p", "conversation": "\\ud800"}', 400, "lone surrogate"),
    (b'{"user": "a", "messages": "hello"}', 400, "messages must be a list"),
    (b'{"user": "a", "messages": [{"role": "system", "content": "x"}]}', 400,
     "no user message"),
    (b'{"user": "a", "prompt": "p", "messages": []}', 400, "not both"),
]


@pytest.mark.parametrize("body,status,message", HOSTILE)
def test_a_body_it_cannot_judge_gets_a_json_error_and_the_server_stays_up(shared_server, body,
                                                                         status, message):
    got, error, _ = request(shared_server.port, "POST", "/v1/check", body)
    assert got == status and message in error["error"]["message"], error
    assert error["error"]["type"] == "invalid_request_error"
    health = request(shared_server.port, "GET", "/v1/health")
    assert health[0] == 200 and health[1]["stats"]["requests"] == 0


def test_framing_and_routes_get_json_errors(server):
    port = server.port
    status, error, _ = request(port, "POST", "/v1/check", b"x" * (2 << 20))  # over 1 MiB
    assert status == 413 and error["error"]["code"] == "request_too_large"
    status, error, headers = request(port, "GET", "/v1/check")
    assert status == 405 and headers["Allow"] == "POST"
    assert request(port, "POST", "/v1/other", b"{}")[0] == 404
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # no length
        raw.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 411")
    assert request(port, "GET", "/v1/health")[0] == 200


def test_a_giant_prompt_within_the_body_limit_is_judged(server):
    prompt = " ".join(f"word{i % 5000}" for i in range(150_000))  # about 1 MB
    decision = check(server.port, {"account": "big", "prompt": prompt[: (1 << 20) - 100]})
    assert decision["decision"] == ALLOW and decision["requests"] == 1


# the server process: SIGKILL and SIGTERM --------------------------------------------------------

def start(baseline_dir: Path, state: Path, *options: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "monitor", "serve", "--baseline", str(baseline_dir),
         "--state", str(state), "--port", "0", *options], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
    if not found:
        process.kill()
        pytest.fail(f"the server did not start: {line}{process.communicate()[1]}")
    return process, int(found.group(1))


def send_unanswered(port: int, payload: dict) -> socket.socket:
    """Send a whole request and do not wait for the answer (it is in flight when we kill)."""
    body = json.dumps(payload).encode()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)
    return raw


def test_a_server_killed_mid_traffic_keeps_every_acknowledged_request(baseline_dir, baseline,
                                                                      rising, tmp_path):
    """SIGKILL with the default flush (every request, before its answer), then a restart with
    a flush window stopped by SIGTERM: nothing acknowledged is lost either way."""
    prompts, policy, _ = rising
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({k: getattr(policy, k) for k in (
        "rate_per_second", "burst", "throttle_risk", "block_risk", "floor", "block_seconds")}))
    sequence = interleaved(prompts)
    acknowledged = len(sequence) // 2
    state = tmp_path / "state"
    process, port = start(baseline_dir, state, "--policy", str(policy_file))
    try:
        answers = [check(port, payload) for payload in sequence[:acknowledged]]
        in_flight = send_unanswered(port, sequence[acknowledged])
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        in_flight.close()
    finally:
        process.kill()
        process.communicate()
    assert any(a["risk"] > 0 for a in answers)  # past a checkpoint: the risk is on the line
    probe = {"prompt": "one more question after the restart", "timestamp": START + 1000}
    process, port = start(baseline_dir, state, "--policy", str(policy_file), "--flush-every",
                          "1000", "--flush-seconds", "3600")
    try:
        after = {a: check(port, {**probe, "account": a}) for a in ACCOUNTS}
        assert request(port, "GET", "/v1/health")[1]["unflushed_requests"] == len(ACCOUNTS)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"stopped after {len(ACCOUNTS)} requests" in out
    flying = sequence[acknowledged]["account"]
    sent = {a: sum(p["account"] == a for p in sequence[:acknowledged]) for a in ACCOUNTS}
    applied = after[flying]["requests"] - sent[flying] - 1  # the one in flight: 0 or 1
    assert applied in (0, 1)
    assert all(after[a]["requests"] == sent[a] + 1 for a in ACCOUNTS if a != flying)
    with Monitor(baseline, tmp_path / "reference", policy) as reference:
        for payload in sequence[:acknowledged + applied]:
            observe(reference, payload)
        expected = {a: observe(reference, {**probe, "account": a}) for a in ACCOUNTS}
    assert after == expected  # requests, risk, reasons and the limiter's decision
    with Monitor(baseline, state, policy) as reopened:  # SIGTERM wrote the window's requests
        assert reopened.store.recovery.snapshot_entries == len(ACCOUNTS)
        again = {a: observe(reopened, {**probe, "account": a}) for a in ACCOUNTS}
    assert all(again[a]["requests"] == after[a]["requests"] + 1 for a in ACCOUNTS)


def test_a_kept_alive_connection_is_answered_without_a_delayed_ack_stall(shared_server):
    """Headers and body are two writes; without TCP_NODELAY the second waits for the client's
    delayed ACK (40 ms on Linux) on every request of a kept-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", shared_server.port, timeout=30)
    try:
        started = time.perf_counter()
        for _ in range(10):
            conn.request("GET", "/v1/health")
            assert conn.getresponse().read()
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    assert elapsed < 0.3, f"10 requests took {elapsed:.3f} s"


def test_a_chat_body_names_its_conversation_by_the_first_user_message():
    """What lets the monitor see that a conversation was continued: the chat body's first user
    message, or the ``conversation`` a gateway gives beside a bare prompt (which wins)."""
    body = {"user": "u", "messages": [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": "what is a prime number?"},
                                      {"role": "assistant", "content": "two divisors"},
                                      {"role": "user", "content": "and 7?"}]}
    assert check_arguments(body)[3:] == (1, "what is a prime number?")
    assert check_arguments({**body, "conversation": "c-17"})[4] == "c-17"
    assert check_arguments({"account": "a", "prompt": "p"})[3:] == (None, None)
