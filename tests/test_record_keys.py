"""Query keys are kept in batches (migrations.m002): queries must find every record all the
same, whether its keys are written yet or not, and an older store is migrated on open."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govkit.audit import AuditLog, store
from govkit.errors import InputError

from .conftest import copy_store
from .stores import as_first_schema

EVERY = 16  # keys written per 16 records here, so that the tests cross several batches
TYPES = ("inference", "override", "feedback", "incident")


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory, key_path_module: Path) -> Path:
    """Records of four types and times out of order, ending in a tail not keyed yet."""
    path = tmp_path_factory.mktemp("keys") / "audit.db"
    patch = pytest.MonkeyPatch()
    patch.setattr(store, "KEYS_EVERY", EVERY)
    try:
        with AuditLog(path, private_key=key_path_module, checkpoint_every=25, create=True) as log:
            for i in range(7 * EVERY + 5):
                event_type = TYPES[i * 7 % 4]
                fields = {"human_decision": "accepted"} if event_type == "override" else {}
                log.append(event_type, ts_start=f"2026-0{1 + i * 5 % 9}-{10 + i % 17}T00:00:{i % 60:02d}Z",
                           subject_ref=f"s{i % 3}", **fields)
            log.append("override", human_decision="edited", target_record_id="01TARGET")
    finally:
        patch.undo()
    return path


@pytest.fixture(scope="module")
def key_path_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from govkit.audit.checkpoints import generate_keypair

    path = tmp_path_factory.mktemp("key") / "device.pem"
    generate_keypair(path)
    return path


def everything(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    rows = [dict(json.loads(body), seq=seq) for seq, body in db.execute("SELECT seq, body FROM records ORDER BY seq")]
    db.close()
    return rows


def keyed_upto(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT coalesce(max(seq), 0) FROM record_keys").fetchone()[0]
    finally:
        db.close()


def test_the_store_has_keyed_and_unkeyed_records(mixed_store: Path) -> None:
    head = len(everything(mixed_store))
    assert 0 < keyed_upto(mixed_store) < head  # both parts exist: the property below covers both
    assert head - keyed_upto(mixed_store) < EVERY + 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_type=st.none() | st.sampled_from(TYPES + ("checkpoint", "nothing")),
       since=st.none() | st.dates(), until=st.none() | st.dates(),
       subject_ref=st.none() | st.sampled_from(["s0", "s1", "s9"]),
       limit=st.none() | st.integers(0, 140), newest_first=st.booleans())
def test_queries_match_a_scan_of_every_record(mixed_store: Path, event_type, since, until, subject_ref,
                                              limit, newest_first) -> None:
    expected = [r for r in everything(mixed_store)
                if (event_type is None or r["event_type"] == event_type)
                and (since is None or r["ts_start"] >= f"{since.isoformat()}T00:00:00.000000Z")
                and (until is None or r["ts_start"] < f"{until.isoformat()}T00:00:00.000000Z")
                and (subject_ref is None or r.get("subject_ref") == subject_ref)]
    if newest_first:
        expected.reverse()
    expected = expected[:limit] if limit is not None else expected
    with AuditLog(mixed_store, create=False) as log:
        found = list(log.query(event_type=event_type, since=since and since.isoformat(),
                               until=until and until.isoformat(), subject_ref=subject_ref,
                               limit=limit, newest_first=newest_first))
    assert [r.seq for r in found] == [r["seq"] for r in expected]
    assert all(r.prev_hash == p.record_hash for r, p in zip(found[1:], found) if r.seq == p.seq + 1)


def test_lookups_by_record_id_and_seq_find_keyed_and_unkeyed_records(mixed_store: Path) -> None:
    rows = everything(mixed_store)
    with AuditLog(mixed_store, create=False) as log:
        for row in rows[:3] + rows[-3:]:
            assert log.get(row["record_id"]).seq == row["seq"] == log.get(row["seq"]).seq
        assert log.get("01NOSUCHRECORD") is None and log.get(len(rows) + 1) is None
        assert [r.seq for r in log.query(target_record_id="01TARGET")] == [rows[-1]["seq"]]


def test_stats_count_keyed_and_unkeyed_records(mixed_store: Path) -> None:
    rows = everything(mixed_store)
    with AuditLog(mixed_store, create=False) as log:
        stats = log.stats()
    by_type: dict[str, int] = {}
    for row in rows:
        by_type[row["event_type"]] = by_type.get(row["event_type"], 0) + 1
    assert stats["records"] == len(rows) == stats["head_seq"]
    assert stats["by_event_type"] == dict(sorted(by_type.items()))
    assert (stats["first_ts"], stats["last_ts"]) == (min(r["ts_start"] for r in rows), max(r["ts_start"] for r in rows))
    last_checkpoint = [r for r in rows if r["event_type"] == "checkpoint"][-1]
    assert stats["last_checkpoint_seq"] == last_checkpoint["details"]["seq"]


def test_keys_are_written_in_batches_and_match_the_bodies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "KEYS_EVERY", EVERY)
    path = tmp_path / "audit.db"
    with AuditLog(path, create=True) as log:
        for _ in range(EVERY - 2):  # and the genesis record
            log.append("incident")
        assert keyed_upto(path) == 0  # nothing keyed yet: one page per append, as the bare commit
        log.append("incident")
        assert keyed_upto(path) == EVERY
        log.append_many([{"event_type": "feedback"}] * (3 * EVERY + 1))
        assert keyed_upto(path) == 4 * EVERY + 1
    db = sqlite3.connect(path)
    keys = db.execute("SELECT k.seq, k.record_id, k.event_type, k.ts_start FROM record_keys k ORDER BY seq").fetchall()
    bodies = {seq: json.loads(body) for seq, body in db.execute("SELECT seq, body FROM records")}
    assert keys == [(seq, b["record_id"], b["event_type"], b["ts_start"]) for seq, b in sorted(bodies.items())]


def test_a_store_from_before_the_keys_table_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, create=True) as log:
        first = log.append("inference", ts_start="2026-01-01T00:00:00Z")
        log.append("override", human_decision="accepted", target_record_id=first.record_id)
    as_first_schema(path)
    with AuditLog(path, create=True) as log:
        assert log.verify().ok
        assert keyed_upto(path) == 3
        assert log.get(first.record_id).seq == 2
        assert [r.event_type for r in log.query(since="2025-12-31", until="2026-01-02")] == ["inference"]
        log.append("incident")
        assert log.stats()["records"] == 4 and log.verify().ok
    db = sqlite3.connect(path)
    indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not indexes & {"records_record_id", "records_event_type", "records_ts_start"}
    for change in ("UPDATE record_keys SET event_type = 'feedback'", "DELETE FROM record_keys"):
        with pytest.raises(sqlite3.IntegrityError, match="query keys are append-only"):
            db.execute(change)


def test_a_damaged_body_does_not_stop_appends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keying reads stored bodies; one that is no longer JSON must not make every later append
    fail (the log would stop recording): it is keyed with nulls, and verify names it."""
    monkeypatch.setattr(store, "KEYS_EVERY", EVERY)
    path = tmp_path / "audit.db"
    with AuditLog(path, create=True) as log:
        log.append("incident")
    db = sqlite3.connect(path, isolation_level=None)  # the generated columns refuse it: rebuild the table
    db.execute("CREATE TABLE plain AS SELECT seq, body, record_hash FROM records")
    db.execute("DROP TABLE records")
    db.execute("ALTER TABLE plain RENAME TO records")
    db.execute("UPDATE records SET body = CAST('{not json' AS BLOB) WHERE seq = 2")
    db.close()
    with AuditLog(path, create=True) as log:
        for _ in range(EVERY + 1):
            log.append("incident")
        assert keyed_upto(path) == EVERY
        result = log.verify()
        assert not result.ok and result.first_bad_seq == 2
    db = sqlite3.connect(path)
    assert db.execute("SELECT record_id, event_type, ts_start FROM record_keys WHERE seq = 2").fetchone() == (None,) * 3
    assert db.execute("SELECT count(*) FROM records").fetchone()[0] == EVERY + 3


