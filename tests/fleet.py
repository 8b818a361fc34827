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
