"""Segments sealed ahead of the link (`govkit sync --seal`): a sync ships them as they are when
they still hold for the store, and builds from the store whatever they do not cover or no
longer match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from govkit.fleet.sealed import sealed_folder

from .conftest import run
from .fleet import Device, enroll, inside, make_device, ship, witness_pass
from .test_fleet import _segment_rows


def _seal(device: Device, *args: str) -> dict[str, int]:
    with inside(device.folder):
        result = run("sync", "--seal", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _sealed(device: Device) -> list[str]:
    return sorted(p.name for p in sealed_folder(device.settings.audit.db).glob("*.parquet"))


def test_sealed_segments_ship_as_they_are_and_the_open_tail_is_built_at_sync(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    device = make_device(tmp_path, "branch-31")
    device.set_sync(segment_records=1000)
    head = device.append(2500, overrides=2)
    sealed = _seal(device)
    assert (sealed["segments"], sealed["records"], sealed["ready_upto"]) == (2, 2000, 2000)
    assert sealed["open_tail"] == head - 2000  # the open segment is not sealed: more records may join it
    assert _seal(device)["segments"] == 0  # sealing again seals nothing twice
    files = {name: (sealed_folder(device.settings.audit.db) / name).read_bytes() for name in _sealed(device)}

    shipped = ship(device, central)
    assert shipped.sealed == 2 and shipped.shipped[0] == (1, 1000) and shipped.shipped[-1][1] == head
    central_files = {p.name: p.read_bytes() for p in (tmp_path / "central" / "mlartifacts").rglob("*.parquet")}
    assert all(central_files[name] == data for name, data in files.items())  # byte for byte what was sealed
    assert sorted(_segment_rows(tmp_path)) == list(range(1, head + 1))
    assert _sealed(device) == []  # the central store holds them: the sealed copies are gone
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=central).get_run(shipped.run_id)
    assert run.data.tags["govkit.sync.status"] == "shipped" and run.data.metrics["records"] == head
    assert run.data.metrics["overrides"] == 2 and run.data.metrics["inference_volume"] == 2500
    checked = witness_pass(central, enroll(tmp_path, device), witness_key[0], tmp_path)
    assert checked.ok and checked.records == head and not checked.findings, checked.to_dict()

    more = device.append(1200)
    assert _seal(device)["ready_upto"] == head + 1000  # sealing goes on where the central copy ends
    again = ship(device, central)
    assert again.sealed == 1 and again.shipped == ((head + 1, head + 1000), (head + 1001, more))


def test_a_sealed_segment_of_another_timeline_is_set_aside(tmp_path: Path, central: str,
                                                          witness_key: tuple[Path, str]) -> None:
    """The store restored from a backup after sealing: the sealed copy of seqs the store now holds
    differently is not shipped; the sync builds that range from the store as it is."""
    device = make_device(tmp_path, "branch-32")
    device.set_sync(segment_records=1000)
    device.append(1000)
    db = device.settings.audit.db
    backup = tmp_path / "audit.db.backup"
    shutil.copy(db, backup)
    device.append(1500, marker="first timeline")
    assert _seal(device)["segments"] == 2
    for leftover in db.parent.glob(db.name + "-*"):  # its WAL and shared memory go with it
        leftover.unlink()
    shutil.copy(backup, db)  # last week's backup, then new records on it
    head = device.append(1500, marker="second timeline")

    shipped = ship(device, central)
    assert shipped.sealed == 1  # seqs 1..1000 are the same in both; 1001..2000 are not
    checked = witness_pass(central, enroll(tmp_path, device), witness_key[0], tmp_path)
    assert checked.ok and checked.records == head and not checked.findings, checked.to_dict()
    import pyarrow.dataset as ds

    files = sorted((tmp_path / "central" / "mlartifacts").rglob("*.parquet"))
    shipped_hashes = ds.dataset([str(f) for f in files], format="parquet", partitioning="hive").to_table(
        columns=["record_hash"]).column("record_hash").to_pylist()
    import sqlite3

    with sqlite3.connect(db) as store:
        assert shipped_hashes == [h for (h,) in store.execute("SELECT record_hash FROM records ORDER BY seq")]


def test_a_damaged_sealed_file_is_rebuilt_from_the_store(tmp_path: Path, central: str,
                                                        witness_key: tuple[Path, str]) -> None:
    device = make_device(tmp_path, "branch-33")
    device.set_sync(segment_records=1000)
    head = device.append(2500)
    _seal(device)
    first = sealed_folder(device.settings.audit.db) / _sealed(device)[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))

    shipped = ship(device, central)
    assert shipped.sealed == 0 and shipped.records == head  # the chain of sealed copies breaks at the first
    checked = witness_pass(central, enroll(tmp_path, device), witness_key[0], tmp_path)
    assert checked.ok and checked.records == head and not checked.findings, checked.to_dict()


def test_sealing_is_refused_when_content_may_leave_the_device(tmp_path: Path) -> None:
    device = make_device(tmp_path, "branch-34")
    device.set_sync(ship_content=True, segment_records=100)
    device.append(500)
    with inside(device.folder):
        result = run("sync", "--seal")
    assert result.exit_code == 2 and "ship_content" in result.output and "Traceback" not in result.output
    assert _sealed(device) == []
