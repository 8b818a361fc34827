"""The CLI's contract: one meaning per exit code (0 ok, 1 findings, 2 usage or input, 3 environment,
4 a bug), no traceback for a user's error, quiet broken pipes, no prompt without a terminal, and a
demo that never deletes what it did not create."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from govkit.audit import AuditLog
from govkit.cli import cli

from .conftest import run
from .servers import free_port
from .stores import edit_bodies


def govkit(*args: str, cwd: Path, stdin=subprocess.DEVNULL, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "GOVKIT_RAISE_ERRORS")}
    return subprocess.run([sys.executable, "-m", "govkit", *args], cwd=cwd, stdin=stdin, capture_output=True,
                          text=True, env={**clean, **(env or {})}, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run("init", "--yes").exit_code == 0
    return tmp_path


def test_help_documents_every_exit_code() -> None:
    text = run("--help").output
    for code, meaning in (("0", "ok"), ("1", "findings"), ("2", "usage or input"), ("3", "environment"),
                          ("4", "internal error")):
        assert f"  {code}  {meaning}" in text


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_has_help_with_an_example() -> None:
    missing = [" ".join(path) for path, command in _commands(cli)
               if "Example" not in (command.help or "") or run(*path, "--help").exit_code != 0]
    assert missing == []


def test_exit_0_ok_and_1_findings(project: Path) -> None:
    assert run("audit", "verify").exit_code == 0
    edit_bodies(project / ".govkit" / "audit.db", "init", "tini", "seq = 2")
    assert run("audit", "verify").exit_code == 1


def test_user_errors_exit_2_without_a_traceback(project: Path) -> None:
    shown = govkit("audit", "show", "99999999999999999999999", cwd=project)
    assert shown.returncode == 2 and "no audit record" in shown.stderr and "Traceback" not in shown.stderr
    (project / "answers.bin").write_bytes(os.urandom(256) + b"\xff\xfe")
    rated = govkit("inventory", "rate", "--answers", "answers.bin", cwd=project)
    assert rated.returncode == 2 and "answers.bin: not UTF-8" in rated.stderr and "Traceback" not in rated.stderr


def test_an_unreachable_endpoint_is_the_environment_and_a_malformed_url_is_input(project: Path) -> None:
    (project / "cases.csv").write_text("sex,income\nf,10\nm,20\nf,30\nm,40\n")
    (project / "loan.j2").write_text("Approve a loan for income {{ income }}? Answer approve or deny.")
    common = ["bias", "llm", "--data", "cases.csv", "--prompt-template", "loan.j2", "--choices", "approve,deny",
              "--positive", "approve", "--sensitive", "sex", "--limit", "2"]
    dead = run(*common, "--endpoint", f"http://127.0.0.1:{free_port()}/v1")
    assert dead.exit_code == 3 and "the model endpoint" in dead.output
    malformed = run(*common, "--endpoint", "htp:/nowhere")
    assert malformed.exit_code == 2 and "endpoint" in malformed.output
    assert "Traceback" not in dead.output + malformed.output


def test_a_missing_store_is_the_environment(tmp_path: Path) -> None:
    assert run("audit", "list", "--db", str(tmp_path / "none.db")).exit_code == 3


def test_a_bug_exits_4_and_asks_for_a_report(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from govkit.audit import store

    def broken(self, *args, **kwargs):  # fault injection: a bug inside the library
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(store.AuditLog, "stats", broken)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    result = CliRunner().invoke(cli, ["audit", "stats"])
    assert result.exit_code == 4 and "This is a bug in govkit" in result.output and "ZeroDivisionError" in result.output
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x")
    with pytest.raises(ZeroDivisionError):  # under tests the exception itself is raised
        CliRunner().invoke(cli, ["audit", "stats"], catch_exceptions=False)


def test_a_broken_pipe_ends_quietly_with_0(project: Path) -> None:
    with AuditLog.open() as log:
        log.append_many([{"event_type": "feedback", "details": {"i": i, "pad": "x" * 200}} for i in range(3000)])
    clean = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    pipeline = subprocess.run(f"set -o pipefail; {sys.executable} -m govkit audit export | head -1",
                              shell=True, executable="/bin/bash", cwd=project, capture_output=True, text=True,
                              env=clean, timeout=120)
    assert pipeline.returncode == 0, pipeline.stderr
    assert pipeline.stderr == "" and pipeline.stdout.count("\n") == 1


def test_a_prompt_without_a_terminal_fails_at_once_naming_the_flag(project: Path) -> None:
    purged = govkit("audit", "purge", "--expired", cwd=project)  # as the README shows it, under cron
    assert purged.returncode == 2 and "pass --yes" in purged.stderr and "Aborted" not in purged.stderr
    assert govkit("audit", "purge", "--expired", "--yes", cwd=project).returncode == 0
    fresh = project / "fresh"
    fresh.mkdir()
    started = govkit("init", cwd=fresh)
    assert started.returncode == 2 and "--yes" in started.stderr and not (fresh / "govkit.toml").exists()


def test_demo_never_deletes_what_it_did_not_create(tmp_path: Path) -> None:
    mine = tmp_path / "work"
    mine.mkdir()
    (mine / "thesis.txt").write_text("three years of work")
    (mine / "data").mkdir()
    (mine / "data" / "x.csv").write_text("a\n1\n")
    for folder in (".", str(mine)):
        result = govkit("demo", "--dir", folder, cwd=mine)
        assert result.returncode == 2 and "not empty" in result.stderr, result.stderr
    assert (mine / "thesis.txt").read_text() == "three years of work" and (mine / "data" / "x.csv").exists()


def test_demo_runs_twice_in_its_own_folder_and_keeps_a_file_the_user_added(tmp_path: Path) -> None:
    assert govkit("demo", "--dir", "d", "--scripted", cwd=tmp_path).returncode == 0
    (tmp_path / "d" / "notes.txt").write_text("mine")
    second = govkit("demo", "--dir", "d", "--scripted", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"
    assert "notes.txt" not in (tmp_path / "d" / ".govkit-demo").read_text()


def test_an_override_targets_a_decision_only(project: Path) -> None:
    with AuditLog.open() as log:
        decision = log.append("inference", prompt="q", response="a", model_id="m")
        log.checkpoint()
        checkpoint = list(log.query(event_type="checkpoint"))[-1]
    common = ["--decision", "overridden", "--reviewer", "rev-1", "--reason", "wrong"]
    assert run("audit", "override", decision.record_id, *common).exit_code == 0
    with AuditLog.open() as log:
        override = list(log.query(event_type="override"))[-1]
    for target in (checkpoint.record_id, override.record_id, "1"):
        result = run("audit", "override", target, *common)
        assert result.exit_code == 2 and "not a decision" in result.output, target


def test_incidents_are_resolved_on_the_chain_and_the_gate_counts_open_ones(project: Path) -> None:
    with AuditLog.open() as log:
        first = log.append("incident", details={"what": "outage"})
        log.append("incident", details={"what": "slow disk"})
    assert "2 open incident(s)" in run("audit", "incident", "list").output
    assert json.loads(run("check", "--select", "GOV-016", "--format", "json").stdout)["results"][0]["status"] == "WARN"
    resolved = run("audit", "incident", "resolve", first.record_id, "--note", "restarted; jane@example.com told")
    assert resolved.exit_code == 0, resolved.output
    assert "1 open incident(s)" in run("audit", "incident", "list").output
    again = run("audit", "incident", "resolve", first.record_id, "--note", "again")
    assert again.exit_code == 2 and "already resolved" in again.output
    with AuditLog.open() as log:
        resolution = [r for r in log.query(event_type="incident") if (r.details or {}).get("action") == "resolved"]
        assert resolution[0].target_record_id == first.record_id and "[EMAIL]" in resolution[0].override_reason
        assert log.verify().ok


def test_rebuild_keys_on_healthy_keys_changes_nothing(project: Path) -> None:
    with AuditLog.open() as log:
        log.append_many([{"event_type": "feedback"}] * 600)
    before = run("audit", "stats", "--json").stdout
    result = run("audit", "rebuild-keys")
    assert result.exit_code == 0 and "nothing changed, no incident filed" in result.output
    assert run("audit", "stats", "--json").stdout == before


def test_a_command_that_fails_records_nothing(project: Path) -> None:
    from .servers import smollm2_gguf

    with AuditLog.open() as log:
        before = log.stats()["head_seq"]
    result = run("lineage", "model", "add", str(smollm2_gguf()), "--adapter", "missing.gguf")
    assert result.exit_code == 2 and "missing.gguf: no such file" in result.output
    with AuditLog.open() as log:
        assert log.stats()["head_seq"] == before


def _options(command: click.Command) -> dict[str, click.Option]:
    return {name: param for param in command.params if isinstance(param, click.Option) for name in param.opts}


def test_the_same_flag_means_the_same_thing_everywhere() -> None:
    for path, command in _commands(cli):
        options = _options(command)
        where = " ".join(path)
        if "--json" in options:
            assert options["--json"].hidden and "--format" in options, where  # the old spelling, hidden
        if "--format" in options and where not in ("audit export", "lineage export", "check", "explain text",
                                                    "lineage dataset add", "report board", "report engineer",
                                                    "report model-card"):  # these pick a file's format
            assert set(options["--format"].type.choices) == {"table", "json"}, where
        if "--out" in options:
            assert options["--out"] is options.get("--output") and options["--out"] is options.get("-o"), where
        if "--output" in options:
            assert "-o" in options, where
    reading = [" ".join(p) for p, c in _commands(cli) if p[0] in ("audit", "lineage", "bias", "explain", "check")
               and p[-1] not in ("export",) and "--db" not in _options(c)]
    assert reading == ["lineage export"] or reading == [], reading


def test_old_spellings_still_work(project: Path) -> None:
    assert json.loads(run("audit", "stats", "--json").stdout)["records"] == 2
    assert json.loads(run("audit", "stats", "--format", "json").stdout)["records"] == 2
    (project / "d.txt").write_text("a,b\n1,2\n3,4\n")
    assert run("lineage", "dataset", "add", "d.txt", "--role", "eval", "--format", "csv").exit_code == 0
    assert run("lineage", "dataset", "add", "d.txt", "--role", "eval", "--input-format", "csv").exit_code == 0


def test_the_config_is_found_by_walking_up_as_git_does(project: Path) -> None:
    deep = project / "notebooks" / "q4"
    deep.mkdir(parents=True)
    os.chdir(deep)
    result = run("audit", "verify")
    assert result.exit_code == 0 and result.output.startswith("OK (trusted)")
    with AuditLog.open() as log:
        assert log.path == project / ".govkit" / "audit.db"


def test_a_copied_project_keeps_its_mlflow_artifacts_and_writes_into_itself(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    import shutil

    original = tmp_path / "original"
    original.mkdir()
    os.chdir(original)
    assert run("init", "--yes").exit_code == 0
    (original / "d.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    assert run("lineage", "dataset", "add", "d.csv", "--role", "eval").exit_code == 0
    moved = tmp_path / "moved"
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    os.chdir(moved)
    (moved / "e.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    assert run("lineage", "dataset", "add", "e.csv", "--role", "eval").exit_code == 0
    assert not original.exists()  # nothing was written into the original's folder
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{moved / '.govkit' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2
    for found in runs:
        assert found.info.artifact_uri.startswith((moved / ".govkit" / "mlartifacts").as_uri())
        assert client.list_artifacts(found.info.run_id), found.info.artifact_uri  # the copied artifacts are there


@pytest.mark.parametrize("target", [".govkit/audit.db", ".govkit/audit.db-wal", ".govkit/device_ed25519.pem",
                                    "govkit.toml", "copy.db", "keycopy.pem"])
@pytest.mark.parametrize("command", [
    ["audit", "export", "-o"], ["audit", "export", "--format", "parquet", "-o"], ["check", "-o"],
    ["report", "board", "--period", "2026", "--format", "md", "-o"], ["lineage", "export", "-o"]])
def test_no_output_option_ever_writes_over_a_store_a_key_or_the_config(project: Path, target: str,
                                                                        command: list[str]) -> None:
    """`audit export -o .govkit/audit.db` emptied the store (exit 3); `check -o` and `report -o`
    overwrote the store, the device key or govkit.toml (exit 0)."""
    import shutil

    folder = project
    shutil.copy(folder / ".govkit" / "audit.db", folder / "copy.db")
    shutil.copy(folder / ".govkit" / "device_ed25519.pem", folder / "keycopy.pem")
    watched = [folder / ".govkit" / "audit.db", folder / ".govkit" / "device_ed25519.pem", folder / "govkit.toml",
               folder / "copy.db", folder / "keycopy.pem"]
    before = {path: path.read_bytes() for path in watched}
    result = run(*command, target)
    assert result.exit_code == 2, result.output
    assert "never replaces govkit's evidence" in result.output and "Traceback" not in result.output
    assert {path: path.read_bytes() for path in watched} == before
    assert run("audit", "verify").exit_code == 0


@pytest.mark.parametrize("args, flag", [
    (["report", "board", "--period", "0000"], "--period"),
    (["report", "board", "--period", "9999-Q4"], "--period"),
    (["report", "board", "--from", "2026-01-01", "--to", "9999-12-31"], "--to"),
    (["sync", "--to", "notaurl"], "--to"),
    (["sync", "--to", "file:///tmp/x"], "--to"),
    (["sync", "--to", "postgresql://user@host/db"], "--to"),
    (["fleet", "status", "--from", "sqlite:///central.db", "--witness-key", "notakey"], "--witness-key"),
    (["trail", "--witness-key", "notakey"], "--witness-key"),
    (["audit", "list", "--limit", "99999999999999999999"], "--limit"),
    (["audit", "verify", "--from-mlflow", "sqlite:///central.db", "--device", "a'b"], "--device"),
    (["proxy", "--upstream", "http://127.0.0.1:9/v1", "--listen", "127.0.0.1:99999"], "--listen"),
])
def test_bad_input_is_exit_2_naming_the_flag(project: Path, args: list[str], flag: str) -> None:
    """They were exit 4 (a crash), exit 3 (blamed on the environment), or exit 0 (a malformed
    witness key ignored; a port of 99999 printed while a random one was taken)."""
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert flag in result.output and "Traceback" not in result.output and "Internal error" not in result.output


def test_an_unreachable_central_server_says_nothing_was_lost_and_what_waits(project: Path) -> None:
    result = run("sync", "--to", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 3, result.output
    assert "unreachable" in result.output and "Nothing was lost" in result.output and "next sync" in result.output
