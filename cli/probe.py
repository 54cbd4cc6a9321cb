"""``fingerprint probe``: choose probe prompts, and ask a suspect's API them."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from cli.options import (CONTEXT, echo_json, field_options, index_option, json_option,
                         progress_disabled, progress_option, reference_files_option)
from fingerprint.records import FieldMap

REFERENCES_HELP = "A reference model's outputs (repeatable; default: those stored in the index)."


@click.group("probe", context_settings=CONTEXT)
def probe_group() -> None:
    """Probe a suspect model through its OpenAI-compatible API."""


@probe_group.command("select", context_settings=CONTEXT)
@index_option
@click.option("-n", "n", type=click.IntRange(1), default=200, show_default=True,
              help="Prompts to choose.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Probes file to write (JSONL: id, prompt, cluster, why).")
@reference_files_option(REFERENCES_HELP)
@click.option("--clusters", type=click.IntRange(1), default=None,
              help="k-means clusters of the prompts [default: n].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the k-means clustering and the cross-fitting folds.")
@json_option("Print one JSON object (counts, how ranked, and the chosen probes).")
def probe_select(index_path: Path, n: int, out: Path, reference_files: tuple[Path, ...],
                 clusters: int | None, seed: int, as_json: bool) -> None:
    """Choose diagnostic prompts among the served ones: spread over clusters of the prompt
    space, within each the prompts whose provider answer is most distinctive."""
    from probing import SelectConfig, select_probes, write_probes

    chosen = select_probes(index_path, SelectConfig(n=n, seed=seed, clusters=clusters),
                           reference_files=reference_files)
    write_probes(chosen, out)
    used = len({c["cluster"] for c in chosen})
    ranked = bool(chosen) and chosen[0]["margin"] is not None
    if as_json:
        echo_json({"out": str(out), "chosen": len(chosen), "clusters": used,
                   "ranked_by": "style_margin" if ranked else "typicality", "probes": chosen})
        return
    how = ("ranked by the provider's style margin against the references"
           if ranked else "no references: most typical first")
    click.echo(f"chose {len(chosen)} prompts from {used} clusters ({how}) into {out}")


def request_options(f: Callable) -> Callable:
    """What is asked (the model and its parameters) and how the endpoint is talked to."""
    for option in reversed([
        click.option("--endpoint", required=True, help="Base URL of the OpenAI-compatible API, "
                     "e.g. http://127.0.0.1:8000/v1."),
        click.option("--model", required=True, help="Model name to ask."),
        click.option("--out", "out", required=True,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Answers file (JSONL; resumable: rerun the same command to ask what "
                          "is missing and retry failed prompts)."),
        click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                     help="Environment variable holding the API key (the key is never printed "
                          "or written)."),
        click.option("--temperature", type=click.FloatRange(0, 2), default=0.0,
                     show_default=True, help="Sampling temperature asked for."),
        click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True,
                     help="Longest answer asked for, in the suspect's tokens."),
        click.option("--system-prompt", default=None,
                     help="System message sent before each prompt."),
        click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
                     help="Requests in flight."),
        click.option("--requests-per-minute", type=click.FloatRange(0, min_open=True),
                     default=None,
                     help="Upper bound on request starts per minute, retries included."),
        click.option("--timeout", type=click.FloatRange(0, min_open=True), default=60.0,
                     show_default=True, help="Seconds to wait for one answer."),
        click.option("--retries", type=click.IntRange(0), default=5, show_default=True,
                     help="Retries per prompt on 429, 5xx, timeouts and connection errors."),
        click.option("--backoff", "backoff_base", type=click.FloatRange(0), default=1.0,
                     show_default=True, help="First backoff in seconds (doubles per retry, "
                                             "jittered; never shorter than Retry-After)."),
        click.option("--backoff-max", type=click.FloatRange(0), default=60.0, show_default=True,
                     help="Longest backoff in seconds (a longer Retry-After is still honoured)."),
    ]):
        f = option(f)
    return f


def decision_options(f: Callable) -> Callable:
    """The sequential test of --until-decided."""
    for option in reversed([
        click.option("--until-decided", is_flag=True,
                     help="Score answers as they arrive and stop once the sequential test "
                          "decides (needs --index and references; see README 'The sequential "
                          "test')."),
        click.option("--index", "index_path", type=click.Path(file_okay=False, path_type=Path),
                     help="The provider's index (with --until-decided)."),
        reference_files_option(REFERENCES_HELP),
        click.option("--match-references", "match", multiple=True, metavar="KEY=VALUE",
                     help="Use only the stored references with this fact (era=2023, ...: "
                          "'fingerprint reference describe'). Repeatable: all must match."),
        click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
                     default=0.05, show_default=True, help="Error level of each decision."),
        click.option("--min-derived-fraction",
                     type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                     show_default=True, help="'Not derived' means: derived fraction below this."),
        click.option("--max-probes", type=click.IntRange(1), default=None,
                     help="Stop undecided after this many answers."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the random probe order (with --until-decided)."),
    ]):
        f = option(f)
    return f


@probe_group.command("run", context_settings=CONTEXT)
@click.argument("prompts")
@field_options
@request_options
@decision_options
@json_option("Print one JSON object (the run's counts and, with --until-decided, the test).")
@progress_option
def probe_run(prompts: str, fields: FieldMap, endpoint: str, model: str, out: Path,
              api_key_env: str, temperature: float, max_tokens: int, system_prompt: str | None,
              until_decided: bool, index_path: Path | None, reference_files: tuple[Path, ...],
              match: tuple[str, ...], alpha: float, min_derived_fraction: float,
              max_probes: int | None, seed: int,
              as_json: bool, **connection: Any) -> None:
    """Ask a suspect model the PROMPTS (JSONL with a 'prompt' field, or any input file) and
    write its answers to --out, in the shape 'fingerprint attribute' reads."""
    from attribution.stats import SequentialConfig
    from index import parse_meta_pairs
    from probing import ProbeConfig, RequestParams, UntilDecided, probe_file

    params = RequestParams(model=model, temperature=temperature, max_tokens=max_tokens,
                           system_prompt=system_prompt)
    connection["backoff_max"] = max(connection["backoff_max"], connection["backoff_base"])
    config = ProbeConfig(endpoint=endpoint, api_key_env=api_key_env, **connection)
    decide = None
    if until_decided:
        if index_path is None:
            raise click.UsageError("--until-decided needs --index (the provider's index)")
        if match and reference_files:
            raise click.UsageError("--match-references chooses among the stored references: "
                                   "not with --reference")
        decide = UntilDecided(index_path, SequentialConfig(
            alpha=alpha, min_derived_fraction=min_derived_fraction, max_probes=max_probes),
            reference_files, seed,
            parse_meta_pairs(match, "--match-references") if match else None)
    elif index_path is not None or reference_files or match:
        raise click.UsageError("--index, --reference and --match-references are used only "
                               "with --until-decided")
    with _probe_progress() as progress:
        outcome = probe_file(prompts, out, params, config, os.environ.get(api_key_env),
                             fields=fields, until_decided=decide, progress=progress)
    if as_json:
        echo_json({"model": model, "endpoint": endpoint, "out": str(out),
                   **outcome.stats.to_dict(), "last_error": outcome.stats.last_error,
                   "test": None if outcome.test is None else outcome.test.to_dict()})
    else:
        _print_outcome(outcome, model, endpoint, out)
    if outcome.stats.failed:
        raise click.ClickException(_failure_hint(outcome.stats, endpoint, out))


def _failure_hint(stats: Any, endpoint: str, out: Path) -> str:
    """Why a run did not complete, and what to try: a failure must never look like success."""
    message = (f"{stats.failed} of {stats.to_ask} prompts failed (last error: "
               f"{stats.last_error}); their lines in {out} say why, and running the same "
               f"command again retries them")
    if stats.last_error and "HTTP 404" in stats.last_error and \
            not endpoint.rstrip("/").endswith("/v1"):
        message += f"; the endpoint answered 404: does it need '/v1' ({endpoint.rstrip('/')}/v1)?"
    return message


def _print_outcome(outcome: Any, model: str, endpoint: str, out: Path) -> None:
    stats = outcome.stats
    retried = sum(stats.retries.values())
    kinds = ", ".join(f"{v} {k}" for k, v in stats.retries.items() if v)
    click.echo(f"probed {model} at {endpoint}: {stats.answered} answered, {stats.failed} failed, "
               f"{stats.already} already in {out} (of {stats.total} prompts); "
               f"{retried} retries{f' ({kinds})' if kinds else ''}; {stats.seconds:.1f} s")
    if stats.retried_failed or stats.torn_line:
        click.echo(f"resumed: {stats.retried_failed} prompts that failed before were asked again"
                   + ("; a torn last line was cut off and asked again" if stats.torn_line
                      else ""))
    t = outcome.test
    if t is not None:
        th = t.thresholds
        click.echo(f"sequential test: {t.decision or 'undecided'} after {t.n} answers "
                   f"({t.hits} provider-like); e-values {t.derived.value:.3g} (H0: rate <= q0 = "
                   f"{th.q0:.3f}) and {t.not_derived.value:.3g} (H0: rate >= q1 = {th.q1:.3f}); "
                   f"decision at e >= {1 / t.config.alpha:g} (alpha {t.config.alpha:g})")


@contextmanager
def _probe_progress() -> Iterator[Callable[[Any], None]]:
    from tqdm import tqdm

    with tqdm(desc="probing", unit="prompt", file=sys.stderr, disable=progress_disabled(),
              dynamic_ncols=True) as bar:
        def update(stats: Any) -> None:
            if bar.total != stats.to_ask:
                bar.total = stats.to_ask
            bar.n = stats.done
            bar.set_postfix(failed=stats.failed, retries=sum(stats.retries.values()),
                            refresh=False)
            bar.refresh()
        yield update
