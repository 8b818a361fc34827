"""Fleet sync against a local central MLflow store: every record arrives once, the witness
cosigns what holds and reports gaps, forks, rollbacks, tampering and silence. The server path
(PostgreSQL, `mlflow server`, basic auth, 20 devices) is tests/test_fleet_server.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from govkit.fleet.central import Central
from govkit.fleet.registry import load_registry
from govkit.fleet.status import fleet_status, verify_device
from govkit.fleet.sync import acknowledged_seq

from .conftest import run
from .fleet import enroll, inside, make_device, ship, witness_pass

MODEL = "credit-assistant"


def _segment_rows(tmp_path: Path) -> list[int]:
    """Every record seq in the central store's Parquet dataset, read as one hive-partitioned dataset."""
    import pyarrow.dataset as ds

    files = sorted((tmp_path / "central" / "mlartifacts").rglob("*.parquet"))
    if not files:
        return []
    dataset = ds.dataset([str(f) for f in files], format="parquet", partitioning="hive")
    return dataset.to_table(columns=["seq"]).column("seq").to_pylist()


def test_sync_ships_every_record_once_and_the_witness_cosigns_it(tmp_path: Path, central: str,
                                                                  witness_key: tuple[Path, str]) -> None:
    key, public = witness_key
    device = make_device(tmp_path, "branch-17")
    device.set_sync(witness_public_key=public, segment_records=1000)
    head = device.append(2500, overrides=3)
    with inside(device.folder):
        first = run("sync", "--to", central)
    assert first.exit_code == 0, first.output
    assert f"seqs 1..{head}" in first.output
    registry = enroll(tmp_path, device)
    result = run("fleet", "witness", "--from", central, "--registry", str(registry), "--key", str(key),
                 "--ledger", str(tmp_path / "witness.db"))
    assert result.exit_code == 0, result.output
    assert f"{head} records" in result.output
    again = ship(device, central)
    assert again.records == 0 and again.central_seq == head
    assert again.new_acks == 1 and acknowledged_seq(device.settings.audit.db, public, device.store_id) == head
    assert sorted(_segment_rows(tmp_path)) == list(range(1, head + 1))  # every record once, none twice

    verified = run("audit", "verify", "--from-mlflow", central, "--device", device.id, "--registry", str(registry),
                   "--witness-key", public, "--format", "json")
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["ok"] and report["records"] == head and report["store_id"] == device.store_id

    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", public,
                 "--format", "json")
    assert status.exit_code == 0, status.output
    [state] = json.loads(status.output)
    assert (state["shipped_seq"], state["acked_seq"], state["records"], state["healthy"]) == (head, head, head, True)
    unkeyed = run("fleet", "status", "--from", central, "--registry", str(registry))
    assert unkeyed.exit_code == 1 and "acks unverified" in unkeyed.output  # no key: no verified "ok", no exit 0
    assert "--witness-key" in unkeyed.output

    trail = run("trail", "--from", central, "--model", MODEL, "--format", "json")
    assert trail.exit_code == 0, trail.output
    events = json.loads(trail.output)
    overrides = [e for e in events if e["operation"] == "override"]
    assert len(overrides) == 3 and {e["who"] for e in overrides} == {"alice"}
    assert all(e["device_id"] == device.id for e in events)


def test_every_run_carries_the_tag_convention(tmp_path: Path, central: str) -> None:
    import mlflow

    from govkit.tracking import CONVENTION

    device = make_device(tmp_path, "branch-1")
    device.append(20)
    with inside(device.folder):
        run("check")  # a governance action: one run in the device's own MLflow
    ship(device, central)
    local = mlflow.MlflowClient(f"sqlite:///{device.folder / '.govkit' / 'mlflow.db'}")
    remote = mlflow.MlflowClient(central)
    runs = [*local.search_runs([local.get_experiment_by_name(MODEL).experiment_id]),
            *remote.search_runs([remote.get_experiment_by_name(MODEL).experiment_id])]
    assert {r.data.tags.get("govkit.operation") for r in runs} >= {"check_run", "sync"}
    for r in runs:
        missing = [t for t in CONVENTION if not r.data.tags.get(t) and t != "govkit.artifact_sha256"]
        assert not missing, (r.info.run_name, missing)
        assert r.data.tags["govkit.device_id"] == device.id and r.data.tags["govkit.store_id"] == device.store_id
    [shipped] = [r for r in runs if r.data.tags["govkit.operation"] == "sync"]
    assert shipped.data.tags["govkit.artifact_sha256"] == "sha256:" + "ab" * 32
    assert shipped.data.metrics["inference_volume"] == 20 and shipped.data.metrics["error_rate"] == pytest.approx(1 / 20)


