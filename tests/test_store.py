"""The audit store's contract: durable chained appends, queries, purge, and clear errors."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govkit.audit import AuditLog
from govkit.audit.hashing import GENESIS_HASH, canonical_json, chain_hash, content_digest
from govkit.errors import InputError, InvalidRecord, StoreBusy, StoreCorrupt, StoreFull, StoreNotFound
from govkit.timestamps import utc_text


def test_append_chains_records_and_returns_them(log: AuditLog) -> None:
    first = log.append("inference", prompt="hello", response="hi", model_id="m1", latency_ms=12.5)
    second = log.append("feedback", target_record_id=first.record_id, details={"score": 1})
    genesis = log.get(1)  # the store's own first record fixes its identity
    assert genesis.event_type == "genesis" and genesis.details["store_id"] == log.meta["store_id"]
    assert genesis.details["public_key"] == log.public_key and genesis.prev_hash == GENESIS_HASH
    assert (first.seq, second.seq) == (2, 3)
    assert first.prev_hash == genesis.record_hash and second.prev_hash == first.record_hash
    assert first.record_hash == chain_hash(first.body, genesis.record_hash, 2)
    assert json.loads(first.body) == first.fields and first.body == canonical_json(first.fields)
    assert first.input_sha256 == content_digest("hello")
    assert first.output_sha256 == content_digest("hi")
    assert first.event_type == "inference" and first.model_id == "m1"
    assert log.content(first) == {"prompt": "hello", "response": "hi"}
    assert log.get(first.record_id) == first == log.get(2)
    assert log.verify().ok


def test_query_by_event_type_and_time(log: AuditLog) -> None:
    log.append("inference", ts_start="2026-01-01T00:00:00Z")
    log.append("override", ts_start="2026-02-01T00:00:00Z", human_decision="accepted")
    log.append("inference", ts_start="2026-03-01T00:00:00Z")
    assert [r.ts_start for r in log.query(event_type="inference")] == [
        "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"]
    assert [r.event_type for r in log.query(since="2026-01-15", until="2026-03-01")] == ["override"]
    assert [r.seq for r in log.query(newest_first=True, limit=2)][0] > 2
    assert len(list(log)) == log.stats()["records"]


def test_every_record_is_in_the_file_before_append_returns(tmp_path: Path) -> None:
    """Another process sees the record the moment append returns: it was committed, not buffered."""
    with AuditLog(tmp_path / "a.db", create=True) as log:
        record = log.append("incident", details={"what": "probe"})
        out = subprocess.run(
            ["python", "-c", "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]);"
             "print(db.execute('select record_hash from records where seq=?', (int(sys.argv[2]),)).fetchone()[0])",
             str(tmp_path / "a.db"), str(record.seq)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == record.record_hash
        assert log._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert log._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_checkpoints_every_n_records_and_on_demand(log: AuditLog) -> None:
    for i in range(11):
        log.append("feedback", details={"i": i})
    checkpoints = [r.details["seq"] for r in log.query(event_type="checkpoint")]
    assert checkpoints == [5, 10]  # 1..5, checkpoint 6 signs head 5; 7..10, checkpoint 11 signs 10
    signed = log.checkpoint()
    assert signed is not None and signed["seq"] == log.stats()["head_seq"] - 1
    assert log.checkpoint() is None  # head already signed
    result = log.verify()
    assert result.ok and result.checkpoints == 3


def test_checkpoint_without_key_is_a_clear_error(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", create=True) as log:
        log.append("feedback")
        with pytest.raises(InputError, match="no device key"):
            log.checkpoint()


def test_purge_expired_keeps_verification_green(log: AuditLog) -> None:
    old = log.append("inference", prompt="p1", response="r1", ts_start="2020-01-01T00:00:00Z")
    held = log.append("inference", prompt="p2", response="r2", ts_start="2020-01-01T00:00:00Z", legal_hold=True)
    new = log.append("inference", prompt="p3", response="r3")
    purge = log.purge(expired=True)
    assert purge.details["purged_items"] == 2 and purge.details["purged_records"] == 1
    assert log.content(old) == {"prompt": None, "response": None}
    assert log.content(held) == {"prompt": "p2", "response": "r2"}
    assert log.content(new) == {"prompt": "p3", "response": "r3"}
    result = log.verify()
    assert result.ok, result.problems
    assert result.content_purged == 2


def test_purge_by_subject_is_an_erasure_request(log: AuditLog) -> None:
    a = log.append("inference", prompt="alice's question", subject_ref="subj-a")
    b = log.append("inference", prompt="bob's question", subject_ref="subj-b")
    log.purge(subject_ref="subj-a", reason="erasure request ER-42")
    assert log.content(a) == {"prompt": None}
    assert log.content(b) == {"prompt": "bob's question"}
    assert log.verify().ok
    raw = b"".join(p.read_bytes() for p in log.path.parent.glob(log.path.name + "*"))
    assert b"alice's question" not in raw  # secure_delete + WAL truncation leave no copy


def test_purge_needs_a_criterion(log: AuditLog) -> None:
    with pytest.raises(InputError, match="criterion"):
        log.purge()


@pytest.mark.parametrize("bad", [
    dict(event_type="inferense"),
    dict(event_type="inference", latency="3"),
    dict(event_type="inference", latency_ms="3"),
    dict(event_type="inference", model_id="bad \udcff surrogate"),
    dict(event_type="override", human_decision="maybe"),
    dict(event_type="inference", latency_ms=float("nan")),
    dict(event_type="inference", review_latency_s=float("-inf")),
    dict(event_type="feedback", details={"scores": [0.5, float("inf")]}),
    dict(event_type="inference", sampling={"temperature": float("nan")}),
    dict(event_type="feedback", details={"nested": [{"input_sha256": "sha256:00"}]}),
    dict(event_type="feedback", details={"content_mode": "full"}),
    dict(event_type="inference", input_tokens=True),
    dict(event_type="inference", disclosure_shown=1),
    dict(event_type="inference", model_id=7),
    dict(event_type="inference", latency=3),
    dict(event_type="feedback", details={"note": "bad \udcff surrogate"}),
])
def test_invalid_records_are_refused_and_nothing_is_written(log: AuditLog, bad: dict) -> None:
    log.append("feedback")
    with pytest.raises(InvalidRecord):
        log.append(**bad)
    assert log.stats()["records"] == 2 and log.verify().ok  # the genesis and the feedback


def test_bodies_orjson_does_not_take_are_stored_as_the_json_module_writes_them(log: AuditLog) -> None:
    record = log.append("feedback", details={"counts": {1: 2}, "big": 2**70, "small": 1e-07})
    assert json.loads(record.body) == {**json.loads(record.body), "details": {"counts": {"1": 2}, "big": 2**70,
                                                                              "small": 1e-07}}
    assert log.verify().ok


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=253_402_300_000 * 10**9))  # 1970 through 9999
def test_times_are_written_as_datetime_writes_them(ns: int) -> None:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for later in (0, 1_000, 10**9):  # the same second (from the cache), then the next one
        expected = epoch + dt.timedelta(microseconds=(ns + later) // 1000)
        assert utc_text(ns + later) == expected.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_non_utf8_content_is_refused(log: AuditLog) -> None:
    with pytest.raises(InvalidRecord, match="prompt is not valid UTF-8"):
        log.append("inference", prompt=b"caf\xe9")
    with pytest.raises(InvalidRecord, match="response is not valid UTF-8"):
        log.append("inference", response="x\udce9")
    assert log.append("inference", prompt="café".encode()).seq == 2


def test_missing_and_corrupt_databases(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound, match="nope.db"):
        AuditLog(tmp_path / "nope.db", create=False)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00\xffnot sqlite at all" * 100)
    with pytest.raises(StoreCorrupt, match="junk.db"):
        AuditLog(junk, create=True)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(StoreCorrupt, match="not a govkit audit store"):
        AuditLog(other, create=True)
    # The same refusals when opened read-only, and nothing made on the way.
    with pytest.raises(StoreNotFound, match="nope.db"):
        AuditLog(tmp_path / "nope.db", read_only=True)
    with pytest.raises(StoreCorrupt, match="junk.db"):
        AuditLog(junk, read_only=True)
    with pytest.raises(StoreCorrupt, match="not a govkit audit store"):
        AuditLog(other, read_only=True)
    (tmp_path / "empty.db").touch()
    with pytest.raises(StoreNotFound, match="empty.db: empty file"):
        AuditLog(tmp_path / "empty.db", read_only=True)
    assert not (tmp_path / "nope.db").exists() and (tmp_path / "empty.db").stat().st_size == 0


def test_locked_database_times_out_cleanly(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", busy_timeout_s=0.2, create=True) as log:
        kept = log.append("feedback")
        blocker = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreBusy, match="locked"):
                log.append("feedback")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert log.get(kept.record_id) == kept
        assert log.append("feedback").seq == 3  # the failed append left no gap
        assert log.verify().ok


def test_full_store_fails_cleanly_and_keeps_what_was_committed(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", create=True) as log:
        kept = [log.append("inference", prompt="x" * 500) for _ in range(3)]
        pages = log._writer.execute("PRAGMA page_count").fetchone()[0]
        log._writer.execute(f"PRAGMA max_page_count = {pages}")  # fault injection: SQLITE_FULL
        with pytest.raises(StoreFull, match="full"):
            for _ in range(50):
                log.append("inference", prompt="y" * 4000)
        log._writer.execute("PRAGMA max_page_count = 1073741823")
        assert [log.get(r.record_id) for r in kept] == kept
        assert log.verify().ok
        log.append("feedback")
        assert log.verify().ok


def test_real_full_disk(tmp_path: Path) -> None:
    """A real filesystem that runs out of space: a small tmpfs (needs mount rights)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); covered by the page-limit test")
    try:
        committed = []
        with AuditLog(disk / "a.db", create=True) as log:
            with pytest.raises(StoreFull):
                for i in range(10_000):
                    committed.append(log.append("inference", prompt=f"{i} " + "z" * 2000))
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        with AuditLog(disk / "a.db", create=True) as log:
            assert [log.get(r.record_id) for r in committed] == committed
            result = log.verify()
            assert result.ok, result.problems
            assert result.records == len(committed) + 1  # and the genesis
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_ulids_are_unique_sortable_and_correctly_encoded() -> None:
    import random

    import govkit._ids as ids

    made = [ids.new_ulid() for _ in range(20_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(u) == 26 and set(u) <= set(ids._ALPHABET) for u in made)

    def reference(value: int) -> str:
        chars = []
        for _ in range(26):
            chars.append(ids._ALPHABET[value & 31])
            value >>= 5
        return "".join(reversed(chars))

    for value in [0, (1 << 128) - 1, *(random.getrandbits(128) for _ in range(500))]:
        assert ids._encode(value) == reference(value)


def test_verify_says_when_only_the_stores_own_key_was_used(tmp_path: Path, key_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", private_key=key_path, checkpoint_every=2, create=True) as log:
        for _ in range(3):
            log.append("feedback")
        assert log.verify().warnings == []  # checked with the device's own key
        public = log.public_key
    with AuditLog(tmp_path / "a.db", create=False) as log:  # no key given: falls back to the store's
        result = log.verify()
        assert result.ok and not result.trusted and "self-consistent only" in result.scope
        trusted = log.verify(public_key=public)
        assert trusted.trusted and trusted.warnings == [] and "trusted device key" in trusted.scope


def test_append_many_commits_in_batches_of_at_most_256(tmp_path: Path, key_path: Path) -> None:
    """12,000 records in one call go in commits of at most 256 (one statement's bound values
    are limited, 32,766 in a default SQLite build), so checkpoints fall every 1,000 or so."""
    with AuditLog(tmp_path / "a.db", private_key=key_path, checkpoint_every=1000, create=True) as log:
        records = log.append_many([{"event_type": "inference", "prompt": f"q{i}", "response": "a"}
                                   for i in range(12_000)])
        assert len(records) == 12_000 and records[-1].seq <= log.stats()["head_seq"]
        result = log.verify()
        assert result.ok and result.records == 1 + 12_000 + result.checkpoints
        assert 10 <= result.checkpoints <= 12


def test_a_purge_a_reader_keeps_from_finishing_says_so_and_the_next_one_finishes(tmp_path: Path) -> None:
    from govkit.errors import PurgeIncomplete

    path = tmp_path / "a.db"
    with AuditLog(path, create=True, busy_timeout_s=0.3) as log:
        log.append("inference", prompt="alice's secret question", subject_ref="alice")
        log.append("feedback")
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM content").fetchone()  # a snapshot older than the purge
        log.append("feedback")
        with pytest.raises(PurgeIncomplete, match="an open reader keeps the write-ahead log") as caught:
            log.purge(subject_ref="alice")
        assert caught.value.record.event_type == "purge" and log.content(2) == {"prompt": None}

        def raw() -> bytes:
            return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))

        assert b"alice's secret question" in raw()  # still on disk: the purge said so
        result = log.verify()
        assert not result.ok and "may still be physically on disk" in result.problems[0].reason
        reader.execute("COMMIT")
        reader.close()
        log.purge(subject_ref="alice")  # nothing new to erase, but it finishes the job
        assert b"alice's secret question" not in raw()
        assert log.verify().ok
