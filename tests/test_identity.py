"""The store's identity: the chain's first record fixes it, the config names it, writers append to
no other store and never make one, and verify fails on any other store put in its place."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import warnings
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.audit import checkpoints as cp
from govkit.config import load_settings
from govkit.errors import InvalidRecord, StoreMismatch, StoreNotFound, StoreReplaced

from .conftest import run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """`govkit init` here, then 30 records with checkpoints every 10 (the sidecar has 3)."""
    assert run("init", "--yes").exit_code == 0
    text = (tmp_path / "govkit.toml").read_text().replace("checkpoint_every = 1000", "checkpoint_every = 10")
    (tmp_path / "govkit.toml").write_text(text)
    with AuditLog.open() as log:
        for i in range(30):
            log.append("inference", prompt=f"q{i}", response="a", model_id="m")
    return tmp_path


def db_of(project: Path) -> Path:
    return project / ".govkit" / "audit.db"


def offsite_copy(project: Path) -> Path:
    """The auditor's off-device copy of the checkpoint file."""
    return Path(shutil.copy(cp.sidecar_path(db_of(project)), project / "offsite.jsonl"))


def test_init_names_the_store_it_created_and_the_first_record_fixes_it(project: Path) -> None:
    settings = load_settings(project / "govkit.toml")
    with AuditLog.open() as log:
        genesis = log.get(1)
        assert genesis.event_type == "genesis"
        assert genesis.details["store_id"] == settings.audit.store_id == log.meta["store_id"]
        assert genesis.details["public_key"] == settings.audit.public_key
        assert genesis.details["public_key_id"] == cp.key_id(settings.audit.public_key)
        signed = [r.details for r in log.query(event_type="checkpoint")]
        assert signed and all(c["store_id"] == settings.audit.store_id for c in signed)
        result = log.verify()
        assert result.ok and result.trusted and result.store_id == settings.audit.store_id


def test_tail_deleted_and_meta_edited_fails_against_the_offsite_checkpoints(project: Path) -> None:
    """Today's break: the tail deleted, then `UPDATE meta SET value=... WHERE key='store_id'` made
    the off-device checkpoints "of another store", which were only warned about."""
    offsite = offsite_copy(project)
    db = sqlite3.connect(db_of(project), isolation_level=None)
    for trigger in ("records_append_only_delete", "content_no_delete"):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DELETE FROM records WHERE seq > 15")
    db.execute("DELETE FROM content WHERE seq > 15")
    db.execute("UPDATE meta SET value = '01FAKEFAKEFAKEFAKEFAKEFAKE' WHERE key = 'store_id'")
    db.close()
    cp.sidecar_path(db_of(project)).unlink()  # the attacker removes the on-device copy too
    result = run("audit", "verify", "--checkpoints", str(offsite))
    assert result.exit_code == 1, result.output
    assert "metadata names store 01FAKE" in result.output
    assert "truncated" in result.output


def test_a_checkpoint_of_another_store_is_a_failure_wherever_it_sits(project: Path) -> None:
    """Signed by this device's own key, but for another store (a second store of the device, or
    the one an attacker made): it vouches for nothing here, so it fails verify."""
    assert run("audit", "verify").exit_code == 0
    signed = cp.sign_checkpoint(cp.load_private_key(project / ".govkit" / "device_ed25519.pem"),
                                store_id="01OTHERSTOREOTHERSTORE0000", seq=3,
                                head_hash="sha256:" + "1" * 64, ts="2026-12-01T00:00:00Z", device_id="d")
    sidecar = cp.sidecar_path(db_of(project))
    with_foreign = project / "mixed.jsonl"
    with_foreign.write_bytes(sidecar.read_bytes() + cp.canonical_json(signed) + b"\n")
    result = run("audit", "verify", "--checkpoints", str(with_foreign))
    assert result.exit_code == 1 and "a checkpoint of another store" in result.output, result.output
    shutil.copy(with_foreign, sidecar)  # in the on-device file: the same
    result = run("audit", "verify")
    assert result.exit_code == 1 and "a checkpoint of another store" in result.output


