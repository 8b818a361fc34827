"""`govkit inventory ...`: the model inventory record (E-23 App. 1) and its risk rating (E-23 P2.2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import click

from ..inventory import EXTENDED_FIELDS, FACTORS, LEVELS, MINIMUM_FIELDS, read_answers, record_rating
from ..inventory import rate as rate_worksheet
from ..inventory import validate as check
from ._common import ask, echo_json, json_option, settings_for
from ._root import cli


@cli.group()
def inventory() -> None:
    """The model inventory record in govkit.toml: show it, validate it, rate its risk."""


@inventory.command()
@json_option
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """The inventory record, field by field, with what E-23 Appendix 1 requires of each.

    Example: govkit inventory show --format json
    """
    settings = settings_for(ctx, required=True)
    record = dataclasses.asdict(settings.model)
    if as_json:
        echo_json(record)
        return
    for name, value in record.items():
        need = "minimum" if name in MINIMUM_FIELDS else "extended" if name in EXTENDED_FIELDS else ""
        text = ", ".join(value) if isinstance(value, (list, tuple)) else value
        click.echo(f"{name:<18} {need:<9} {text if text else '-'}")


@inventory.command()
@json_option
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="Judge review dates as of this day.")
@click.pass_context
def validate(ctx: click.Context, as_json: bool, today: dt.datetime | None) -> None:
    """Check the record against E-23 Appendix 1 (exit 1 on a blocking finding).

    Minimum fields for every model; the extended fields unless the tier is negligible; dates that
    parse; a review that is not overdue; a reviewer independent of the developer and owner.

    Example: govkit inventory validate --format json
    """
    settings = settings_for(ctx, required=True)
    findings = check(settings.model, today=today.date() if today else None)
    blocking = [f for f in findings if f.severity == "blocking"]
    if as_json:
        echo_json({"model_id": settings.model.id, "risk_rating": settings.model.risk_rating,
                   "passed": not blocking, "findings": [f.to_dict() for f in findings]})
    else:
        for finding in findings:
            click.echo(f"[{finding.severity}] {finding.field}: {finding.message} ({finding.clause})")
        click.echo(f"{settings.path}: {len(blocking)} blocking, {len(findings) - len(blocking)} warning(s)"
                   if findings else f"{settings.path}: the inventory record is complete")
    if blocking:
        ctx.exit(1)


@inventory.command()
@click.option("--answers", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Worksheet answers (TOML or JSON): one table per factor with 'level' and 'note'.")
@click.option("--dry-run", is_flag=True, help="Show the tier; change nothing.")
@json_option
@click.pass_context
def rate(ctx: click.Context, answers: Path | None, dry_run: bool, as_json: bool) -> None:
    """Walk the risk-rating worksheet (E-23 P2.2) to a tier; store it with its reasoning.

    Factors: financial/operational impact, customer impact, autonomy, complexity, data
    reliability, regulatory exposure; each low | moderate | high | very-high with a note. The tier
    goes into govkit.toml, the worksheet and reasoning into the audit chain and MLflow.

    Example: govkit inventory rate --answers rating.toml
    """
    settings = settings_for(ctx, required=True)
    worksheet = read_answers(answers) if answers else _ask()
    rating = rate_worksheet(worksheet)
    if as_json:
        echo_json(rating.to_dict())
    else:
        for line in rating.reasoning:
            click.echo(f"  {line}")
        click.echo(f"Tier: {rating.tier} (score {rating.score:.2f}; was {settings.model.risk_rating})")
    if dry_run:
        return
    recorded = record_rating(settings, rating)
    if not as_json:
        click.echo(f"Recorded as {recorded.record_id}; {settings.path} now says risk_rating = \"{rating.tier}\"")


def _ask() -> dict[str, Any]:
    answers = {}
    for factor, (kind, _weight, question, levels) in FACTORS.items():
        click.echo(f"\n{question} ({kind}):")
        for level, meaning in levels.items():
            click.echo(f"  {level:<10} {meaning}")
        level = ask("Level", type=click.Choice(list(LEVELS)), flag="--answers FILE")
        note = ask("Why (evidence, figures)", default="", show_default=False, flag="--answers FILE")
        answers[factor] = {"level": level, "note": note}
    return answers
