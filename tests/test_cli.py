"""The CLI: init, every audit subcommand, exit codes and error messages."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.config import load_settings
from govkit.errors import InputError

from .conftest import run
from .stores import as_first_schema


@pytest.fixture
def initialised(tmp_path: Path) -> Path:
    result = run("init", "--yes", "--model-id", "credit-assistant", "--owner", "risk@bank.example")
    assert result.exit_code == 0, result.output
    return tmp_path


def test_init_writes_config_state_and_key(initialised: Path) -> None:
    settings = load_settings(initialised / "govkit.toml")
    assert settings.model.id == "credit-assistant" and settings.model.owner == "risk@bank.example"
    assert settings.policy.retention_days == 183 and settings.policy.redaction == "redacted"
    key = initialised / ".govkit" / "device_ed25519.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert settings.audit.public_key and settings.audit.db == initialised / ".govkit" / "audit.db"
    with AuditLog.open() as log:
        genesis, record = list(log)
        assert genesis.event_type == "genesis" and genesis.details["store_id"] == settings.audit.store_id
        assert record.event_type == "config_change" and record.details["action"] == "init"
    assert run("init", "--yes").exit_code == 2  # refuses to overwrite
    before = key.read_bytes()
    assert run("init", "--yes", "--force").exit_code == 0
    assert key.read_bytes() == before  # --force keeps the device key


def test_init_prompts_without_yes(tmp_path: Path) -> None:
    result = run("init", input="my-model\nMy Model\nowner-1\nfull\n")
    assert result.exit_code == 0, result.output
    settings = load_settings(tmp_path / "govkit.toml")
    assert (settings.model.id, settings.model.owner, settings.policy.redaction) == ("my-model", "owner-1", "full")


@pytest.mark.parametrize("edit,expected", [
    (("retention_days = 183", 'retention_days = "six months"'), "line 25, key 'policy.retention_days': expected an integer"),
    (('redaction = "redacted"', 'redaction = "scrambled"'), "key 'policy.redaction': expected one of"),
    (("[audit]", "[audit]\ncolour = 3"), "key 'audit.colour': unknown key"),
    (('risk_rating = "unrated"', "risk_rating = 3"), "key 'model.risk_rating': expected a string"),
    (("[policy]", "[policy"), "invalid TOML"),
    (("# EMPLOYEE_ID", 'BAD = "(unclosed"\n# x'), "key 'policy.patterns.BAD': invalid regular expression"),
])
def test_bad_config_names_file_key_and_line(initialised: Path, edit: tuple[str, str], expected: str) -> None:
    config = initialised / "govkit.toml"
    config.write_text(config.read_text().replace(*edit, 1))
    result = run("audit", "list")
    assert result.exit_code == 2
    assert str(config) in result.stderr and expected in result.stderr
    assert "Traceback" not in result.output


def test_no_config_and_no_db_is_a_usage_error() -> None:
    result = run("audit", "list")
    assert result.exit_code == 2 and "govkit init" in result.stderr


def test_list_show_stats_checkpoint_verify(initialised: Path) -> None:
    with AuditLog.open() as log:
        inference = log.append("inference", prompt="hi, I am jane@example.com", response="hello", model_id="m")
    listed = run("audit", "list")
    assert listed.exit_code == 0 and inference.record_id in listed.output
    as_json = json.loads(run("audit", "list", "--json", "--event-type", "inference").output)
    assert [r["record_id"] for r in as_json] == [inference.record_id]
    shown = json.loads(run("audit", "show", inference.record_id, "--content").output)
    assert shown["content"]["prompt"] == "hi, I am [EMAIL]" and shown["record_hash"] == inference.record_hash
    assert run("audit", "show", "01NOSUCHRECORD").exit_code == 2
    assert "Signed seq 3" in run("audit", "checkpoint").output
    stats = json.loads(run("audit", "stats", "--json").output)
    assert stats["records"] == 4 and stats["last_checkpoint_seq"] == 3
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and verified.output.startswith("OK (trusted): 4 records")


def test_verify_failure_exit_1_names_first_bad_seq(initialised: Path) -> None:
    with AuditLog.open() as log:
        for i in range(5):
            log.append("feedback", details={"i": i})
    import sqlite3
    db = sqlite3.connect(initialised / ".govkit" / "audit.db")
    db.execute("DROP TRIGGER records_append_only_delete")
    db.execute("DELETE FROM records WHERE seq = 3")
    db.commit()
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert result.output.startswith("FAILED at seq 3: records 3..3 are missing")
    report = json.loads(run("audit", "verify", "--json").output)
    assert report["ok"] is False and report["first_bad_seq"] == 3


def test_override_records_human_oversight(initialised: Path) -> None:
    with AuditLog.open() as log:
        decision = log.append("inference", model_id="m", subject_ref="cust-9", ts_end="2026-01-01T00:00:00Z")
    result = run("audit", "override", decision.record_id, "--decision", "overridden",
                 "--reviewer", "rev-17", "--reason", "income misread; call 416-555-0199")
    assert result.exit_code == 0, result.output
    with AuditLog.open() as log:
        [override] = list(log.query(event_type="override"))
        assert override.target_record_id == decision.record_id
        assert override.human_decision == "overridden" and override.reviewer_id == "rev-17"
        assert override.override_reason == "income misread; call [PHONE]"
        assert override.subject_ref == "cust-9" and override.review_latency_s > 0
        assert [r.seq for r in log.query(target_record_id=decision.record_id)] == [override.seq]
    assert run("audit", "override", "01NOSUCH", "--decision", "accepted", "--reviewer", "r",
               "--reason", "x").exit_code == 2
    bad = run("audit", "override", decision.record_id, "--decision", "shrug", "--reviewer", "r", "--reason", "x")
    assert bad.exit_code == 2


def test_export_jsonl_lets_anyone_recompute_the_chain(initialised: Path) -> None:
    with AuditLog.open() as log:
        for i in range(4):
            log.append("inference", prompt=f"q{i}", response=f"a{i}", latency_ms=float(i))
    out = initialised / "audit.jsonl"
    assert run("audit", "export", "--format", "jsonl", "-o", str(out), "--with-content").exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and rows[2]["content"] == {"prompt": "q0", "response": "a0"}
    prev = "sha256:" + "0" * 64
    for row in rows:  # an independent verifier: plain json + hashlib, no govkit code
        fields = {k: v for k, v in row.items() if k not in ("seq", "prev_hash", "record_hash", "content", "body")}
        assert json.loads(row["body"]) == fields  # the readable fields are the hashed body's
        envelope = {"body": fields, "prev_hash": prev, "seq": row["seq"]}
        canonical = json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["prev_hash"] == prev
        assert row["record_hash"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
        prev = row["record_hash"]


def test_export_parquet(initialised: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    with AuditLog.open() as log:
        log.append("inference", prompt="q", response="a", model_id="m")
    out = initialised / "audit.parquet"
    assert run("audit", "export", "--format", "parquet", "-o", str(out)).exit_code == 0
    table = pq.read_table(out).to_pylist()
    assert [r["event_type"] for r in table] == ["genesis", "config_change", "inference"]
    assert json.loads(table[2]["body"])["model_id"] == "m"
    assert run("audit", "export", "--format", "parquet").exit_code == 2


def test_missing_extra_names_the_install(initialised: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = run("audit", "export", "--format", "parquet", "-o", "x.parquet")
    assert result.exit_code == 2 and "pip install 'govkit[parquet]'" in result.stderr


def test_purge_cli_keeps_verify_green(initialised: Path) -> None:
    with AuditLog.open() as log:
        old = log.append("inference", prompt="old text", ts_start="2020-01-01T00:00:00Z")
        log.append("inference", prompt="subject text", subject_ref="subj-1")
    assert run("audit", "purge").exit_code == 2
    assert run("audit", "purge", "--expired", input="n\n").exit_code == 2  # declined: nothing changed
    result = run("audit", "purge", "--before", "2021-01-01", "--yes")
    assert result.exit_code == 0 and "Purged 1 item(s) of 1 record(s)" in result.output
    assert run("audit", "purge", "--subject", "subj-1", "--reason", "ER-7", "--yes").exit_code == 0
    assert run("audit", "verify").exit_code == 0
    with AuditLog.open() as log:
        assert log.content(old) == {"prompt": None}
    assert run("audit", "purge", "--before", "not-a-date", "--yes").exit_code == 2


def test_store_errors_exit_codes(tmp_path: Path) -> None:
    assert run("audit", "verify", "--db", str(tmp_path / "none.db")).exit_code == 3  # environment: no store
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    result = run("audit", "verify", "--db", str(junk))
    assert result.exit_code == 3 and "junk.db" in result.stderr and "Traceback" not in result.output


def test_non_utf8_reason_is_an_input_error(initialised: Path) -> None:
    with AuditLog.open() as log:
        record = log.append("inference")
    result = run("audit", "override", record.record_id, "--decision", "accepted", "--reviewer", "r",
                 "--reason", "bad \udcff byte")
    assert result.exit_code == 2 and "not valid UTF-8" in result.stderr
    assert run("audit", "verify").exit_code == 0


def test_help_documents_exit_codes() -> None:
    result = run("--help")
    assert "Exit codes" in result.output and "3  environment:" in result.output


def test_the_scripted_demo_marks_every_model_call_synthetic(tmp_path: Path) -> None:
    """--scripted runs with no model: every record it makes says so, and so do the console and the report."""
    result = run("demo", "--dir", str(tmp_path / "demo"), "--scripted")
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC: 30 scripted answers, no model ran" in result.output and "SYNTHETIC RUN" in result.output
    assert re.search(r"tampered copy: FAILED at seq \d+: record hash mismatch", result.output)
    assert "4111" not in result.output
    with AuditLog(tmp_path / "demo" / ".govkit" / "audit.db", create=False) as log:
        assert log.verify().ok
        calls = list(log.query(event_type="inference"))
        assert len(calls) == 30 and all(r.purpose == "synthetic" and r.runtime == "synthetic" for r in calls)
        assert not any(r.artifact_sha256 for r in calls)
        assert {r.event_type for r in log} >= {"lineage", "risk_rating", "override", "purge", "checkpoint", "report"}
    [board] = (tmp_path / "demo" / "reports").glob("board-*.html")
    assert "30 of the period&#39;s" in board.read_text() or "30 of the period's" in board.read_text()


def _as_first_schema(path: Path) -> None:
    """A store with the first schema and no public key in its metadata: a device's log as an
    auditor may receive it."""
    import sqlite3

    as_first_schema(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DELETE FROM meta WHERE key = 'public_key'")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def test_reading_commands_leave_an_auditors_copy_untouched(initialised: Path, tmp_path_factory) -> None:
    """list, show, stats, export and verify (and lineage show and export) open the log
    read-only: an older store is not migrated, and the auditor's configured public key is not
    written into the evidence."""
    with AuditLog.open() as log:
        first = log.append("inference", prompt="q", response="a", model_id="m")
        log.append("override", human_decision="accepted", target_record_id=first.record_id)
    copy = tmp_path_factory.mktemp("evidence") / "device.db"
    copy.write_bytes((initialised / ".govkit" / "audit.db").read_bytes())
    _as_first_schema(copy)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in copy.parent.iterdir()}
    listed = json.loads(run("audit", "list", "--db", str(copy), "--json").output)
    assert [r["event_type"] for r in listed] == ["override", "inference", "config_change", "genesis"]
    assert json.loads(run("audit", "list", "--db", str(copy), "--json", "--event-type", "override").output)[0][
        "target_record_id"] == first.record_id
    assert json.loads(run("audit", "show", first.record_id, "--db", str(copy)).output)["seq"] == first.seq
    assert json.loads(run("audit", "stats", "--db", str(copy), "--json").output)["records"] == 4
    assert run("audit", "export", "--db", str(copy)).output.count("\n") == 4
    verified = run("audit", "verify", "--db", str(copy))  # checked with govkit.toml's key
    assert verified.exit_code == 0, verified.output
    assert run("lineage", "show", "--db", str(copy), "--json").exit_code == 0
    assert run("lineage", "export", "--db", str(copy)).exit_code == 0
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in copy.parent.iterdir()
             if p.name in before}
    assert after == before
    with AuditLog(copy, read_only=True) as log:
        with pytest.raises(InputError, match="read-only"):
            log.append("incident")
        with pytest.raises(InputError, match="read-only"):
            log.purge(subject_ref="s")
    with AuditLog(copy, create=True) as log:  # opened for writing, it is migrated
        assert log.get(first.record_id).seq == first.seq and log.verify().ok


def test_verify_names_edited_query_keys_and_rebuild_keys_repairs_them(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "audit.db"
    with AuditLog(path, create=True) as log:
        log.append("override", human_decision="escalated")
        log.append_many([{"event_type": "inference"}] * 300)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER record_keys_append_only_update")
    db.execute("UPDATE record_keys SET event_type = 'inference' WHERE seq = 2")
    db.close()
    assert "escalated" not in run("audit", "list", "--db", str(path), "--event-type", "override").output
    failed = run("audit", "verify", "--db", str(path))
    assert failed.exit_code == 1 and "seq 2: query keys disagree" in failed.output and "rebuild-keys" in failed.output
    rebuilt = run("audit", "rebuild-keys", "--db", str(path), "--reason", "INC-9")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "Rebuilt the query keys of 302 record(s): 1 wrong row(s) removed, 1 missing row(s) added" in rebuilt.output
    assert run("audit", "verify", "--db", str(path)).exit_code == 0
    assert "escalated" in run("audit", "list", "--db", str(path), "--event-type", "override").output
    incidents = run("audit", "list", "--db", str(path), "--event-type", "incident", "--json")
    assert json.loads(incidents.output)[0]["details"]["action"] == "query keys rebuilt"