@pytest.mark.parametrize("damage", ["delete", "zero"])
def test_no_writer_makes_a_store_in_place_of_a_missing_one(project: Path, damage: str) -> None:
    path = db_of(project)
    for leftover in path.parent.glob("audit.db*"):
        if damage == "delete" or leftover != path:
            leftover.unlink()
    if damage == "zero":
        path.write_bytes(b"")
    store_id = load_settings(project / "govkit.toml").audit.store_id
    with pytest.raises(StoreNotFound, match=store_id):
        AuditLog.open()
    from govkit.inference.wrappers import audited

    served = []
    with pytest.raises(StoreNotFound):
        audited()(lambda prompt: served.append(prompt) or "ok")("hello")
    assert served == []  # the model was not asked: no record could be kept
    for command in (["audit", "checkpoint"], ["audit", "override", "1", "--decision", "accepted",
                                               "--reviewer", "r", "--reason", "x"],
                    ["audit", "purge", "--expired", "--yes"], ["check"], ["audit", "verify"],
                    ["proxy", "--upstream", "http://127.0.0.1:9/v1"]):
        result = run(*command)
        assert result.exit_code == 3, (command, result.output)
        assert str(path) in result.output and store_id in result.output
    assert not path.exists() or path.stat().st_size == 0  # still nothing made


