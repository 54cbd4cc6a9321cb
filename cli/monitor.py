"""``fingerprint monitor``: the extraction monitor (issue 15): fit the benign baseline, scan a
request log for accounts that harvest the model, serve decisions online, export flagged
accounts to the index."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from cli.options import (CONTEXT, echo_json, json_option, progress_bar, progress_option,
                         request_field_options)
from fingerprint.records import FieldMap

TOP_ACCOUNTS = 10


@click.group("monitor", context_settings=CONTEXT)
def monitor_group() -> None:
    """Find accounts that systematically extract the model through its API."""


@monitor_group.group("baseline", context_settings=CONTEXT)
def baseline_group() -> None:
    """The benign baseline: what ordinary accounts' traffic looks like."""


@baseline_group.command("build", context_settings=CONTEXT)
@click.argument("benign_log")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Baseline directory to write.")
@click.option("--force", is_flag=True, help="Replace a baseline already in --out.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON object of monitor settings (alpha, checkpoints, null_accounts, ...; "
                   "see the README) [default: the defaults].")
@request_field_options
@json_option("Print one JSON object (out, counts, checkpoints, skipped, seconds, config).")
def baseline_build(benign_log: str, out: Path, force: bool, config_file: Path | None,
                   fields: FieldMap, as_json: bool) -> None:
    """Fit the benign baseline on BENIGN_LOG (a request log of ordinary accounts' traffic, or
    '-') and write it to --out."""
    from monitor import MonitorConfig, build_baseline

    config = MonitorConfig.from_file(config_file) if config_file else MonitorConfig()
    started = time.perf_counter()
    baseline, stats = build_baseline(benign_log, out, config, fields, force=force)
    seconds = time.perf_counter() - started
    checkpoints = [{"requests": size, "tested": ok, "signals": list(baseline.signals_at(k))}
                   for k, (size, ok) in enumerate(zip(baseline.config.checkpoint_sizes,
                                                      baseline.tested))]
    if as_json:
        echo_json({"out": str(out), "counts": baseline.counts, "checkpoints": checkpoints,
                   **{k: v for k, v in stats.to_dict().items() if k != "requests"},
                   "seconds": round(seconds, 3), "config": baseline.config.to_dict()})
        return
    counts = baseline.counts
    click.echo(f"baseline    {out}, fitted in {seconds:.1f} s")
    click.echo(f"benign      {counts['requests']} requests from {counts['accounts']} accounts "
               f"(mean from {counts['mean_accounts']}, null accounts simulated from "
               f"{counts['null_accounts_from']} holding {counts['null_requests_from']} "
               f"requests)")
    tested = [c["requests"] for c in checkpoints if c["tested"]]
    untested = [c["requests"] for c in checkpoints if not c["tested"]]
    click.echo(f"tested at   {_sizes(tested) or 'no checkpoint'} requests"
               + (f"; not at {_sizes(untested)} (too little benign traffic to calibrate)"
                  if untested else ""))
    for c in checkpoints:
        if c["tested"] and "shift" not in c["signals"]:
            click.echo(f"            at {c['requests']}: {' and '.join(c['signals'])} only "
                       f"(shift's null, from half of the accounts, is too small)")
    _echo_skipped(stats.to_dict())


@monitor_group.command("scan", context_settings=CONTEXT)
@click.argument("log")
@click.option("--baseline", "baseline_dir", required=True, type=click.Path(path_type=Path),
              help="Baseline directory ('fingerprint monitor baseline build'), or a benign "
                   "request log to fit one from first (default settings, not saved: about "
                   "10 s per 10,000 requests; build it once to scan many logs).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Risk file to write: one JSON line per account, highest risk first.")
@click.option("--reorder-seconds", type=click.FloatRange(0), default=300.0, show_default=True,
              help="How far out of time order the log's lines may be: a request is scored "
                   "once a request this many seconds later has been read; one arriving later "
                   "still is scored at once and counted as late.")
@click.option("--report", "report", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write an HTML page for analysts and appeal reviewers (.html): each "
                   "flagged account's timeline, signals, templates and example prompts. Reads "
                   "the log a second time, so not with '-'.")
@request_field_options
@json_option("Print one JSON object (accounts, flagged, stats, baseline, and every account's "
             "row).")
