"""`govkit report ...`: the board report from the evidence, and its verification against the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import db_option, echo_json, json_option, open_log, refuse_evidence, settings_for
from ._root import cli


@cli.group()
def report() -> None:
    """Reports rendered from an evidence snapshot, each with a signed manifest that `report verify` checks."""


def _report_options(formats: tuple[str, ...]) -> Any:
    """The options every report takes: the period, the as-of time, formats, output, templates."""
    options: list[Any] = [
        click.option("--period", help="A quarter (2026-Q4), a month (2026-11) or a year (2026)."),
        click.option("--from", "start", help="Or the first day (YYYY-MM-DD), with --to."),
        click.option("--to", "end", help="The last day (YYYY-MM-DD), included."),
        click.option("--as-of", help="The evidence as of this time (default: the period's end, or now)."),
        click.option("--format", "formats", multiple=True, type=click.Choice(list(formats)),
                     help=f"Repeatable (default: {formats[0]})."),
        click.option("--output", "-o", type=click.Path(path_type=Path), callback=refuse_evidence,
                     help="A file for one format, else a folder (default: reports/)."),
        click.option("--templates-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Your own templates: they replace ours by name, or extend them block by block "
                          "({% extends \"govkit/board.html.j2\" %})."),
        click.option("--no-record", is_flag=True, help="Write the files only: no report event, no MLflow run."),
        db_option,
        click.pass_context,
    ]

    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


@report.command()
@_report_options(("html", "pdf", "md", "json"))
@click.option("--fleet", is_flag=True, help="Add every device's state from the central MLflow ([fleet] in "
                                            "govkit.toml): devices not synced, gaps, forks, late acknowledgements.")
def board(ctx: click.Context, fleet: bool, **options: Any) -> None:
    """The board-level AI model-risk report: EDGE scorecard, regulatory map, KPIs, findings, sign-off.

    Every figure cites its records, checks and runs; page one says in plain words when the log is
    empty, does not verify, has no trusted key, or a blocking control has no evidence. With
    --fleet, it also says which devices have not synced, and every gap, fork, rollback and late
    acknowledgement the central store shows.

    Example: govkit report board --period 2026-Q4 --fleet --format html --format pdf -o reports/
    """
    _make(ctx, "board", fleet=fleet, **options)


@report.command()
@_report_options(("html", "pdf", "md", "json"))
def engineer(ctx: click.Context, **options: Any) -> None:
    """The engineer report: every control, metric, group interval and record range in full.

    Example: govkit report engineer --period 2026-Q4 --format html
    """
    _make(ctx, "engineer", **options)


@report.command("model-card")
@_report_options(("md", "html"))
def model_card(ctx: click.Context, **options: Any) -> None:
    """The model card: Hugging Face layout with YAML metadata, plus metrics with slice and interval,
    version and date, limitations, and risks with their mitigations (Model Card Toolkit fields).

    Example: govkit report model-card --period 2026-Q4 -o MODEL_CARD.md
    """
    _make(ctx, "model-card", **options)


def _steps() -> Any:
    """Each step of a long report on stderr, with the seconds the last one took (large logs take a while)."""
    import time

    last: dict[str, Any] = {"name": "", "at": time.perf_counter()}

    def step(name: str) -> None:
        now = time.perf_counter()
        if last["name"]:
            click.echo(f"  {last['name']}: {now - last['at']:.1f} s", err=True)
        last.update(name=name, at=now)
        if name:
            click.echo(f"{name} ...", err=True)
    return step


def _make(ctx: click.Context, kind: str, *, period: str | None, start: str | None, end: str | None,
          as_of: str | None, formats: tuple[str, ...], output: Path | None, templates_dir: Path | None,
          no_record: bool, db: Path | None, fleet: bool = False) -> None:
    from ..report import make_report, parse_period
    from ..report.board import TEMPLATES
    from ..timestamps import normalise_ts

    settings = settings_for(ctx, required=True)
    chosen = parse_period(period, start=start, end=end)
    default = ("md",) if kind == "model-card" else ("html",)
    assert kind in TEMPLATES
    progress = _steps()
    requested = normalise_ts(as_of, parameter="as_of") if as_of else None
    with open_log(ctx, db) as log:
        made = make_report(kind, log, settings, chosen, as_of=requested,
                           formats=formats or default, templates_dir=templates_dir,
                           output=output or Path("reports"), record=not no_record, progress=progress, fleet=fleet)
    taken = made.manifest["snapshot"]["as_of"]
    if requested and taken != requested:
        click.echo(f"--as-of {requested} is in the future: the evidence is taken as of now, {taken}, and the "
                   f"manifest says so", err=True)
    figures = made.manifest["figures"]
    click.echo(f"Overall: {figures['overall']['colour'].upper()}: {figures['overall']['statement']}")
    for alert in figures["alerts"]:
        click.echo(f"  ! {alert}")
    progress("")  # the last step's time
    for path in made.paths:
        click.echo(f"Wrote {path}")
    click.echo(f"Record {made.record_id}." if made.record_id else "Not recorded (--no-record).")


@report.command("verify")
@click.argument("report_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--templates-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The templates the report was rendered with, if not govkit's own.")
@db_option
@json_option
@click.pass_context
def verify(ctx: click.Context, report_file: Path, templates_dir: Path | None, db: Path | None, as_json: bool) -> None:
    """Rebuild a report from the store and the manifest embedded in it, and compare.

    Exit 0 when every figure matches and the manifest's signature is valid under govkit.toml's
    device key; 1 otherwise, naming each differing figure.

    Example: govkit report verify reports/board-2026-Q4.html
    """
    from ..report import verify_report

    settings = settings_for(ctx, required=True)
    with open_log(ctx, db, read_only=True) as log:
        checked = verify_report(report_file, log, settings, templates_dir=templates_dir)
    if as_json:
        echo_json(checked.to_dict())
    else:
        click.echo(f"{'OK' if checked.ok else 'FAILED'}: {report_file} (signature {checked.signature})")
        for difference in checked.differences[:50]:
            click.echo(f"  {difference}")
        for note in checked.notes:
            click.echo(f"  note: {note}")
    if not checked.ok:
        ctx.exit(1)