def test_another_devices_log_swapped_in_is_refused_and_fails_verify(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    os.chdir(other)
    assert run("init", "--yes").exit_code == 0
    os.chdir(project)
    for leftover in db_of(project).parent.glob("audit.db*"):
        leftover.unlink()
    for part in (other / ".govkit").glob("audit.db*"):
        shutil.copy(part, db_of(project).parent / part.name)
    with pytest.raises(StoreMismatch, match="govkit.toml names store"):
        AuditLog.open()
    result = run("audit", "checkpoint")
    assert result.exit_code == 3 and "govkit.toml names store" in result.output
    result = run("audit", "verify")
    assert result.exit_code == 1 and "another store was put in its place" in result.output


def test_meta_edited_to_match_the_config_still_fails(project: Path, tmp_path: Path) -> None:
    """A swapped-in store whose metadata the attacker edited to the expected id: its first record
    still fixes its own id."""
    expected = load_settings(project / "govkit.toml").audit.store_id
    other = tmp_path / "other"
    other.mkdir()
    os.chdir(other)
    assert run("init", "--yes").exit_code == 0
    db = sqlite3.connect(other / ".govkit" / "audit.db", isolation_level=None)
    db.execute("UPDATE meta SET value = ? WHERE key = 'store_id'", (expected,))
    db.close()
    result = run("audit", "verify", "--db", str(other / ".govkit" / "audit.db"), "--store-id", expected)
    assert result.exit_code == 1 and "first record fixes store" in result.output


def test_a_store_moved_away_under_a_writer_fails_closed_and_says_so_when_back(project: Path) -> None:
    path = db_of(project)
    aside = path.with_name("aside.db")
    with AuditLog.open() as log:
        log.append("feedback")
        older = project / "older.db"
        shutil.copy(path, older)
        os.replace(path, aside)  # the file unlinked from its path (moved)
        with pytest.warns(UserWarning, match="was removed while govkit had it open"):
            with pytest.raises(StoreReplaced, match="nothing was acknowledged"):
                log.append("feedback")
        shutil.copy(older, path)  # an older copy put in its place
        with pytest.raises(StoreReplaced, match="replaced"):
            log.append("feedback")
        with pytest.raises(StoreReplaced):
            log.checkpoint()
        os.replace(aside, path)  # the store is back
        back = log.append("feedback")
        incident = log.get(back.seq - 1)
        assert incident.event_type == "incident"
        assert incident.details["action"] == "audit store missing from its path"
        assert incident.details["refused_commits"] == 3
        assert log.verify().ok


def test_checkpoints_flag_adds_to_the_on_device_file_and_bad_files_are_input_errors(project: Path) -> None:
    offsite = offsite_copy(project)
    result = run("audit", "verify", "--checkpoints", str(offsite))
    assert result.exit_code == 0 and "3 signed checkpoint(s)" in result.output
    empty = project / "empty.jsonl"
    empty.write_text("")
    for bad, message in ((project / "missing.jsonl", "no such checkpoint file"),
                         (empty, "holds no checkpoint"), (project, "is a folder")):
        result = run("audit", "verify", "--checkpoints", str(bad))
        assert result.exit_code == 2 and message in result.output, result.output
    # Additive: an off-device file that lacks the newest checkpoint does not hide it.
    offsite.write_text(offsite.read_text().splitlines()[0] + "\n")
    db = sqlite3.connect(db_of(project), isolation_level=None)
    db.execute("DROP TRIGGER records_append_only_delete")
    db.execute("DROP TRIGGER content_no_delete")
    db.execute("DELETE FROM records WHERE seq > 25")
    db.execute("DELETE FROM content WHERE seq > 25")
    db.close()
    result = run("audit", "verify", "--checkpoints", str(offsite))
    assert result.exit_code == 1 and "truncated" in result.output


@pytest.mark.parametrize("key", ["not base64!!", "AAAA", ""])
def test_a_malformed_public_key_is_an_input_error_not_tampering(project: Path, key: str) -> None:
    result = run("audit", "verify", "--public-key", key)
    assert result.exit_code == 2 and "--public-key" in result.output


def test_a_malformed_public_key_in_the_config_is_a_config_error(project: Path) -> None:
    text = (project / "govkit.toml").read_text()
    public = load_settings(project / "govkit.toml").audit.public_key
    (project / "govkit.toml").write_text(text.replace(public, "short"))
    result = run("audit", "verify")
    assert result.exit_code == 2 and "audit.public_key" in result.output


def test_without_a_trusted_key_the_first_line_says_self_consistent_only(project: Path) -> None:
    result = run("audit", "verify")
    assert result.output.splitlines()[0].startswith("OK (trusted)")
    os.chdir(project.parent)  # no govkit.toml: only the store's own claims
    result = run("audit", "verify", "--db", str(db_of(project)))
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("OK (SELF-CONSISTENT ONLY)")
    assert "no trusted public key" in result.output


def test_callers_cannot_append_store_records(project: Path) -> None:
    with AuditLog.open() as log:
        for event in ("genesis", "checkpoint"):
            with pytest.raises(InvalidRecord, match="written by the audit store itself"):
                log.append(event, details={"store_id": "x"})


def test_a_genesis_spliced_into_the_middle_fails(project: Path, tmp_path: Path) -> None:
    """The attacker rewrites the chain from seq 10 with another store's genesis there."""
    from govkit.audit.hashing import chain_hash

    db = sqlite3.connect(db_of(project), isolation_level=None)
    db.execute("DROP TRIGGER records_append_only_update")
    genesis = bytes(db.execute("SELECT body FROM records WHERE seq = 1").fetchone()[0])
    db.execute("UPDATE records SET body = ? WHERE seq = 10", (genesis,))
    prev = db.execute("SELECT record_hash FROM records WHERE seq = 9").fetchone()[0]
    for seq, body in db.execute("SELECT seq, body FROM records WHERE seq >= 10 ORDER BY seq").fetchall():
        prev = chain_hash(bytes(body), prev, seq)
        db.execute("UPDATE records SET record_hash = ? WHERE seq = ?", (prev, seq))
    db.close()
    result = run("audit", "verify")
    assert result.exit_code == 1 and "genesis record in the middle" in result.output


def test_a_checkpoint_signed_while_the_disk_was_full_reaches_the_file_later(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from govkit.errors import StoreFull

    real = cp.append_sidecar
    calls = {"n": 0}

    def full_once(db_path: Path, checkpoint: dict) -> None:  # fault injection: ENOSPC once
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreFull(f"{cp.sidecar_path(db_path)}: disk full while writing a checkpoint")
        real(db_path, checkpoint)

    monkeypatch.setattr(cp, "append_sidecar", full_once)
    sidecar = cp.sidecar_path(db_of(project))
    before = len(sidecar.read_text().splitlines())
    with AuditLog.open() as log:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            signed = log.checkpoint()
        assert any("once the disk has room" in str(w.message) for w in caught)
        assert len(sidecar.read_text().splitlines()) == before  # not yet
        log.append("feedback")  # space is back: the next commit writes it
    lines = sidecar.read_text().splitlines()
    assert len(lines) == before + 1 and signed["signature"] in lines[-1]


def test_a_checkpoint_the_sidecar_missed_is_copied_when_a_writer_opens(project: Path) -> None:
    sidecar = cp.sidecar_path(db_of(project))
    lines = sidecar.read_text().splitlines()
    sidecar.write_text("\n".join(lines[:-1]) + "\n")  # the writer died between commit and copy
    with AuditLog.open():
        pass
    assert sidecar.read_text().splitlines() == lines


def _readme_export_check() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- export-check -->", 1)[1]
    return block.split("```python", 1)[1].split("```", 1)[0]


def test_the_readme_formula_reproduces_every_hash_of_an_export(project: Path) -> None:
    """A third party with the Python standard library and the README's own words."""
    with AuditLog.open() as log:
        log.append("feedback", details={"small": 1e-07, "big": 12345678901234567890.5, "name": "Zoë", "n": [1, 2.5]})
        log.append("inference", prompt="a question", response="an answer", latency_ms=0.1)
    assert run("audit", "export", "-o", "audit.jsonl").exit_code == 0
    lines = (project / "audit.jsonl").read_text().splitlines()
    assert len(lines) >= 34
    exec(compile(_readme_export_check(), "README.md", "exec"), {})  # raises on the first hash it cannot reproduce


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_verify_export_recomputes_the_chain_and_catches_an_edit(project: Path, fmt: str) -> None:
    pytest.importorskip("pyarrow")
    out = project / f"audit.{fmt}"
    assert run("audit", "export", "--format", fmt, "-o", str(out), "--with-content").exit_code == 0
    result = run("audit", "verify", "--export", str(out))
    assert result.exit_code == 0 and result.output.startswith("OK (trusted)"), result.output
    assert "3 signed checkpoint(s)" in result.output
    if fmt == "jsonl":
        lines = out.read_text().splitlines()
        edited = json.loads(lines[5])
        edited["model_id"] = "another-model"  # a readable field edited, the hashed body left alone
        lines[5] = json.dumps(edited)
        out.write_text("\n".join(lines) + "\n")
        failed = run("audit", "verify", "--export", str(out))
        assert failed.exit_code == 1 and "differ from the hashed body" in failed.output
        del lines[5]  # a record removed
        out.write_text("\n".join(lines) + "\n")
        removed = run("audit", "verify", "--export", str(out))
        assert removed.exit_code == 1 and "missing from the export" in removed.output and "--partial" in removed.output
    assert run("audit", "verify", "--export", str(project / "nope.jsonl")).exit_code == 2


def test_an_auditors_copy_on_read_only_media_opens_and_nothing_is_written(project: Path, tmp_path: Path) -> None:
    import hashlib
    import subprocess

    copy = tmp_path / "copy"
    copy.mkdir()
    with AuditLog.open() as log:
        log.append("inference", prompt="q", response="a")
    for part in db_of(project).parent.glob("audit.db*"):  # a closed store: no WAL beside it
        if not part.name.endswith((".lock", "-wal", "-shm")):
            shutil.copy(part, copy / part.name)
    media = tmp_path / "media"
    media.mkdir()
    if subprocess.run(["mount", "--bind", str(copy), str(media)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(media)], check=True)
        before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in media.iterdir()}
        db = str(media / "audit.db")
        for command in (["verify"], ["list"], ["stats"], ["show", "2"], ["export"],
                        ["verify", "--checkpoints", str(media / "audit.db.checkpoints.jsonl")]):
            result = run("audit", *command, "--db", db)
            assert result.exit_code == 0, (command, result.output)
        assert "OK (trusted)" in run("audit", "verify", "--db", db).output
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in media.iterdir()} == before
    finally:
        subprocess.run(["umount", str(media)], check=False)


