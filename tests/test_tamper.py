"""Tamper detection as property tests: every kind of change an attacker with write access to the
database file could make, after dropping every trigger and constraint, is caught by verify()."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govkit.audit import AuditLog
from govkit.audit.checkpoints import generate_keypair, sidecar_path
from govkit.audit.hashing import chain_hash

from .conftest import copy_store

RECORDS = 30
CHECKPOINT_EVERY = 7
_counter = itertools.count()
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with content, a recorded purge, and signed checkpoints (built once, copied per example)."""
    folder = tmp_path_factory.mktemp("template")
    key = folder / "key.pem"
    generate_keypair(key)
    with AuditLog(folder / "audit.db", private_key=key, checkpoint_every=CHECKPOINT_EVERY, create=True) as log:
        for i in range(RECORDS):
            if i % 3 == 0:
                log.append("inference", prompt=f"question {i} from jane@example.com",
                           response=f"answer {i}", subject_ref=f"s{i % 2}", model_id="m")
            else:
                log.append("feedback", details={"i": i})
            if i == RECORDS // 2:
                log.purge(subject_ref="s1")
    assert AuditLog(folder / "audit.db", create=True).verify().ok
    return folder / "audit.db"


def fresh(template: Path) -> tuple[Path, sqlite3.Connection]:
    path = copy_store(template, template.parent.parent / f"case{next(_counter)}")
    db = sqlite3.connect(path, isolation_level=None)
    # The attacker removes every guard rail first: triggers, indexes, generated columns and the
    # primary key, by rebuilding the records table as a plain one holding the same bytes.
    for kind, name in db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'index') "
                                 "AND name NOT LIKE 'sqlite_autoindex%'").fetchall():
        db.execute(f"DROP {kind.upper()} {name}")
    db.execute("CREATE TABLE plain AS SELECT seq, body, record_hash FROM records")
    db.execute("DROP TABLE records")
    db.execute("ALTER TABLE plain RENAME TO records")
    return path, db


def verify(path: Path, **kwargs):
    with AuditLog(path, read_only=True) as log:
        return log.verify(**kwargs)


def seqs(db: sqlite3.Connection, event_type: str | None = None) -> list[int]:
    marker = b'"event_type":"%s"' % event_type.encode() if event_type else b'"'
    return [row[0] for row in db.execute("SELECT seq FROM records WHERE instr(body, ?) ORDER BY seq", (marker,))]


def last_signed_seq(db: sqlite3.Connection) -> int:
    import json
    return max(json.loads(body)["details"]["seq"]
               for (body,) in db.execute("SELECT body FROM records WHERE instr(body, ?)",
                                         (b'"event_type":"checkpoint"',)))


@PROPERTY
@given(data=st.data())
def test_any_edited_byte_of_a_record_is_detected(template: Path, data: st.DataObject) -> None:
    path, db = fresh(template)
    seq = data.draw(st.sampled_from(seqs(db)))
    column = data.draw(st.sampled_from(["body", "record_hash"]))
    value = bytes(db.execute(f"SELECT CAST({column} AS BLOB) FROM records WHERE seq = ?", (seq,)).fetchone()[0])
    pos = data.draw(st.integers(0, len(value) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != value[pos]))
    edited = value[:pos] + bytes([new_byte]) + value[pos + 1:]
    stored = edited if column == "body" else edited.decode("latin-1")
    db.execute(f"UPDATE records SET {column} = ? WHERE seq = ?", (stored, seq))
    result = verify(path)
    assert not result.ok
    assert result.first_bad_seq is not None and result.first_bad_seq <= seq + 1


@PROPERTY
@given(data=st.data())
def test_any_edit_to_stored_content_is_detected(template: Path, data: st.DataObject) -> None:
    path, db = fresh(template)
    rows = db.execute("SELECT seq, kind, text FROM content WHERE text IS NOT NULL").fetchall()
    seq, kind, text = data.draw(st.sampled_from(rows))
    pos = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != text[pos]))
    db.execute("UPDATE content SET text = ? WHERE seq = ? AND kind = ?", (text[:pos] + char + text[pos + 1:], seq, kind))
    result = verify(path)
    assert not result.ok and result.first_bad_seq == seq
    assert "content edited" in result.problems[0].reason


@PROPERTY
@given(data=st.data())
def test_deleted_records_are_detected(template: Path, data: st.DataObject) -> None:
    path, db = fresh(template)
    all_seqs = seqs(db)
    start = data.draw(st.sampled_from(all_seqs[:-1]))  # deleting the tail is truncation, below
    count = data.draw(st.integers(1, all_seqs[-1] - start))
    db.execute("DELETE FROM records WHERE seq >= ? AND seq < ?", (start, start + count))
    result = verify(path)
    assert not result.ok and result.first_bad_seq <= start  # earlier if a purge record went too
    assert any("missing" in p.reason and p.seq == start for p in result.problems)


