"""The parallel scan (worker processes over seq ranges) finds exactly what the single scan finds,
including tampering at and around a range boundary."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.audit import verify as verify_module
from govkit.errors import PurgeIncomplete

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path: Path, key_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(verify_module, "_PARALLEL_MIN_RECORDS", 10)
    with AuditLog(tmp_path / "a.db", private_key=key_path, checkpoint_every=25, create=True) as log:
        log.append_many([{"event_type": "inference", "prompt": f"q{i} jane@example.com", "response": f"a{i}",
                          "subject_ref": f"s{i % 3}"} for i in range(200)])
        log.purge(subject_ref="s1")
        log.append_many([{"event_type": "feedback", "details": {"i": i}} for i in range(50)])
    return tmp_path / "a.db"


def both(path: Path):
    with AuditLog(path, create=False) as log:
        return log.verify(workers=1), log.verify(workers=2)


def test_parallel_matches_single(store: Path) -> None:
    single, parallel = both(store)
    assert single.ok and parallel.ok and not any("parallel scan failed" in w for w in parallel.warnings)
    assert single.to_dict() == parallel.to_dict()
    assert parallel.records > 250 and parallel.content_purged > 0 and parallel.checkpoints >= 2


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_tampering_at_the_range_boundary_is_found(store: Path, offset: int) -> None:
    with AuditLog(store, create=False) as log:
        db = log._writer
        ranges = verify_module._plan_ranges(db, 2)
    boundary = ranges[1][0] + offset
    db = sqlite3.connect(store)
    db.execute("DROP TRIGGER records_append_only_update")
    db.execute("UPDATE records SET record_hash = 'sha256:' || hex(randomblob(32)) WHERE seq = ?", (boundary,))
    db.commit()
    single, parallel = both(store)
    assert not single.ok and not parallel.ok
    assert single.first_bad_seq == parallel.first_bad_seq == boundary


def test_records_deleted_across_the_boundary_are_found(store: Path) -> None:
    with AuditLog(store, create=False) as log:
        start = verify_module._plan_ranges(log._writer, 2)[1][0]
    db = sqlite3.connect(store)
    db.execute("DROP TRIGGER records_append_only_delete")
    db.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", (start - 2, start + 2))
    db.commit()
    single, parallel = both(store)
    assert not parallel.ok
    assert parallel.first_bad_seq == single.first_bad_seq == start - 2


def test_a_purge_during_a_parallel_verify_is_not_a_false_alarm(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers read a newer snapshot than the parent: a retention purge that lands in between
    leaves tombstones whose purge record lies beyond the verified head."""
    real = verify_module._scan_in_processes

    def purge_first(path, ranges, result):
        with AuditLog(path, create=False, busy_timeout_s=0.2) as writer:
            # Committed after the parent's snapshot was taken; that open snapshot keeps the WAL
            # from being emptied, and the purge says so.
            with pytest.raises(PurgeIncomplete):
                writer.purge(subject_ref="s2")
        return real(path, ranges, result)

    monkeypatch.setattr(verify_module, "_scan_in_processes", purge_first)
    with AuditLog(store, create=False) as log:
        result = log.verify(workers=2)
    assert result.ok, result.problems
    monkeypatch.setattr(verify_module, "_scan_in_processes", real)
    with AuditLog(store, create=False) as log:
        assert not log.verify(workers=2).ok  # until a purge finishes the job, the erased text may be on disk
        log.purge(subject_ref="s2")  # no reader now: it finishes
        later = log.verify(workers=2)  # the next verify covers that purge fully
    assert later.ok and later.content_purged > result.content_purged - 1


def test_failed_workers_fall_back_to_one_process(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with AuditLog(store, create=False) as log:
        single = log.verify(workers=1)
        monkeypatch.setattr("sys.executable", "/bin/false")  # every worker exits 1, saying nothing
        fallback = log.verify(workers=2)
    assert fallback.ok and fallback.records == single.records
    assert fallback.content_checked == single.content_checked
    assert "parallel scan failed, scanned in one process instead" in fallback.warnings


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_query_key_edited_at_the_range_boundary_is_found(store: Path, offset: int) -> None:
    with AuditLog(store, create=False) as log:
        log.append_many([{"event_type": "incident"}] * 300)  # past 256 records: the keys cover both ranges
        boundary = verify_module._plan_ranges(log._writer, 2)[1][0] + offset
    db = sqlite3.connect(store)
    assert db.execute("SELECT max(seq) FROM record_keys").fetchone()[0] > boundary
    db.execute("DROP TRIGGER record_keys_append_only_update")
    db.execute("UPDATE record_keys SET event_type = 'feedback' WHERE seq = ?", (boundary,))
    db.commit()
    single, parallel = both(store)
    assert single.first_bad_seq == parallel.first_bad_seq == boundary
    assert single.to_dict() == parallel.to_dict()
