"""``fingerprint index``: build, extend and inspect an index of served responses."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import click

from cli.options import (CONTEXT, config_options, echo_json, field_options, human_bytes,
                         index_option, json_option, progress_bar, progress_option)
from fingerprint.records import FieldMap


@click.group("index", context_settings=CONTEXT)
def index_group() -> None:
    """Build, extend and inspect an index of served responses."""


def write_options(f: Any) -> Any:
    f = click.option("--no-store-text", is_flag=True,
                     help="Store fingerprints and metadata but not prompt and response texts.")(f)
    f = click.option("--skip-duplicates", is_flag=True,
                     help="Skip (and count) records whose id is already stored, instead of "
                          "failing.")(f)
    f = click.option("--workers", type=click.IntRange(1, 256), default=None,
                     help="Processes that fingerprint a large input [default: the cores "
                          "available]; with --engine ray, the workers (actors) of the cluster "
                          "[default: its CPUs].")(f)
    f = click.option("--address", default=None, metavar="auto|ray://HOST:PORT",
                     help="With --engine ray: the Ray cluster to run on ('auto': the one "
                          "started on this machine with 'ray start') [default: a new local "
                          "cluster on this machine's cores].")(f)
    f = click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="Where fingerprinting runs: this machine's processes, or a Ray "
                          "cluster (the 'ray' extra), committed at once either way.")(f)
    return click.option("--batch-size", type=click.IntRange(1, 4096), default=32,
                        show_default=True, help="Embedding batch size.")(f)


def batch_options(from_index: bool) -> Any:
    """What ``build`` and ``add`` share: the inputs, the index, field names, config, writing,
    output (``add`` takes its config from the index, so its help shows no default for it)."""
    def decorate(f: Any) -> Any:
        for option in (progress_option, json_option("Print one JSON object (added, skipped, "
                                                    "total, segment)."),
                       write_options, functools.partial(config_options, from_index=from_index),
                       field_options, index_option,
                       click.argument("inputs", nargs=-1, required=True)):
            f = option(f)
        return f
    return decorate


@index_group.command("build", context_settings=CONTEXT)
@batch_options(from_index=False)
def index_build(inputs: tuple[str, ...], index_path: Path, fields: FieldMap,
                config_overrides: dict[str, Any], batch_size: int, **write: Any) -> None:
    """Create an index from served responses (JSON Lines, JSON, CSV, TSV, Parquet or a
    Hugging Face dataset; gzip; '-' for stdin)."""
    from distributed import build_index_on_ray
    from fingerprint import FingerprintConfig, Fingerprinter
    from index import build_index

    config = dataclasses.replace(FingerprintConfig(), **config_overrides)
    build = build_index_on_ray if write["engine"] == "ray" else build_index
    _append(build, inputs, index_path, Fingerprinter(config, batch_size=batch_size), fields,
            **write)


@index_group.command("add", context_settings=CONTEXT)
@batch_options(from_index=True)
def index_add(inputs: tuple[str, ...], index_path: Path, fields: FieldMap,
              config_overrides: dict[str, Any], batch_size: int, **write: Any) -> None:
    """Append a batch of served responses to an existing index, atomically."""
    from distributed import add_files_on_ray
    from index import add_files, fingerprinter_for

    fingerprinter = fingerprinter_for(index_path, config_overrides, batch_size=batch_size)
    add = add_files_on_ray if write["engine"] == "ray" else add_files
    _append(add, inputs, index_path, fingerprinter, fields, **write)


def _append(write: Any, inputs: tuple[str, ...], index_path: Path, fingerprinter: Any,
            fields: FieldMap, *, no_store_text: bool, skip_duplicates: bool,
            workers: int | None, engine: str, address: str | None, as_json: bool) -> None:
    """Run ``build_index`` or ``add_files`` (or their Ray engine's) with a progress bar and
    report what it stored."""
    from fingerprint.parallel import default_workers

    if engine == "local" and address is not None:
        raise click.UsageError("--address is for --engine ray")
    if engine == "ray":
        from cli.logs import quiet_ray

        quiet_ray()
    engine_options = {"address": address, "workers": workers} if engine == "ray" else \
        {"workers": workers or default_workers()}
    with progress_bar(inputs, "indexing") as progress:
        result = write(index_path, list(inputs), fingerprinter, fields=fields,
                       store_text=not no_store_text, skip_duplicates=skip_duplicates,
                       progress=progress, **engine_options)
    if as_json:
        echo_json({"index": str(index_path), **dataclasses.asdict(result)})
        return
    plural = "s" if result.segment and "," in result.segment else ""
    where = f"segment{plural} {result.segment}" if result.segment else "no new segment"
    click.echo(f"indexed {result.added} responses into {index_path} ({where}; "
               f"{result.skipped_empty} empty and {result.skipped_duplicates} duplicate "
               f"records skipped); the index holds {result.total}")


def index_path_argument(f: Any) -> Any:
    """The index as ``INDEX_PATH`` or ``--index PATH``, as every other command takes it."""
    @click.argument("index_argument", metavar="[INDEX_PATH]", required=False,
                    type=click.Path(path_type=Path))
    @click.option("--index", "index_option", type=click.Path(path_type=Path),
                  help="Index directory (or give it as INDEX_PATH).")
    @functools.wraps(f)
    def wrapper(*args: Any, index_argument: Path | None, index_option: Path | None,
                **kwargs: Any) -> Any:
        if index_argument is None and index_option is None:
            raise click.UsageError("give the index directory, as INDEX_PATH or --index")
        if index_argument is not None and index_option is not None and \
                index_argument != index_option:
            raise click.UsageError(f"two indexes given: {index_argument} and --index "
                                   f"{index_option}")
        return f(*args, index_path=index_argument or index_option, **kwargs)
    return wrapper


@click.command("verify", context_settings=CONTEXT)
@index_path_argument
@json_option()
def verify_command(index_path: Path, as_json: bool) -> None:
    """Check every file of every segment of an index against its manifest (sizes, sha256,
    structure); exit code 1 if anything is wrong."""
    from index import verify_index

    report = verify_index(index_path)
    if as_json:
        echo_json(report.to_dict())
    else:
        state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        click.echo(f"verified {report.files} files of {report.segments} segments "
                   f"({human_bytes(report.bytes)}) in {index_path}: {state}")
        for problem in report.problems:
            click.echo(f"  {problem}", err=True)
    if not report.ok:
        raise SystemExit(1)


@index_group.command("info", context_settings=CONTEXT)
@index_path_argument
@json_option()
def index_info(index_path: Path, as_json: bool) -> None:
    """Counts, config, sizes and segments of an index."""
    from index import open_index

    with open_index(index_path) as idx:
        info = idx.info()
    if as_json:
        echo_json(info)
        return
    b = info["bytes"]
    click.echo(f"index       {info['path']} (format {info['format_version']})")
    click.echo(f"responses   {info['responses']} in {len(info['segments'])} segment(s); "
               f"skipped {info['skipped_empty']} empty, {info['skipped_duplicates']} duplicate")
    click.echo(f"size        {human_bytes(b['total'])} "
               + ", ".join(f"{k} {human_bytes(v)}" for k, v in b.items() if k != "total"))
    cfg = info["config"]
    click.echo(f"embedding   {cfg['embedding_model']}, backend {cfg['embedding_backend']} "
               f"(dim {info['embedding_dim']}, {cfg['embedding_max_tokens']} tokens)")
    click.echo(f"minhash     {cfg['num_perm']} permutations, seed {cfg['seed']}, "
               f"{cfg['shingle_size']}-word shingles, {cfg['minhash_scheme']}/"
               f"{cfg['hash_function']}, normalizer v{cfg['normalizer_version']}")
    for s in info["segments"]:
        click.echo(f"  {s['name']}  {s['rows']:>9} rows  {human_bytes(s['bytes']):>9}  "
                   f"{s['created_at']}  {', '.join(s['sources'])}")


@index_group.command("compact", context_settings=CONTEXT)
@index_path_argument
@click.option("--target-rows", type=click.IntRange(2, None), default=5_000_000,
              show_default=True,
              help="Merge consecutive segments into segments of up to this many rows.")
@json_option("Print one JSON object (segments_before, segments_after, merged, rows_moved).")
def index_compact(index_path: Path, target_rows: int, as_json: bool) -> None:
    """Merge small segments (many adds, or the Ray engine's tasks) into larger ones, with the
    search index their size calls for, atomically; rows, marks and search results stay."""
    from index import compact_index

    result = compact_index(index_path, target_rows=target_rows)
    if as_json:
        echo_json({"index": str(index_path), **dataclasses.asdict(result)})
        return
    click.echo(f"compacted {index_path}: {result.segments_before} segment(s) -> "
               f"{result.segments_after} ({result.merged} merged, {result.rows_moved} rows "
               f"moved)")
