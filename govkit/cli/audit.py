"""`govkit audit ...`: read, verify, export, purge and sign the audit log; record human oversight."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..audit import HUMAN_DECISIONS
from ..audit.checkpoints import parse_public_key
from ..audit.records import EVENT_TYPES
from ..errors import InputError
from ._common import COUNT, confirm, db_option, device_id_value, echo_json, json_option, open_log, refuse_evidence, settings_for
from ._root import cli

since_option = click.option("--since", help="Only records at or after this ISO date/time (UTC).")
until_option = click.option("--until", help="Only records before this ISO date/time (UTC).")
event_option = click.option("--event-type", type=click.Choice(EVENT_TYPES), help="Only this event type.")


@cli.group()
def audit() -> None:
    """The tamper-evident audit log: list, show, verify, export, purge, checkpoint, stats, override,
    rebuild-keys."""


@audit.command("list")
@db_option
@event_option
@since_option
@until_option
@click.option("--limit", type=COUNT, default=20, show_default=True)
@json_option
@click.pass_context
def list_(ctx: click.Context, db: Path | None, event_type: str | None, since: str | None,
          until: str | None, limit: int, as_json: bool) -> None:
    """The newest records, newest first.

    Example: govkit audit list --event-type override --since 2026-10-01
    """
    with open_log(ctx, db, read_only=True) as log:
        records = list(log.query(event_type=event_type, since=since, until=until, limit=limit,
                                 newest_first=True))
    if as_json:
        echo_json([r.to_dict() for r in records])
        return
    for record in records:
        fields = record.fields
        summary = " ".join(f"{k}={fields[k]}" for k in ("model_id", "status", "human_decision",
                                                        "target_record_id") if k in fields)
        click.echo(f"{record.seq:>8}  {fields['ts_start']:<27}  {fields['event_type']:<13}  "
                   f"{fields['record_id']}  {summary}".rstrip())


@audit.command()
@click.argument("record_id")
@db_option
@click.option("--content", is_flag=True, help="Also show the stored prompt/response text.")
@click.pass_context
def show(ctx: click.Context, record_id: str, db: Path | None, content: bool) -> None:
    """One record (by record id or seq), as JSON.

    Example: govkit audit show 01JD0Y7Q2N3V6Z0K8R4T5W9X1C --content
    """
    with open_log(ctx, db, read_only=True) as log:
        record = log.get(record_id)
        if record is None:
            raise InputError(f"no audit record '{record_id}' in {log.path}")
        out = record.to_dict()
        if content:
            out["content"] = log.content(record)
    echo_json(out)


@audit.command()
@db_option
@click.option("--public-key", help="Base64 Ed25519 public key to check checkpoints with "
                                   "(default: govkit.toml's). Without one the log is only self-consistent.")
@click.option("--checkpoints", "checkpoint_files", multiple=True, type=click.Path(path_type=Path),
              help="An off-device copy of the checkpoint file, checked beside the on-device one "
                   "(<db>.checkpoints.jsonl); repeatable.")
@click.option("--store-id", help="The store this log must be (default: govkit.toml's [audit] store_id).")
@click.option("--export", "export_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Check a JSONL or Parquet export (govkit audit export) instead of a store: recompute its chain.")
@click.option("--partial", is_flag=True, help="With --export: the export was filtered on purpose; gaps are not deletions.")
@click.option("--from-mlflow", "mlflow_uri", help="Check a device's whole chain from the central MLflow's segments instead.")
@click.option("--device", "device_id", callback=device_id_value, help="With --from-mlflow: the device to check.")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path),
              help="With --from-mlflow: the device registry to take the device's key from (or --public-key).")
@click.option("--witness-key", help="With --from-mlflow: the witness's public key, to count its cosignatures.")
@json_option
@click.pass_context
def verify(ctx: click.Context, db: Path | None, public_key: str | None, checkpoint_files: tuple[Path, ...],
           store_id: str | None, export_file: Path | None, partial: bool, mlflow_uri: str | None,
           device_id: str | None, registry: Path | None, witness_key: str | None, as_json: bool) -> None:
    """Check that the log was not altered; exit 1 naming the first bad seq if it was.

    Detects edited, deleted, inserted and reordered records, edited content, content removed
    other than by a recorded purge, truncation behind a signed checkpoint, and a store other
    than the one govkit.toml (or --store-id, or the checkpoints) names.

    Example: govkit audit verify --checkpoints /mnt/offsite/audit.db.checkpoints.jsonl
    """
    if public_key is not None:
        public_key = parse_public_key(public_key, source="--public-key")
    if mlflow_uri is not None:
        result = _verify_from_mlflow(mlflow_uri, device_id, public_key, registry, store_id, witness_key)
    elif export_file is not None:
        from ..audit.export import verify_export

        settings = settings_for(ctx, required=False)
        result = verify_export(export_file, public_key=public_key or (settings.audit.public_key if settings else None),
                               expected_store_id=store_id or (settings.audit.store_id if settings else None),
                               partial=partial, checkpoint_files=checkpoint_files)
    else:
        with open_log(ctx, db, read_only=True) as log:
            result = log.verify(public_key=public_key, checkpoint_files=checkpoint_files, store_id=store_id)
    if as_json:
        echo_json(result.to_dict())
    elif result.ok:
        click.echo(f"OK ({'trusted' if result.trusted else 'SELF-CONSISTENT ONLY'}): {result.records} records "
                   f"of store {result.store_id}, chain intact, head {result.head_hash}")
        click.echo(f"    {result.scope}")
        click.echo(f"    {result.checkpoints} signed checkpoint(s)"
                   + (f", last at seq {result.last_checkpoint_seq}" if result.checkpoints else "")
                   + f"; {result.content_checked} content item(s) match their digests,"
                   f" {result.content_purged} purged by recorded purges")
    else:
        click.echo(f"FAILED at seq {result.first_bad_seq}: {sorted(result.problems)[0].reason}")
        for problem in sorted(result.problems)[1:]:
            click.echo(f"  seq {problem.seq}: {problem.reason}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not result.ok:
        ctx.exit(1)


def _verify_from_mlflow(uri: str, device_id: str | None, public_key: str | None, registry: Path | None,
                        store_id: str | None, witness_key: str | None) -> Any:
    from ..fleet.central import Central
    from ..fleet.status import device_key, verify_device

    if not device_id:
        raise InputError("--from-mlflow checks one device: give --device", parameter="device_id")
    if public_key is None:
        public_key, store_id = device_key(registry, device_id, store_id)
    if witness_key is not None:
        witness_key = parse_public_key(witness_key, source="--witness-key")
    central = Central(uri)
    try:
        return verify_device(central, central.experiments(), device_id=device_id, public_key=public_key,
                             store_id=store_id, witness_key=witness_key)
    finally:
        central.close()


@audit.command()
@db_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), callback=refuse_evidence,
              help="File to write (default: stdout for jsonl).")
@click.option("--with-content", is_flag=True, help="Include the stored (redacted) prompt/response text.")
@event_option
@since_option
@until_option
@click.pass_context
def export(ctx: click.Context, db: Path | None, fmt: str, output: Path | None, with_content: bool,
           event_type: str | None, since: str | None, until: str | None) -> None:
    """Export records with seq, prev_hash and record_hash, so others can re-check the chain.

    Example: govkit audit export --format parquet -o audit-2026Q4.parquet --since 2026-10-01
    """
    with open_log(ctx, db, read_only=True) as log:
        records = log.query(event_type=event_type, since=since, until=until)
        from ..audit.export import export_row

        rows = (export_row(r, log.content(r) if with_content else None) for r in records)
        if fmt == "jsonl":
            count = _write_jsonl(rows, output)
        else:
            if output is None:
                raise InputError("--format parquet needs --output FILE")
            from ..audit.export import write_parquet

            count = write_parquet(rows, output)
    if output is not None:
        click.echo(f"Exported {count} record(s) to {output}", err=True)


def _write_jsonl(rows: Any, output: Path | None) -> int:
    if output is None:
        return _jsonl_to(rows, sys.stdout)
    from ..outputs import open_output

    with open_output(output, "w", encoding="utf-8") as stream:
        return _jsonl_to(rows, stream)


def _jsonl_to(rows: Any, handle: Any) -> int:
    count = 0
    for row in rows:
        handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        count += 1
    return count


@audit.command()
@db_option
@click.option("--expired", is_flag=True, help="Content past its retention date (expires_at).")
@click.option("--before", help="Content of records started before this ISO date/time.")
@click.option("--subject", "subject_ref", help="Erasure request: content of this subject_ref.")
@click.option("--reason", help="Why (e.g. the erasure request's reference).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, db: Path | None, expired: bool, before: str | None,
          subject_ref: str | None, reason: str | None, yes: bool) -> None:
    """Erase stored prompt/response text; the chain keeps digests and a `purge` event.

    Records under legal hold are kept. Verification stays green. On a fleet device ([sync] to
    set), --expired and --before erase only what the central witness has acknowledged.

    Example: govkit audit purge --expired --yes
    """
    if not (expired or before or subject_ref):
        raise click.UsageError("give at least one of --expired, --before, --subject")
    if not yes:
        confirm("Erase the matching stored content? This cannot be undone", flag="--yes")
    from ..oversight import purge as purge_content

    with open_log(ctx, db) as log:
        done = purge_content(log, settings_for(ctx, required=False), expired=expired, before=before,
                             subject_ref=subject_ref, reason=reason)
    click.echo(f"Purged {done.purged_items} item(s) of {done.purged_records} record(s); "
               f"purge record {done.record.record_id} (seq {done.record.seq})"
               + (f"; the artifacts of {len(done.erased_runs)} MLflow run(s) about the subject erased"
                  if done.erased_runs else ""))
    if done.acknowledged_upto is not None:
        click.echo(f"    a fleet device: only records the witness has acknowledged were eligible (up to seq "
                   f"{done.acknowledged_upto}); later content waits for 'govkit sync' and the witness's cosignature"
                   + ("" if done.acknowledged_upto else
                      " ([sync] witness_public_key must be set for an acknowledgement to count)"))
    if not done.complete:
        assert done.incident is not None
        click.echo(f"NOT COMPLETE: the subject's text was shipped to a central store before this erasure, and "
                   f"those copies remain (incident {done.incident.record_id} is open until they are erased):", err=True)
        for copy in done.remaining:
            where = f"sync run {copy['run_id']}" if copy.get("run_id") else f"sync runs unknown ({copy.get('unknown')})"
            click.echo(f"  {copy['central']}, {where}: content of seq {', '.join(map(str, copy['seqs'][:20]))}"
                       + (" ..." if len(copy["seqs"]) > 20 else ""), err=True)
        click.echo("  Erase the content segments of those runs on the central store (its operator), then resolve "
                   f"the incident: govkit audit incident resolve {done.incident.record_id} --note WHAT-WAS-DONE",
                   err=True)
        ctx.exit(1)


@audit.command("rebuild-keys")
@db_option
@click.option("--reason", help="Why (e.g. the incident's reference).")
@click.pass_context
def rebuild_keys(ctx: click.Context, db: Path | None, reason: str | None) -> None:
    """Make the query keys anew from the records, when verify finds them wrong.

    Filtered lists (--event-type, --since, --until) and `show ID` read these keys. The records
    are not touched; an `incident` record says how many key rows were wrong or missing.

    Example: govkit audit rebuild-keys --reason "INC-2041"
    """
    with open_log(ctx, db) as log:
        record = log.rebuild_keys(reason=reason)
    if record is None:
        click.echo("The query keys match the records: nothing changed, no incident filed.")
        return
    details = record.fields["details"]
    if "wrong_rows_removed" in details:
        found = (f"{details['wrong_rows_removed']} wrong row(s) removed, "
                 f"{details['missing_rows_added']} missing row(s) added")
    else:
        found = "the old keys were missing or unreadable"
    click.echo(f"Rebuilt the query keys of {details['keyed_records']} record(s): {found}; "
               f"incident record {record.record_id} (seq {record.seq})")


@audit.command()
@db_option
@click.pass_context
def checkpoint(ctx: click.Context, db: Path | None) -> None:
    """Sign the chain's head now with the device key.

    Example: govkit audit checkpoint
    """
    from ..oversight import checkpoint as sign_head

    with open_log(ctx, db) as log:
        signed = sign_head(log)
    if signed is None:
        click.echo("The head is already signed (or the log is empty); nothing to do.")
    else:
        click.echo(f"Signed seq {signed.seq} head {signed.head_hash} with {signed.key_id}")


@audit.command()
@db_option
@json_option
@click.pass_context
def stats(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """Counts by event type, time span, head, checkpoints, stored and purged content.

    Example: govkit audit stats --format json
    """
    with open_log(ctx, db, read_only=True) as log:
        info = log.stats()
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        if key == "by_event_type":
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        click.echo(f"{key:<20} {value}")


@audit.command()
@click.argument("record_id")
@db_option
@click.option("--decision", required=True, type=click.Choice(HUMAN_DECISIONS))
@click.option("--reviewer", required=True, help="Pseudonymous reviewer id.")
@click.option("--reason", required=True, help="Why (redacted before it is stored).")
@click.pass_context
def override(ctx: click.Context, record_id: str, db: Path | None, decision: str, reviewer: str,
             reason: str) -> None:
    """Record a human review of a logged decision (EU AI Act Art. 14, E-23 overrides).

    Example: govkit audit override 01JD0Y7Q2N3V6Z0K8R4T5W9X1C --decision overridden
    --reviewer rev-17 --reason "income misread"
    """
    from ..oversight import override as record_override

    with open_log(ctx, db) as log:
        record = record_override(log, record_id, decision=decision, reviewer=reviewer, reason=reason)
    click.echo(f"Recorded {decision} by {reviewer}: record {record.record_id} (seq {record.seq})")


@audit.group()
def incident() -> None:
    """Incidents: list the open ones, resolve one (chained)."""


@incident.command("list")
@db_option
@json_option
@click.pass_context
def incident_list(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """The incidents not yet resolved, oldest first.

    Example: govkit audit incident list --format json
    """
    from ..oversight import open_incidents

    with open_log(ctx, db, read_only=True) as log:
        found = open_incidents(log.query(event_type="incident"))
    if as_json:
        echo_json([r.to_dict() for r in found])
        return
    for record in found:
        what = (record.details or {}).get("action") or (record.details or {}).get("kind") or "incident"
        click.echo(f"{record.seq:>8}  {record.ts_start:<27}  {record.record_id}  {what}")
    click.echo(f"{len(found)} open incident(s)")


@incident.command("resolve")
@click.argument("incident_id")
@click.option("--note", required=True, help="What was found and done (redacted before it is stored).")
@click.option("--reviewer", help="Pseudonymous id of who resolved it.")
@db_option
@click.pass_context
def incident_resolve(ctx: click.Context, incident_id: str, note: str, reviewer: str | None, db: Path | None) -> None:
    """Resolve an incident: a chained record naming it, with the note.

    Example: govkit audit incident resolve 01JD0Y7Q2N3V6Z0K8R4T5W9X1C --note "store restored from backup"
    """
    from ..oversight import resolve_incident

    with open_log(ctx, db) as log:
        record = resolve_incident(log, incident_id, note=note, reviewer=reviewer)
    click.echo(f"Resolved incident {incident_id}: record {record.record_id} (seq {record.seq})")
