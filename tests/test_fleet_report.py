"""The fleet on the central side's reports, and the device's retention waiting for the witness:
`govkit report board --fleet` names every device not synced, every gap, fork and late
acknowledgement, and `report verify` takes the fleet again; a retention purge on a fleet device
reaches only what the witness has cosigned."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from govkit.fleet.summary import fleet_summary
from govkit.report.board import fleet_alerts
from govkit.report.scorecard import PRINCIPLES, overall

from .conftest import run
from .fleet import Device, enroll, inside, make_device, ship, witness_pass

MODEL = "credit-assistant"


def _office(tmp_path: Path, central: str, registry: Path, public: str) -> Device:
    """The compliance office's own govkit project, pointed at the fleet."""
    office = make_device(tmp_path, "office")
    with office.config.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[fleet]\ncentral = "{central}"\nregistry = "{registry}"\nwitness_public_key = "{public}"\n')
    return office


def _green() -> dict:
    return {name: {"colour": "green", "why": [], "checks": []} for name in PRINCIPLES.values()}


VERIFIED = {"ok": True, "trusted": True}


def test_the_board_report_names_the_devices_not_synced_and_report_verify_takes_the_fleet_again(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    key, public = witness_key
    synced, quiet = make_device(tmp_path, "branch-1"), make_device(tmp_path, "branch-2")
    head = synced.append(700, overrides=2)
    ship(synced, central)
    registry = enroll(tmp_path, synced, quiet)
    assert witness_pass(central, registry, key, tmp_path).ok
    office = _office(tmp_path, central, registry, public)
    with inside(office.folder):
        made = run("report", "board", "--period", "2026", "--fleet", "--format", "html", "--format", "json",
                   "--format", "md", "-o", "out", "--no-record")
        assert made.exit_code == 0, made.output
        assert "1 enrolled device(s) have never synced: branch-2" in made.output
        document = json.loads((office.folder / "out" / "board-2026.json").read_text(encoding="utf-8"))
        fleet = document["manifest"]["snapshot"]["fleet"]
        assert document["figures"]["fleet"]["not_synced"] == ["branch-2"]
        assert document["figures"]["fleet"]["records_acknowledged"] == head  # every record, counted once
        assert [d["device_id"] for d in fleet["devices"]] == ["branch-1", "branch-2"]
        assert fleet["devices"][0]["acked_seq"] == head and fleet["devices"][1]["last_sync"] is None
        html = (office.folder / "out" / "board-2026.html").read_text(encoding="utf-8")
        assert "The fleet, from the central store" in html and "never synced" in html
        assert "| branch-2 |" in (office.folder / "out" / "board-2026.md").read_text(encoding="utf-8")

        synced.append(50)
        ship(synced, central)  # after the report's as-of: the fleet taken again as of then is the same
        for fmt in ("html", "json", "md"):
            checked = run("report", "verify", f"out/board-2026.{fmt}")
            assert checked.exit_code == 0, checked.output

        enroll(tmp_path, make_device(tmp_path, "branch-3"))  # the registry changed under the report
        checked = run("report", "verify", "out/board-2026.html")
    assert checked.exit_code == 1 and "fleet.registry.sha256" in checked.output, checked.output


def test_a_fork_on_the_central_store_turns_the_fleet_report_red(tmp_path: Path, central: str,
                                                                 witness_key: tuple[Path, str]) -> None:
    key, public = witness_key
    device = make_device(tmp_path, "branch-5")
    device.append(200)
    ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, key, tmp_path).ok
    twin = device.clone(tmp_path / "branch-5-copy")
    device.append(50, marker="original")
    ship(device, central)
    twin.append(80, marker="clone")
    ship(twin, central)
    assert not witness_pass(central, registry, key, tmp_path).ok
    fleet = fleet_summary(central, as_of="2099-01-01T00:00:00Z", registry=str(registry), witness_public_key=public,
                          experiments=(MODEL,))
    assert fleet["totals"]["findings"]["fork"] == ["branch-5"] and not fleet["totals"]["integrity"]
    assert any(a.startswith("Forked device log(s)") for a in fleet_alerts(fleet))
    assert overall(_green(), VERIFIED, fleet)["colour"] == "red"
    assert overall(_green(), VERIFIED)["colour"] == "green"  # the same evidence without the fleet


