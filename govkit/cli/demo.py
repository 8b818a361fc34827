"""`govkit demo`: an end-to-end audit in a fresh folder, start to finish, in a few seconds."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import click

from ..audit import AuditLog
from ._root import cli

CALLS = [
    ("Customer jane.doe@example.com asks to raise the limit on card 4111 1111 1111 1111.",
     "Eligible for a review; route to an underwriter.", "cust-001", "approve-review"),
    ("Wire 2,000 EUR to IBAN DE89 3704 0044 0532 0130 00, caller at (416) 555-0199.",
     "Flag: new payee and unusual amount; hold for verification.", "cust-002", "hold"),
    ("Claimant SIN 046 454 286 reports water damage at the cottage.",
     "Covered under section 4.2; request photos.", "cust-003", "approve"),
    ("Summarise the policy for a customer connecting from 192.168.10.254.",
     "Basic home policy, $500 deductible.", "cust-004", "inform"),
]


@cli.command()
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("govkit-demo"),
              show_default=True, help="Folder to create the demo in (emptied first).")
@click.pass_context
def demo(ctx: click.Context, folder: Path) -> None:
    """Run an end-to-end demo audit: init, audited calls, oversight, purge, export, verify, tamper.

    The calls are scripted (no model is needed yet); every record, redaction, signature and
    verification step is the real thing.
    """
    from .init import init

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    here = Path.cwd()
    os.chdir(folder)
    try:
        click.secho("1. govkit init: inventory record, policy, device key", bold=True)
        ctx.invoke(init, yes=True, force=False, model_id="credit-assistant", model_name="Phi-4-mini (Q4_K_M)",
                   owner="model-risk@bank.example", redaction="redacted")
        with AuditLog.open() as log:
            click.secho("\n2. audited inference: personal data redacted before it reaches disk", bold=True)
            records = []
            for prompt, response, subject, decision in CALLS:
                record = log.append("inference", prompt=prompt, response=response, model_id="credit-assistant",
                                    subject_ref=subject, decision_impact=decision, finish_reason="stop",
                                    input_tokens=len(prompt.split()), output_tokens=len(response.split()),
                                    latency_ms=380.0, sampling={"temperature": 0.0})
                records.append(record)
                click.echo(f"   seq {record.seq}: {log.content(record)['prompt']}")
                click.echo(f"          removed {record.redaction['entities']}")
            old = log.append("inference", prompt="A question from 2024 by bob@example.com", response="An answer",
                             model_id="credit-assistant", ts_start="2024-01-05T09:00:00Z")
            click.secho("\n3. human oversight: an underwriter overrides a decision", bold=True)
            override = log.append("override", target_record_id=records[1].record_id, reviewer_id="rev-17",
                                  human_decision="overridden", override_reason="payee verified by phone",
                                  model_id="credit-assistant", subject_ref="cust-002")
            click.echo(f"   seq {override.seq}: override of {records[1].record_id}")
            click.secho("\n4. retention: content past 183 days is purged; the chain keeps its digests", bold=True)
            purge = log.purge(expired=True)
            click.echo(f"   purged {purge.details['purged_items']} item(s); record {old.seq} content now {log.content(old)}")
            click.secho("\n5. signed checkpoint of the chain head (Ed25519 device key)", bold=True)
            signed = log.checkpoint()
            assert signed is not None
            click.echo(f"   seq {signed['seq']} head {signed['head_hash'][:23]}… key {signed['key_id']}")
            click.secho("\n6. verify", bold=True)
            result = log.verify()
            click.echo(f"   {'OK' if result.ok else 'FAILED'}: {result.records} records, "
                       f"{result.checkpoints} checkpoint(s), {result.content_checked} content item(s) checked")
            db_path = log.path
        export = Path("audit.jsonl")
        from .audit import _write_jsonl
        with AuditLog.open() as log:
            count = _write_jsonl((r.to_dict() for r in log), export)
        click.echo(f"   exported {count} records to {folder / export} for an auditor")
        click.secho("\n7. tamper with a copy: rewrite one logged decision (hold -> approve)", bold=True)
        tampered = Path("tampered") / db_path.name
        tampered.parent.mkdir()
        for path in db_path.parent.glob(db_path.name + "*"):
            shutil.copy(path, tampered.parent / path.name)
        db = sqlite3.connect(tampered)
        db.execute("DROP TRIGGER records_append_only_update")
        db.execute("UPDATE records SET body = CAST(replace(CAST(body AS TEXT), '\"hold\"', '\"approve\"') AS BLOB) "
                   "WHERE seq = ?", (records[1].seq,))
        db.commit()
        db.close()
        with AuditLog(tampered, create=False) as copy:
            bad = copy.verify()
        click.echo(f"   {'OK' if bad.ok else 'FAILED'} at seq {bad.first_bad_seq}: {sorted(bad.problems)[0].reason}"
                   if not bad.ok else "   tampering NOT detected")
        if not result.ok or bad.ok:
            ctx.exit(1)
        click.secho(f"\nDemo complete. Try: cd {folder} && govkit audit list && govkit audit verify", fg="green")
    finally:
        os.chdir(here)
