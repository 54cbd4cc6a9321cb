"""``fingerprint watermark``: keys, marking served text, testing a suspect for the mark."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from cli.options import CONTEXT, echo_json, field_options, json_option, tokenizer_option
from fingerprint.records import FieldMap


@click.group("watermark", context_settings=CONTEXT)
def watermark_group() -> None:
    """Mark served text with a secret key and test a suspect's outputs for the mark."""


@watermark_group.command("keygen", context_settings=CONTEXT)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key file to write (mode 0600; keep it secret).")
@click.option("--tokenizer", default=None,
              help="The serving model's tokenizer: tokenizer.json or a directory holding it "
                   "[default: all-MiniLM-L6-v2's].")
@click.option("--context-width", type=click.IntRange(0, 8), default=1, show_default=True,
              help="Tokens before a step that choose its green list (1: the width a student "
                   "inherits measurably; 0: one list for every step; see README 'Watermarks').")
@click.option("--gamma", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.25, show_default=True, help="Share of the vocabulary that is green.")
@click.option("--delta", type=click.FloatRange(0, 50), default=2.0, show_default=True,
              help="Added to the logits of green tokens.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@json_option("Print one JSON object (key id, tokenizer, parameters; never the secret).")
def watermark_keygen(out: Path, tokenizer: str | None, context_width: int, gamma: float,
                     delta: float, force: bool, as_json: bool) -> None:
    """Make a new secret watermark key for a tokenizer."""
    from fingerprint.watermark import WatermarkConfig, generate_key, save_key

    key = generate_key(tokenizer, config=WatermarkConfig(context_width=context_width,
                                                         gamma=gamma, delta=delta))
    save_key(key, out, overwrite=force)
    if as_json:
        echo_json({"out": str(out), "key_id": key.key_id, "tokens": key.tokens.to_dict(),
                   "tokenizer": key.tokenizer.to_dict(), "lexical": key.lexical.to_dict(),
                   "lexicon_sha256": key.lexicon_sha256,
                   "posthoc": key.posthoc.to_dict() if key.posthoc else None})  # never the secret
        return
    lexical = "yes" if key.lexicon_sha256 else "no (WordNet is not installed)"
    click.echo(f"wrote key {key.key_id} to {out} (tokenizer {key.tokenizer.source}, "
               f"{key.tokenizer.vocab_size} tokens; post-hoc mark: {lexical})")


@watermark_group.command("mark", context_settings=CONTEXT)
@click.argument("source")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key file (from 'fingerprint watermark keygen').")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Marked responses (JSONL: id, prompt, response, model).")
@field_options
@json_option("Print one JSON object (responses, candidates, substitutions).")
def watermark_mark(source: str, key_path: Path, out: Path, fields: FieldMap,
                   as_json: bool) -> None:
    """Mark already generated responses (SOURCE) with keyed choices: synonyms, serial commas,
    contractions (a key made before version 2 of the mark: synonyms only)."""
    from fingerprint.watermark import load_key, mark_file

    summary = mark_file(load_key(key_path), source, out, fields)
    if as_json:
        echo_json({"out": str(out), **dataclasses.asdict(summary)})
        return
    what = ("lexicon words swapped" if summary.posthoc_version == 1 else
            "keyed choices changed in synonyms, serial commas and contractions")
    click.echo(f"marked {summary.responses} responses into {out}: {summary.substitutions} of "
               f"{summary.candidates} {what} ({summary.skipped_empty} empty records skipped)")


@watermark_group.command("detect", context_settings=CONTEXT)
@click.argument("suspect")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key file (from 'fingerprint watermark keygen').")
@click.option("--scheme", type=click.Choice(["both", "tokens", "lexical"]), default="both",
              show_default=True, help="Which mark to test.")
@click.option("--reference", default=None,
              help="Your model's own unmarked responses (JSONL, the same fields): adds the "
                   "shift test, which finds a student's inherited lean towards the token mark.")
@tokenizer_option
@field_options
@json_option("Print one JSON object (top-level 'p_value', per-response tests).")
def watermark_detect(suspect: str, key_path: Path, scheme: str, reference: str | None,
                     tokenizer: str | None, fields: FieldMap, as_json: bool) -> None:
    """Test a suspect's outputs (SUSPECT file, or '-') for the watermark: exact p-values per
    response and pooled over distinct pairs of all responses; with --reference, the shift test
    too (a student's outputs)."""
    from fingerprint.watermark import detect_file, load_key

    report = detect_file(load_key(key_path), suspect, fields=fields, scheme=scheme,
                         tokenizer=tokenizer, reference=reference)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(f"suspect   {report.suspect}: {len(report.ids)} responses "
               f"({report.skipped_empty} empty skipped), key {report.key_id}")
    for d in report.detections:
        p = d.pooled
        short = sum(r.too_short for r in d.responses)
        state = "too few pairs to test" if p.too_short else f"p {p.p_value:.3g}, z {p.z:.2f}"
        click.echo(f"{d.scheme:<9} {p.green}/{p.scored} distinct pairs green (null share "
                   f"{p.gamma}): {state}; {short} responses too short to test alone")
        if d.channels:
            click.echo("          of which " + ", ".join(
                f"{name} {s.green}/{s.scored}" for name, s in d.channels))
    if report.shift is not None:
        t = report.shift
        state = (f"p {t.p_value:.3g} (weighted), lean {t.lean:.3f}" if t.windows else
                 "no window seen often enough in both texts: no evidence")
        click.echo(f"shift     against {report.reference}: {t.windows} windows compared, "
                   f"{t.green_up}/{t.up} used more are green (null share {t.gamma}): {state}")
    combined = (f" (Bonferroni over {len(report.p_values)} tests)"
                if len(report.p_values) > 1 else "")
    click.echo(f"p_value   {report.p_value:.3g}{combined}")