def test_an_incomplete_fleet_is_never_green(tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    key, public = witness_key
    device = make_device(tmp_path, "branch-6")
    device.append(100)
    ship(device, central)
    registry = enroll(tmp_path, device)
    shipped_at = "2099-01-01T00:00:00Z"  # not witnessed, and long after: a late acknowledgement
    late = fleet_summary(central, as_of=shipped_at, registry=str(registry), witness_public_key=public,
                         experiments=(MODEL,))
    assert late["totals"]["late_acks"] == 1 and late["totals"]["silent"] == ["branch-6"]
    statement = overall(_green(), VERIFIED, late)
    assert statement["colour"] == "amber" and "1 late acknowledgement(s)" in statement["statement"]
    assert witness_pass(central, registry, key, tmp_path).ok
    untrusted = fleet_summary(central, as_of=_now(), registry=str(registry), experiments=(MODEL,))
    assert "no witness key" in overall(_green(), VERIFIED, untrusted)["statement"]
    trusted = fleet_summary(central, as_of=_now(), registry=str(registry), witness_public_key=public,
                            experiments=(MODEL,))
    assert overall(_green(), VERIFIED, trusted)["colour"] == "green", fleet_alerts(trusted)
    nothing = fleet_summary(central, as_of=_now(), registry=str(registry), witness_public_key=public,
                            experiments=("another-model",))
    assert overall(_green(), VERIFIED, nothing)["colour"] == "amber" and nothing["experiments_missing"]
    half = fleet_summary(central, as_of=_now(), registry=str(registry), witness_public_key=public,
                         experiments=(MODEL, "another-model"))  # one model's devices healthy, the other's absent
    assert half["experiments_missing"] == ["another-model"] and half["totals"]["healthy"] == 1
    statement = overall(_green(), VERIFIED, half)
    assert statement["colour"] == "amber" and "another-model" in statement["statement"], statement


def _now() -> str:
    from govkit.timestamps import utc_now

    return utc_now()


def _content(device: Device) -> dict[int, bool]:
    """seq -> whether its stored prompt text is still on the device."""
    db = sqlite3.connect(device.settings.audit.db)
    try:
        return {seq: text is not None for seq, text in db.execute("SELECT seq, text FROM content WHERE kind = 'prompt'")}
    finally:
        db.close()


def test_retention_on_a_fleet_device_purges_only_what_the_witness_acknowledged(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    key, public = witness_key
    device = make_device(tmp_path, "branch-7")
    device.set_sync(to=central, witness_public_key=public)
    device.append(300)
    ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, key, tmp_path).ok
    device.append(200)
    fetched = ship(device, central)  # ships the new records and brings back the first acknowledgement
    acked = fetched.acknowledged_seq
    assert 300 < acked < device.head()
    with inside(device.folder):
        purged = run("audit", "purge", "--before", "2100-01-01", "--yes")
        assert purged.exit_code == 0, purged.output
        assert f"up to seq {acked}" in purged.output
        kept = _content(device)
        assert kept and all(not present for seq, present in kept.items() if seq <= acked)
        assert all(present for seq, present in kept.items() if seq > acked)  # not acknowledged: kept
        verified = run("audit", "verify")
        assert verified.exit_code == 0, verified.output

        assert witness_pass(central, registry, key, tmp_path).ok
        ship(device, central)
        assert run("audit", "purge", "--before", "2100-01-01", "--yes").exit_code == 0
        assert not any(_content(device).values())  # acknowledged now: purged
        assert run("audit", "verify").exit_code == 0


def test_retention_without_a_witness_key_keeps_a_fleet_devices_content(tmp_path: Path, central: str) -> None:
    device = make_device(tmp_path, "branch-8")
    device.set_sync(to=central)
    device.append(40)
    ship(device, central)
    with inside(device.folder):
        purged = run("audit", "purge", "--before", "2100-01-01", "--yes")
    assert purged.exit_code == 0 and "witness_public_key must be set" in purged.output, purged.output
    assert all(_content(device).values())


def _central_texts(central: str, run_id: str) -> str:
    """Every byte of the content segments a sync run holds on the central store, as text."""
    import io

    import pyarrow.parquet as pq

    from govkit.fleet.central import Central
    from govkit.fleet.sync import _parquet_files

    c = Central(central)
    try:
        tables = [pq.read_table(io.BytesIO(c.download(run_id, path))) for path in _parquet_files(c, run_id)]
    finally:
        c.close()
    return "\n".join(str(table.to_pylist()) for table in tables)


def test_an_erasure_of_shipped_content_is_not_reported_as_done_and_names_what_remains_where(
        tmp_path: Path, central: str) -> None:
    """With [sync] ship_content on, `purge --subject` erased the device's copy and reported success
    while the subject's prompt stayed in the central store's segments. Now it exits 1, names the
    central store, the sync run and the seqs, and leaves an open incident until that is erased."""
    from govkit.audit import AuditLog

    device = make_device(tmp_path, "branch-9")
    device.set_sync(to=central, ship_content=True)
    with AuditLog.open(settings=device.settings) as log:
        shipped_seq = log.append("inference", prompt="Dana Whitfield asks for a limit increase", response="refer",
                                 subject_ref="subject-41", status="ok").seq
        log.append("inference", prompt="someone else", response="approve", subject_ref="subject-7", status="ok")
    result = ship(device, central)
    assert "Dana Whitfield" in _central_texts(central, result.run_id)  # the copy the erasure must account for
    with AuditLog.open(settings=device.settings) as log:
        later_seq = log.append("inference", prompt="Dana Whitfield again", response="refer", subject_ref="subject-41",
                               status="ok").seq
        log.append("inference", prompt="not shipped yet", response="refer", subject_ref="subject-99", status="ok")
    with inside(device.folder):
        purged = run("audit", "purge", "--subject", "subject-41", "--yes")
        assert purged.exit_code == 1, purged.output
        assert "NOT COMPLETE" in purged.output and result.run_id in purged.output and central in purged.output
        assert re.findall(r"content of seq ([\d, ]+)", purged.output) == [str(shipped_seq)], later_seq  # not the later one
        assert not _content(device)[shipped_seq] and not _content(device)[later_seq]  # the device's copies are gone
        incidents = json.loads(run("audit", "incident", "list", "--json").output)
        assert [i["details"]["kind"] for i in incidents] == ["erasure_incomplete"]
        assert incidents[0]["details"]["remaining"][0]["run_id"] == result.run_id
        assert run("audit", "verify").exit_code == 0
        done = run("audit", "purge", "--subject", "subject-99", "--yes")  # never shipped: the erasure is complete
        assert done.exit_code == 0 and "NOT COMPLETE" not in done.output, done.output


def test_the_witness_names_a_device_running_a_model_file_no_valid_approval_covers(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    """Attestations ship with the segments (they are records of the chain); the witness reads them
    against the device's own roster (its owner key, enrolled from its govkit.toml) and fleet status
    shows the device running a file that no valid approval covers."""
    from govkit.attest import record_attestation
    from govkit.audit import AuditLog
    from govkit.audit.checkpoints import load_private_key, public_key_b64

    key, public = witness_key
    device = make_device(tmp_path, "branch-11")
    keys = tmp_path / "people"
    for person in ("owner", "approver"):
        assert run("keygen", "--person", person, "-o", str(keys / f"{person}.key")).exit_code == 0
    with inside(device.folder):
        assert run("people", "init", "--name", "Olive Owner", "--key", str(keys / "owner.key")).exit_code == 0
        approver = public_key_b64(load_private_key(keys / "approver.key"))
        assert run("people", "add", "Ann Prover", "--role", "approver", "--public-key", approver,
                   "--key", str(keys / "owner.key")).exit_code == 0
    device.append(20)  # the file sha256:abab... answers
    settings = device.settings
    with AuditLog.open(settings=settings) as log:  # approved: the file that answered
        record_attestation(log, settings, "approval", {"tier": "unrated", "residual_risk": "low",
                                                       "valid_until": "2099-01-01"}, load_private_key(keys / "approver.key"))
        log.append("inference", prompt="a call from another file", response="approve", status="ok",
                   model_id=settings.model.id, artifact_sha256="sha256:" + "cd" * 32, latency_ms=3.0)
    device.set_sync(to=central, witness_public_key=public)
    ship(device, central)
    registry = enroll(tmp_path, device)
    assert "owner_public_key" in registry.read_text()
    result = witness_pass(central, registry, key, tmp_path)
    assert result.ok  # not a break of the evidence: a finding about the model in use
    unapproved = [f.detail for f in result.findings if f.kind == "unapproved"]
    assert len(unapproved) == 1 and "sha256:cdcdcdcdcdcd" in unapproved[0], result.findings
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", public)
    assert status.exit_code == 1 and "unapproved (1)" in status.output, status.output