@progress_option
def scan(log: str, baseline_dir: Path, out: Path, reorder_seconds: float, report: Path | None,
         fields: FieldMap, as_json: bool) -> None:
    """Score every account of the request LOG (or '-') against the benign baseline."""
    from monitor import scan_log

    with progress_bar((log,), "scanning", unit="line") as progress:
        result = scan_log(log, baseline_dir, out, fields, reorder_seconds=reorder_seconds,
                          progress=progress, report=report)
    if as_json:
        echo_json({**result.to_dict(), **({"report": str(report)} if report else {})})
        return
    stats = result.stats
    fitted = result.baseline.get("fitted_from")
    if fitted:
        skipped = sum(fitted["skipped"].values())
        click.echo(f"baseline    fitted from {fitted['log']}: {fitted['requests']} requests"
                   + (f", {skipped} lines skipped ({', '.join(fitted['skipped'])})"
                      if skipped else ""))
    click.echo(f"scanned     {stats['requests']} requests from {stats['accounts']} accounts "
               f"into {out} ({stats['late']} late, {stats['early']} scored early)")
    tested = result.baseline["tested_checkpoints"]
    click.echo(f"flagged     {result.flagged} accounts (alpha {result.baseline['alpha']}; "
               f"tested at {_sizes(tested) or 'no checkpoint'} requests)")
    _echo_skipped(stats)
    if report is not None:
        click.echo(f"report      {report}")
    top = [row for row in result.rows[:TOP_ACCOUNTS] if row.risk > 0]
    if not top:
        click.echo("top accounts by risk: none (no account showed any evidence)")
    else:
        click.echo("top accounts by risk:")
        click.echo(f"  {'account':<24} {'risk':>5} {'flagged':>7} {'p-value':>9} "
                   f"{'requests':>8}  strongest signal")
        for row in top:
            click.echo(f"  {row.account:<24} {row.risk:>5.2f} {'yes' if row.flagged else 'no':>7} "
                       f"{_p(row.p_value):>9} {row.requests:>8}  {_strongest(row.reasons)}")


def _sizes(sizes: list[int]) -> str:
    return ", ".join(str(s) for s in sizes)


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _strongest(reasons: Any) -> str:
    """The signal with the smallest p-value, its figure beside the benign median."""
    if not reasons:
        return ""
    best = min(reasons, key=lambda r: r["p_value"])
    return (f"{best['signal']} {best['value']:.3g} (benign median {best['benign_median']:.3g}, "
            f"p {best['p_value']:.2g}, at {best['checkpoint']} requests)")


def _echo_skipped(stats: dict[str, Any]) -> None:
    skipped = stats.get("skipped") or {}
    if not skipped:
        click.echo("skipped     no lines")
        return
    lines = stats.get("skipped_lines") or {}
    parts = [f"{reason}: {count} (lines {', '.join(str(n) for n in lines.get(reason, []))}"
             f"{', ...' if count > len(lines.get(reason, [])) else ''})"
             for reason, count in sorted(skipped.items())]
    click.echo(f"skipped     {sum(skipped.values())} lines: " + "; ".join(parts))


SHOWN_ACCOUNTS = 20


