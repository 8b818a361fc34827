"""`govkit finding plan|list` and `govkit limitation add|retire|list`: remediation plans for the
gate's findings and the register of known limitations, chained, for the board report and the
model card."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import db_option, echo_json, json_option, open_log, settings_for
from ._root import cli


@cli.group()
def finding() -> None:
    """Findings: a remediation plan (owner, due date, action) for each control that does not pass."""


@finding.command("plan")
@click.argument("check_id")
@click.option("--owner", required=True, help="Who owns the fix (a person or team; chained as given).")
@click.option("--due", required=True, help="By when (YYYY-MM-DD); the report marks it overdue after.")
@click.option("--action", required=True, help="What will be done (redacted before it is chained).")
@db_option
@click.pass_context
def plan(ctx: click.Context, check_id: str, owner: str, due: str, action: str, db: Path | None) -> None:
    """Chain a remediation plan for a finding; a later plan for the same control replaces it.

    Example: govkit finding plan ETH-003 --owner "credit-ml@bank.example" --due 2027-02-28 --action "retrain without names"
    """
    from ..remediation import plan_remediation

    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        record = plan_remediation(log, check_id, owner=owner, due=due, action=action,
                                  model_id=settings.model.id if settings else None)
    click.echo(f"Chained the plan for {check_id}: {owner}, due {due} (record {record.record_id}).")


@finding.command("list")
@db_option
@json_option
@click.pass_context
def plan_list(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """The standing remediation plans, one per control.

    Example: govkit finding list --format json
    """
    from ..remediation import remediation_plans

    with open_log(ctx, db, read_only=True) as log:
        plans = remediation_plans(list(log.query(event_type="remediation")))
    if as_json:
        echo_json(plans)
        return
    for check_id, item in sorted(plans.items()):
        click.echo(f"{check_id:<8} due {item['due']}  {item['owner']}: {item['action']}")
    click.echo(f"{len(plans)} plan(s)")


@cli.group()
def limitation() -> None:
    """Known limitations of the model, each with the compensating control that makes it acceptable."""


@limitation.command("add")
@click.argument("text")
@click.option("--control", required=True, help="The compensating control (redacted before it is chained).")
@click.option("--owner", required=True, help="Who owns the control (chained as given).")
@db_option
@click.pass_context
def limitation_add(ctx: click.Context, text: str, control: str, owner: str, db: Path | None) -> None:
    """Chain a known limitation and its compensating control.

    Example: govkit limitation add "decides in English only" --control "other languages go to staff" --owner ops
    """
    from ..remediation import add_limitation

    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        record = add_limitation(log, text, control=control, owner=owner,
                                model_id=settings.model.id if settings else None)
    click.echo(f"Chained the limitation (record {record.record_id}).")


@limitation.command("retire")
@click.argument("record_id")
@click.option("--reason", required=True, help="Why it no longer holds (redacted before it is chained).")
@db_option
@click.pass_context
def limitation_retire(ctx: click.Context, record_id: str, reason: str, db: Path | None) -> None:
    """Chain that a limitation no longer holds.

    Example: govkit limitation retire 01J... --reason "fixed in version 1.1"
    """
    from ..remediation import retire_limitation

    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        record = retire_limitation(log, record_id, reason=reason, model_id=settings.model.id if settings else None)
    click.echo(f"Retired {record_id} (record {record.record_id}).")


@limitation.command("list")
@db_option
@json_option
@click.pass_context
def limitation_list(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """The limitations standing, oldest first.

    Example: govkit limitation list
    """
    from ..remediation import limitations

    with open_log(ctx, db, read_only=True) as log:
        standing = limitations(list(log.query(event_type="limitation")))
    if as_json:
        echo_json(standing)
        return
    for item in standing:
        click.echo(f"{item['record_id']}  {item['limitation']} (control: {item['control']}; owner {item['owner']})")
    click.echo(f"{len(standing)} limitation(s)")
