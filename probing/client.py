"""Asking a suspect model the probe prompts through its OpenAI-compatible API, reliably.

The official ``openai`` client (``AsyncOpenAI``) speaks the protocol; its own retries are switched
off (``max_retries=0``) and the policy lives here, where it is tested and where it honours
``Retry-After``: 429, 5xx, timeouts, dropped connections and non-JSON answers are retried with
exponential backoff and full jitter, never sooner than the server's ``Retry-After``. Other 4xx
answers are final for that prompt (recorded as failed). Errors that doom every prompt stop the run
at once with a clear message: a refused API key (401/403), a model the endpoint does not have, or
an endpoint that never once answered (down, or not an OpenAI endpoint). Whatever was collected
before stays in the output file (probing.output).

The API key is read from the environment by the caller and given to the client only; it is
never part of a config, a line, a message or a log (and is scrubbed from server error texts,
which sometimes echo it).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from fingerprint.errors import ConfigError
from fingerprint.io import Prompt
from probing.errors import EndpointError
from probing.output import ProbeOutput, RequestParams, ResumeState

RETRY_KINDS = ("rate_limited", "server_error", "timeout", "connection", "bad_response")


@dataclass(frozen=True)
class ProbeConfig:
    """How to talk to the endpoint (not what to ask it: that is RequestParams)."""

    endpoint: str
    concurrency: int = 4
    requests_per_minute: float | None = None
    timeout: float = 60.0
    retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    api_key_env: str = "OPENAI_API_KEY"  # the variable's name, never its value
    seed: int | None = None  # jitter; None: fresh randomness

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint must be an http(s) URL, got {self.endpoint!r}")
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 256:
            raise ConfigError(f"concurrency must be an integer in [1, 256], "
                              f"got {self.concurrency!r}")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ConfigError("requests_per_minute must be positive")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {self.retries!r}")
        if self.backoff_base < 0 or self.backoff_max < self.backoff_base:
            raise ConfigError("need 0 <= backoff_base <= backoff_max")


@dataclass
class ProbeStats:
    """Counts of one run, updated as it goes (the progress bar shows them)."""

    total: int = 0            # prompts in the prompts file (each text once)
    already: int = 0          # answered by an earlier run
    to_ask: int = 0
    answered: int = 0
    failed: int = 0
    retried_failed: int = 0   # failed lines of an earlier run, asked again
    torn_line: bool = False
    retries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETRY_KINDS, 0))
    stopped_early: bool = False
    seconds: float = 0.0
    last_error: str | None = None  # of the last prompt that failed for good

    @property
    def done(self) -> int:
        return self.answered + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("total", "already", "to_ask", "answered", "failed",
                                              "retried_failed", "torn_line", "retries",
                                              "stopped_early", "seconds")}


class _Retryable(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class _Final(Exception):
    """This prompt failed for good (a 4xx other than 401/403/429)."""


def backoff_delay(attempt: int, config: ProbeConfig, rng: random.Random,
                  retry_after: float | None) -> float:
    """Full jitter over an exponential cap, never below the server's Retry-After."""
    cap = min(config.backoff_max, config.backoff_base * 2 ** attempt)
    delay = rng.uniform(0.5 * cap, cap)
    return max(delay, retry_after) if retry_after is not None else delay


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class _Pacer:
    """Spaces request starts (retries included) to stay under requests_per_minute."""

    def __init__(self, per_minute: float | None):
        self.interval = 0.0 if per_minute is None else 60.0 / per_minute
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        await asyncio.sleep(start - now)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def run_probes(prompts: Sequence[Prompt], out: str | Path, params: RequestParams,
               config: ProbeConfig, api_key: str | None, *,
               progress: Callable[[ProbeStats], None] | None = None,
               on_answer: Callable[[dict[str, Any]], bool] | None = None,
               on_resume: Callable[[ResumeState], None] | None = None) -> ProbeStats:
    """Ask every prompt that ``out`` has no answer for; append one line per prompt.

    ``on_answer(line)`` sees every ok line (earlier runs' first, in file order), and returning
    True stops the run (the sequential test). Raises EndpointError when the endpoint cannot serve
    the run; lines written before stay.
    """
    output = ProbeOutput(out, params)
    state = output.resume()
    stats = ProbeStats(total=len(prompts), retried_failed=state.failed_retried,
                       torn_line=state.torn_line)
    if on_resume is not None:
        on_resume(state)
    stop = False
    for line in state.answered.values():
        if on_answer is not None and not stop:
            stop = on_answer(line)
    pending = [p for p in prompts if p.text not in state.answered]
    stats.already = len(prompts) - len(pending)
    stats.to_ask = len(pending)
    started = time.monotonic()
    if stop:
        stats.stopped_early = True
    elif pending:
        with output:
            asyncio.run(_run(pending, output, params, config, api_key, stats, progress,
                             on_answer))
    stats.seconds = round(time.monotonic() - started, 3)
    return stats


