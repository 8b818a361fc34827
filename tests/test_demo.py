"""`govkit demo` end to end on the real model, as a newcomer runs it: a process of its own (its
own process group, as a terminal gives it), llama.cpp's server with the bundled SmolLM2 GGUF,
govkit proxy, and every artifact the main job leaves. Also Ctrl-C in the middle of it."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from govkit.audit import AuditLog

from .servers import smollm2_gguf

pytestmark = pytest.mark.slow


def start_demo(folder: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GOVKIT_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "govkit", "demo", "--dir", str(folder), *args],
                            cwd=folder.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def left_running(pgid: int) -> list[str]:
    """Command lines of the processes still in the demo's process group (its children included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except (ProcessLookupError, OSError):
                continue
    return found


def test_the_demo_runs_the_main_job_on_the_real_model(tmp_path: Path) -> None:
    folder = tmp_path / "govkit-demo"
    demo = start_demo(folder)
    output, _ = demo.communicate(timeout=900)
    assert demo.returncode == 0, output
    assert left_running(demo.pid) == [], "the demo left processes running"
    # every artifact exists: reports (HTML, PDF), the model card, the verify output, the MLflow runs
    reports = folder / "reports"
    board_html, = reports.glob("board-*.html")
    board_pdf, = reports.glob("board-*.pdf")
    card, = reports.glob("model-card-*.md")
    assert board_pdf.read_bytes().startswith(b"%PDF") and "Overall: " in board_html.read_text()
    assert card.read_text().startswith("---\nmodel_id: \"credit-assistant\"") and "model-index:" in card.read_text()
    assert len(list(reports.glob("engineer-*.html"))) == 1
    assert (folder / "verify.txt").read_text().startswith("OK: ")
    with sqlite3.connect(folder / ".govkit" / "mlflow.db") as mlflow_db:
        operations = {row[0] for row in mlflow_db.execute(
            "SELECT value FROM tags WHERE key = 'govkit.operation'")}
    assert {"lineage", "risk_rating", "bias_run", "explanation", "check_run", "sync", "report"} <= operations
    # every inference record carries the served GGUF's sha256; the chain verifies; the tampered copy fails
    digest = "sha256:" + hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest()
    with AuditLog(folder / ".govkit" / "audit.db", create=False, read_only=True) as log:
        calls = list(log.query(event_type="inference"))
        assert len(calls) > 24 + 6 + 150 and {r.artifact_sha256 for r in calls} == {digest}
        assert all(r.purpose != "synthetic" for r in calls)
        workload = [r for r in calls if r.subject_ref and r.subject_ref.startswith("C-")]
        assert len(workload) == 6 and all(r.quantization == "Q4_1" for r in workload)
        assert {r.event_type for r in log} >= {"lineage", "risk_rating", "override", "purge", "bias_run",
                                               "explanation", "check_run", "report", "checkpoint"}
        assert log.verify().ok
    with AuditLog(folder / "tampered" / "audit.db", create=False, read_only=True) as copy:
        assert not copy.verify().ok
    # what it printed: honest findings, where each file is, and how to open the MLflow trail
    assert "What the demo found" in output and "decides poorly" in output
    assert f"mlflow ui --backend-store-uri sqlite:///{folder / '.govkit' / 'mlflow.db'}" in output
    assert "4111 1111 1111 1111" not in (folder / ".govkit" / "audit.db").read_bytes().decode("latin-1")


def wait_for_the_proxy(demo: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 300
    proxy_log = folder / "logs" / "proxy.log"
    while not (proxy_log.exists() and b"listening on" in proxy_log.read_bytes()):
        assert demo.poll() is None and time.monotonic() < deadline, demo.stdout.read() if demo.stdout else ""
        time.sleep(0.2)
    time.sleep(2)  # into the workload


def stopped(demo: subprocess.Popen) -> str:
    output, _ = demo.communicate(timeout=120)
    assert demo.returncode != 0, output
    for _ in range(50):
        if not group_alive(demo.pid):
            break
        time.sleep(0.1)
    assert left_running(demo.pid) == [], output
    return output


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_demo_stops_its_servers_and_a_second_run_cleans_up(tmp_path: Path, how: str) -> None:
    folder = tmp_path / "demo"
    demo = start_demo(folder)
    wait_for_the_proxy(demo, folder)
    if how == "ctrl-c":
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    else:
        os.kill(demo.pid, signal.SIGTERM)  # a supervisor stopping the demo alone: it must stop its children
    stopped(demo)
    with AuditLog(folder / ".govkit" / "audit.db", create=False, read_only=True) as log:
        assert log.verify().ok  # interrupted, nothing half-written
    again = start_demo(folder, "--scripted")  # the same folder: the first run's files are replaced
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert left_running(again.pid) == []
