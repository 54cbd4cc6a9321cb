"""Probing a suspect through a real HTTP server on 127.0.0.1 (the replay server), with faults."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from probing import EndpointError, ProbeConfig, run_probes
from fingerprint import read_prompts
from probing import OutputFileError, OutputMismatchError, RequestParams
from replay import ReplayFaults, ReplayServer
from conftest import styled_rows, write_jsonl
from fingerprint.errors import InputError
from fingerprint.io import read_records

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-test-DISTINCTIVE-7f3a9c1e5b"
MODEL = "suspect-7b"
FAST = dict(backoff_base=0.01, backoff_max=0.05, timeout=5.0, seed=0)


def recorded(n: int) -> dict[str, str]:
    return {r["prompt"]: r["response"] for r in styled_rows(2, n)}


def prompts_file(tmp_path: Path, n: int) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl",
                       [{"id": f"p{i}", "prompt": r["prompt"]} for i, r in
                        enumerate(styled_rows(2, n))])


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def run(server: ReplayServer, tmp_path: Path, n: int, out: Path | None = None,
        params: RequestParams = RequestParams(MODEL), key: str | None = FAKE_KEY, **config):
    out = out or tmp_path / "out.jsonl"
    return run_probes(read_prompts(prompts_file(tmp_path, n)), out, params,
                      ProbeConfig(server.url, **{**FAST, **config}), key), out


def test_faults_every_prompt_answered_once(tmp_path):
    faults = ReplayFaults(rate_limit=0.15, server_error=0.15, slow=0.05, drop=0.1, non_json=0.05,
                          retry_after=0.2, slow_seconds=2.0, seed=3)
    with ReplayServer(recorded(60), MODEL, faults=faults) as server:
        stats, out = run(server, tmp_path, 60, concurrency=8, timeout=0.8)
        seen = Counter(e["outcome"] for e in server.log.events)
    rows = lines(out)
    assert stats.answered == 60 and stats.failed == 0
    assert sorted(r["prompt"] for r in rows) == sorted(recorded(60))
    assert all(r["status"] == "ok" and r["response"] == recorded(60)[r["prompt"]] for r in rows)
    # every injected fault was seen by the client and retried
    assert seen["rate_limit"] == stats.retries["rate_limited"] > 0
    assert seen["server_error"] == stats.retries["server_error"] > 0
    assert seen["drop"] == stats.retries["connection"] > 0
    assert seen["non_json"] == stats.retries["bad_response"] > 0
    # every slow answer times out; a loaded machine can time out a few ordinary ones too
    assert stats.retries["timeout"] >= seen["slow"] > 0
    assert all(r["timing"]["attempts"] >= 1 and r["params"]["model"] == MODEL for r in rows)
    # the file is what `fingerprint attribute` reads
    assert len(list(read_records(out))) == 60


def test_retry_after_is_respected(tmp_path):
    faults = ReplayFaults(rate_limit=0.5, retry_after=0.4, seed=5)
    with ReplayServer(recorded(12), MODEL, faults=faults) as server:
        stats, _ = run(server, tmp_path, 12, concurrency=4)
        events = list(server.log.events)
    gaps = []
    for i, e in enumerate(events):
        if e["outcome"] == "rate_limit":
            after = next(x for x in events[i + 1:] if x["prompt"] == e["prompt"])
            gaps.append(after["time"] - e["time"])
    assert stats.answered == 12 and len(gaps) == stats.retries["rate_limited"] > 0
    assert min(gaps) >= 0.4  # backoff alone would be <= 0.05 s


def test_failed_prompt_recorded_and_retried_on_rerun(tmp_path):
    answers = recorded(10)
    missing = next(iter(answers))
    with ReplayServer({k: v for k, v in answers.items() if k != missing}, MODEL) as server:
        stats, out = run(server, tmp_path, 10)
    assert stats.answered == 9 and stats.failed == 1
    failed = [r for r in lines(out) if r["status"] == "failed"]
    assert failed[0]["prompt"] == missing and "404" in failed[0]["error"]
    assert failed[0]["response"] == ""
    with ReplayServer(answers, MODEL) as server:
        stats, out = run(server, tmp_path, 10)
    assert stats.already == 9 and stats.answered == 1 and stats.retried_failed == 1
    rows = lines(out)
    assert len(rows) == 10 and {r["status"] for r in rows} == {"ok"}
    assert len({r["prompt"] for r in rows}) == 10


def test_torn_last_line_is_redone(tmp_path):
    with ReplayServer(recorded(8), MODEL) as server:
        _, out = run(server, tmp_path, 8)
        data = out.read_bytes()
        out.write_bytes(data[: len(data) - 40])  # the last line torn mid-write
        stats, out = run(server, tmp_path, 8)
    assert stats.torn_line and stats.already == 7 and stats.answered == 1
    rows = lines(out)
    assert len(rows) == 8 and len({r["prompt"] for r in rows}) == 8


def test_refuses_to_mix_models_and_params(tmp_path):
    with ReplayServer(recorded(5), MODEL) as server:
        _, out = run(server, tmp_path, 5)
        before = out.read_bytes()
        with pytest.raises(OutputMismatchError, match="temperature 0.0 \\(this run: 0.7\\)"):
            run(server, tmp_path, 5, params=RequestParams(MODEL, temperature=0.7))
        with pytest.raises(OutputMismatchError, match="model 'suspect-7b' \\(this run: 'x'\\)"):
            run(server, tmp_path, 5, params=RequestParams("x"))
    assert out.read_bytes() == before


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(tmp_path):
    n = 40
    prompts = prompts_file(tmp_path, n)
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY}
    with ReplayServer(recorded(n), MODEL) as server:
        cmd = [sys.executable, "-m", "cli", "probe", "run", str(prompts),
               "--endpoint", server.url, "--model", MODEL, "--out", str(out),
               "--requests-per-minute", "600", "--concurrency", "2"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(lines(out)) if out.read_bytes().endswith(b"\n") else None
        assert proc.returncode == -signal.SIGKILL
        done = subprocess.run(cmd[:-4], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        asked = server.log.count("ok")
    assert done.returncode == 0, done.stderr
    rows = lines(out)
    assert len(rows) == n and len({r["prompt"] for r in rows}) == n
    assert killed_at is None or 10 <= killed_at < n
    # the rerun asked only what was missing: at most the two requests in flight at the kill twice
    assert n <= asked <= n + 2
    if killed_at is not None:
        assert f"{n - killed_at} answered, 0 failed, {killed_at} already" in done.stdout
    for text in (out.read_text(), done.stdout, done.stderr):
        assert FAKE_KEY not in text


@pytest.mark.slow
def test_api_key_never_written_and_401_is_clear(tmp_path):
    prompts = prompts_file(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    with ReplayServer(recorded(6), MODEL, api_key=FAKE_KEY) as server:
        args = [sys.executable, "-m", "cli", "probe", "run", str(prompts),
                "--endpoint", server.url, "--model", MODEL, "--out", str(out),
                "--api-key-env", "MY_PROBE_KEY"]
        ok = subprocess.run(args, cwd=ROOT, env={**os.environ, "MY_PROBE_KEY": FAKE_KEY},
                            capture_output=True, text=True, timeout=60)
        args[args.index("--out") + 1] = str(tmp_path / "o2.jsonl")
        wrong = {**os.environ, "MY_PROBE_KEY": FAKE_KEY[:-3] + "xyz"}
        bad = subprocess.run(args, cwd=ROOT, env=wrong, capture_output=True, text=True,
                             timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "6 answered" in ok.stdout
    for text in (out.read_text(), ok.stdout, ok.stderr, bad.stdout, bad.stderr):
        assert FAKE_KEY not in text and FAKE_KEY[:-3] + "xyz" not in text
    assert bad.returncode == 1
    assert "refused the API key (HTTP 401)" in bad.stderr and "MY_PROBE_KEY" in bad.stderr


def test_endpoint_down_is_clear(tmp_path):
    with ReplayServer(recorded(3), MODEL) as server:
        url = server.url
    with pytest.raises(EndpointError, match="no answer after 2 attempts.*connection failed"):
        run_probes(read_prompts(prompts_file(tmp_path, 3)), tmp_path / "o.jsonl",
                   RequestParams(MODEL), ProbeConfig(url, retries=1, **FAST), FAKE_KEY)


@pytest.mark.parametrize("fault,message", [("non_json", "not a JSON chat completion"),
                                           ("drop", "connection failed")])
def test_broken_endpoint_is_clear_and_keeps_collected(tmp_path, fault, message):
    with ReplayServer(recorded(6), MODEL) as server:
        _, out = run(server, tmp_path, 3)  # an earlier run collected three answers
    before = out.read_bytes()
    faults = ReplayFaults(**{fault: 1.0}, max_faults_per_prompt=None)
    with ReplayServer(recorded(6), MODEL, faults=faults) as server:
        with pytest.raises(EndpointError, match=message):
            run(server, tmp_path, 6, out=out, retries=1)
    assert out.read_bytes() == before


def test_cli_probe_run_and_bad_prompts_file(tmp_path):
    runner = CliRunner()
    with ReplayServer(recorded(5), MODEL) as server:
        result = runner.invoke(main, ["probe", "run", str(prompts_file(tmp_path, 5)),
                                      "--endpoint", server.url, "--model", MODEL,
                                      "--out", str(tmp_path / "o.jsonl")],
                               env={"OPENAI_API_KEY": FAKE_KEY})
        assert result.exit_code == 0, result.output
        assert "5 answered, 0 failed" in result.output and FAKE_KEY not in result.output
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"prompt": "a"}\n{"prompt": \n')
        result = runner.invoke(main, ["probe", "run", str(bad), "--endpoint", server.url,
                                      "--model", MODEL, "--out", str(tmp_path / "o2.jsonl")])
    assert result.exit_code == 1
    assert f"{bad} line 2: malformed JSON" in result.output


def test_read_prompts_shapes(tmp_path):
    served = write_jsonl(tmp_path / "served.jsonl", styled_rows(1, 4) + styled_rows(1, 2))
    assert len(read_prompts(served)) == 4  # repeated prompts asked once
    bare = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "hi", "prompt_id": 7}])
    assert read_prompts(bare)[0].id == "7"
    with pytest.raises(InputError, match="line 1: field \"prompt\" is missing"):
        read_prompts(write_jsonl(tmp_path / "q.jsonl", [{"text": "x"}]))


def test_replay_models_and_unknown_prompt(tmp_path):
    import urllib.error
    import urllib.request

    with ReplayServer(recorded(2), MODEL) as server:
        with urllib.request.urlopen(server.url + "/models") as r:
            assert json.load(r)["data"][0]["id"] == MODEL
        req = urllib.request.Request(server.url + "/chat/completions", method="POST",
                                     data=json.dumps({"model": MODEL, "messages": [
                                         {"role": "user", "content": "never recorded"}]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req)
    assert info.value.code == 404
    assert json.load(info.value)["error"]["code"] == "prompt_not_recorded"


def test_faults_are_deterministic():
    a = ReplayFaults(rate_limit=0.3, drop=0.2, seed=9)
    draws = [a.draw(f"p{i}", k) for i in range(50) for k in range(3)]
    assert draws == [ReplayFaults(rate_limit=0.3, drop=0.2, seed=9).draw(f"p{i}", k)
                     for i in range(50) for k in range(3)]
    assert {"rate_limit", "drop", None} <= set(draws)


def test_probe_select_diverse_diagnostic_deterministic(tmp_path, fingerprinter):
    from index import build_index

    from conftest import served_rows

    idx = tmp_path / "idx"
    build_index(idx, [write_jsonl(tmp_path / "served.jsonl", styled_rows(0, 48))], fingerprinter)
    refs = []
    for k in (1, 2, 3):
        refs += ["--reference", str(write_jsonl(tmp_path / f"r{k}.jsonl", styled_rows(k, 48)))]
    runner = CliRunner()
    outs = []
    for name in ("a.jsonl", "b.jsonl"):
        result = runner.invoke(main, ["probe", "select", "--index", str(idx), "-n", "8",
                                      "--out", str(tmp_path / name), *refs, "--seed", "3"])
        assert result.exit_code == 0, result.output
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1]  # deterministic given the seed
    chosen = [json.loads(x) for x in outs[0].splitlines()]
    assert len(chosen) == 8 and len({c["cluster"] for c in chosen}) == 8
    assert all(c["margin"] is not None and "cluster" in c["why"] for c in chosen)
    assert len(read_prompts(tmp_path / "a.jsonl")) == 8  # a probes file probe run reads
    bare = tmp_path / "idx2"
    build_index(bare, [write_jsonl(tmp_path / "s2.jsonl", served_rows(10))], fingerprinter,
                store_text=False)
    result = runner.invoke(main, ["probe", "select", "--index", str(bare), "-n", "3",
                                  "--out", str(tmp_path / "c.jsonl")])
    assert result.exit_code == 1 and "stores no prompt texts" in result.output


def test_serve_replay_command_serves_alpacaeval_shape(tmp_path):
    import re
    import urllib.request

    recorded_file = tmp_path / "model_outputs.json"
    recorded_file.write_text(json.dumps([{"instruction": "Say hi", "output": "Hi!",
                                          "generator": "m1"}]))
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve-replay",
                             str(recorded_file), "--port", "0"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", proc.stderr.readline()).group(0)
        with urllib.request.urlopen(url + "/models", timeout=10) as r:
            assert json.load(r)["data"][0]["id"] == "m1"
        req = urllib.request.Request(url + "/chat/completions", method="POST", data=json.dumps(
            {"model": "m1", "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": "Say hi"}]}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.load(r)["choices"][0]["message"]["content"] == "Hi!"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_file_that_is_not_a_probe_output_is_never_truncated(tmp_path):
    """A one-line file without its final newline (someone's prompts, say) given as --out is
    refused untouched; only the tool's own torn lines are cut."""
    theirs = tmp_path / "notes.jsonl"
    theirs.write_bytes(b'{"prompt": "my only copy"}')
    garbage = tmp_path / "draft.txt"
    garbage.write_bytes(b"half a thought")
    with ReplayServer(recorded(3), MODEL) as server:
        for path in (theirs, garbage):
            before = path.read_bytes()
            with pytest.raises(OutputFileError, match="not a probe answer"):
                run_probes(read_prompts(prompts_file(tmp_path, 3)), path, RequestParams(MODEL),
                           ProbeConfig(server.url), None)
            assert path.read_bytes() == before
        _, out = run(server, tmp_path, 3)
        whole = out.read_bytes()
        out.write_bytes(whole[:-1])  # every line whole, only the last newline lost
        stats, out = run(server, tmp_path, 3)
        assert not stats.torn_line and stats.already == 3 and out.read_bytes() == whole
        first = whole[:whole.index(b"\n") + 1]
        out.write_bytes(first[:30])  # a first answer torn mid-write: the tool's own prefix
        stats, out = run(server, tmp_path, 3)
        assert stats.torn_line and stats.answered == 3 and len(lines(out)) == 3


def test_api_key_echoed_by_a_model_not_found_error_is_scrubbed(tmp_path):
    """Some endpoints quote the Authorization header in their error text; the 404
    model-not-found message reaches the user, never the key."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"error": {
                "message": f"no such model for {self.headers.get('Authorization')}",
                "type": "invalid_request_error", "code": "model_not_found"}}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        args = [sys.executable, "-m", "cli", "probe", "run", str(prompts_file(tmp_path, 2)),
                "--endpoint", f"http://127.0.0.1:{httpd.server_address[1]}/v1", "--model",
                MODEL, "--out", str(tmp_path / "out.jsonl"), "--api-key-env", "MY_PROBE_KEY"]
        done = subprocess.run(args, cwd=ROOT, env={**os.environ, "MY_PROBE_KEY": FAKE_KEY},
                              capture_output=True, text=True, timeout=60)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert done.returncode == 1 and "has no model" in done.stderr
    assert "no such model for Bearer ***" in done.stderr
    assert FAKE_KEY not in done.stderr + done.stdout


def test_a_run_whose_prompts_failed_exits_non_zero_and_says_what_to_fix(tmp_path):
    """An endpoint without /v1 answers 404 to every prompt: that is a failed run, not a
    success, and the message points at the missing /v1."""
    with ReplayServer(recorded(3), MODEL) as server:
        base = server.url.removesuffix("/v1")
        result = CliRunner().invoke(main, [
            "probe", "run", str(prompts_file(tmp_path, 3)), "--endpoint", base, "--model", MODEL,
            "--out", str(tmp_path / "o.jsonl"), "--retries", "0"])
    assert result.exit_code == 1
    assert "0 answered, 3 failed" in result.output
    assert "3 of 3 prompts failed (last error: HTTP 404" in result.output
    assert f"does it need '/v1' ({base}/v1)?" in result.output