def test_verify_export_checks_a_parquet_exports_readable_columns_too(project: Path) -> None:
    """The Parquet columns (model_id, status, ...) are what a reader of the file sees: one edited
    while the hashed body is left alone fails the export, as a JSONL field does."""
    pq = pytest.importorskip("pyarrow.parquet")
    out = project / "audit.parquet"
    assert run("audit", "export", "--format", "parquet", "-o", str(out)).exit_code == 0
    table = pq.read_table(out)
    rows = table.to_pylist()
    rows[5]["model_id"] = "another-model"
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), out)
    failed = run("audit", "verify", "--export", str(out))
    assert failed.exit_code == 1 and "field(s) model_id differ from the hashed body" in failed.output


def test_an_export_cut_short_fails_against_the_offsite_checkpoints(project: Path) -> None:
    """By itself an export whose tail was cut looks whole; --checkpoints was ignored with --export."""
    offsite = offsite_copy(project)
    out = project / "audit.jsonl"
    assert run("audit", "export", "-o", str(out)).exit_code == 0
    whole = run("audit", "verify", "--export", str(out), "--checkpoints", str(offsite))
    assert whole.exit_code == 0, whole.output
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:12]) + "\n")  # the tail, with its checkpoints, removed
    alone = run("audit", "verify", "--export", str(out))
    assert alone.exit_code == 0 and "cannot be told from a whole one" in alone.output  # and it says so
    cut = run("audit", "verify", "--export", str(out), "--checkpoints", str(offsite))
    assert cut.exit_code == 1 and "truncated" in cut.output


def test_an_ok_verdict_says_when_no_offsite_checkpoints_were_checked(project: Path) -> None:
    alone = run("audit", "verify")
    assert alone.exit_code == 0 and "no off-device checkpoint copy given" in alone.output
    with_copy = run("audit", "verify", "--checkpoints", str(offsite_copy(project)))
    assert with_copy.exit_code == 0 and "no off-device checkpoint copy given" not in with_copy.output
