"""Devices for the fleet tests: govkit projects made by `govkit init`, with records appended."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from govkit.audit import AuditLog
from govkit.config import Settings, load_settings


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    here = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


@dataclass
class Device:
    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "govkit.toml"

    @property
    def settings(self) -> Settings:
        return load_settings(self.config)

    @property
    def id(self) -> str:
        return self.settings.audit.device_id

    @property
    def store_id(self) -> str:
        return self.settings.audit.store_id

    def append(self, count: int, *, marker: str = "", overrides: int = 0) -> int:
        """`count` inference records (and `overrides` overrides); returns the head seq."""
        settings = self.settings
        with AuditLog.open(settings=settings) as log:
            log.append_many([{"event_type": "inference", "prompt": f"{marker} application {i}: limit request",
                              "response": "approve" if i % 3 else "deny", "status": "ok" if i % 50 else "error",
                              "model_id": settings.model.id, "artifact_sha256": "sha256:" + "ab" * 32,
                              "latency_ms": 12.5} for i in range(count)])
            for i in range(overrides):
                log.append("override", target_record_id=f"decision-{i}", reviewer_id="alice",
                           human_decision="overridden", override_reason="income verified by phone")
        return self.head()

    def head(self) -> int:
        import sqlite3

        db = sqlite3.connect(self.settings.audit.db)
        try:
            return int(db.execute("SELECT max(seq) FROM records").fetchone()[0])
        finally:
            db.close()

    def clone(self, folder: Path) -> Device:
        shutil.copytree(self.folder, folder)
        return Device(folder)

    def set_sync(self, **values: object) -> None:
        lines = "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
        with self.config.open("a", encoding="utf-8") as handle:
            handle.write(f"\n[sync]\n{lines}")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else f'"{value}"'


def make_device(root: Path, name: str, *, model_id: str = "credit-assistant", tracking_uri: str = "") -> Device:
    from click.testing import CliRunner

    from govkit.cli import cli

    folder = root / name
    folder.mkdir(parents=True)
    with inside(folder):
        result = CliRunner().invoke(cli, ["init", "--yes", "--model-id", model_id], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    device = Device(folder)
    import re

    text = device.config.read_text(encoding="utf-8")  # one machine, many devices: each its own id
    device.config.write_text(re.sub(r'(?m)^device_id = "[^"]*"', f'device_id = "{name}"', text), encoding="utf-8")
    if tracking_uri:
        with device.config.open("a", encoding="utf-8") as handle:
            handle.write(f'\n[tracking]\ntracking_uri = "{tracking_uri}"\n')
    return device


def enroll(tmp_path: Path, *devices: Device) -> Path:
    """The registry (tmp_path/fleet.toml) with these devices enrolled by `govkit fleet enroll`."""
    from .conftest import run

    registry = tmp_path / "fleet.toml"
    for device in devices:
        assert run("fleet", "enroll", "--registry", str(registry), "--device-config", str(device.config)).exit_code == 0
    return registry


def witness_pass(central: str, registry: Path, key: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """One pass of the witness over the central store, its ledger in tmp_path."""
    from govkit.audit.checkpoints import load_private_key
    from govkit.fleet.central import Central
    from govkit.fleet.registry import load_registry
    from govkit.fleet.witness import witness

    c = Central(central)
    try:
        return witness(c, registry=load_registry(registry), key=load_private_key(key), ledger=tmp_path / "witness.db")
    finally:
        c.close()


def ship(device: Device, central: str, **options: object):  # type: ignore[no-untyped-def]
    """`govkit sync` of this device to the central store, as a library call from its folder."""
    from govkit.fleet.sync import sync

    with inside(device.folder):
        return sync(device.settings, to=central, **options)  # type: ignore[arg-type]