async def _run(pending: list[Prompt], output: ProbeOutput, params: RequestParams,
               config: ProbeConfig, api_key: str | None, stats: ProbeStats,
               progress: Callable[[ProbeStats], None] | None,
               on_answer: Callable[[dict[str, Any]], bool] | None) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=config.endpoint, api_key=api_key or "no-key-given",
                         max_retries=0, timeout=config.timeout)
    asker = _Asker(client, params, config, api_key, stats, progress)
    queue: asyncio.Queue[Prompt] = asyncio.Queue()
    for p in pending:
        queue.put_nowait(p)
    done = asyncio.Event()

    async def worker() -> None:
        while not done.is_set():
            try:
                prompt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            line = await asker.ask(prompt)
            output.append(line)
            if line["status"] == "ok":
                stats.answered += 1
                if on_answer is not None and on_answer(line):
                    stats.stopped_early = True
                    done.set()
            else:
                stats.failed += 1
                stats.last_error = line.get("error")
            if progress is not None:
                progress(stats)

    tasks = [asyncio.create_task(worker()) for _ in range(min(config.concurrency, len(pending)))]
    try:
        waiter = asyncio.create_task(done.wait())
        finished = asyncio.gather(*tasks)
        await asyncio.wait([finished, waiter], return_when=asyncio.FIRST_COMPLETED)
        if done.is_set():  # decided: in-flight requests are not needed
            for t in tasks:
                t.cancel()
        waiter.cancel()
        await finished
    except asyncio.CancelledError:
        if not stats.stopped_early:
            raise
    finally:
        for t in tasks:
            t.cancel()
        await client.close()


class _Asker:
    def __init__(self, client: Any, params: RequestParams, config: ProbeConfig,
                 api_key: str | None, stats: ProbeStats,
                 progress: Callable[[ProbeStats], None] | None):
        self.client = client
        self.params = params
        self.config = config
        self.api_key = api_key
        self.stats = stats
        self.progress = progress
        self.rng = random.Random(config.seed)
        self.pacer = _Pacer(config.requests_per_minute)

    def scrub(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    async def ask(self, prompt: Prompt) -> dict[str, Any]:
        started, t0 = _now(), time.monotonic()
        error = ""
        attempts = 0
        for attempt in range(self.config.retries + 1):
            attempts = attempt + 1
            await self.pacer.wait()
            t1 = time.monotonic()
            try:
                content, finish, usage = await self._once(prompt)
            except _Retryable as exc:
                error = self.scrub(str(exc))
                if attempt == self.config.retries:
                    if self.stats.answered == 0 and exc.kind in ("connection", "timeout",
                                                                 "bad_response"):
                        raise EndpointError(
                            f"{self.config.endpoint}: no answer after {attempts} attempts "
                            f"({error}); is the endpoint up and OpenAI-compatible?") from None
                    break
                self.stats.retries[exc.kind] += 1
                if self.progress is not None:
                    self.progress(self.stats)
                await asyncio.sleep(backoff_delay(attempt, self.config, self.rng,
                                                  exc.retry_after))
                continue
            except _Final as exc:
                error = self.scrub(str(exc))
                break
            except EndpointError as exc:  # its text may quote the server, which may echo the key
                raise EndpointError(self.scrub(str(exc))) from None
            return self._line(prompt, content, "ok", started, {
                "seconds": round(time.monotonic() - t1, 3),
                "total_seconds": round(time.monotonic() - t0, 3), "attempts": attempts},
                finish_reason=finish, usage=usage)
        return self._line(prompt, "", "failed", started, {
            "total_seconds": round(time.monotonic() - t0, 3), "attempts": attempts},
            error=error)

    def _line(self, prompt: Prompt, response: str, status: str, started: str,
              timing: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"id": prompt.id, "prompt": prompt.text, "response": response,
                "model": self.params.model, "timestamp": _now(), "status": status,
                **extra, "params": self.params.to_dict(), "endpoint": self.config.endpoint,
                "timing": {"started": started, **timing}}

    async def _once(self, prompt: Prompt) -> tuple[str, str | None, dict | None]:
        import openai

        messages = [{"role": "user", "content": prompt.text}]
        if self.params.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.params.system_prompt})
        kwargs: dict[str, Any] = {"model": self.params.model, "messages": messages}
        if self.params.temperature is not None:
            kwargs["temperature"] = self.params.temperature
        if self.params.max_tokens is not None:
            kwargs["max_tokens"] = self.params.max_tokens
        try:
            response = await self.client.chat.completions.create(**kwargs)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise EndpointError(
                f"{self.config.endpoint} refused the API key (HTTP {exc.status_code}): set a "
                f"valid key in the environment variable {self.config.api_key_env} "
                f"(--api-key-env)") from None
        except openai.RateLimitError as exc:
            raise _Retryable("rate_limited", "HTTP 429 rate limited",
                             parse_retry_after(exc.response.headers)) from None
        except openai.APITimeoutError:
            raise _Retryable("timeout", f"no answer within {self.config.timeout:g} s") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc.__context__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            raise _Retryable("connection", f"connection failed ({detail})") from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            message = _error_message(exc)
            if status >= 500:
                raise _Retryable("server_error", f"HTTP {status}: {message}",
                                 parse_retry_after(exc.response.headers)) from None
            if status == 404 and _error_code(exc) == "model_not_found":
                raise EndpointError(f"{self.config.endpoint} has no model "
                                    f"{self.params.model!r}: {message}") from None
            raise _Final(f"HTTP {status}: {message}") from None
        except openai.APIResponseValidationError as exc:
            raise _Retryable("bad_response", f"not a chat completion: {exc}") from None
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            preview = str(response)[:80].replace("\n", " ")
            raise _Retryable("bad_response", f"the answer is not a JSON chat completion "
                                             f"(starts {preview!r})")
        content = choices[0].message.content
        if not isinstance(content, str):
            raise _Final("the answer has no text content")
        usage = response.usage.model_dump() if getattr(response, "usage", None) else None
        return content, choices[0].finish_reason, usage


def _error_body(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        return inner if isinstance(inner, dict) else {}
    return {}


def _error_message(exc: Any) -> str:
    return str(_error_body(exc).get("message") or getattr(exc, "message", "") or exc)[:300]


def _error_code(exc: Any) -> str | None:
    return _error_body(exc).get("code") or getattr(exc, "code", None)
