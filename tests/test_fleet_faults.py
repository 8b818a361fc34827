"""Faults on the way to the central store: a full disk on the central side, on the device and
under the witness's ledger, and a server that never answers. Each gives a clear exit 3, loses
nothing, and the next run goes on where this one stopped. The faults are injected (a full disk
cannot be had on demand); everything around them is the real MLflow store and the real sync."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from .central_server import hung_server
from .conftest import run
from .fleet import enroll, inside, make_device, ship, witness_pass


def _full_after(monkeypatch: pytest.MonkeyPatch, target: object, name: str, calls: int) -> None:
    """`target.name` works `calls` times, then fails as a full disk does."""
    real = getattr(target, name)
    count = {"n": 0}

    def failing(*args: object, **kwargs: object) -> object:
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


def test_a_full_central_disk_mid_sync_exits_3_and_the_next_sync_resumes(
        tmp_path: Path, central: str, witness_key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    device = make_device(tmp_path, "branch-20")
    head = device.append(900)
    with monkeypatch.context() as patched:
        _full_after(patched, LocalArtifactRepository, "log_artifact", 3)  # the third segment's file does not fit
        with inside(device.folder):
            failed = run("sync", "--to", central, "--segment-records", "300")
    assert failed.exit_code == 3 and "central store's disk is full" in failed.output, failed.output
    assert "Traceback" not in failed.output and device.head() == head
    resumed = ship(device, central, max_records=300)
    assert resumed.resumed and resumed.shipped[-1][1] == head
    checked = witness_pass(central, enroll(tmp_path, device), witness_key[0], tmp_path)
    assert checked.ok and checked.records == head and checked.duplicates == 0, checked.to_dict()


def test_a_full_device_disk_exits_3_and_loses_nothing(tmp_path: Path, central: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    device = make_device(tmp_path, "branch-21")
    head = device.append(200)
    with monkeypatch.context() as patched:
        _full_after(patched, tempfile, "mkdtemp", 1)  # the scratch folder where uploads are staged fills up
        with inside(device.folder):
            failed = run("sync", "--to", central)
    assert failed.exit_code == 3 and "this device's disk is full" in failed.output, failed.output
    assert device.head() == head
    assert ship(device, central).shipped[-1][1] == head


def test_a_full_disk_under_the_acknowledgements_exits_3_and_the_next_sync_fetches_them(
        tmp_path: Path, central: str, witness_key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import govkit.fleet.sync as sync_module

    key, public = witness_key
    device = make_device(tmp_path, "branch-22")
    device.set_sync(witness_public_key=public)
    head = device.append(100)
    ship(device, central)
    assert witness_pass(central, enroll(tmp_path, device), key, tmp_path).ok
    class FullDisk:  # the sync module's view of the OS: every write finds the disk full
        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def write(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(sync_module, "os", FullDisk())
        with inside(device.folder):
            failed = run("sync", "--to", central)
    assert failed.exit_code == 3 and "acks.jsonl: disk full" in failed.output, failed.output
    assert ship(device, central).acknowledged_seq == head


def test_a_full_witness_ledger_exits_3_and_the_next_pass_settles_the_run(
        tmp_path: Path, central: str, witness_key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from govkit.fleet.witness import Ledger

    device = make_device(tmp_path, "branch-23")
    head = device.append(300)
    ship(device, central)
    registry = enroll(tmp_path, device)

    def full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(Ledger, "accept", full)
        failed = run("fleet", "witness", "--from", central, "--registry", str(registry), "--key", str(witness_key[0]),
                     "--ledger", str(tmp_path / "witness.db"))
    assert failed.exit_code == 3 and "witness ledger could not record" in failed.output, failed.output
    checked = witness_pass(central, registry, witness_key[0], tmp_path)
    assert checked.ok and checked.records == head and checked.runs == 1, checked.to_dict()


@pytest.fixture
def hung() -> Iterator[str]:
    with hung_server() as url:
        yield url


def test_a_server_that_never_answers_exits_3_after_its_timeout_and_loses_nothing(
        tmp_path: Path, hung: str, central: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    device = make_device(tmp_path, "branch-24")
    head = device.append(50)
    with inside(device.folder):
        failed = run("sync", "--to", hung)
    assert failed.exit_code == 3 and hung.split("//")[1] in failed.output, failed.output
    assert "Traceback" not in failed.output and device.head() == head
    assert ship(device, central).shipped[-1][1] == head  # the same records, to a server that answers


def test_a_segment_file_lost_on_the_central_store_fails_central_verification_by_name(tmp_path: Path,
                                                                                      central: str) -> None:
    device = make_device(tmp_path, "branch-25")
    device.append(600)
    ship(device, central, max_records=200)
    [lost] = [p for p in (tmp_path / "central" / "mlartifacts").rglob("*.parquet") if "000000000201-" in p.name]
    lost.unlink()
    with inside(device.folder):
        checked = run("audit", "verify", "--from-mlflow", central, "--device", device.id,
                      "--public-key", device.settings.audit.public_key)
    assert checked.exit_code == 1 and "segment 201..400" in checked.output, checked.output
    assert "unreachable" not in checked.output


def test_overrides_ship_first_a_link_lost_at_the_first_segment_still_delivered_them(
        tmp_path: Path, central: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from govkit.fleet.central import Central

    device = make_device(tmp_path, "branch-24")
    head = device.append(400, overrides=3)
    real = LocalArtifactRepository.log_artifact

    def lost_at_segments(self: object, local: str, artifact_path: str | None = None) -> None:
        if (artifact_path or "").startswith("segments"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, local, artifact_path)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(LocalArtifactRepository, "log_artifact", lost_at_segments)
        with inside(device.folder):
            failed = run("sync", "--to", central)
    assert failed.exit_code == 3, failed.output
    c = Central(central)
    try:
        [unfinished] = c.runs(c.experiments())
        assert c.list(unfinished.info.run_id, "notes") == []  # no segment counts as shipped
        records = json.loads(c.download(unfinished.info.run_id, "oversight/records.json"))
        table = json.loads(c.download(unfinished.info.run_id, "oversight/overrides.json"))
    finally:
        c.close()
    overrides = [r for r in records if r["event_type"] == "override"]
    assert [r["seq"] for r in overrides] == [head - 2, head - 1, head]
    assert {r["reviewer_id"] for r in overrides} == {"alice"} and len(table["data"]) == 3
    assert ship(device, central).shipped[-1][1] == head  # and the next sync ships the rest


def test_a_missing_segment_file_is_a_finding_for_its_device_and_the_witness_checks_the_rest(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    """It aborted every pass with exit 3, so no device after it was ever checked again."""
    first, second = make_device(tmp_path, "branch-26a"), make_device(tmp_path, "branch-26b")
    first.append(400)
    second.append(300)
    ship(first, central, max_records=200)
    ship(second, central)
    [lost] = [p for p in (tmp_path / "central" / "mlartifacts").rglob("*.parquet") if "000000000201-" in p.name]
    lost.unlink()
    registry = enroll(tmp_path, first, second)
    arguments = ("fleet", "witness", "--from", central, "--registry", str(registry), "--key", str(witness_key[0]),
                 "--ledger", str(tmp_path / "witness.db"))
    for _ in range(2):  # the next pass says it again: the file is still gone
        checked = run(*arguments)
        assert checked.exit_code == 1 and "missing" in checked.output and "201..400" in checked.output, checked.output
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1],
                 "--format", "json")
    states = {s["device_id"]: s for s in json.loads(status.output)}
    assert states["branch-26b"]["healthy"] and states["branch-26b"]["acked_seq"] == second.head()
    assert not states["branch-26a"]["healthy"] and "missing" in states["branch-26a"]["findings"], states


def test_a_server_that_stops_answering_while_the_witness_reads_a_cosigned_file_settles_nothing(
        tmp_path: Path, central: str, witness_key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading back a cosigned file treated any failure as a missing file: an outage for one
    request became a lasting verdict on the run (rejected as undecidable, or a rollback)."""
    from govkit.errors import CentralUnreachable
    from govkit.fleet.central import Central

    device = make_device(tmp_path, "branch-27")
    device.append(300)
    backup = device.clone(tmp_path / "backup")
    device.append(300)
    cosigned = ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    import shutil

    shutil.rmtree(device.folder / ".govkit")
    shutil.copytree(backup.folder / ".govkit", device.folder / ".govkit")  # its head is now inside a cosigned segment
    ship(device, central)
    download = Central.download

    def outage(self: Central, run_id: str, path: str) -> bytes:
        if run_id == cosigned.run_id and path.endswith(".parquet"):
            raise CentralUnreachable(f"MLflow at {self.uri} is unreachable while downloading {path}")
        return download(self, run_id, path)

    monkeypatch.setattr(Central, "download", outage)
    with pytest.raises(CentralUnreachable):
        witness_pass(central, registry, witness_key[0], tmp_path)
    monkeypatch.setattr(Central, "download", download)
    checked = witness_pass(central, registry, witness_key[0], tmp_path)  # the run was not settled: checked again
    assert [f.kind for f in checked.findings] == ["rollback"] and checked.runs == 1, checked.to_dict()
