"""`govkit check`: the pre-deployment gate, clause by clause (exit 1 on a blocking finding)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import InputError
from ._common import db_option, settings_for
from ._root import cli


def load_registry(checks_dirs: tuple[Path, ...]):
    from .._resources import builtin_dir
    from ..checks import Registry, load

    registry = Registry()
    load(registry, builtin_dir("checks"), builtin=True)
    for folder in checks_dirs:
        load(registry, folder, builtin=False)
    return registry


def crosswalk() -> dict:
    from importlib import resources

    return json.loads((resources.files("govkit.checks") / "crosswalk.json").read_text(encoding="utf-8"))


@cli.command()
@click.option("--select", help="Checks to run: IDs, ID prefixes or principles, comma-separated "
                               "(e.g. GOV,ETH-002,Data).")
@click.option("--ignore", help="Checks to leave out, same forms as --select.")
@click.option("--checks-dir", "checks_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A folder of your own checks (same decorator; a POLICY dict overrides policy values).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit", "sarif"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
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
    if db is not None:  # the evidence of another store (an auditor's copy), judged by this project's config
        import dataclasses

        settings = dataclasses.replace(settings, audit=dataclasses.replace(settings.audit, db=db))
    from .. import __version__
    from ..checks import Context, run_checks
    from ..checks._formats import as_json, as_junit, as_sarif, as_table, summary

    from ..audit import AuditLog

    provenance = {"user_check_files": registry.user_files, "policy_overrides": registry.policy}
    for path, digest in registry.user_files.items():
        click.echo(f"user checks: {path} {digest}", err=True)
    for key, value in registry.policy.items():
        click.echo(f"policy override: {key} = {value!r}", err=True)
    # The store the run goes into is opened first: a missing or other store fails at once (exit 3),
    # and no check writes anything while it runs.
    writer = None if no_record else AuditLog.open(settings=settings)
    try:
        context = Context(settings, policy=registry.policy)
        try:
            results = run_checks(specs, context, time_limit_s=time_limit_s)
        finally:
            context.close()
        record = _record(writer, settings, results, summary(results), provenance) if writer else None
    finally:
        if writer is not None:
            writer.close()
    cited = f"Record {record.record_id}." if record else "Not recorded (--no-record)."
    if fmt == "json":
        text = as_json(results, {"record_id": record.record_id if record else None, "model_id": settings.model.id,
                                 "risk_rating": settings.model.risk_rating, **provenance})
    elif fmt == "junit":
        text = as_junit(results)
    elif fmt == "sarif":
        text = as_sarif(results, specs, __version__, settings.path.name if settings.path else "govkit.toml")
    else:
        import shutil
        import sys

        terminal = output is None and sys.stdout.isatty()
        width = shutil.get_terminal_size((140, 24)).columns if terminal else None
        text = as_table(results, width=width, colour=terminal and "NO_COLOR" not in os.environ) + cited + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {output}", err=True)
    totals = summary(results)
    if fmt in ("junit", "sarif") or output is not None:  # the reason for the exit code, where the report is not a table
        blocking = [r.spec.id for r in results if r.blocking]
        click.echo(f"govkit check: {totals['checks']} checks, {len(blocking)} blocking"
                   + (f" ({', '.join(blocking)})" if blocking else "") + f"; {cited}", err=True)
    if not totals["passed"] and not exit_zero:
        ctx.exit(1)


def _record(log, settings, results, totals, provenance):
    from ..checks import Status
    from ..tracking import Tracker

    scores = {Status.PASS: 1.0, Status.WARN: 0.5, Status.FAIL: 0.0, Status.NO_EVIDENCE: 0.0, Status.ERROR: -1.0}
    tracker = Tracker.from_settings(settings, log.path)
    with tracker.run("check: pre-deployment gate", {"govkit.event": "check_run",
                                                    "govkit.passed": str(totals["passed"])}) as run:
        run.log_metrics({r.spec.id: scores[r.status] for r in results if r.status in scores})
        run.log_dict({"summary": totals, "results": [r.to_dict() for r in results], **provenance},
                     "check_results.json")
        record = log.append("check_run", model_id=settings.model.id, mlflow_run_id=run.id,
                            risk_rating=settings.model.risk_rating, details={
                                "summary": totals, **provenance,
                                "results": {r.spec.id: {"status": r.status.value, "blocking": r.blocking,
                                                        "message": log.redact(r.message[:300])} for r in results}})
        run.link(record)
    return record


def _explain(registry, check_id: str) -> None:
    spec = registry.specs.get(check_id.upper())
    if spec is None:
        raise InputError(f"--explain: no check '{check_id}'")
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
