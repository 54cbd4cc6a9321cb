"""``fingerprint serve-replay``: recorded outputs as an OpenAI-compatible model."""

from __future__ import annotations

import os
from typing import Any

import click

from cli.options import CONTEXT, field_options
from fingerprint.records import FieldMap


@click.command("serve-replay", context_settings=CONTEXT)
@click.argument("recorded")
@field_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free port; the URL is printed).")
@click.option("--model", default=None,
              help="Model name served [default: the records' model, else the file's name].")
@click.option("--require-api-key-env", default=None,
              help="Answer 401 unless requests carry the key held in this environment variable.")
@click.option("--rate-limit", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered 429 with Retry-After.")
@click.option("--retry-after", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Seconds sent in the Retry-After header of every 429.")
@click.option("--server-error", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered 500.")
@click.option("--slow", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered after --slow-seconds.")
@click.option("--slow-seconds", type=click.FloatRange(0), default=2.0, show_default=True,
              help="How long a slow answer waits.")
@click.option("--drop", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests whose connection is closed mid-answer.")
@click.option("--non-json", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered with an HTML page.")
@click.option("--max-faults-per-prompt", type=click.IntRange(0), default=3, show_default=True,
              help="Faults in a row at one prompt, at most (so enough retries always succeed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the faults.")
@click.option("--request-timeout", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, help="Seconds a request has to arrive whole (else 408); an "
              "idle kept-alive connection is closed after as long.")
@click.option("--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True,
              help="Largest request body accepted (larger: 413).")
@click.option("--max-connections", type=click.IntRange(1), default=64, show_default=True,
              help="Connections served at once; more wait in the listen backlog.")
def serve_replay(recorded: str, fields: FieldMap, host: str, port: int, model: str | None,
                 require_api_key_env: str | None, request_timeout: float, max_body_bytes: int,
                 max_connections: int, **faults: Any) -> None:
    """Serve RECORDED outputs as an OpenAI-compatible model (/v1/chat/completions, /v1/models),
    matching on the last user message; optional injected faults, deterministic given --seed."""
    from replay import ReplayFaults, ReplayServer

    key = None
    if require_api_key_env is not None:
        key = os.environ.get(require_api_key_env)
        if not key:
            raise click.ClickException(f"environment variable {require_api_key_env} is not set")
    server = ReplayServer.from_file(recorded, fields, model=model, host=host, port=port,
                                    faults=ReplayFaults(**faults), api_key=key,
                                    request_timeout=request_timeout,
                                    max_body_bytes=max_body_bytes,
                                    max_connections=max_connections)
    click.echo(f"serving {len(server.answers)} recorded answers as model {server.model!r} at "
               f"{server.url} (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop_serving()