@PROPERTY
@given(data=st.data(), how=st.sampled_from(["delete", "empty", "empty-claiming-purge"]))
def test_content_removed_other_than_by_a_recorded_purge_is_detected(template: Path, data: st.DataObject,
                                                                     how: str) -> None:
    path, db = fresh(template)
    rows = db.execute("SELECT seq, kind FROM content WHERE text IS NOT NULL").fetchall()
    seq, kind = data.draw(st.sampled_from(rows))
    if how == "delete":
        db.execute("DELETE FROM content WHERE seq = ? AND kind = ?", (seq, kind))
    elif how == "empty":
        db.execute("UPDATE content SET text = NULL WHERE seq = ? AND kind = ?", (seq, kind))
    else:  # point at the real purge record, which covered subject s1 only
        purge_seq = seqs(db, "purge")[0]
        db.execute("UPDATE content SET text = NULL, purged_by = ? WHERE seq = ? AND kind = ?", (purge_seq, seq, kind))
    result = verify(path)
    assert not result.ok


@PROPERTY
@given(data=st.data())
def test_inserted_records_are_detected(template: Path, data: st.DataObject) -> None:
    """A forged record placed mid-chain with a correctly computed hash of its own."""
    path, db = fresh(template)
    all_seqs = seqs(db)
    at = data.draw(st.sampled_from(all_seqs))
    prev = db.execute("SELECT record_hash FROM records WHERE seq = ?", (at - 1,)).fetchone()
    prev_hash = prev[0] if prev else "sha256:" + "0" * 64
    for seq in reversed(all_seqs):
        if seq >= at:
            db.execute("UPDATE records SET seq = seq + 1 WHERE seq = ?", (seq,))
    body = (b'{"event_type":"override","human_decision":"accepted","record_id":"01FORGED00000000000000000%d",'
            b'"schema_version":1,"ts_start":"2026-01-01T00:00:00Z"}') % at
    db.execute("INSERT INTO records (seq, body, record_hash) VALUES (?, ?, ?)", (at, body, chain_hash(body, prev_hash, at)))
    result = verify(path)
    assert not result.ok
    assert any(p.seq == at + 1 and "hash mismatch" in p.reason for p in result.problems)


@PROPERTY
@given(data=st.data())
def test_reordered_records_are_detected(template: Path, data: st.DataObject) -> None:
    path, db = fresh(template)
    a, b = sorted(data.draw(st.lists(st.sampled_from(seqs(db)), min_size=2, max_size=2, unique=True)))
    rows = {seq: db.execute("SELECT body, record_hash FROM records WHERE seq = ?", (seq,)).fetchone() for seq in (a, b)}
    db.execute("DELETE FROM records WHERE seq IN (?, ?)", (a, b))
    db.execute("INSERT INTO records (seq, body, record_hash) VALUES (?, ?, ?)", (a, *rows[b]))
    db.execute("INSERT INTO records (seq, body, record_hash) VALUES (?, ?, ?)", (b, *rows[a]))
    for seq, kind, _text, _purged_by in db.execute("SELECT * FROM content WHERE seq IN (?, ?)", (a, b)).fetchall():
        db.execute("UPDATE content SET seq = ? WHERE seq = ? AND kind = ?", (-(a + b - seq), seq, kind))
    db.execute("UPDATE content SET seq = -seq WHERE seq < 0")  # content moved along with its record
    result = verify(path)
    assert not result.ok
    assert any(p.seq == a and "hash mismatch" in p.reason for p in result.problems)


@PROPERTY
@given(data=st.data(), drop_sidecar_lines=st.booleans())
def test_truncation_behind_a_checkpoint_is_detected(template: Path, data: st.DataObject,
                                                    drop_sidecar_lines: bool) -> None:
    path, db = fresh(template)
    signed = last_signed_seq(db)
    keep = data.draw(st.integers(0, signed - 1))
    db.execute("DELETE FROM records WHERE seq > ?", (keep,))
    db.execute("DELETE FROM content WHERE seq > ?", (keep,))
    if drop_sidecar_lines:  # the sidecar may lose its newer lines too, as long as one covers the cut
        lines = sidecar_path(path).read_text().splitlines()
        sidecar_path(path).write_text(lines[0] + "\n" if keep < CHECKPOINT_EVERY else "\n".join(lines) + "\n")
    result = verify(path)
    assert not result.ok
    assert any("truncated" in p.reason for p in result.problems)


