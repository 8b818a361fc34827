"""The gate sees only what is there and claims no more: it never makes or changes a store, no
evidence is never a pass, a user check cannot hang or end the run, and what a checks folder
brings (its code, its policy) is on the record."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from govkit.audit import AuditLog
from govkit.checks import Status
from govkit.cli import cli
from govkit.config import load_settings

from .conftest import run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run("init", "--yes").exit_code == 0
    return tmp_path


def files_under(folder: Path) -> dict[str, str]:
    """Every file's digest, but SQLite's own reader index (-shm, and an empty -wal) that any reader makes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


def test_a_ci_folder_holding_only_the_config_gets_exit_3_and_no_store(project: Path, tmp_path: Path) -> None:
    ci = tmp_path / "ci"
    ci.mkdir()
    shutil.copy(project / "govkit.toml", ci / "govkit.toml")
    result = CliRunner().invoke(cli, ["--config", str(ci / "govkit.toml"), "check"])
    assert result.exit_code == 3 and "only 'govkit init' creates an audit store" in result.output
    assert not (ci / ".govkit").exists()
    text = (ci / "govkit.toml").read_text().replace('db = ".govkit/audit.db"', 'db = "/nonexistent/dir/audit.db"')
    (ci / "govkit.toml").write_text(text)
    result = CliRunner().invoke(cli, ["--config", str(ci / "govkit.toml"), "check"])
    assert result.exit_code == 3 and not Path("/nonexistent").exists()


def test_no_record_runs_on_an_auditors_copy_and_writes_nothing(project: Path) -> None:
    before = files_under(project / ".govkit")
    result = run("check", "--no-record", "--format", "json")
    assert result.exit_code == 1  # a bare project: blocking controls without evidence
    report = json.loads(result.output)
    assert report["record_id"] is None
    assert files_under(project / ".govkit") == before


def test_no_evidence_is_never_a_pass_and_blocks_where_the_control_blocks(project: Path) -> None:
    report = json.loads(run("check", "--format", "json").output)
    by_id = {r["id"]: r for r in report["results"]}
    assert by_id["ETH-001"]["status"] == "NO EVIDENCE" and by_id["ETH-001"]["blocking"]
    assert "govkit bias" in by_id["ETH-001"]["message"]
    assert report["summary"]["NO EVIDENCE"] >= 5 and not report["summary"]["passed"]


def test_log_integrity_blocks_and_does_not_pass_without_a_trusted_key(project: Path) -> None:
    report = json.loads(run("check", "--select", "GOV-010", "--format", "json").output)
    [result] = report["results"]
    assert result["status"] == "PASS" and "trusted device key" in result["message"]
    public = load_settings(project / "govkit.toml").audit.public_key
    text = (project / "govkit.toml").read_text().replace(public, "")
    (project / "govkit.toml").write_text(text)
    (project / ".govkit" / "device_ed25519.pem").rename(project / "offline.pem")  # the key kept elsewhere
    outcome = run("check", "--select", "GOV-010", "--format", "json")
    [result] = json.loads(outcome.output)["results"]
    assert result["status"] == "FAIL" and result["blocking"] and "self-consistent only" in result["message"]
    assert outcome.exit_code == 1


USER_CHECKS = '''
import sys, threading, time
import pytest
from govkit.checks import Result, check

POLICY = {"evidence_max_age_days": 400}

@check(id="GOV-901", title="exits", severity="warning", references={"Test": "1"})
def exits(ctx):
    """What it checks: x. Why it matters: x. How to fix: x."""
    sys.exit(0)

@check(id="GOV-902", title="base exception", severity="warning", references={"Test": "1"})
def base(ctx):
    """What it checks: x. Why it matters: x. How to fix: x."""
    raise KeyboardInterrupt

@check(id="GOV-903", title="pytest skip", severity="warning", references={"Test": "1"})
def skipped(ctx):
    """What it checks: x. Why it matters: x. How to fix: x."""
    pytest.skip("not today")

@check(id="GOV-904", title="hangs", severity="blocking", references={"Test": "1"})
def hangs(ctx):
    """What it checks: x. Why it matters: x. How to fix: x."""
    threading.Event().wait(60)

@check(id="GOV-905", title="fine", severity="warning", references={"Test": "1"})
def fine(ctx):
    """What it checks: x. Why it matters: x. How to fix: x."""
    return Result(True, "fine")
'''


def test_a_user_check_cannot_hang_or_end_the_gate_and_its_code_is_on_the_record(project: Path) -> None:
    folder = project / "mychecks"
    folder.mkdir()
    (folder / "odd.py").write_text(USER_CHECKS)
    digest = "sha256:" + hashlib.sha256((folder / "odd.py").read_bytes()).hexdigest()
    result = run("check", "--checks-dir", str(folder), "--select", "GOV-9", "--time-limit", "1", "--format", "json")
    assert result.exit_code == 1  # the hanging check blocks: it could not be judged
    report = json.loads(result.stdout)
    statuses = {r["id"]: (r["status"], r["message"]) for r in report["results"]}
    assert [statuses[i][0] for i in ("GOV-901", "GOV-902", "GOV-903", "GOV-904")] == ["ERROR"] * 4
    assert statuses["GOV-901"][1].startswith("SystemExit") and "time limit of 1 s" in statuses["GOV-904"][1]
    assert statuses["GOV-905"][0] == "PASS"
    assert f"user checks: {folder / 'odd.py'} {digest}" in result.output
    assert "policy override: evidence_max_age_days = 400" in result.output
    with AuditLog.open() as log:
        [record] = list(log.query(event_type="check_run"))
    assert record.details["user_check_files"] == {str(folder / "odd.py"): digest}
    assert record.details["policy_overrides"] == {"evidence_max_age_days": 400}
    assert record.details["results"]["GOV-904"]["blocking"] is True


def test_junit_and_sarif_runs_say_why_they_exit_1(project: Path, tmp_path: Path) -> None:
    result = run("check", "--format", "junit", "-o", str(tmp_path / "g.xml"))
    assert result.exit_code == 1
    assert "govkit check:" in result.output and "blocking (" in result.output and "ETH-001" in result.output


def test_statuses_have_one_meaning_each() -> None:
    assert {s.value for s in Status} == {"PASS", "FAIL", "WARN", "NO EVIDENCE", "ERROR", "SKIP"}


def test_the_table_fits_the_terminal_and_uses_colour_there(project: Path) -> None:
    from govkit.checks import Context, run_checks
    from govkit.checks._formats import as_table
    from govkit.gate import load_registry

    context = Context(load_settings(project / "govkit.toml"))
    try:
        results = run_checks(load_registry(()).select(), context)
    finally:
        context.close()
    narrow = as_table(results, width=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80 and "\x1b[" not in narrow
    coloured = as_table(results, width=100, colour=True)
    assert "\x1b[" in coloured and "NO EVIDENCE" in coloured


def test_check_on_a_terminal_uses_its_width_and_colour(project: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    main, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "NO_COLOR")}
    proc = subprocess.Popen([sys.executable, "-m", "govkit", "check"], cwd=project, stdout=secondary,
                            stderr=subprocess.DEVNULL, env={**env, "COLUMNS": "90"})
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(120)
    os.close(main)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in text
    plain = [line for line in text.replace("\r", "").split("\n")]
    import re

    assert max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in plain) <= 90
