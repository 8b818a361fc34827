"""`govkit check`: the pre-deployment gate, clause by clause (exit 1 on a blocking finding)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import InputError
from ..outputs import write_output
from ._common import db_option, refuse_evidence, settings_for
from ._root import cli

if TYPE_CHECKING:
    from ..checks import Registry
    from ..config import Settings
    from ..gate import GateResult


@cli.command()
@click.option("--select", help="Checks to run: IDs, ID prefixes or principles, comma-separated "
                               "(e.g. GOV,ETH-002,Data).")
@click.option("--ignore", help="Checks to leave out, same forms as --select.")
@click.option("--checks-dir", "checks_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A folder of your own checks (same decorator; a POLICY dict overrides policy values).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit", "sarif"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), callback=refuse_evidence,
              help="File (default: stdout).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even with blocking findings (report only).")
@click.option("--no-record", is_flag=True, help="Write nothing: no check_run event, no MLflow run (an auditor's "
                                                "copy, a read-only store).")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Seconds each check may take; a check still running then is an ERROR.")
@db_option
@click.option("--explain", "explain_id", help="Show one check's documentation and the clauses it answers.")
@click.option("--list", "list_checks", is_flag=True, help="List the checks and exit.")
@click.pass_context
def check(ctx: click.Context, select: str | None, ignore: str | None, checks_dirs: tuple[Path, ...], fmt: str,
          output: Path | None, exit_zero: bool, no_record: bool, time_limit_s: float, db: Path | None,
          explain_id: str | None, list_checks: bool) -> None:
    """Run the pre-deployment checks against the evidence in the audit log, lineage and govkit.toml.

    Exit 0 when no blocking finding, 1 otherwise (unless --exit-zero), 2 on usage errors, 3 when
    the audit store is missing or not the one govkit.toml names. Each control is PASS, FAIL (or
    WARN), NO EVIDENCE (never a pass; a blocking control without evidence blocks), ERROR or SKIP
    (does not apply). The run is chained as a check_run event in the existing store (never a new
    one) and mirrored to MLflow, unless --no-record.

    A --checks-dir folder is code that runs with the gate's full privileges: review it like any
    code you run. The sha256 of each of its files, and the policy values it overrides, are
    printed and chained with the run.

    Example: govkit check --format sarif -o govkit.sarif
    """
    from ..gate import load_registry, run_gate

    registry = load_registry(checks_dirs)
    if explain_id:
        _explain(registry, explain_id)
        return
    specs = registry.select(_split(select), _split(ignore))
    if list_checks:
        for spec in specs:
            click.echo(f"{spec.id}  {spec.severity.value:<15}  {spec.title}")
        return
    settings = settings_for(ctx, required=True)
    assert settings is not None
    for path, digest in registry.user_files.items():
        click.echo(f"user checks: {path} {digest}", err=True)
    for key, value in registry.policy.items():
        click.echo(f"policy override: {key} = {value!r}", err=True)
    gate = run_gate(settings, select=_split(select), ignore=_split(ignore), registry=registry, db=db,
                    record=not no_record, time_limit_s=time_limit_s)
    _render(gate, fmt, output, settings)
    if not gate.passed and not exit_zero:
        ctx.exit(1)


def _render(gate: GateResult, fmt: str, output: Path | None, settings: Settings) -> None:
    from .._version import __version__
    from ..checks._formats import as_junit, as_sarif, as_table

    results = list(gate.results)
    cited = f"Record {gate.record_id}." if gate.record_id else "Not recorded (--no-record)."
    if fmt == "json":
        text = json.dumps(gate.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    elif fmt == "junit":
        text = as_junit(results)
    elif fmt == "sarif":
        text = as_sarif(results, list(gate.specs), __version__, settings.path.name if settings.path else "govkit.toml")
    else:
        terminal = output is None and sys.stdout.isatty()
        width = shutil.get_terminal_size((140, 24)).columns if terminal else None
        text = as_table(results, width=width, colour=terminal and "NO_COLOR" not in os.environ) + cited + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        click.echo(f"Wrote {output}", err=True)
    if fmt in ("junit", "sarif") or output is not None:  # the reason for the exit code, where the report is not a table
        blocking = gate.blocking
        click.echo(f"govkit check: {gate.summary['checks']} checks, {len(blocking)} blocking"
                   + (f" ({', '.join(blocking)})" if blocking else "") + f"; {cited}", err=True)


def _explain(registry: Registry, check_id: str) -> None:
    from ..gate import crosswalk

    spec = registry.specs.get(check_id.upper())
    if spec is None:
        raise InputError(f"no check '{check_id}'", parameter="explain_id")
    rows = [r for r in crosswalk()["rows"] if r["crosswalk_id"] == spec.crosswalk]
    click.echo(f"{spec.id}  {spec.title}")
    click.echo(f"principle: {spec.principle}; severity: {spec.severity.value}; source: {spec.source}")
    click.echo("")
    click.echo(spec.doc)
    click.echo("")
    click.echo("References: " + "; ".join(f"{k} {v}" for k, v in spec.references.items()))
    for row in rows:
        click.echo(f"Crosswalk #{row['n']}: {row['requirement']} ({row['clauses']}); evidence: {row['evidence']}")


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []
