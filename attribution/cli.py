"""The ``fingerprint`` command: parses options, calls the library, prints results.

Library errors (``FingerprintError``) become one ``Error: ...`` line and exit code 1 here and only
here; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from fingerprint import __version__
from fingerprint.config import EMBEDDING_BACKENDS, FingerprintConfig
from fingerprint.errors import FingerprintError
from fingerprint.records import FieldMap, count_lines

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Turns the toolkit's own errors, and the OS's (a full disk, a path we may not write),
    into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FingerprintError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None


def field_options(f: Callable) -> Callable:
    """--text-field/--prompt-field/--id-field, passed on as ``fields: FieldMap``."""
    @click.option("--text-field", help="Field holding the response text [default: response].")
    @click.option("--prompt-field", help="Field holding the prompt [default: prompt].")
    @click.option("--id-field", help="Field holding the response id [default: id].")
    @functools.wraps(f)
    def wrapper(*args: Any, text_field: str | None, prompt_field: str | None,
                id_field: str | None, **kwargs: Any) -> Any:
        fields = FieldMap(text=text_field, prompt=prompt_field, id=id_field)
        return f(*args, fields=fields, **kwargs)
    return wrapper


_CONFIG_FLAGS = {
    "num_perm": ("--num-perm", int, "MinHash permutations"),
    "shingle_size": ("--shingle-size", int, "Words per shingle"),
    "seed": ("--seed", int, "MinHash seed"),
    "embedding_model": ("--embedding-model", str, "sentence-transformers model name or path"),
    "embedding_backend": ("--embedding-backend", click.Choice(EMBEDDING_BACKENDS),
                          "How the model is run: its fp32 transformer (torch), the transformer "
                          "with int8 weights on onnxruntime (onnx-int8), or a token table "
                          "distilled from it (static)"),
    "embedding_max_tokens": ("--max-tokens", int, "Tokens embedded per response"),
}


def config_options(f: Callable) -> Callable:
    """Fingerprint config flags; those not given keep the defaults (or the index's, on add)."""
    for name, (flag, kind, text) in reversed(_CONFIG_FLAGS.items()):
        default = getattr(FingerprintConfig(), name)
        f = click.option(flag, name, type=kind, default=None,
                         help=f"{text} [default: {default}].")(f)
    return f


def _config(base: FingerprintConfig, given: dict[str, Any]) -> FingerprintConfig:
    overrides = {k: v for k, v in given.items() if k in _CONFIG_FLAGS and v is not None}
    return dataclasses.replace(base, **overrides)


def tokenizer_option(f: Callable) -> Callable:
    return click.option("--tokenizer", help="Tokenizer of the marked model (tokenizer.json or "
                        "a directory holding it) [default: the one the key records].")(f)


def index_option(f: Callable) -> Callable:
    return click.option("--index", "index_path", required=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Index directory.")(f)


def indexes_option(f: Callable) -> Callable:
    return click.option("--index", "index_paths", required=True, multiple=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Index directory; repeat it with several providers' indexes to "
                             "rank them as the suspect's likely teacher.")(f)


def write_options(f: Callable) -> Callable:
    f = click.option("--no-store-text", is_flag=True,
                     help="Store fingerprints and metadata but not prompt and response texts.")(f)
    f = click.option("--skip-duplicates", is_flag=True,
                     help="Skip (and count) records whose id is already stored, instead of "
                          "failing.")(f)
    f = click.option("--workers", type=click.IntRange(1, 256), default=None,
                     help="Processes that fingerprint a large input [default: the cores "
                          "available].")(f)
    return click.option("--batch-size", type=click.IntRange(1, 4096), default=32,
                        show_default=True, help="Embedding batch size.")(f)


@contextmanager
def _progress(inputs: tuple[str, ...], label: str) -> Iterator[Callable[[int], None]]:
    from tqdm import tqdm

    counts = [count_lines(p) for p in inputs]
    total = None if any(c is None for c in counts) else sum(c for c in counts if c)
    with tqdm(total=total, desc=label, unit="resp", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        yield bar.update


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="fingerprint")
def main() -> None:
    """Fingerprint served LLM responses and find out whether a suspect model derives from them."""


@main.group(context_settings=CONTEXT)
def index() -> None:
    """Build, extend and inspect an index of served responses."""


@index.command("build", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@index_option
@field_options
@config_options
@write_options
def index_build(inputs: tuple[str, ...], index_path: Path, fields: FieldMap,
                no_store_text: bool, skip_duplicates: bool, batch_size: int,
                workers: int | None, **config: Any) -> None:
    """Create an index from served responses (JSONL, gzip or '-' for stdin)."""
    from fingerprint.fingerprinter import Fingerprinter
    from index.writer import build_index

    fingerprinter = Fingerprinter(_config(FingerprintConfig(), config), batch_size=batch_size)
    _append(build_index, inputs, index_path, fingerprinter, fields, no_store_text, skip_duplicates,
            workers)


@index.command("add", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@index_option
@field_options
@config_options
@write_options
def index_add(inputs: tuple[str, ...], index_path: Path, fields: FieldMap,
              no_store_text: bool, skip_duplicates: bool, batch_size: int,
              workers: int | None, **config: Any) -> None:
    """Append a batch of served responses to an existing index, atomically."""
    from fingerprint.fingerprinter import Fingerprinter
    from index.manifest import read_manifest
    from index.writer import add_files

    stored = read_manifest(index_path).config
    fingerprinter = Fingerprinter(_config(stored, config), batch_size=batch_size)
    _append(add_files, inputs, index_path, fingerprinter, fields, no_store_text, skip_duplicates,
            workers)


def _append(write: Callable, inputs: tuple[str, ...], index_path: Path, fingerprinter: Any,
            fields: FieldMap, no_store_text: bool, skip_duplicates: bool,
            workers: int | None) -> None:
    """Run ``build_index`` or ``add_files`` with a progress bar and report what it stored."""
    from fingerprint.parallel import default_workers

    with _progress(inputs, "indexing") as progress:
        result = write(index_path, list(inputs), fingerprinter, fields=fields,
                       store_text=not no_store_text, skip_duplicates=skip_duplicates,
                       progress=progress, workers=workers or default_workers())
    where = f"segment {result.segment}" if result.segment else "no new segment"
    click.echo(f"indexed {result.added} responses into {index_path} ({where}; "
               f"{result.skipped_empty} empty and {result.skipped_duplicates} duplicate "
               f"records skipped); the index holds {result.total}")


@index.command("info", context_settings=CONTEXT)
@click.argument("index_path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def index_info(index_path: Path, as_json: bool) -> None:
    """Counts, config, sizes and segments of an index."""
    from index.store import open_index

    with open_index(index_path) as idx:
        info = idx.info()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    b = info["bytes"]
    click.echo(f"index       {info['path']} (format {info['format_version']})")
    click.echo(f"responses   {info['responses']} in {len(info['segments'])} segment(s); "
               f"skipped {info['skipped_empty']} empty, {info['skipped_duplicates']} duplicate")
    click.echo(f"size        {_human(b['total'])} "
               + ", ".join(f"{k} {_human(v)}" for k, v in b.items() if k != "total"))
    cfg = info["config"]
    click.echo(f"embedding   {cfg['embedding_model']}, backend {cfg['embedding_backend']} "
               f"(dim {info['embedding_dim']}, {cfg['embedding_max_tokens']} tokens)")
    click.echo(f"minhash     {cfg['num_perm']} permutations, seed {cfg['seed']}, "
               f"{cfg['shingle_size']}-word shingles, {cfg['minhash_scheme']}/"
               f"{cfg['hash_function']}, normalizer v{cfg['normalizer_version']}")
    for s in info["segments"]:
        click.echo(f"  {s['name']}  {s['rows']:>9} rows  {_human(s['bytes']):>9}  "
                   f"{s['created_at']}  {', '.join(s['sources'])}")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@main.group(context_settings=CONTEXT)
def reference() -> None:
    """Store and list reference models: independent models answering the same prompts."""


@reference.command("add", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@index_option
@click.option("--name", required=True, help="Reference name (letters, digits, '.', '_', '-').")
@field_options
@click.option("--embeddings/--no-embeddings", default=False, show_default=True,
              help="Also store embeddings (slow; only the paired-cosine evidence uses them).")
@click.option("--skip-duplicates", is_flag=True,
              help="Skip (and count) records whose id is already in this reference.")
def reference_add(inputs: tuple[str, ...], index_path: Path, name: str, fields: FieldMap,
                  embeddings: bool, skip_duplicates: bool) -> None:
    """Add a reference model's outputs (same prompts as the suspects, ideally) to the index."""
    from fingerprint.fingerprinter import Fingerprinter
    from index.manifest import read_manifest
    from index.writer import add_reference

    fingerprinter = Fingerprinter(read_manifest(index_path).config)
    with _progress(inputs, f"reference {name}") as progress:
        result = add_reference(index_path, name, list(inputs), fingerprinter, fields=fields,
                               embed=embeddings, skip_duplicates=skip_duplicates,
                               progress=progress)
    click.echo(f"added {result.added} responses to reference {name!r} in {index_path} "
               f"({result.skipped_empty} empty and {result.skipped_duplicates} duplicate "
               f"records skipped); it holds {result.total}")


@reference.command("list", context_settings=CONTEXT)
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def reference_list(index_path: Path, as_json: bool) -> None:
    """The reference models stored in an index."""
    from index.store import open_index

    with open_index(index_path) as idx:
        refs = idx.info()["references"]
    if as_json:
        click.echo(json.dumps(refs, indent=2))
        return
    if not refs:
        click.echo(f"{index_path} holds no reference models; add some with "
                   f"'fingerprint reference add'")
    for name, r in refs.items():
        sources = sorted({src for seg in r["segments"] for src in seg["sources"]})
        click.echo(f"{name:<32} {r['responses']:>8} responses  {_human(r['bytes']):>9}  "
                   f"embeddings {'yes' if r['embeddings'] else 'no'}  {', '.join(sources)}")


@main.command("attribute", context_settings=CONTEXT)
@click.argument("suspect")
@indexes_option
@field_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (top-level 'score').")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a report: HTML (.html, with plots and shared phrases highlighted) or "
                   "Markdown (any other name).")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Matches reported per suspect response.")
@click.option("--near-duplicate-threshold", type=click.FloatRange(0, 1, min_open=True),
              default=0.5, show_default=True, help="Estimated Jaccard that makes a near-duplicate.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Embedding batch size.")
@click.option("--reference", "reference_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A reference model's outputs for this call only (repeatable; named after the "
                   "file). Given, they replace the references stored in the index.")
@click.option("--no-references", is_flag=True,
              help="Ignore stored references: uncalibrated score, no p-value.")
@click.option("--watermark-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Also test the outputs for the provider's watermark (key from 'fingerprint "
                   "watermark keygen'); its exact p-value joins the others.")
@tokenizer_option
def attribute_cmd(suspect: str, index_paths: tuple[Path, ...], fields: FieldMap, as_json: bool,
                  report: Path | None, k: int, near_duplicate_threshold: float,
                  batch_size: int, reference_files: tuple[Path, ...],
                  no_references: bool, watermark_key: Path | None,
                  tokenizer: str | None) -> None:
    """Attribute a suspect model's outputs (SUSPECT file, or '-') to the indexed responses.

    With reference models (stored in the index or given with --reference) every signal is
    calibrated against them: the result has a p-value and a derived fraction."""
    from attribution.attribute import AttributionOptions, attribute_file
    from attribution.report import markdown_report, summary_text
    from fingerprint.fingerprinter import Fingerprinter
    from index.manifest import read_manifest

    if report is not None and not report.parent.is_dir():  # fail before minutes of embedding
        raise click.ClickException(f"{report}: directory {report.parent} does not exist")
    options = AttributionOptions(k=k, near_duplicate_threshold=near_duplicate_threshold)
    key = None
    if watermark_key is not None:
        from fingerprint.watermark import load_key

        key = load_key(watermark_key)
    fingerprinter = Fingerprinter(read_manifest(index_paths[0]).config, batch_size=batch_size)
    references = None
    if no_references:
        references = []
    elif reference_files:
        from attribution.references import reference_from_file

        references = [reference_from_file(p, fingerprinter) for p in reference_files]
    with _progress((suspect,), "attributing") as progress:
        result = attribute_file(list(index_paths), suspect, fields=fields, options=options,
                                fingerprinter=fingerprinter, progress=progress,
                                references=references, watermark_key=key,
                                watermark_tokenizer=tokenizer)
    if report is not None:
        if report.suffix.lower() in (".html", ".htm"):
            from attribution.html_report import html_report

            versions = read_manifest(Path(result.index)).versions
            text = html_report(result, {"index_versions": versions})
        else:
            text = markdown_report(result)
        try:
            report.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"{report}: cannot write the report "
                                       f"({exc.strerror or exc})") from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(summary_text(result))
        if report is not None:
            click.echo(f"report    {report}")


@main.group(context_settings=CONTEXT)
def probe() -> None:
    """Probe a suspect model through its OpenAI-compatible API."""


def probe_references_option(f: Callable) -> Callable:
    return click.option("--reference", "reference_files", multiple=True,
                        type=click.Path(dir_okay=False, path_type=Path),
                        help="A reference model's outputs (repeatable; default: those stored "
                             "in the index).")(f)


def _reference_data(files: tuple[Path, ...], fingerprinter: Any) -> Any:
    """The --reference files as ReferenceData, or None to use the index's stored ones."""
    if not files:
        return None
    from attribution.references import reference_from_file

    return [reference_from_file(p, fingerprinter) for p in files]


@probe.command("select", context_settings=CONTEXT)
@index_option
@click.option("-n", "n", type=click.IntRange(1), default=200, show_default=True,
              help="Prompts to choose.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Probes file to write (JSONL: id, prompt, cluster, why).")
@probe_references_option
@click.option("--clusters", type=click.IntRange(1), default=None,
              help="k-means clusters of the prompts [default: n].")
@click.option("--seed", type=int, default=0, show_default=True)
def probe_select(index_path: Path, n: int, out: Path, reference_files: tuple[Path, ...],
                 clusters: int | None, seed: int) -> None:
    """Choose diagnostic prompts among the served ones: spread over clusters of the prompt
    space, within each the prompts whose provider answer is most distinctive."""
    from attribution.probe_select import SelectConfig, select_probes, write_probes
    from fingerprint.fingerprinter import Fingerprinter
    from index.manifest import read_manifest

    fingerprinter = Fingerprinter(read_manifest(index_path).config)
    references = _reference_data(reference_files, fingerprinter)
    chosen = select_probes(index_path, SelectConfig(n=n, seed=seed, clusters=clusters),
                           references, fingerprinter)
    write_probes(chosen, out)
    used = len({c["cluster"] for c in chosen})
    how = ("ranked by the provider's style margin against the references"
           if chosen and chosen[0]["margin"] is not None else "no references: most typical first")
    click.echo(f"chose {len(chosen)} prompts from {used} clusters ({how}) into {out}")


@probe.command("run", context_settings=CONTEXT)
@click.argument("prompts")
@field_options
@click.option("--endpoint", required=True, help="Base URL of the OpenAI-compatible API, e.g. "
              "http://127.0.0.1:8000/v1.")
@click.option("--model", required=True, help="Model name to ask.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Answers file (JSONL; resumable: rerun the same command to ask what is "
                   "missing and retry failed prompts).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Environment variable holding the API key (the key is never printed or "
                   "written).")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True)
@click.option("--system-prompt", default=None, help="System message sent before each prompt.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Requests in flight.")
@click.option("--requests-per-minute", type=click.FloatRange(0, min_open=True), default=None,
              help="Upper bound on request starts per minute, retries included.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=60.0,
              show_default=True, help="Seconds to wait for one answer.")
@click.option("--retries", type=click.IntRange(0), default=5, show_default=True,
              help="Retries per prompt on 429, 5xx, timeouts and connection errors.")
@click.option("--backoff", "backoff_base", type=click.FloatRange(0), default=1.0,
              show_default=True, help="First backoff in seconds (doubles per retry, jittered; "
                                      "never shorter than Retry-After).")
@click.option("--backoff-max", type=click.FloatRange(0), default=60.0, show_default=True)
@click.option("--until-decided", is_flag=True,
              help="Score answers as they arrive and stop once the sequential test decides "
                   "(needs --index and references; see README 'The sequential test').")
@click.option("--index", "index_path", type=click.Path(file_okay=False, path_type=Path),
              help="The provider's index (with --until-decided).")
@probe_references_option
@click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
              default=0.05, show_default=True, help="Error level of each decision.")
@click.option("--min-derived-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True,
              help="'Not derived' means: derived fraction below this.")
@click.option("--max-probes", type=click.IntRange(1), default=None,
              help="Stop undecided after this many answers.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random probe order (with --until-decided).")
def probe_run(prompts: str, fields: FieldMap, endpoint: str, model: str, out: Path,
              api_key_env: str, temperature: float, max_tokens: int, system_prompt: str | None,
              concurrency: int, requests_per_minute: float | None, timeout: float, retries: int,
              backoff_base: float, backoff_max: float, until_decided: bool,
              index_path: Path | None, reference_files: tuple[Path, ...], alpha: float,
              min_derived_fraction: float, max_probes: int | None, seed: int) -> None:
    """Ask a suspect model the PROMPTS (JSONL with a 'prompt' field, or any input file) and
    write its answers to --out, in the shape 'fingerprint attribute' reads."""
    import os

    from attribution.probe_client import ProbeConfig, run_probes
    from attribution.probe_output import RequestParams, read_prompts

    params = RequestParams(model=model, temperature=temperature, max_tokens=max_tokens,
                           system_prompt=system_prompt)
    config = ProbeConfig(endpoint=endpoint, concurrency=concurrency,
                         requests_per_minute=requests_per_minute, timeout=timeout,
                         retries=retries, backoff_base=backoff_base,
                         backoff_max=max(backoff_max, backoff_base), api_key_env=api_key_env)
    questions = read_prompts(prompts, fields)
    decider = None
    if until_decided:
        decider = _decider(index_path, reference_files, questions, alpha, min_derived_fraction,
                           max_probes)
        from attribution.probe_decide import shuffled

        questions = shuffled(questions, seed)
    elif index_path is not None or reference_files:
        raise click.UsageError("--index and --reference are used only with --until-decided")
    with _probe_progress() as progress:
        stats = run_probes(questions, out, params, config, os.environ.get(api_key_env),
                           progress=progress, on_answer=decider)
    retried = sum(stats.retries.values())
    kinds = ", ".join(f"{v} {k}" for k, v in stats.retries.items() if v)
    click.echo(f"probed {model} at {endpoint}: {stats.answered} answered, {stats.failed} failed, "
               f"{stats.already} already in {out} (of {stats.total} prompts); "
               f"{retried} retries{f' ({kinds})' if kinds else ''}; {stats.seconds:.1f} s")
    if stats.retried_failed or stats.torn_line:
        click.echo(f"resumed: {stats.retried_failed} prompts that failed before were asked again"
                   + ("; a torn last line was cut off and asked again" if stats.torn_line
                      else ""))
    if stats.failed:
        click.echo(f"{stats.failed} prompts failed (recorded with their error in {out}); run "
                   f"the same command again to retry them", err=True)
    if decider is not None:
        t = decider.test
        th = t.thresholds
        verdict = t.decision or "undecided"
        click.echo(f"sequential test: {verdict} after {t.n} answers ({t.hits} provider-like); "
                   f"e-values {t.derived.value:.3g} (H0: rate <= q0 = {th.q0:.3f}) and "
                   f"{t.not_derived.value:.3g} (H0: rate >= q1 = {th.q1:.3f}); decision at "
                   f"e >= {1 / t.config.alpha:g} (alpha {t.config.alpha:g})")


def _decider(index_path: Path | None, reference_files: tuple[Path, ...], questions: Any,
             alpha: float, min_derived_fraction: float, max_probes: int | None) -> Any:
    from attribution.probe_decide import ProbeScorer, SequentialDecider
    from attribution.sequential import SequentialConfig
    from fingerprint.fingerprinter import Fingerprinter
    from index.manifest import read_manifest

    if index_path is None:
        raise click.UsageError("--until-decided needs --index (the provider's index)")
    fingerprinter = Fingerprinter(read_manifest(index_path).config)
    references = _reference_data(reference_files, fingerprinter)
    scorer = ProbeScorer(index_path, questions, references, fingerprinter)
    return SequentialDecider(scorer, SequentialConfig(alpha=alpha,
                                                      min_derived_fraction=min_derived_fraction,
                                                      max_probes=max_probes))


@contextmanager
def _probe_progress() -> Iterator[Callable[[Any], None]]:
    from tqdm import tqdm

    with tqdm(desc="probing", unit="prompt", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        def update(stats: Any) -> None:
            if bar.total != stats.to_ask:
                bar.total = stats.to_ask
            bar.n = stats.done
            bar.set_postfix(failed=stats.failed, retries=sum(stats.retries.values()),
                            refresh=False)
            bar.refresh()
        yield update


@main.command("serve-replay", context_settings=CONTEXT)
@click.argument("recorded")
@field_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free port; the URL is printed).")
@click.option("--model", default=None,
              help="Model name served [default: the records' model, else the file's name].")
@click.option("--require-api-key-env", default=None,
              help="Answer 401 unless requests carry the key held in this environment variable.")
@click.option("--rate-limit", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered 429 with Retry-After.")
@click.option("--retry-after", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--server-error", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered 500.")
@click.option("--slow", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered after --slow-seconds.")
@click.option("--slow-seconds", type=click.FloatRange(0), default=2.0, show_default=True)
@click.option("--drop", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests whose connection is closed mid-answer.")
@click.option("--non-json", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests answered with an HTML page.")
@click.option("--max-faults-per-prompt", type=click.IntRange(0), default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the faults.")
def serve_replay(recorded: str, fields: FieldMap, host: str, port: int, model: str | None,
                 require_api_key_env: str | None, **faults: Any) -> None:
    """Serve RECORDED outputs as an OpenAI-compatible model (/v1/chat/completions, /v1/models),
    matching on the last user message; optional injected faults, deterministic given --seed."""
    import os

    from attribution.replay import ReplayFaults, ReplayServer, load_recorded

    answers, name = load_recorded(recorded, fields)
    key = None
    if require_api_key_env is not None:
        key = os.environ.get(require_api_key_env)
        if not key:
            raise click.ClickException(f"environment variable {require_api_key_env} is not set")
    server = ReplayServer(answers, model or name, host=host, port=port,
                          faults=ReplayFaults(**faults), api_key=key)
    click.echo(f"serving {len(answers)} recorded answers as model {model or name!r} at "
               f"{server.url} (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop_serving()


@main.group(context_settings=CONTEXT)
def watermark() -> None:
    """Mark served text with a secret key and test a suspect's outputs for the mark."""


@watermark.command("keygen", context_settings=CONTEXT)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key file to write (mode 0600; keep it secret).")
@click.option("--tokenizer", default=None,
              help="The serving model's tokenizer: tokenizer.json or a directory holding it "
                   "[default: all-MiniLM-L6-v2's].")
@click.option("--context-width", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Tokens before a step that choose its green list.")
@click.option("--gamma", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.25, show_default=True, help="Share of the vocabulary that is green.")
@click.option("--delta", type=click.FloatRange(0, 50), default=2.0, show_default=True,
              help="Added to the logits of green tokens.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def watermark_keygen(out: Path, tokenizer: str | None, context_width: int, gamma: float,
                     delta: float, force: bool) -> None:
    """Make a new secret watermark key for a tokenizer."""
    from fingerprint.watermark import WatermarkConfig, generate_key, save_key

    key = generate_key(tokenizer, config=WatermarkConfig(context_width=context_width,
                                                         gamma=gamma, delta=delta))
    save_key(key, out, overwrite=force)
    lexical = "yes" if key.lexicon_sha256 else "no (WordNet is not installed)"
    click.echo(f"wrote key {key.key_id} to {out} (tokenizer {key.tokenizer.source}, "
               f"{key.tokenizer.vocab_size} tokens; post-hoc mark: {lexical})")


@watermark.command("mark", context_settings=CONTEXT)
@click.argument("source")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Marked responses (JSONL: id, prompt, response, model).")
@field_options
def watermark_mark(source: str, key_path: Path, out: Path, fields: FieldMap) -> None:
    """Mark already generated responses (SOURCE) with keyed synonym choices."""
    from attribution.watermark import mark_file
    from fingerprint.watermark import load_key

    summary = mark_file(load_key(key_path), source, out, fields)
    click.echo(f"marked {summary.responses} responses into {out}: {summary.substitutions} of "
               f"{summary.candidates} lexicon words swapped ({summary.skipped_empty} empty "
               "records skipped)")


@watermark.command("detect", context_settings=CONTEXT)
@click.argument("suspect")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scheme", type=click.Choice(["both", "tokens", "lexical"]), default="both",
              show_default=True, help="Which mark to test.")
@tokenizer_option
@field_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (top-level 'p_value', per-response tests).")
def watermark_detect(suspect: str, key_path: Path, scheme: str, tokenizer: str | None,
                     fields: FieldMap, as_json: bool) -> None:
    """Test a suspect's outputs (SUSPECT file, or '-') for the watermark: exact p-values per
    response and pooled over distinct pairs of all responses."""
    from attribution.watermark import detect_file
    from fingerprint.watermark import load_key

    report = detect_file(load_key(key_path), suspect, fields=fields, scheme=scheme,
                         tokenizer=tokenizer)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"suspect   {report.suspect}: {len(report.ids)} responses "
               f"({report.skipped_empty} empty skipped), key {report.key_id}")
    for d in report.detections:
        p = d.pooled
        short = sum(r.too_short for r in d.responses)
        state = "too few pairs to test" if p.too_short else f"p {p.p_value:.3g}, z {p.z:.2f}"
        click.echo(f"{d.scheme:<9} {p.green}/{p.scored} distinct pairs green (null share "
                   f"{p.gamma}): {state}; {short} responses too short to test alone")
    click.echo(f"p_value   {report.p_value:.3g}")


if __name__ == "__main__":  # pragma: no cover
    main()