@monitor_group.command("export-flagged", context_settings=CONTEXT)
@click.argument("risk_file")
@click.option("--index", "index_path", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Fingerprint index whose served responses to mark (its metadata's account).")
@click.option("--min-risk", type=click.FloatRange(0, 1), default=None,
              help="Mark every account whose risk is at least this, flagged or not [default: "
                   "the flagged accounts only].")
@click.option("--label", default="monitor-flagged", show_default=True,
              help="The mark's name in the index (letters, digits, '.', '_', '-').")
@json_option("Print one JSON object (label, selected, in_index, not_in_index, rows_marked, "
             "rows_added, committed, and every selected account's rows).")
def export_flagged_command(risk_file: str, index_path: Path, min_risk: float | None, label: str,
                           as_json: bool) -> None:
    """Mark in the index the served responses of the accounts RISK_FILE (from 'monitor scan')
    flags, so attribution and sharing can select them; a rerun marks nothing twice."""
    from monitor import export_flagged

    result = export_flagged(risk_file, index_path, min_risk=min_risk, label=label)
    data = result.to_dict()
    if as_json:
        echo_json(data)
        return
    chosen = "flagged" if min_risk is None else f"at risk >= {min_risk:g}"
    click.echo(f"selected    {data['selected']} accounts {chosen} in {risk_file}")
    click.echo(f"marked      {data['rows_marked']} responses of {data['in_index']} accounts in "
               f"{index_path} as '{label}' ({data['rows_added']} of them new"
               f"{'' if data['committed'] else '; nothing to add, index unchanged'})")
    missing = [a["account"] for a in data["accounts"] if not a["in_index"]]
    if missing:
        more = ", ..." if len(missing) > SHOWN_ACCOUNTS else ""
        click.echo(f"not found   {len(missing)} accounts have no served response in the index: "
                   + ", ".join(missing[:SHOWN_ACCOUNTS]) + more)
    found = [a for a in data["accounts"] if a["in_index"]]
    if found:
        click.echo(f"  {'account':<24} {'risk':>5} {'responses':>9} {'new':>5}")
        for a in found[:SHOWN_ACCOUNTS]:
            click.echo(f"  {a['account']:<24} {a['risk']:>5.2f} {a['rows']:>9} {a['added']:>5}")
        if len(found) > SHOWN_ACCOUNTS:
            click.echo(f"  ... {len(found) - SHOWN_ACCOUNTS} more (--json lists every one)")


# -- fingerprint monitor serve (the online monitor) -----------------------------------------------

@monitor_group.command("serve", context_settings=CONTEXT)
@click.option("--baseline", "baseline_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Baseline directory ('fingerprint monitor baseline build').")
@click.option("--state", "state_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="State directory: every account's detector state and limiter, kept across "
                   "restarts (made if missing; one made with another baseline is refused).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8100, show_default=True,
              help="Port (0: any free port; the URL is printed).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON object of limit policy fields (rate_per_second, burst, throttle_risk, "
                   "block_risk, floor, block_seconds) [default: the defaults].")
@click.option("--flush-every", type=click.IntRange(1), default=1, show_default=True,
              help="Write the state every N requests, before answering the Nth (1: nothing "
                   "answered is lost if the process is killed).")
@click.option("--flush-seconds", type=click.FloatRange(0, min_open=True), default=1.0,
              show_default=True, help="... and at most this long after an unwritten request.")
@click.option("--fsync/--no-fsync", default=False, show_default=True,
              help="Also fdatasync the state at every write (survives a power cut; costs a disk "
                   "sync per write).")
@click.option("--cache-accounts", type=click.IntRange(1), default=1_000, show_default=True,
              help="Accounts whose state is held decoded in memory (least recently seen leave "
                   "first).")
@click.option("--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True,
              help="Largest request body accepted (larger: 413).")
@click.option("--groups", "groups_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A risk file from 'monitor scan --out': each coordinated group's members "
                   "also share one allowance, at the group's risk.")
def serve_command(baseline_dir: Path, state_dir: Path, host: str, port: int,
                  policy_file: Path | None, flush_every: int, flush_seconds: float, fsync: bool,
                  cache_accounts: int, max_body_bytes: int, groups_file: Path | None) -> None:
    """Serve the online monitor: POST /v1/check answers allow / throttle / block with the
    account's risk; GET /v1/health. Runs until interrupted (Ctrl-C, SIGTERM), then writes the
    state."""
    from monitor import GroupLimits, LimitPolicy, load_policy, serve

    policy = load_policy(policy_file) if policy_file else LimitPolicy()
    groups = GroupLimits.from_risk_file(groups_file) if groups_file else None

    def ready(url: str) -> None:
        click.echo(f"monitor serving at {url} (POST {url}/check, GET {url}/health; Ctrl-C or "
                   f"SIGTERM stops)")

    stats = serve(baseline_dir, state_dir, policy, host=host, port=port, ready=ready,
                  monitor_options={"flush_every": flush_every, "flush_seconds": flush_seconds,
                                   "fsync": fsync, "cache_accounts": cache_accounts,
                                   "groups": groups},
                  max_body_bytes=max_body_bytes)
    click.echo(f"stopped after {stats['requests']} requests ({stats['allow']} allowed, "
               f"{stats['throttle']} throttled, {stats['block']} blocked); state written to "
               f"{state_dir}")
