"""`govkit policy decide`: a policy setting that weakens a verdict, chained with who set it and why."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import BLOCKING_VALUES
from ._common import db_option, open_log, settings_for
from ._root import cli

DECIDABLE = ("policy.fairness.blocking", "policy.quality.blocking")


@cli.group()
def policy() -> None:
    """Policy decisions: settings that change whether the model's own findings block."""


@policy.command()
@click.argument("setting", type=click.Choice(DECIDABLE))
@click.argument("value", type=click.Choice(BLOCKING_VALUES))
@click.option("--by", "decided_by", required=True, help="Who decides: a name and role (it is chained as given).")
@click.option("--reason", required=True, help="Why (redacted before it is chained).")
@db_option
@click.pass_context
def decide(ctx: click.Context, setting: str, value: str, decided_by: str, reason: str, db: Path | None) -> None:
    """Chain a decision on a policy setting. For a high or critical model, govkit.toml's
    `blocking = "never"` for fairness or decision quality holds only once such a decision is
    chained; the gate and page one of the board report name who decided, when and why.

    Example: govkit policy decide policy.fairness.blocking never --by "J. Roe, CRO" --reason "pilot, no customer impact"
    """
    settings = settings_for(ctx, required=db is None)
    section, key = setting.rsplit(".", 1)
    configured = getattr(getattr(settings.policy, section.split(".")[1]), key) if settings else None
    with open_log(ctx, db) as log:
        record = log.append("config_change", model_id=settings.model.id if settings else None, details={
            "action": "policy_decision", "setting": setting, "value": value, "by": log.redact(decided_by),
            "reason": log.redact(reason), "configured": configured})
    click.echo(f"Chained the decision {setting} = {value!r} by {decided_by} (record {record.record_id}).")
    if configured is not None and configured != value:
        click.echo(f"note: govkit.toml sets {setting} = {configured!r}; the gate follows govkit.toml, and holds a "
                   f"weaker setting only where a decision for it is chained", err=True)
