"""The README's fleet commands run as written, in order, against a local central MLflow store:
the device's sync, the central side's keygen, enroll, witness, status, verify, trail, and the
board report with its fleet section, then its verification."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from pathlib import Path

from .conftest import run
from .fleet import inside, make_device

README = Path(__file__).resolve().parent.parent / "README.md"
SERVER = "http://mlflow.internal:5000"


def fleet_commands() -> list[str]:
    section = README.read_text(encoding="utf-8").split("<!-- fleet -->", 1)[1].split("<!-- /fleet -->", 1)[0]
    lines = [line.split("  #")[0].strip() for line in section.splitlines()]
    return [line for line in lines if line.startswith("govkit ")]


def test_the_readme_fleet_commands_run_as_written(tmp_path: Path, central: str) -> None:
    commands = fleet_commands()
    assert [c.split()[1] for c in commands] == ["sync", "sync", "fleet", "fleet", "fleet", "fleet", "audit", "trail",
                                                "report", "report"]
    device = make_device(tmp_path, "branch-17")
    device.set_sync(segment_records=100)
    head = device.append(400, overrides=2)
    office = make_device(tmp_path, "office")
    today = dt.date.today()
    quarter = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    outputs: dict[str, str] = {}
    for command in commands:
        words = shlex.split(command.replace(SERVER, central)
                            .replace("/provisioning/branch-17/govkit.toml", str(device.config))
                            .replace("$WITNESS_KEY", outputs.get("keygen", ""))
                            .replace("2026-Q4", quarter))[1:]
        if words[:2] == ["report", "board"]:
            with office.config.open("a", encoding="utf-8") as handle:  # the [fleet] table the README shows
                handle.write(f'\n[fleet]\ncentral = "{central}"\nregistry = "fleet.toml"\n'
                             f'witness_public_key = "{outputs["keygen"]}"\n')
        with inside(device.folder if words[0] == "sync" else office.folder):
            result = run(*words)
        assert result.exit_code == 0, (command, result.output)
        outputs["seal" if "--seal" in words else words[1] if words[0] == "fleet" else words[0]] = result.output.strip()
    assert outputs["seal"].startswith("sealed 4 segment(s), 400 records"), outputs["seal"]
    assert "4 of them sealed ahead" in outputs["sync"], outputs["sync"]
    assert f"seqs 1..{head}" in outputs["sync"] and f"{head} records" in outputs["witness"]
    assert re.search(r"branch-17 .* ok$", outputs["status"], re.M), outputs["status"]
    assert outputs["audit"].startswith("OK")
    assert sum("override" in line for line in outputs["trail"].splitlines()) == 2
    assert "witness: acknowledged (signed by the witness)" in outputs["trail"], outputs["trail"]
    document = json.loads((office.folder / "reports" / f"board-{quarter}.json").read_text(encoding="utf-8"))
    assert document["figures"]["fleet"] == {"devices": 1, "healthy": 1, "not_synced": [], "findings": {},
                                            "late_acks": 0, "records_acknowledged": head}