def test_appends_go_on_when_the_keys_table_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Damage to the query keys must not stop the log from recording: appends go on with a
    warning, and queries scan the records instead."""
    monkeypatch.setattr(store, "KEYS_EVERY", EVERY)
    path = tmp_path / "audit.db"
    with AuditLog(path, create=True) as log:
        log.append("override", human_decision="accepted")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TABLE record_keys")
    db.close()
    with AuditLog(path, create=True) as log:
        with pytest.warns(UserWarning, match="query keys not updated"):
            for _ in range(EVERY + 1):
                log.append("incident")
        assert [r.seq for r in log.query(event_type="override")] == [2]
        assert log.stats()["records"] == EVERY + 3
        result = log.verify()
        assert result.ok and any("query keys table is missing" in w for w in result.warnings)


_copies = itertools.count()


def keys_unguarded(store_path: Path, folder: Path) -> tuple[Path, sqlite3.Connection]:
    """A copy of the store whose query keys an attacker can now change (triggers dropped)."""
    path = copy_store(store_path, folder / f"copy{next(_copies)}")
    db = sqlite3.connect(path, isolation_level=None)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'record_keys'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    return path, db


def verified(path: Path):
    with AuditLog(path, create=False, read_only=True) as log:
        return log.verify()


def test_a_key_edited_to_hide_a_record_from_a_filtered_query_fails_verify(mixed_store: Path, tmp_path: Path) -> None:
    path, db = keys_unguarded(mixed_store, tmp_path)
    hidden = db.execute("SELECT min(seq) FROM record_keys WHERE event_type = 'override'").fetchone()[0]
    db.execute("UPDATE record_keys SET event_type = 'inference' WHERE seq = ?", (hidden,))
    db.close()
    with AuditLog(path, create=False, read_only=True) as log:
        assert hidden not in [r.seq for r in log.query(event_type="override")]  # what the edit does
        result = log.verify()
    assert not result.ok and result.first_bad_seq == hidden
    assert "query keys disagree" in result.problems[0].reason


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), how=st.sampled_from(["record_id", "event_type", "ts_start", "delete", "past the head"]))
def test_any_change_to_the_query_keys_that_could_hide_a_record_is_detected(
        mixed_store: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, how: str) -> None:
    assert verified(mixed_store).ok
    path, db = keys_unguarded(mixed_store, tmp_path_factory.mktemp("tampered"))
    keyed = keyed_upto(path)
    head = db.execute("SELECT max(seq) FROM records").fetchone()[0]
    if how == "past the head":  # queries would scan only past it: the records after the last key are hidden
        bad = keyed + 1
        db.execute("INSERT INTO record_keys VALUES (?, '01PHANTOM', 'inference', '2026-01-01T00:00:00Z')",
                   (data.draw(st.integers(head + 1, head + 40)),))
    elif how == "delete":  # the last key row is left out: without it, its record is scanned as tail
        bad = data.draw(st.integers(1, keyed - 1))
        db.execute("DELETE FROM record_keys WHERE seq = ?", (bad,))
    else:
        bad = data.draw(st.integers(1, keyed))
        old = db.execute(f"SELECT {how} FROM record_keys WHERE seq = ?", (bad,)).fetchone()[0]
        new = data.draw(st.one_of(st.none(), st.sampled_from(TYPES), st.text(max_size=30)).filter(lambda v: v != old))
        db.execute(f"UPDATE record_keys SET {how} = ? WHERE seq = ?", (new, bad))
    db.close()
    result = verified(path)
    assert not result.ok and result.first_bad_seq == bad


@pytest.mark.parametrize("damage", ["edit", "delete", "past the head", "drop", "rebuilt without columns"])
def test_rebuild_keys_repairs_what_verify_found_and_records_it(mixed_store: Path, tmp_path: Path, damage: str) -> None:
    path, db = keys_unguarded(mixed_store, tmp_path)
    overrides = [r["seq"] for r in everything(path) if r["event_type"] == "override"]
    hidden = overrides[0]
    {"edit": lambda: db.execute("UPDATE record_keys SET event_type = 'feedback' WHERE seq = ?", (hidden,)),
     "delete": lambda: db.execute("DELETE FROM record_keys WHERE seq = ?", (hidden,)),
     "past the head": lambda: db.execute("INSERT INTO record_keys VALUES (100000, 'x', 'incident', 'x')"),
     "drop": lambda: db.execute("DROP TABLE record_keys"),
     "rebuilt without columns": lambda: (db.execute("DROP TABLE record_keys"),
                                         db.execute("CREATE TABLE record_keys (seq INTEGER, junk TEXT)")),
     }[damage]()
    db.close()
    records_before = everything(path)
    with AuditLog(path, create=False) as log:
        record = log.rebuild_keys(reason="INC-7 jane@example.com")
        assert [r.seq for r in log.query(event_type="override")][:len(overrides)] == overrides
        result = log.verify()
        assert result.ok and not any("query keys" in w for w in result.warnings), result.problems
    assert everything(path)[:-1] == records_before  # the records are untouched; one incident added
    details = record.fields["details"]
    assert record.fields["event_type"] == "incident" and details["action"] == "query keys rebuilt"
    assert details["keyed_records"] == record.seq - 1 == keyed_upto(path)
    assert record.fields["override_reason"] == "INC-7 [EMAIL]"
    expected = {"edit": (1, 1), "delete": (0, 1), "past the head": (1, record.seq - 1 - keyed_upto(mixed_store))}
    if damage in expected:
        assert (details["wrong_rows_removed"], details["missing_rows_added"]) == expected[damage]
    else:
        assert details["previous_keys"] == "missing or unreadable"
    db = sqlite3.connect(path)  # the guards are back
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE record_keys SET event_type = 'x'")
    db.close()


def test_rebuilding_untouched_keys_changes_nothing_and_needs_a_writer(mixed_store: Path, tmp_path: Path) -> None:
    path, db = keys_unguarded(mixed_store, tmp_path)
    db.close()
    with AuditLog(path, create=False, read_only=True) as log:
        with pytest.raises(InputError, match="read-only"):
            log.rebuild_keys()
    with AuditLog(path, create=False) as log:
        before = log.stats()
        assert log.rebuild_keys() is None  # healthy keys: nothing changed, no incident chained
        assert log.stats() == before and log.verify().ok
