"""``fingerprint reference``: store and list reference models in an index."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from typing import Any, Callable

from cli.options import (CONTEXT, echo_json, field_options, human_bytes, index_option,
                         json_option, progress_bar, progress_option)
from fingerprint.records import FieldMap


def fact_options(f: Callable) -> Callable:
    """--era, --base-model, --vendor and --meta KEY=VALUE, passed on as one ``facts`` dict."""
    import functools

    @click.option("--era", help="When the model was trained or released, as you will match it "
                                "(e.g. 2023).")
    @click.option("--base-model", help="The model it was fine-tuned from (e.g. llama-2-13b).")
    @click.option("--vendor", help="Who made it (e.g. meta).")
    @click.option("--meta", "pairs", multiple=True, metavar="KEY=VALUE",
                  help="Any other fact (lower-case key). Repeatable.")
    @functools.wraps(f)
    def wrapper(*args: Any, era: str | None, base_model: str | None, vendor: str | None,
                pairs: tuple[str, ...], **kwargs: Any) -> Any:
        given = {"era": era, "base_model": base_model, "vendor": vendor}
        pairs += tuple(f"{k}={v}" for k, v in given.items() if v is not None)
        return f(*args, facts=pairs, **kwargs)
    return wrapper


def facts_text(meta: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in meta.items()) or "no facts"


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
@fact_options
@json_option("Print one JSON object (reference, added, skipped, total).")
@progress_option
def reference_add(inputs: tuple[str, ...], index_path: Path, name: str, fields: FieldMap,
                  embeddings: bool, skip_duplicates: bool, facts: tuple[str, ...],
                  as_json: bool) -> None:
    """Add a reference model's outputs (same prompts as the suspects, ideally) to the index,
    with its facts (era, base model, vendor) for matched nulls."""
    from index import add_reference, fingerprinter_for, parse_meta_pairs

    meta = parse_meta_pairs(facts, "reference facts")
    with progress_bar(inputs, f"reference {name}") as progress:
        result = add_reference(index_path, name, list(inputs), fingerprinter_for(index_path),
                               fields=fields, embed=embeddings, skip_duplicates=skip_duplicates,
                               progress=progress, meta=meta)
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
                   f"embeddings {'yes' if r['embeddings'] else 'no'}  {', '.join(sources)}  "
                   f"[{facts_text(r['meta'])}]")


@reference_group.command("describe", context_settings=CONTEXT)
@click.argument("name")
@index_option
@fact_options
@json_option()
def reference_describe(name: str, index_path: Path, facts: tuple[str, ...],
                       as_json: bool) -> None:
    """Set facts of the stored reference NAME (an empty value, --era '', removes one); with no
    fact given, show them. Attribution matches on them: attribute --match-references."""
    from index import describe_reference, open_index, parse_meta_pairs

    if facts:
        meta = describe_reference(index_path, name,
                                  parse_meta_pairs(facts, "reference facts", allow_empty=True))
    else:
        with open_index(index_path) as idx:
            if name not in idx.references:
                raise click.ClickException(f"{index_path}: holds no reference {name!r}")
            meta = dict(idx.manifest.reference_meta.get(name, {}))
    if as_json:
        echo_json({"reference": name, "meta": meta})
        return
    click.echo(f"{name}: {facts_text(meta)}")


@reference_group.group("pack", context_settings=CONTEXT)
def pack_group() -> None:
    """Reference packs: many reference models' answers (from 'probe run' against open models),
    each with its facts, gathered once and installed into indexes."""


@pack_group.command("add", context_settings=CONTEXT)
@click.argument("pack", type=click.Path(file_okay=False, path_type=Path))
@click.argument("answers", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--name", required=True, help="Reference name (letters, digits, '.', '_', '-').")
@fact_options
@click.option("--replace", is_flag=True, help="Replace the answers of a reference of that name.")
@json_option()
def pack_add(pack: Path, answers: Path, name: str, facts: tuple[str, ...], replace: bool,
             as_json: bool) -> None:
    """Copy an ANSWERS file (a 'probe run' output) into the PACK directory as reference NAME,
    with its facts and how it was probed; makes the pack if new."""
    from index import parse_meta_pairs
    from reference_pack import add_to_pack

    entry = add_to_pack(pack, answers, name, parse_meta_pairs(facts, "reference facts"),
                        replace=replace)
    if as_json:
        echo_json({"pack": str(pack), "reference": name, **entry.to_dict()})
        return
    probed = "" if entry.probe is None else " (a probe run's answers)"
    click.echo(f"added {entry.responses} answers to pack {pack} as {name}{probed}; "
               f"{entry.empty} empty; {facts_text(entry.meta)}")


@pack_group.command("list", context_settings=CONTEXT)
@click.argument("pack", type=click.Path(file_okay=False, path_type=Path))
@json_option()
def pack_list(pack: Path, as_json: bool) -> None:
    """The references in PACK with their facts; every answers file is checked (size, sha256)."""
    from reference_pack import read_pack, verify_pack

    read = read_pack(pack)
    verify_pack(read)
    if as_json:
        echo_json({name: e.to_dict() for name, e in read.entries.items()})
        return
    for name, e in read.entries.items():
        click.echo(f"{name:<32} {e.responses:>8} answers  {human_bytes(e.bytes):>9}  "
                   f"[{facts_text(e.meta)}]")
    click.echo(f"{len(read.entries)} references; every answers file matches its sha256")


@pack_group.command("install", context_settings=CONTEXT)
@click.argument("pack", type=click.Path(file_okay=False, path_type=Path))
@index_option
@click.option("--only", "names", multiple=True, help="Install only this reference (repeatable).")
@json_option()
def pack_install(pack: Path, index_path: Path, names: tuple[str, ...], as_json: bool) -> None:
    """Add PACK's references to the index with their facts; rerun to finish an interrupted
    install (references already installed from the same answers are skipped)."""
    from index import fingerprinter_for
    from reference_pack import install_pack

    done = install_pack(pack, index_path, fingerprinter_for(index_path), names)
    if as_json:
        echo_json([{"reference": d.name, "status": d.status, "responses": d.responses,
                    "meta": d.meta} for d in done])
        return
    for d in done:
        click.echo(f"{d.name:<32} {d.status:<18} {d.responses:>8} answers  "
                   f"[{facts_text({k: v for k, v in d.meta.items() if k != 'source_sha256'})}]")
