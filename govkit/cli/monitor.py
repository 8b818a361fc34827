"""`govkit monitor run|status|fleet`: ongoing monitoring of production calls, from the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import db_option, echo_json, json_option, open_log, settings_for
from ._root import cli


@cli.group()
def monitor() -> None:
    """Drift and breaches of production calls against the reference, by the [monitoring] plan."""


@monitor.command("run")
@click.option("--as-of", help="Judge the windows closed by this time (default: now), e.g. 2026-12-07T00:00:00Z.")
@db_option
@json_option
@click.pass_context
def monitor_run(ctx: click.Context, as_of: str | None, db: Path | None, as_json: bool) -> None:
    """Judge and chain every closed window not yet chained; exit 1 while a breach is open.

    Idempotent per window: run it from cron as often as you like.

    Example: govkit monitor run
    """
    from ..monitoring import run_monitoring
    from ..timestamps import normalise_ts

    settings = settings_for(ctx, required=True)
    stamp = normalise_ts(as_of, parameter="as-of") if as_of else None
    with open_log(ctx, db) as log:
        ran = run_monitoring(log, settings, as_of=stamp)
    if as_json:
        echo_json({"status": ran.status, "message": ran.message, "plan_digest": ran.plan_digest,
                   "reference": ran.reference.__dict__ if ran.reference else None, "already_chained": ran.already,
                   "windows": [{k: w[k] for k in ("record_id", "window", "status", "breaches", "signals")}
                               for w in ran.windows],
                   "opened": ran.opened, "open_breaches": [_breach(r) for r in ran.still_open]})
    else:
        if ran.reference is not None:
            click.echo(f"Reference: {ran.reference.key} ({ran.reference.how})")
        for window in ran.windows:
            line = f"  {window['window']['start']}  {window['status']:<10} {window['signals']['volume']['calls']:>8} calls"
            whys = "; ".join(b["why"] for b in window["breaches"]) or window.get("reason", "")
            click.echo(line + (f"  {whys}" if whys else ""))
        click.echo(ran.message)
        _show_open(ran.still_open)
    if ran.status in ("breach", "no reference"):
        ctx.exit(1)


@monitor.command("status")
@db_option
@json_option
@click.pass_context
def monitor_status(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """The newest windows, their signals and the open breaches; exit 1 while one is open or nothing is monitored.

    Example: govkit monitor status --format json
    """
    from ..monitoring import open_breaches
    from ..monitoring.status import status_table

    settings = settings_for(ctx, required=True)
    with open_log(ctx, db) as log:
        windows = list(log.query(event_type="monitor_window"))
        still = open_breaches(log)
    plan = settings.monitoring_plan()
    verdict = "breach" if still else ("not monitored" if not windows else "ok")
    if as_json:
        echo_json({"status": verdict, "plan_digest": plan.digest(), "windows": len(windows),
                   "newest": [{"record_id": w.record_id, **{k: (w.details or {}).get(k) for k in
                              ("window", "status", "breaches")}} for w in windows[-10:]],
                   "open_breaches": [_breach(r) for r in still]})
    else:
        if not windows:
            click.echo("No window monitored yet: govkit monitor run (cron it, e.g. hourly).")
        else:
            status_table([w.details or {} for w in windows[-14:]])
        _show_open(still)
        click.echo(f"Monitoring: {verdict.upper()}")
    if verdict != "ok":
        ctx.exit(1)


@monitor.command("fleet")
@click.argument("segments", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--start", required=True, help="The first day (YYYY-MM-DD).")
@click.option("--end", required=True, help="The day after the last (YYYY-MM-DD).")
@json_option
@click.pass_context
def monitor_fleet(ctx: click.Context, segments: Path, start: str, end: str, as_json: bool) -> None:
    """Every device's windows from the fleet's synced Parquet segments (DuckDB), judged against
    each device's own reference (the plan's named period) and the fleet's; exit 1 when one breaches.

    Example: govkit monitor fleet /srv/mlflow/artifacts --start 2026-11-01 --end 2026-12-01
    """
    from ..monitoring.fleet import fleet_windows
    from ..timestamps import input_date

    settings = settings_for(ctx, required=True)
    first, last = input_date(start, parameter="start"), input_date(end, parameter="end")
    found = fleet_windows(segments, settings.monitoring_plan(), start=str(first), end=str(last))
    if as_json:
        echo_json(found)
    else:
        click.echo(f"{found['devices']} device(s), {found['records']:,} production calls in {found['seconds']:.2f} s "
                   f"(DuckDB over {found['files']} segment file(s))")
        for device, row in sorted(found["by_device"].items()):
            whys = "; ".join(row["breaches"][:3])
            click.echo(f"  {device:<24} {row['windows']:>3} windows  {row['status']:<12} {whys}")
    if found["breaching"]:
        ctx.exit(1)


def _breach(record: Any) -> dict[str, Any]:
    from ..monitoring.run import breach_details

    return {"incident": record.record_id, **breach_details(record)}


def _show_open(still: list[Any]) -> None:
    for record in still:
        b = _breach(record)
        click.echo(f"OPEN {b['incident']}: {b['why']} (window {b['window']}); {b['owner']} by {b['due']}; "
                   f"meanwhile: {b['contingency']}")
    if still:
        click.echo("Resolve each once answered: govkit audit incident resolve ID --note WHAT-WAS-DONE")
