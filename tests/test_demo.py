"""`govkit demo` end to end on the real model, as a newcomer runs it: a process of its own (its
own process group, as a terminal gives it), llama.cpp's server with the bundled SmolLM2 GGUF,
govkit proxy, and every artifact the main job leaves. Also Ctrl-C in the middle of it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from govkit.audit import AuditLog

from .servers import free_port, smollm2_gguf, wait_for

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
    assert (folder / "verify.txt").read_text().startswith("OK: the audit log of store ")
    assert "records: " in (folder / "verify.txt").read_text() and "{" not in (folder / "verify.txt").read_text()
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
    # the console speaks like the reports: no Python dict dumps, an example that shows a redaction
    assert not re.search(r"\{'[A-Za-z_ ]+': ", output), [line for line in output.splitlines() if "{'" in line]
    [example] = [line for line in output.splitlines() if "on disk, as stored:" in line]
    assert re.search(r"\[[A-Z_]+\]", example), example
    assert "about the model itself" in output
    _page_one_reads_in_a_minute(board_pdf)
    store = folder / ".govkit" / "mlflow.db"
    assert f"MLFLOW_DISABLE_TELEMETRY=true mlflow ui --port 5000 --backend-store-uri sqlite:///{store}" in output
    # the commands step 3 printed are the ones it ran: llama.cpp's own server, then the proxy
    assert "$ govkit serve " in output and "$ govkit proxy --upstream http://127.0.0.1:" in output
    assert "4111 1111 1111 1111" not in (folder / ".govkit" / "audit.db").read_bytes().decode("latin-1")
    _the_paperwork_filled_in_still_blocks_on_the_model(folder)


def _page_one_reads_in_a_minute(pdf: Path) -> None:
    """Page one held a title, raw timestamps, a head hash and "Overall: RED", two-thirds blank. Now
    it says what the model is for, its tier, why it is red with the model's own findings first,
    and what the board must decide, each decision naming the risk; a reviewer sees the pages."""
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout
    flat = re.sub(r"\s+", " ", first)
    pages = Path(os.environ.get("GOVKIT_TEST_ARTIFACTS") or Path(__file__).parent / ".artifacts") / "demo-board"
    pages.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(pages / "page")], check=True)
    assert "Pre-screens consumer credit requests at the branch counter" in flat, flat
    assert "risk tier high" in flat and "Overall: RED" in flat, flat
    why = flat.split(" Why ")[1].split("Since the last report")[0]
    model_first = re.search(r"1\. (Its decision changes when only the applicant's name changes|"
                            r"It decides (no|not clearly) better)", why)
    assert model_first, why  # the model's own findings come before the paperwork
    assert re.search(r"in \d+ of \d+ tested pairs \(\d+%", why) or "match the outcome in" in why, why
    decisions = flat.split("Decisions asked of the board")[1]
    assert re.search(r"1\. Decide whether the model may keep being used for pre-screening consumer credit requests .+ "
                     r"while (its decisions change with the applicant's name|it decides no better|"
                     r"it is not shown to decide better)", decisions), decisions
    assert not re.search(r"\b[A-Z]{3}-\d{3}\b", flat) and not re.search(r"[0-9a-f]{16}", flat), flat


PAPERWORK = {"description": "Branch credit assistant: approves or refers requests up to 20,000 DM",
             "developer": "ml-platform@bank.example", "origin": "open-source", "version": "1.0",
             "deployment_date": "2026-11-01", "reviewer": "model-validation@bank.example",
             "approver": "Model Risk Committee", "dependencies": ["llama.cpp"], "data_sources": ["core banking"],
             "approved_uses": ["branch credit pre-screening"], "limitations": ["German credit only"],
             "last_review": "2026-11-01", "next_review": "2027-05-01", "monitoring_status": "green"}


def _the_paperwork_filled_in_still_blocks_on_the_model(folder: Path) -> None:
    """Filling the 14 empty inventory fields with plausible text, and nothing else, made `govkit
    check` exit 0 and the board report say "AMBER. Within risk appetite." for a model whose
    decisions flip on a first name: the verdict graded forms, not the model."""
    import json

    import tomlkit

    document = tomlkit.parse((folder / "govkit.toml").read_text())
    for key, value in PAPERWORK.items():
        document["model"][key] = value
    (folder / "govkit.toml").write_text(tomlkit.dumps(document))
    env = {k: v for k, v in os.environ.items() if k != "GOVKIT_CONFIG"}
    gate = subprocess.run([sys.executable, "-m", "govkit", "check", "--format", "json"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert gate.returncode == 1, gate.stdout[-3000:] + gate.stderr[-2000:]
    results = {r["id"]: r for r in json.loads(gate.stdout)["results"]}
    blocking = {check_id for check_id, r in results.items() if r["blocking"]}
    assert blocking & {"ETH-002", "ETH-003", "GOV-019"}, blocking  # the model's own findings
    assert not blocking & {"GOV-001", "GOV-002", "GOV-005", "GOV-006", "GOV-007", "GOV-015"}, blocking
    # names typed into govkit.toml are not signatures: the approval still lacks one, and the signed
    # review recommends rejection
    assert {"GOV-008", "GOV-020"} <= blocking and results["GOV-008"]["status"] == "NO EVIDENCE", results["GOV-008"]
    assert "recommends rejection" in results["GOV-020"]["message"]
    board = subprocess.run([sys.executable, "-m", "govkit", "report", "board", "--period", "2026", "--format", "json",
                            "-o", "paperwork.json", "--no-record"], cwd=folder, env=env, capture_output=True, text=True,
                           timeout=300)
    assert board.returncode == 0, board.stderr
    overall = json.loads((folder / "paperwork.json").read_text())["figures"]["overall"]
    assert overall["colour"] == "red" and "Within risk appetite" not in overall["statement"], overall


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


def _browser() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.mark.skipif(_browser() is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_the_mlflow_line_the_demo_prints_opens_on_govkits_runs(tmp_path: Path) -> None:
    """MLflow 3's UI opens an experiment on its GenAI overview, which is empty for govkit: the
    printed line and URL must land on the runs table, and start no job runner."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    folder = tmp_path / "govkit-demo"
    demo = start_demo(folder, "--scripted")
    output, _ = demo.communicate(timeout=300)
    assert demo.returncode == 0, output
    line = next(line for line in output.splitlines() if "mlflow ui " in line)
    command = line.split("the MLflow trail:", 1)[1].split()
    url = next(line for line in output.splitlines() if "then open http" in line).split("then open ", 1)[1].strip()
    port = free_port()
    env = {**os.environ, **dict(word.split("=", 1) for word in command if "=" in word and not word.startswith("-"))}
    argv = [word for word in command if not ("=" in word and not word.startswith("-"))]
    argv[argv.index("--port") + 1] = str(port)
    assert argv[:2] == ["mlflow", "ui"] and env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"  # offline and private: no usage data from the UI either
    with sqlite3.connect(folder / ".govkit" / "mlflow.db") as db:
        names = {row[0] for row in db.execute("SELECT name FROM runs")}
    log = (tmp_path / "mlflow-ui.log").open("wb")
    server = subprocess.Popen([shutil.which("mlflow") or "mlflow", *argv[1:]], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for(f"http://127.0.0.1:{port}/health", server, 120)
        except RuntimeError:
            raise AssertionError((tmp_path / "mlflow-ui.log").read_text()) from None
        assert not [cmd for cmd in left_running(server.pid) if "huey" in cmd]  # no job runner
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_browser(), args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(url.replace("127.0.0.1:5000", f"127.0.0.1:{port}"))
                page.wait_for_function("names => names.some(n => document.body.innerText.includes(n))",
                                       arg=sorted(names), timeout=60_000)
                assert "Traces" not in page.title()
            finally:
                browser.close()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def test_without_pango_the_demo_still_runs_and_says_which_output_it_could_not_make(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stock machine without the system's Pango: WeasyPrint's import fails with OSError (fault
    injection: an import hook that raises what cffi raises for a missing library)."""
    import importlib.abc

    from .conftest import run

    class NoPango(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "weasyprint" or name.startswith("weasyprint."):
                raise OSError("cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file")
            return None

    for name in [m for m in sys.modules if m == "weasyprint" or m.startswith("weasyprint.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NoPango(), *sys.meta_path])
    monkeypatch.delenv("GOVKIT_CONFIG", raising=False)
    result = run("demo", "--dir", str(tmp_path / "govkit-demo"), "--scripted")
    assert result.exit_code == 0, result.output
    assert "The board report's PDF was not made" in result.output and "apt-get install libpango-1.0-0" in result.output
    reports = tmp_path / "govkit-demo" / "reports"
    assert list(reports.glob("board-*.html")) and not list(reports.glob("board-*.pdf"))
