"""``fingerprint reference``: store and list reference models in an index."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from cli.options import (CONTEXT, echo_json, field_options, human_bytes, index_option,
                         json_option, progress_bar, progress_option)
from fingerprint.records import FieldMap


@click.group("reference", context_settings=CONTEXT)
def reference_group() -> None:
    """Store and list reference models: independent models answering the same prompts."""


@reference_group.command("add", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@index_option
@click.option("--name", required=True, help="Reference name (letters, digits, '.', '_', '-').")
@field_options
@click.option("--embeddings/--no-embeddings", default=False, show_default=True,
              help="Also store embeddings (slow; only the paired-cosine evidence uses them).")
@click.option("--skip-duplicates", is_flag=True,
              help="Skip (and count) records whose id is already in this reference.")
@json_option("Print one JSON object (reference, added, skipped, total).")
@progress_option
def reference_add(inputs: tuple[str, ...], index_path: Path, name: str, fields: FieldMap,
                  embeddings: bool, skip_duplicates: bool, as_json: bool) -> None:
    """Add a reference model's outputs (same prompts as the suspects, ideally) to the index."""
    from index import add_reference, fingerprinter_for

    with progress_bar(inputs, f"reference {name}") as progress:
        result = add_reference(index_path, name, list(inputs), fingerprinter_for(index_path),
                               fields=fields, embed=embeddings, skip_duplicates=skip_duplicates,
                               progress=progress)
    if as_json:
        echo_json({"index": str(index_path), "reference": name, **dataclasses.asdict(result)})
        return
    click.echo(f"added {result.added} responses to reference {name!r} in {index_path} "
               f"({result.skipped_empty} empty and {result.skipped_duplicates} duplicate "
               f"records skipped); it holds {result.total}")


@reference_group.command("list", context_settings=CONTEXT)
@index_option
@json_option()
def reference_list(index_path: Path, as_json: bool) -> None:
    """The reference models stored in an index."""
    from index import open_index

    with open_index(index_path) as idx:
        refs = idx.info()["references"]
    if as_json:
        echo_json(refs)
        return
    if not refs:
        click.echo(f"{index_path} holds no reference models; add some with "
                   f"'fingerprint reference add'")
    for name, r in refs.items():
        sources = sorted({src for seg in r["segments"] for src in seg["sources"]})
        click.echo(f"{name:<32} {r['responses']:>8} responses  {human_bytes(r['bytes']):>9}  "
                   f"embeddings {'yes' if r['embeddings'] else 'no'}  {', '.join(sources)}")