def test_the_sync_run_counts_redactions_by_type(tmp_path: Path, central: str) -> None:
    import mlflow

    from govkit.audit import AuditLog

    device = make_device(tmp_path, "branch-2")
    device.append(30)
    with AuditLog.open(settings=device.settings) as log:
        for n in range(3):
            log.append("inference", prompt=f"mail client{n}@example.com or call +1 415 555 010{n}", response="ok",
                       status="ok")
        log.append("inference", prompt="two mails: a@example.org, b@example.org", response="ok", status="ok")
    ship(device, central, max_records=10)  # several segments: the counts add up across them
    remote = mlflow.MlflowClient(central)
    [shipped] = remote.search_runs([remote.get_experiment_by_name(MODEL).experiment_id])
    metrics = shipped.data.metrics
    assert (metrics["redactions.EMAIL"], metrics["redactions.PHONE"], metrics["inference_volume"]) == (5, 3, 34)


def test_a_sync_killed_mid_upload_resumes_without_duplicates_or_gaps(tmp_path: Path, central: str,
                                                                     witness_key: tuple[Path, str]) -> None:
    device = make_device(tmp_path, "branch-2")
    device.set_sync(witness_public_key=witness_key[1])
    head = device.append(6000)
    command = [sys.executable, "-c", "from govkit.cli import main; main()", "sync", "--to", central, "--segment-records", "200"]
    proc = subprocess.Popen(command, cwd=device.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    artifacts = tmp_path / "central" / "mlartifacts"
    deadline = time.monotonic() + 120

    def segment_notes() -> int:  # head.note is not one
        return sum(1 for path in artifacts.rglob("*.note") if path.parent.name == "notes")

    while segment_notes() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shipped_before = segment_notes()
    assert 3 <= shipped_before < 30, "the sync was not killed midway"
    resumed = ship(device, central, max_records=200)
    assert resumed.resumed and resumed.central_seq >= 600 and resumed.records == head - resumed.central_seq
    assert sorted(_segment_rows(tmp_path)) == list(range(1, head + 1))
    c = Central(central)
    try:  # the resumed run's figures count the whole run, the part shipped before the kill included
        [run_metrics] = [r.data.metrics for r in c.runs(c.experiments()) if r.info.run_id == resumed.run_id]
    finally:
        c.close()
    assert (run_metrics["records"], run_metrics["inference_volume"]) == (head, 6000)
    assert run_metrics["error_rate"] == pytest.approx(120 / 6000)
    registry = enroll(tmp_path, device)
    checked = witness_pass(central, registry, witness_key[0], tmp_path)
    assert checked.ok and checked.records == head, checked.to_dict()
    c = Central(central)
    try:
        assert verify_device(c, c.experiments(), device_id=device.id, public_key=device.settings.audit.public_key).ok
    finally:
        c.close()
    # The resumed run's range covers its first part too: the next sync, which takes the
    # acknowledged runs at their range tags, ships only what is new.
    later = device.append(100)
    after = ship(device, central, max_records=200)
    assert after.acknowledged_seq == head and after.central_seq == head and after.shipped == ((head + 1, later),)


def test_acknowledged_syncs_are_not_listed_again_but_a_deleted_run_is_shipped_again(
        tmp_path: Path, central: str, witness_key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    device = make_device(tmp_path, "branch-25")
    device.set_sync(witness_public_key=witness_key[1])
    registry = enroll(tmp_path, device)
    heads, runs = [], []
    for _ in range(4):
        heads.append(device.append(300))
        runs.append(ship(device, central).run_id)
        assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    listed: list[str] = []
    real = Central.list

    def counting(self: Central, run_id: str, folder: str | None, **kw: bool) -> list[str]:
        if folder == "notes":
            listed.append(run_id)
        return real(self, run_id, folder, **kw)

    monkeypatch.setattr(Central, "list", counting)
    heads.append(device.append(300))
    fifth = ship(device, central)
    assert fifth.central_seq == heads[3] and fifth.shipped[-1][1] == heads[4]
    assert listed == []  # four acknowledged runs, taken at their range tags: none listed
    c = Central(central)
    try:
        c.client.delete_run(runs[1])  # the central store loses the second sync's run
    finally:
        c.close()
    again = ship(device, central)
    assert again.central_seq == heads[0] and again.shipped[0][0] == heads[0] + 1  # its hole is shipped again
    assert again.shipped[-1][1] == heads[4]


def test_a_replayed_segment_changes_nothing(tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    device = make_device(tmp_path, "branch-3")
    head = device.append(1500)
    first = ship(device, central, max_records=500)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).records == head
    c = Central(central)
    try:
        [original] = [r for r in c.runs(c.experiments()) if r.info.run_id == first.run_id]
        replay = c.create_run(original.info.experiment_id, "replay", {
            k: v for k, v in original.data.tags.items() if k.startswith("govkit.") and not k.startswith("govkit.witness")})
        for path in [*c.list(first.run_id, "notes"), "head.note"]:
            c.upload(replay, path, c.download(first.run_id, path))
        for note in c.list(first.run_id, "notes"):
            lo, hi = note.split("/")[-1].split("-")[:2]
            [parquet] = [p for p in _all_files(c, first.run_id) if p.endswith(".parquet") and f"/{lo}-{hi}-" in p]
            c.upload(replay, parquet, c.download(first.run_id, parquet))
        c.finish(replay)
        segments = len(c.list(first.run_id, "notes"))
        before = fleet_status(c, c.experiments())
    finally:
        c.close()
    again = witness_pass(central, registry, witness_key[0], tmp_path)
    assert again.ok and again.segments == 0 and again.records == 0 and again.duplicates == segments, again.to_dict()
    c = Central(central)
    try:
        after = fleet_status(c, c.experiments())
        assert [s.records for s in after] == [head] and after[0].acked_seq == before[0].acked_seq == head
    finally:
        c.close()


def _all_files(c: Central, run_id: str, folder: str | None = None) -> list[str]:
    found = []
    for item in c.client.list_artifacts(run_id, folder):
        found.extend(_all_files(c, run_id, item.path) if item.is_dir else [item.path])
    return found


def test_a_tampered_segment_is_rejected_and_fails_central_verification(tmp_path: Path, central: str,
                                                                       witness_key: tuple[Path, str]) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    device = make_device(tmp_path, "branch-4")
    device.append(900)
    ship(device, central, max_records=300)
    [target] = [f for f in (tmp_path / "central" / "mlartifacts").rglob("*.parquet") if "/000000000301-" in str(f)]
    table = pq.read_table(target)
    table = table.set_column(table.schema.get_field_index("body"), "body",
                             pc.replace_substring(table.column("body"), "approve", "deny!!!"))
    pq.write_table(table, target)
    registry = enroll(tmp_path, device)
    result = run("fleet", "witness", "--from", central, "--registry", str(registry), "--key", str(witness_key[0]),
                 "--ledger", str(tmp_path / "witness.db"))
    assert result.exit_code == 1 and "altered" in result.output and "301..600" in result.output, result.output
    verified = run("audit", "verify", "--from-mlflow", central, "--device", device.id, "--registry", str(registry))
    assert verified.exit_code == 1 and "301..600" in verified.output, verified.output


def test_a_forked_device_log_is_reported(tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    device = make_device(tmp_path, "branch-5")
    device.append(400)
    ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    twin = device.clone(tmp_path / "branch-5-copy")  # the same store, cloned onto a second tablet
    device.append(100, marker="original")
    ship(device, central)
    twin.append(300, marker="clone")
    ship(twin, central)
    checked = witness_pass(central, registry, witness_key[0], tmp_path)
    assert not checked.ok and [f.kind for f in checked.findings] == ["fork"], checked.to_dict()
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--format", "json")
    assert status.exit_code == 1 and "fork" in json.loads(status.stdout)[0]["findings"]


def test_a_fork_hidden_by_editing_the_witness_tags_is_still_reported(tmp_path: Path, central: str,
                                                                     witness_key: tuple[Path, str]) -> None:
    """Someone with write access to MLflow clears the witness's findings on the forked run and
    marks it acknowledged: the witness signed its verdict, so the fleet views see the edit."""
    import mlflow

    device = make_device(tmp_path, "branch-9")
    device.append(400)
    ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    twin = device.clone(tmp_path / "branch-9-copy")
    device.append(100, marker="original")
    ship(device, central)
    twin.append(300, marker="clone")
    forked = ship(twin, central)
    assert not witness_pass(central, registry, witness_key[0], tmp_path).ok
    arguments = ("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1],
                 "--format", "json")
    before = run(*arguments)
    assert before.exit_code == 1 and "fork" in json.loads(before.output)[0]["findings"], before.output
    client = mlflow.MlflowClient(tracking_uri=central)
    client.set_tag(forked.run_id, "govkit.witness.findings", "")
    client.set_tag(forked.run_id, "govkit.witness.status", "acknowledged")
    after = run(*arguments)
    [state] = json.loads(after.output)
    assert after.exit_code == 1 and not state["healthy"], after.output
    assert any("not what the witness signed" in d for d in state["findings"]["altered"]), state

    def trail_says(*key: str) -> str:
        shown = run("trail", "--from", central, "--device", device.id, *key, "--format", "json")
        assert shown.exit_code == 0, shown.output
        [sync_event] = [e for e in json.loads(shown.output) if e["run_id"] == forked.run_id]
        return str(sync_event["what"])

    assert "witness: ALTERED" in trail_says("--witness-key", witness_key[1])  # the trail does not repeat the edit
    assert "witness: acknowledged (unverified" in trail_says()
    client.delete_tag(forked.run_id, "govkit.witness.verdict")  # the signed verdict removed too: still not believed
    assert run(*arguments).exit_code == 1


def test_a_rolled_back_device_is_reported(tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    device = make_device(tmp_path, "branch-6")
    device.append(300)
    backup = device.clone(tmp_path / "backup")
    device.append(300)
    ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    import shutil

    shutil.rmtree(device.folder / ".govkit")
    shutil.copytree(backup.folder / ".govkit", device.folder / ".govkit")  # restored from last week's backup
    ship(device, central)
    checked = witness_pass(central, registry, witness_key[0], tmp_path)
    assert [f.kind for f in checked.findings] == ["rollback"] and not checked.ok, checked.to_dict()
    assert "behind seq" in checked.findings[0].detail


def test_a_silent_device_and_a_gap_are_flagged(tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    talking, silent = make_device(tmp_path, "branch-7"), make_device(tmp_path, "branch-8")
    talking.append(600)
    ship(talking, central, max_records=200)
    registry = enroll(tmp_path, talking, silent)
    c = Central(central)
    try:
        [shipped] = c.runs(c.experiments())
        middle = [p for p in c.list(shipped.info.run_id, "notes") if "/000000000201-" in p]
        # the segment 201..400 is lost on the way: the central store never got its note
        (tmp_path / "central" / "mlartifacts").joinpath(*_artifact_parts(shipped, middle[0])).unlink()
    finally:
        c.close()
    checked = witness_pass(central, registry, witness_key[0], tmp_path)
    assert checked.ok and checked.held == 1 and [f.kind for f in checked.findings] == ["gap"], checked.to_dict()
    c = Central(central)
    try:
        states = {s.device_id: s for s in fleet_status(c, c.experiments(), registry=load_registry(registry))}
        assert states[silent.id].silent and states[silent.id].last_sync is None
        assert "gap" in states[talking.id].findings and not states[talking.id].healthy
        later = {s.device_id: s for s in fleet_status(c, c.experiments(), as_of="2027-06-01T00:00:00Z")}
        assert later[talking.id].silent and later[talking.id].days_silent > 100
    finally:
        c.close()
    resent = ship(talking, central, max_records=200)  # the device ships the lost seqs again
    assert resent.central_seq == 200 and resent.shipped[0][0] == 201
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok


def _artifact_parts(run, path: str) -> list[str]:
    root = run.info.artifact_uri.split("/mlartifacts/")[1]
    return [*root.split("/"), *path.split("/")]


def test_an_unreachable_server_exits_3_and_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    device = make_device(tmp_path, "branch-9")
    head = device.append(50)
    with inside(device.folder):
        result = run("sync", "--to", "http://127.0.0.1:9")
    assert result.exit_code == 3 and "127.0.0.1:9" in result.output and "Traceback" not in result.output, result.output
    assert device.head() == head


def test_segment_columns_read_every_body_as_an_export_does() -> None:
    import pyarrow as pa

    from govkit.fleet.segments import _fields

    plain = [b'{"event_type":"inference","status":"ok","ts_start":"2026-12-02T10:00:00Z"}', b'{"event_type":"x"}']
    odd = [*plain, b'{"event_type":"inference","status":1}', b'{"event_type":\n"two lines"}']
    for bodies in (plain, odd):
        table = _fields(pa, bodies)  # Arrow's parse, or the general one where a field is not text
        assert table.num_rows == len(bodies)
        assert table.column("status").to_pylist()[:2] == ["ok", None]
    assert _fields(pa, odd).column("status").to_pylist()[2] == "1"  # str() of it, as `audit export` writes
    assert _fields(pa, odd).column("event_type").to_pylist()[3] == "two lines"


def test_a_forked_history_shipped_over_a_deleted_run_with_its_file_swapped_is_never_cosigned(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    """The attack of step 13: a copy of the device taken at seq 102 records another history; the
    cosigned run is soft-deleted in MLflow, the copy ships 1..182 in a new run, and the new
    segment's bytes are copied over the old run's cosigned file at the same path. The witness's
    own ledger still holds the head it cosigned: the second history is a fork, and verify fails."""
    import shutil

    import mlflow

    device = make_device(tmp_path, "branch-13")
    device.append(102)
    twin = device.clone(tmp_path / "branch-13-copy")  # same store, same key
    device.append(50, marker="original")
    first = ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    client = mlflow.MlflowClient(tracking_uri=central)
    [old_file] = [f for f in (tmp_path / "central" / "mlartifacts").rglob("*.parquet") if first.run_id in str(f)]
    client.delete_run(first.run_id)
    twin.append(80, marker="rewritten")
    second = ship(twin, central)
    assert second.run_id != first.run_id and second.shipped[0][0] == 1 and second.head_seq == twin.head()
    [new_file] = [f for f in (tmp_path / "central" / "mlartifacts").rglob("*.parquet") if second.run_id in str(f)]
    shutil.copyfile(new_file, old_file)  # the cosigned path now holds the rewritten history's bytes
    checked = witness_pass(central, registry, witness_key[0], tmp_path)
    assert not checked.ok and "fork" in {f.kind for f in checked.findings}, checked.to_dict()
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1],
                 "--format", "json")
    assert status.exit_code == 1 and not json.loads(status.output)[0]["healthy"], status.output
    verified = run("audit", "verify", "--from-mlflow", central, "--device", device.id, "--registry", str(registry),
                   "--witness-key", witness_key[1])
    assert verified.exit_code == 1 and "OK" not in verified.output.split("\n")[0], verified.output
    # forever: the next pass, whatever MLflow now shows, still does not cosign the second history
    again = witness_pass(central, registry, witness_key[0], tmp_path)
    assert again.segments == 0
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1],
                 "--format", "json")
    assert status.exit_code == 1, status.output


def test_without_the_file_swap_verify_from_mlflow_fails_on_the_rejected_history(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    import mlflow

    device = make_device(tmp_path, "branch-14")
    device.append(102)
    twin = device.clone(tmp_path / "branch-14-copy")
    device.append(50, marker="original")
    first = ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    mlflow.MlflowClient(tracking_uri=central).delete_run(first.run_id)
    twin.append(80, marker="rewritten")
    ship(twin, central)
    checked = witness_pass(central, registry, witness_key[0], tmp_path)
    assert not checked.ok and "fork" in {f.kind for f in checked.findings}, checked.to_dict()
    verified = run("audit", "verify", "--from-mlflow", central, "--device", device.id, "--registry", str(registry),
                   "--witness-key", witness_key[1])
    assert verified.exit_code == 1, verified.output
    # a deleted run is a finding, not an erasure of evidence
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1],
                 "--format", "json")
    [state] = json.loads(status.output)
    assert status.exit_code == 1 and "deleted" in state["findings"], state


def test_figures_edited_in_mlflow_are_not_shown_as_verified(tmp_path: Path, central: str,
                                                           witness_key: tuple[Path, str]) -> None:
    """An edited govkit.seq_range showed 999999 shipped and an edited records metric 1,000,101
    records, state ok, exit 0: with the witness key, the figures come from its signed verdict."""
    import mlflow

    device = make_device(tmp_path, "branch-15")
    device.append(100)
    shipped = ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    client = mlflow.MlflowClient(tracking_uri=central)
    client.set_tag(shipped.run_id, "govkit.seq_range", "1-999999")
    client.log_metric(shipped.run_id, "records", 1_000_101)
    arguments = ("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1])
    status = run(*arguments, "--format", "json")
    [state] = json.loads(status.output)
    assert status.exit_code == 0 and state["healthy"], status.output
    assert state["shipped_seq"] == device.head() and state["records"] == shipped.records, state
    assert state["unverified_figures"] == 0
    assert "999999" not in run(*arguments).output


def test_a_device_that_synced_before_it_was_enrolled_is_caught_up_once_enrolled(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    """Its first run was rejected as unknown and never retried: every later sync waited on a gap
    that could not close."""
    device = make_device(tmp_path, "branch-16")
    device.append(50)
    ship(device, central)
    other = make_device(tmp_path, "branch-16b")
    registry = enroll(tmp_path, other)
    early = witness_pass(central, registry, witness_key[0], tmp_path)
    assert not early.ok and [f.kind for f in early.findings] == ["unknown"], early.to_dict()
    assert "checked at the first pass after it is enrolled" in early.findings[0].detail
    registry = enroll(tmp_path, device)
    device.append(30)
    ship(device, central)
    caught_up = witness_pass(central, registry, witness_key[0], tmp_path)
    assert caught_up.ok and caught_up.records == device.head(), caught_up.to_dict()
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1],
                 "--format", "json")
    states = {s["device_id"]: s for s in json.loads(status.output)}
    assert states["branch-16"]["acked_seq"] == device.head() and "gap" not in states["branch-16"]["findings"], states


def test_an_old_sync_run_replayed_later_is_a_duplicate_not_a_rollback(tmp_path: Path, central: str,
                                                                        witness_key: tuple[Path, str]) -> None:
    """Copying an old run into a new one made the witness report a healthy device as rolled back."""
    device = make_device(tmp_path, "branch-17")
    device.append(100)
    first = ship(device, central)
    registry = enroll(tmp_path, device)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    device.append(100)
    ship(device, central)
    assert witness_pass(central, registry, witness_key[0], tmp_path).ok
    c = Central(central)
    try:
        [original] = [r for r in c.runs(c.experiments()) if r.info.run_id == first.run_id]
        replay = c.create_run(original.info.experiment_id, "replay", {
            k: v for k, v in original.data.tags.items() if k.startswith("govkit.") and not k.startswith("govkit.witness")})
        for path in _all_files(c, first.run_id):
            c.upload(replay, path, c.download(first.run_id, path))
        c.finish(replay)
    finally:
        c.close()
    again = witness_pass(central, registry, witness_key[0], tmp_path)
    assert again.ok and [f.kind for f in again.findings] == ["duplicate"], again.to_dict()
    assert "not a rollback" in again.findings[0].detail
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", witness_key[1],
                 "--format", "json")
    [state] = json.loads(status.output)
    assert status.exit_code == 0 and state["healthy"] and "rollback" not in state["findings"], state
