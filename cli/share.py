"""``fingerprint share``: signed, expiring, privacy-keyed bundles for partners (issue 16, in
progress): keys, export, verify, import."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import CONTEXT, echo_json, json_option

FilePath = click.Path(dir_okay=False, path_type=Path)
DirPath = click.Path(file_okay=False, path_type=Path)


@click.group("share", context_settings=CONTEXT)
def share_group() -> None:
    """Share distillation signals with partner providers: keyed signatures and flagged accounts
    in signed, expiring bundles (in progress)."""


@share_group.command("keygen", context_settings=CONTEXT)
@click.option("--org", required=True, help="Your organisation's name, written into the keys.")
@click.option("--out", required=True, type=FilePath,
              help="Private signing key to write (PEM, mode 0600); the public half goes beside "
                   "it as NAME.pub (e.g. acme.signing.key -> acme.pub).")
@json_option("Print one JSON object (private, public, org, key_id).")
def keygen(org: str, out: Path, as_json: bool) -> None:
    """Make an Ed25519 signing key; give the .pub file to your partners."""
    from sharing import generate_signing_key
    from sharing.keys import public_path

    public = generate_signing_key(org, out)
    data = {"private": str(out), "public": str(public_path(out)), "org": public.org,
            "key_id": public.key_id}
    if as_json:
        echo_json(data)
        return
    click.echo(f"signing key {out} (keep it secret)\npublic key  {data['public']} (org "
               f"{public.org}, key id {public.key_id}): give it to partners")


@share_group.command("consortium-key", context_settings=CONTEXT)
@click.option("--out", required=True, type=FilePath,
              help="Consortium key to write (JSON: key_id, secret, created; mode 0600).")
@json_option("Print one JSON object (out, key_id, created).")
def consortium_key(out: Path, as_json: bool) -> None:
    """Make a consortium secret (32 random bytes) for the partners to share over a secure
    channel; every keyed hash in a bundle is derived from it."""
    from sharing import generate_consortium_key

    key = generate_consortium_key(out)
    if as_json:
        echo_json({"out": str(out), "key_id": key.key_id, "created": key.created})
        return
    click.echo(f"consortium key {out}, key id {key.key_id}: share it with partners only")


@share_group.command("export", context_settings=CONTEXT)
@click.option("--index", "index", required=True, type=DirPath,
              help="Index whose served responses to export (it must store text).")
@click.option("--consortium-key", "consortium", required=True, type=FilePath,
              help="Consortium key file that keys the signatures and account hashes.")
@click.option("--sign", "sign", required=True, type=FilePath,
              help="Your signing key ('fingerprint share keygen').")
@click.option("--select", default="all", show_default=True,
              help="Responses to export: all, marked:LABEL (an index mark, e.g. "
                   "marked:monitor-flagged) or since:DATE (timestamp on or after an ISO date).")
@click.option("--accounts", type=FilePath,
              help="Risk file from 'fingerprint monitor scan': its flagged accounts go in as "
                   "STIX 2.1 indicators on keyed account hashes.")
@click.option("--requests", type=FilePath,
              help="Request log (the monitor's input): the prompts of the --accounts flagged "
                   "accounts' requests go in as keyed hashes (HMAC under the consortium key).")
@click.option("--include-text", is_flag=True,
              help="Also put the selected responses' RAW TEXT in the bundle (texts.json): the "
                   "only way text leaves; the manifest records it and verify warns.")
@click.option("--valid-days", type=click.FloatRange(min=0, min_open=True), default=90.0,
              show_default=True, help="Days the bundle stays valid from now.")
@click.option("--style/--no-style", default=True, show_default=True,
              help="Include the style profile (the selected responses' style rows, keyed by "
                   "prompt) so partners can rank you as a teacher; partners holding the consortium "
                   "key can read the features kept in it (--min-feature-responses).")
@click.option("--style-rows", type=click.IntRange(min=1), default=20000, show_default=True,
              help="At most this many responses (an even spread) in the style profile.")
@click.option("--min-feature-responses", type=click.IntRange(min=1), default=20,
              show_default=True,
              help="Keep a style feature only if it occurs in exported responses to at least "
                   "this many different prompts: rare features (names, numbers, topic words) "
                   "are what reveal a response's content; 1 keeps every feature.")
@click.option("--style-pool", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sum the style rows of this many responses to different prompts into each "
                   "exported row (no row is one response); pooled rows cannot be paired by "
                   "prompt.")
@click.option("--out", required=True, type=FilePath, help="Bundle file to write.")
@json_option("Print one JSON object (out, bundle_id, producer, counts, validity, bytes).")
def export(index: Path, consortium: Path, sign: Path, select: str, accounts: Path | None,
           requests: Path | None, include_text: bool, valid_days: float, style: bool,
           style_rows: int, min_feature_responses: int, style_pool: int, out: Path,
           as_json: bool) -> None:
    """Write a signed bundle of keyed signatures (no response text unless --include-text),
    flagged accounts, the keyed prompts of their requests and the style profile."""
    from sharing import export_bundle

    result = export_bundle(index, consortium, sign, out, select=select, accounts=accounts,
                           valid_days=valid_days, requests=requests,
                           include_text=include_text, style=style,
                           style_rows=style_rows,
                           min_feature_responses=min_feature_responses,
                           style_pool=style_pool).to_dict()
    if as_json:
        echo_json(result)
        return
    counts = result["counts"]
    click.echo(f"bundle      {out} ({result['bytes']} bytes, id {result['bundle_id']})\n"
               f"holds       {counts['signatures']} keyed signatures, {counts['accounts']} "
               f"flagged accounts"
               + (f", {counts['prompts']} keyed prompts" if "prompts" in counts else "")
               + f", {result['style_rows']} style rows"
               + f"\nvalid       {result['valid_from']} to "
               f"{result['valid_until']}, consortium key {result['consortium_key_id']}")
    if "texts" in counts:
        click.echo(f"WARNING     THIS BUNDLE CONTAINS RAW RESPONSE TEXT ({counts['texts']} "
                   f"responses, --include-text): send it only where the text itself may go")


def _trust_options(f):
    f = click.option("--consortium-key", "consortium", type=FilePath, multiple=True,
                     help="Consortium key file(s) you hold: refuse a bundle keyed with none "
                          "of them (repeatable).")(f)
    return click.option("--trust", required=True, type=DirPath,
                        help="Trust directory: your partners' .pub files.")(f)


@share_group.command("verify", context_settings=CONTEXT)
@click.argument("bundle", type=FilePath)
@_trust_options
@json_option("Print the manifest summary as one JSON object, with every signal id (signals: "
             "responses, accounts) that 'share feedback --signal' accepts.")
def verify(bundle: Path, trust: Path, consortium: tuple[Path, ...], as_json: bool) -> None:
    """Check BUNDLE: trusted signer, signature, every part's checksum, validity period, schema
    and consortium key; exit 1 naming the reason otherwise."""
    from sharing import verify_bundle

    verified = verify_bundle(bundle, trust, consortium_keys=consortium)
    summary = verified.summary()
    if as_json:
        echo_json({"ok": True, **summary, "signals": verified.signals()})
        return
    _echo_summary(summary)


@share_group.command("import", context_settings=CONTEXT)
@click.argument("bundle", type=FilePath)
@_trust_options
@click.option("--into", required=True, type=DirPath,
              help="Partner-signals directory to store the verified bundle in.")
@click.option("--own-key", type=FilePath,
              help="Your own .pub file: refuse a bundle signed by it or in its org's name (your "
                   "own outputs must not count as a partner's evidence).")
@json_option("Print one JSON object (the manifest summary, into, imported).")
def import_(bundle: Path, trust: Path, consortium: tuple[Path, ...], into: Path,
            own_key: Path | None, as_json: bool) -> None:
    """Verify BUNDLE, then store it under --into all or nothing (again: no change)."""
    from sharing import import_bundle

    result = import_bundle(bundle, trust, into, consortium_keys=consortium,
                           own_key=own_key).to_dict()
    if as_json:
        echo_json(result)
        return
    _echo_summary(result)
    click.echo(f"{'imported' if result['imported'] else 'already in'}    {result['into']}")


def _echo_summary(s: dict) -> None:
    counts = s["counts"]
    click.echo(f"verified    {s['bundle']} (id {s['bundle_id']}, schema {s['schema']})\n"
               f"signed by   {s['signer_org']} (key {s['producer']['key_id']})\n"
               f"holds       {counts.get('signatures', 0)} keyed signatures, "
               f"{counts.get('accounts', 0)} flagged accounts"
               + (f", {counts['prompts']} keyed prompts" if "prompts" in counts else "")
               + (f", {s['style']['rows']} style rows" if s.get("style") else "") + "\n"
               f"valid       {s['valid_from']} to {s['valid_until']}, consortium key "
               f"{s['consortium_key_id']}")
    if s.get("include_text"):
        click.echo(f"WARNING     THIS BUNDLE CONTAINS RAW RESPONSE TEXT ({counts.get('texts', 0)}"
                   f" responses, exported with --include-text): handle it as the served "
                   f"text itself")


@share_group.command("feedback", context_settings=CONTEXT)
@click.argument("bundle", type=FilePath)
@click.option("--trust", required=True, type=DirPath,
              help="Trust directory holding the producer's .pub: the bundle is verified first "
                   "(not its validity period: an opinion may come after it expired).")
@click.option("--signal", required=True,
              help="Signal id: a response's keyed id or an account indicator's STIX id, as "
                   "'share verify --json' lists them.")
@click.option("--opinion", required=True,
              type=click.Choice(["confirmed", "false-positive", "investigating"]),
              help="What your own evidence showed about the signal.")
@click.option("--sign", "sign", required=True, type=FilePath,
              help="Your signing key ('fingerprint share keygen').")
@click.option("--note", help="A free-text note signed with the opinion (no served text!).")
@click.option("--sighting", is_flag=True,
              help="The indicator's account was seen in your own traffic: add a STIX 2.1 "
                   "Sighting of it (account indicators only).")
@click.option("--out", required=True, type=FilePath, help="Feedback file to write (JSON).")
@json_option("Print the signed feedback document.")
def feedback(bundle: Path, trust: Path, signal: str, opinion: str, sign: Path,
             note: str | None, sighting: bool, out: Path, as_json: bool) -> None:
    """Write a signed opinion on one signal of a partner's BUNDLE, to send back to its
    producer."""
    from sharing import write_feedback

    document = write_feedback(bundle, trust, signal, opinion, sign, out, note=note,
                              sighting=sighting)
    if as_json:
        echo_json(document)
        return
    body = document["feedback"]
    click.echo(f"feedback    {out}: {body['opinion']} on {body['signal_kind']} signal "
               f"{body['signal']}\nbundle      {body['bundle_id']} of "
               f"{body['producer']['org']}; signed by {body['reviewer']['org']}"
               + ("\nsighting    STIX 2.1 Sighting of the indicator included"
                  if "sighting" in body else ""))


@share_group.command("feedback-summary", context_settings=CONTEXT)
@click.argument("feedback_files", metavar="FEEDBACK...", nargs=-1, required=True,
                type=FilePath)
@click.option("--trust", required=True, type=DirPath,
              help="Trust directory: your reviewers' .pub files (and, with --bundle, yours).")
@click.option("--bundle", type=FilePath,
              help="Your own bundle: refuse feedback about any other bundle or signal.")
@json_option("Print one JSON object (files, counted, superseded, opinions, sightings, signals, "
             "reviewers).")
def feedback_summary(feedback_files: tuple[Path, ...], trust: Path, bundle: Path | None,
                     as_json: bool) -> None:
    """Verify partners' feedback files and show how your signals fared: opinions per signal
    and per reviewer (each reviewer's latest opinion on a signal counts)."""
    from sharing import summarize_feedback

    s = summarize_feedback(feedback_files, trust, bundle=bundle)
    if as_json:
        echo_json(s)
        return
    totals = ", ".join(f"{k} {v}" for k, v in s["opinions"].items())
    click.echo(f"feedback    {s['files']} files verified, {s['counted']} opinions counted "
               f"({s['superseded']} superseded by a later one)\ntotals      {totals}, "
               f"sightings {s['sightings']}")
    for row in s["signals"]:
        counts = ", ".join(f"{k} {row[k]}" for k in ("confirmed", "false-positive",
                                                      "investigating"))
        click.echo(f"signal      {row['signal']} ({row['kind']}, bundle {row['bundle_id']}): "
                   f"{counts}")
    for who in s["reviewers"]:
        counts = ", ".join(f"{k} {who[k]}" for k in ("confirmed", "false-positive",
                                                      "investigating"))
        click.echo(f"reviewer    {who['org']} (key {who['key_id']}): {counts}")


@share_group.command("match-prompts", context_settings=CONTEXT)
@click.argument("bundle", type=FilePath)
@click.option("--trust", required=True, type=DirPath,
              help="Trust directory: your partners' .pub files.")
@click.option("--consortium-key", "consortium", required=True, type=FilePath,
              help="The consortium key the bundle's prompt hashes are keyed with.")
@click.option("--requests", required=True, type=FilePath,
              help="Your own request log, whose prompts are hashed the same way and compared.")
@json_option("Print one JSON object (bundle_id, producer, campaign_prompts, requests, "
             "matched_requests, matched_prompts, accounts).")
def match_prompts(bundle: Path, trust: Path, consortium: Path, requests: Path,
                  as_json: bool) -> None:
    """Which of your own requests carried a prompt of the partner's campaign (the keyed prompt
    hashes of BUNDLE)."""
    from sharing import match_prompts as match

    r = match(bundle, trust, consortium, requests)
    if as_json:
        echo_json(r)
        return
    click.echo(f"bundle      {r['bundle_id']} of {r['producer']}: {r['campaign_prompts']} keyed "
               f"prompts\nmatched     {r['matched_requests']} of your {r['requests']} requests "
               f"({r['matched_prompts']} distinct prompts)")
    for account, n in r["accounts"].items():
        click.echo(f"account     {account}: {n} matching requests")
