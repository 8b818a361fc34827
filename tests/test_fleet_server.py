"""The scale-out path: a real PostgreSQL, a real `mlflow server` with proxied artifacts, 20
devices with their own keys and 10,000 records each syncing at once; and MLflow's basic-auth app
refusing wrong credentials with exit 3."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from govkit.fleet.central import Central
from govkit.fleet.registry import load_registry
from govkit.fleet.status import fleet_status, verify_device

from .central_server import mlflow_server, postgres, slow_proxy
from .conftest import run
from .fleet import inside, make_device

pytestmark = pytest.mark.slow


def test_twenty_devices_sync_at_once_into_mlflow_on_postgresql(tmp_path: Path) -> None:
    from govkit.audit.checkpoints import load_private_key
    from govkit.fleet.sync import sync
    from govkit.fleet.witness import witness

    devices = [make_device(tmp_path / "devices", f"branch-{n:02d}") for n in range(20)]
    heads = {d.id: d.append(10_000, overrides=2) for d in devices}
    registry = tmp_path / "fleet.toml"
    for device in devices:
        assert run("fleet", "enroll", "--registry", str(registry), "--device-config", str(device.config)).exit_code == 0
    key = tmp_path / "witness.pem"
    keygen = run("fleet", "keygen", "--key", str(key))
    assert keygen.exit_code == 0
    public = keygen.output.strip()
    with postgres(tmp_path / "pg") as backend, mlflow_server(tmp_path / "mlflow", backend) as url:
        def ship(device):  # the library call, one thread per device (chdir is per process)
            return sync(device.settings, to=url, max_records=4000)

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(ship, devices))
        assert sum(r.records for r in results) == sum(heads.values())
        central = Central(url)
        try:
            checked = witness(central, registry=load_registry(registry), key=load_private_key(key),
                              ledger=tmp_path / "witness.db")
            assert checked.ok and checked.records == sum(heads.values()) and checked.duplicates == 0, checked.to_dict()
            again = [sync(d.settings, to=url) for d in devices[:3]]  # nothing new: nothing shipped twice
            assert all(r.records == 0 and r.new_acks == 1 for r in again)
            ids = central.experiments()
            for device in devices:
                result = verify_device(central, ids, device_id=device.id, public_key=device.settings.audit.public_key)
                assert result.ok and result.records == heads[device.id], (device.id, result.to_dict())
            states = fleet_status(central, ids, registry=load_registry(registry))
            assert len(states) == 20 and all(s.healthy for s in states), [s.to_dict() for s in states]
            assert {s.device_id: s.records for s in states} == heads  # every record counted, exactly once
        finally:
            central.close()
        office = make_device(tmp_path, "office")  # the compliance office's project: the fleet's board report
        with office.config.open("a", encoding="utf-8") as handle:
            handle.write(f'\n[fleet]\ncentral = "{url}"\nregistry = "{registry}"\nwitness_public_key = "{public}"\n')
        with inside(office.folder):
            year = str(dt.date.today().year)
            made = run("report", "board", "--period", year, "--fleet", "--format", "json", "-o", "out", "--no-record")
            assert made.exit_code == 0, made.output
            report = office.folder / "out" / f"board-{year}.json"
            figures = json.loads(report.read_text(encoding="utf-8"))["figures"]["fleet"]
            assert figures["devices"] == 20 and figures["healthy"] == 20 and not figures["not_synced"]
            assert figures["records_acknowledged"] == sum(heads.values()) and figures["findings"] == {}
            assert run("report", "verify", str(report)).exit_code == 0
        artifacts = sorted((tmp_path / "mlflow" / "artifacts").rglob("*.parquet"))
        import pyarrow.dataset as ds

        table = ds.dataset([str(f) for f in artifacts], format="parquet", partitioning="hive").to_table(
            columns=["seq", "device_id"])
        assert table.num_rows == sum(heads.values())
        assert len(set(zip(table.column("device_id").to_pylist(), table.column("seq").to_pylist()))) == table.num_rows


def test_wrong_credentials_exit_3_without_retrying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = make_device(tmp_path, "branch-auth")
    device.append(10)
    with mlflow_server(tmp_path / "mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}", "--app-name", "basic-auth",
                       env={"MLFLOW_AUTH_CONFIG_PATH": str(_auth_config(tmp_path)),
                            "MLFLOW_FLASK_SERVER_SECRET_KEY": "govkit-test-csrf-secret"}) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        with inside(device.folder):
            refused = run("sync", "--to", url)
        assert refused.exit_code == 3 and "refused the credentials" in refused.output, refused.output
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "fleet-secret-1234")
        with inside(device.folder):
            accepted = run("sync", "--to", url, "--format", "json")
        assert accepted.exit_code == 0, accepted.output
        assert json.loads(accepted.stdout)["records"] == device.head(), accepted.output


def _auth_config(tmp_path: Path) -> Path:
    config = tmp_path / "basic_auth.ini"
    config.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
                      f"admin_username = admin\nadmin_password = fleet-secret-1234\nauthorization_function = "
                      f"mlflow.server.auth:authenticate_request_basic_auth\n")
    return config


def test_a_slow_and_restarting_server_gets_retries_with_backoff_and_everything_arrives_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from govkit.fleet.sync import sync

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    device = make_device(tmp_path, "branch-slow")
    head = device.append(3000)
    with mlflow_server(tmp_path / "mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}") as url, \
            slow_proxy(url, delay_s=0.05, unavailable=2) as slow:
        shipped = sync(device.settings, to=slow, max_records=1000)  # the first requests meet a 503, then a slow link
        assert shipped.records == head and len(shipped.shipped) == -(-head // 1000)
        again = sync(device.settings, to=slow)
        assert again.records == 0 and again.central_seq == head
        central = Central(url)
        try:
            checked = verify_device(central, central.experiments(), device_id=device.id,
                                    public_key=device.settings.audit.public_key)
            assert checked.ok and checked.records == head, checked.to_dict()
        finally:
            central.close()
