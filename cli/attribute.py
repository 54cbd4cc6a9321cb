"""``fingerprint attribute``: attribute a suspect's outputs to an index (or rank several)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from cli.options import (CONTEXT, echo_json, field_options, json_option, progress_bar,
                         progress_option, reference_files_option, tokenizer_option)
from fingerprint.records import FieldMap


@click.command("attribute", context_settings=CONTEXT)
@click.argument("suspect")
@click.option("--index", "index_paths", required=True, multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Index directory; repeat it with several providers' indexes to rank them as "
                   "the suspect's likely teacher.")
@click.option("--name", "provider_names", multiple=True,
              help="A provider's name, once per --index in the same order [default: each "
                   "index's directory name].")
@field_options
@json_option("Print one JSON object (top-level 'score').")
@click.option("--nl", "as_rows", is_flag=True,
              help="Print newline-delimited JSON instead: one object per suspect response (id, "
                   "line, prompt, prompt hash, matches, paired comparison, evidence).")
@progress_option
@click.option("--report", "reports", type=click.Path(dir_okay=False, path_type=Path),
              multiple=True,
              help="Write a report, in the format its extension names: HTML (.html: verdict, "
                   "plots, method, evidence, provenance), PDF (.pdf, the same on paper), "
                   "Markdown (.md) or the per-prompt evidence as CSV (.csv). Repeatable.")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Matches reported per suspect response.")
@click.option("--near-duplicate-threshold", type=click.FloatRange(0, 1, min_open=True),
              default=0.5, show_default=True, help="Estimated Jaccard that makes a near-duplicate.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Embedding batch size.")
@reference_files_option("A reference model's outputs for this call only (repeatable; named "
                        "after the file). Given, they replace the references stored in the "
                        "index.")
@click.option("--no-references", is_flag=True,
              help="Ignore stored references: uncalibrated score, no p-value.")
@click.option("--match-references", "match", multiple=True, metavar="KEY=VALUE",
              help="Use only the stored references with this fact (era=2023, base_model=..., "
                   "vendor=...; 'fingerprint reference describe' sets them), so the null is "
                   "drawn from models like the suspect. Repeatable: all must match.")
@click.option("--watermark-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Also test the outputs for the provider's watermark (key from 'fingerprint "
                   "watermark keygen'); its exact p-value joins the others.")
@click.option("--watermark-reference", type=click.Path(dir_okay=False, path_type=Path),
              help="Your model's own unmarked responses: adds the watermark's shift test, which "
                   "finds a student's inherited lean (needs --watermark-key).")
@click.option("--bundle", "bundles", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Partners' signals: an import directory of 'fingerprint share import' (or "
                   "one bundle in it); each partner's provider joins the teacher ranking and "
                   "its keyed signatures a near-duplicate check. Repeatable; needs "
                   "--consortium-key.")
@click.option("--consortium-key", "consortium_keys", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Consortium key file(s) the bundles are keyed with (repeatable); a bundle "
                   "keyed with none of them is refused.")
@tokenizer_option
def attribute_command(suspect: str, index_paths: tuple[Path, ...],
                      provider_names: tuple[str, ...], fields: FieldMap, as_json: bool,
                      as_rows: bool, reports: tuple[Path, ...], k: int,
                      near_duplicate_threshold: float, batch_size: int,
                      reference_files: tuple[Path, ...], no_references: bool,
                      match: tuple[str, ...], watermark_key: Path | None,
                      watermark_reference: Path | None, bundles: tuple[Path, ...],
                      consortium_keys: tuple[Path, ...], tokenizer: str | None) -> None:
    """Attribute a suspect model's outputs (SUSPECT file, or '-') to the indexed responses.

    With reference models (stored in the index or given with --reference) every signal is
    calibrated against them: the result has a p-value and a derived fraction."""
    from attribution import AttributionOptions, attribute_file
    from fingerprint.watermark import load_key
    from index import fingerprinter_for, parse_meta_pairs
    from reports import check_report_path, summary_text, write_report

    if as_json and as_rows:
        raise click.UsageError("--json prints one object, --nl one per response: choose one")
    if provider_names and len(provider_names) != len(index_paths):
        raise click.UsageError(f"{len(provider_names)} --name for {len(index_paths)} --index: "
                               f"name every provider, in the order of --index")
    for report in reports:
        check_report_path(report)
    options = AttributionOptions(k=k, near_duplicate_threshold=near_duplicate_threshold)
    key = load_key(watermark_key) if watermark_key is not None else None
    if match and (no_references or reference_files):
        raise click.UsageError("--match-references chooses among the stored references: not "
                               "with --no-references or --reference")
    wanted = parse_meta_pairs(match, "--match-references") if match else None
    if consortium_keys and not bundles:
        raise click.UsageError("--consortium-key is for --bundle: give the partners' bundles")
    run = attribute_file
    if bundles:
        from sharing import attribute_with_bundles

        run = functools.partial(attribute_with_bundles, bundles=bundles,
                                consortium_keys=consortium_keys)
    with progress_bar((suspect,), "attributing") as progress:
        result = run(
            list(index_paths), suspect, fields=fields, options=options,
            fingerprinter=fingerprinter_for(index_paths[0], batch_size=batch_size),
            progress=progress, references=[] if no_references else None,
            reference_files=() if no_references else reference_files,
            watermark_key=key, watermark_tokenizer=tokenizer,
            watermark_reference=watermark_reference,
            provider_names=provider_names or None, match_references=wanted)
    for report in reports:
        write_report(result, report)
    if as_json:
        echo_json(result.to_dict())
    elif as_rows:
        for row in result.response_rows():
            click.echo(json.dumps(row, separators=(",", ":")))
    else:
        click.echo(summary_text(result))
        for report in reports:
            click.echo(f"report    {report}")