@PROPERTY
@given(data=st.data())
def test_a_rewritten_chain_is_caught_by_the_signed_checkpoints(template: Path, data: st.DataObject) -> None:
    """The attacker edits a record and recomputes every later hash: only the signatures can tell."""
    path, db = fresh(template)
    seq = data.draw(st.integers(1, last_signed_seq(db)))
    body = bytes(db.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()[0])
    altered = body.replace(b'"schema_version":1', b'"schema_version":1,"x":1')
    db.execute("UPDATE records SET body = ? WHERE seq = ?", (altered, seq))
    prev = db.execute("SELECT record_hash FROM records WHERE seq = ?", (seq - 1,)).fetchone()
    prev_hash = prev[0] if prev else "sha256:" + "0" * 64
    for current, stored_body in db.execute("SELECT seq, body FROM records WHERE seq >= ? ORDER BY seq", (seq,)).fetchall():
        prev_hash = chain_hash(bytes(stored_body), prev_hash, current)
        db.execute("UPDATE records SET record_hash = ? WHERE seq = ?", (prev_hash, current))
    result = verify(path)
    assert not result.ok
    assert any("signed checkpoint" in p.reason for p in result.problems)


def test_a_forged_checkpoint_signature_is_detected(template: Path) -> None:
    path, db = fresh(template)
    lines = sidecar_path(path).read_text().splitlines()
    sidecar_path(path).write_text("\n".join([lines[0].replace('"seq":', '"seq":1') ] + lines[1:]) + "\n")
    result = verify(path)
    assert not result.ok and any("signature invalid" in p.reason for p in result.problems)


def test_the_untouched_template_verifies(template: Path) -> None:
    path, _ = fresh(template)
    result = verify(path)
    assert result.ok, result.problems
    assert result.records > RECORDS and result.checkpoints >= RECORDS // CHECKPOINT_EVERY
    assert result.content_purged > 0 and result.content_checked > 0


@pytest.mark.parametrize("extra", ["duplicate", "duplicate-same-text", "no-record", "foreign-kind"])
def test_content_rows_added_behind_the_records_are_detected(template: Path, extra: str) -> None:
    path, db = fresh(template)
    db.execute("CREATE TABLE loose AS SELECT seq, kind, text, purged_by FROM content")  # no primary key
    db.execute("DROP TABLE content")
    db.execute("ALTER TABLE loose RENAME TO content")
    seq, kind, text = db.execute("SELECT seq, kind, text FROM content WHERE text IS NOT NULL LIMIT 1").fetchone()
    if extra.startswith("duplicate"):
        db.execute("INSERT INTO content VALUES (?, ?, ?, NULL)", (seq, kind, text if extra.endswith("text") else "forged"))
    elif extra == "no-record":
        db.execute("INSERT INTO content VALUES (?, 'prompt', 'smuggled', NULL)", (seqs(db)[-1] + 5,))
    else:
        db.execute("INSERT INTO content VALUES (?, 'attachment', 'smuggled', NULL)", (seq,))
    result = verify(path)
    assert not result.ok
    assert result.first_bad_seq in (seq, seqs(db)[-1] + 5), result.problems


def test_sparse_content_across_many_chunks_is_all_checked(tmp_path: Path) -> None:
    """Chunks without content are skipped: what lies after long runs without any is still met."""
    with AuditLog(tmp_path / "audit.db", create=True) as log:
        log.append_many({"event_type": "feedback", **({"prompt": f"question {i}"} if i in (3, 400, 401, 900) else {})}
                        for i in range(1000))
        assert log.verify().ok and log.verify().content_checked == 4
    db = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    db.execute("DROP TRIGGER content_no_delete")
    db.execute("DROP TRIGGER content_purge_only")
    seqs = [seq for (seq,) in db.execute("SELECT seq FROM content ORDER BY seq")]
    db.execute("UPDATE content SET text = 'edited' WHERE seq = ?", (seqs[-1],))
    db.execute("DELETE FROM content WHERE seq = ?", (seqs[1],))
    result = verify(tmp_path / "audit.db")
    assert {p.seq for p in result.problems} == {seqs[1], seqs[-1]}, result.problems


@pytest.mark.parametrize("where", ["head", "middle"])
def test_a_hash_rewritten_in_upper_case_is_detected(template: Path, where: str) -> None:
    """The same digest in other letters is still an edit of stored bytes (also at the head,
    where no later record chains to it)."""
    path, db = fresh(template)
    seq = seqs(db)[-1] if where == "head" else seqs(db)[5]
    stored = db.execute("SELECT record_hash FROM records WHERE seq = ?", (seq,)).fetchone()[0]
    db.execute("UPDATE records SET record_hash = ? WHERE seq = ?", ("sha256:" + stored[7:].upper(), seq))
    result = verify(path)
    assert not result.ok and result.first_bad_seq == seq, result.problems
