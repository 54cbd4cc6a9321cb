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
@click.option("--valid-days", type=click.FloatRange(min=0, min_open=True), default=90.0,
              show_default=True, help="Days the bundle stays valid from now.")
@click.option("--style/--no-style", default=True, show_default=True,
              help="Include the style profile (the selected responses' style rows, keyed by "
                   "prompt) so partners can rank you as a teacher; it reveals each response's "
                   "words and word pairs to partners holding the consortium key.")
@click.option("--style-rows", type=click.IntRange(min=1), default=20000, show_default=True,
              help="At most this many responses (an even spread) in the style profile.")
@click.option("--out", required=True, type=FilePath, help="Bundle file to write.")
@json_option("Print one JSON object (out, bundle_id, producer, counts, validity, bytes).")
def export(index: Path, consortium: Path, sign: Path, select: str, accounts: Path | None,
           valid_days: float, style: bool, style_rows: int, out: Path, as_json: bool) -> None:
    """Write a signed bundle of keyed signatures (no response text) and flagged accounts."""
    from sharing import export_bundle

    result = export_bundle(index, consortium, sign, out, select=select, accounts=accounts,
                           valid_days=valid_days, style=style,
                           style_rows=style_rows).to_dict()
    if as_json:
        echo_json(result)
        return
    counts = result["counts"]
    click.echo(f"bundle      {out} ({result['bytes']} bytes, id {result['bundle_id']})\n"
               f"holds       {counts['signatures']} keyed signatures, {counts['accounts']} "
               f"flagged accounts, {result['style_rows']} style rows\n"
               f"valid       {result['valid_from']} to {result['valid_until']}, consortium key "
               f"{result['consortium_key_id']}")


def _trust_options(f):
    f = click.option("--consortium-key", "consortium", type=FilePath, multiple=True,
                     help="Consortium key file(s) you hold: refuse a bundle keyed with none "
                          "of them (repeatable).")(f)
    return click.option("--trust", required=True, type=DirPath,
                        help="Trust directory: your partners' .pub files.")(f)


@share_group.command("verify", context_settings=CONTEXT)
@click.argument("bundle", type=FilePath)
@_trust_options
@json_option("Print the manifest summary as one JSON object.")
def verify(bundle: Path, trust: Path, consortium: tuple[Path, ...], as_json: bool) -> None:
    """Check BUNDLE: trusted signer, signature, every part's checksum, validity period, schema
    and consortium key; exit 1 naming the reason otherwise."""
    from sharing import verify_bundle

    summary = verify_bundle(bundle, trust, consortium_keys=consortium).summary()
    if as_json:
        echo_json({"ok": True, **summary})
        return
    _echo_summary(summary)


@share_group.command("import", context_settings=CONTEXT)
@click.argument("bundle", type=FilePath)
@_trust_options
@click.option("--into", required=True, type=DirPath,
              help="Partner-signals directory to store the verified bundle in.")
@json_option("Print one JSON object (the manifest summary, into, imported).")
def import_(bundle: Path, trust: Path, consortium: tuple[Path, ...], into: Path,
            as_json: bool) -> None:
    """Verify BUNDLE, then store it under --into all or nothing (again: no change)."""
    from sharing import import_bundle

    result = import_bundle(bundle, trust, into, consortium_keys=consortium).to_dict()
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
               f"{counts.get('accounts', 0)} flagged accounts\n"
               f"valid       {s['valid_from']} to {s['valid_until']}, consortium key "
               f"{s['consortium_key_id']}")
