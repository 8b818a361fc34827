"""Durability and concurrency: killed writers lose nothing acknowledged; many writers, one chain."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.errors import StoreBusy

from .stores import hold_writer_lock

pytestmark = pytest.mark.slow

WRITER = r"""
import sys, threading
from govkit.audit import AuditLog
path, key, threads, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
log = AuditLog(path, private_key=key or None, checkpoint_every=50, create=True)
lock = threading.Lock()
def work(t):
    for i in range(count):
        r = log.append("inference", prompt=f"writer {t} call {i} jane@example.com", response="ok",
                       session_id=f"t{t}", details={"i": i})
        with lock:  # acknowledged: append has returned
            sys.stdout.write(f"{r.seq} {r.record_id}\n"); sys.stdout.flush()
workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
"""


def _writer(path: Path, key: Path | None, threads: int, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(key or ""), str(threads), str(count)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("threads", [1, 8])
def test_sigkill_mid_stream_loses_no_acknowledged_record(tmp_path: Path, key_path: Path, threads: int) -> None:
    path = tmp_path / "audit.db"
    proc = _writer(path, key_path, threads, 100_000)
    acknowledged = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged.append(line.split())
        if len(acknowledged) == 400:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    acknowledged += [line.split() for line in proc.stdout.read().splitlines()]  # already printed
    with AuditLog(path, create=False) as log:
        for seq, record_id in acknowledged:
            record = log.get(record_id)
            assert record is not None and record.seq == int(seq)
        result = log.verify()
        assert result.ok, result.problems
        assert result.records >= len(acknowledged)
        assert result.checkpoints >= 1


def test_four_processes_append_to_one_valid_chain(tmp_path: Path, key_path: Path) -> None:
    path = tmp_path / "audit.db"
    AuditLog(path, create=True).close()  # create the schema once, so the writers race only on appends
    writers = [_writer(path, key_path, 1, 1000) for _ in range(4)]
    outputs = [w.communicate()[0].split("\n") for w in writers]
    assert all(w.returncode == 0 for w in writers)
    acked = [line.split() for out in outputs for line in out if line]
    assert len(acked) == 4000
    with AuditLog(path, create=False) as log:
        result = log.verify()
        assert result.ok, result.problems
        assert sum(1 for _ in log.query(event_type="inference")) == 4000
        assert len({seq for seq, _ in acked}) == 4000  # every append got its own place in the chain
        assert all(log.get(record_id).seq == int(seq) for seq, record_id in acked[::97])
    # The query keys, written in batches by whichever process was due, cover a gapless prefix.
    db = sqlite3.connect(path)
    keys = db.execute("SELECT seq, record_id FROM record_keys ORDER BY seq").fetchall()
    bodies = {seq: json.loads(body)["record_id"] for seq, body in db.execute("SELECT seq, body FROM records")}
    assert len(keys) >= 4000 - 256 and keys == [(seq, bodies[seq]) for seq in range(1, len(keys) + 1)]


def test_sixteen_threads_share_commits_and_keep_one_chain(tmp_path: Path, key_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", private_key=key_path, checkpoint_every=100, create=True) as log:
        seen: list[int] = []
        lock = threading.Lock()

        def work() -> None:
            for i in range(200):
                record = log.append("feedback", details={"i": i})
                with lock:
                    seen.append(record.seq)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == len(set(seen)) == 3200
        result = log.verify()
        assert result.ok and result.records == 1 + 3200 + result.checkpoints


def test_checkpoints_purges_and_key_rebuilds_take_turns_with_busy_writers(tmp_path: Path, key_path: Path) -> None:
    """exclusive() waits for the lead to be free while threads keep appending; it must be told
    when it is (a lost wake-up would hang here), and close() likewise."""
    log = AuditLog(tmp_path / "audit.db", private_key=key_path, checkpoint_every=10_000, create=True)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            log.append("inference", prompt="x", subject_ref="s1")

    threads = [threading.Thread(target=work, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    signed: list = []

    def admin() -> None:
        for _ in range(10):
            signed.append(log.checkpoint())
            log.purge(subject_ref="s1")
            log.rebuild_keys()

    admin_thread = threading.Thread(target=admin, daemon=True)
    admin_thread.start()
    admin_thread.join(60)
    stop.set()
    for t in threads:
        t.join(30)
    closer = threading.Thread(target=log.close, daemon=True)
    closer.start()
    closer.join(30)
    assert not admin_thread.is_alive() and not closer.is_alive() and not any(t.is_alive() for t in threads)
    assert len(signed) == 10 and all(s is not None for s in signed)
    with AuditLog(tmp_path / "audit.db", create=False) as reopened:
        result = reopened.verify()
        assert result.ok, result.problems
        assert result.checkpoints >= 10


def test_an_append_interrupted_inside_its_commit_leaves_the_log_usable(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from govkit.audit import store

    real, calls = store.chain_hash, []

    def interrupted_once(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    AuditLog(tmp_path / "audit.db", create=True).close()  # the genesis first
    monkeypatch.setattr(store, "chain_hash", interrupted_once)
    with AuditLog(tmp_path / "audit.db") as log:
        log.append("feedback")
        with pytest.raises(KeyboardInterrupt):
            log.append("feedback")
        others = [threading.Thread(target=lambda: log.append("feedback")) for _ in range(4)]
        for t in others:
            t.start()
        for t in others:
            t.join(30)
        assert not any(t.is_alive() for t in others)  # the lead was given back
        assert [r.seq for r in log.query()] == [1, 2, 3, 4, 5, 6] and log.verify().ok



def test_a_writer_waits_for_the_lock_and_appends_the_moment_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, create=True) as log:
        log.append("feedback")
        held = hold_writer_lock(path)
        done: list[int] = []
        writer = threading.Thread(target=lambda: done.append(log.append("feedback").seq))
        writer.start()
        writer.join(0.3)
        assert writer.is_alive() and not done  # it cannot write while another writer holds the lock
        os.close(held)
        writer.join(10)
        assert done == [3] and log.verify().ok


def test_a_lock_held_past_the_busy_timeout_is_a_clear_error_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, busy_timeout_s=0.2, create=True) as log:
        kept = log.append("feedback")
        held = hold_writer_lock(path)
        try:
            with pytest.raises(StoreBusy, match=r"another govkit process kept the audit store locked for 0.2 s"):
                log.append("feedback")
            with pytest.raises(StoreBusy):  # a second wait queues behind the abandoned one
                log.append("feedback")
        finally:
            os.close(held)
        after = log.append("feedback")  # the abandoned waits let go as soon as they got the lock
        assert after.seq == kept.seq + 1 and after.prev_hash == kept.record_hash
        assert log.verify().ok


def test_reading_a_store_makes_no_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, create=True) as log:
        log.append("feedback")
    Path(f"{path}.lock").unlink()
    with AuditLog(path, create=False) as log:
        assert log.verify().ok and len(list(log.query())) == 2  # the genesis and the feedback
    assert not Path(f"{path}.lock").exists()


TURNS = r"""
import sys, time
from govkit.audit import AuditLog
path, count, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
log = AuditLog(path, create=True)
while time.time() < start:  # all writers begin together, whatever their start-up took
    time.sleep(0.001)
for _ in range(count):
    print(log.append("feedback").seq, flush=True)
"""


def test_processes_take_turns(tmp_path: Path) -> None:
    """Four single-threaded writers started together: none is starved while the others run.
    (With SQLite's busy handler alone, the one that found the lock taken slept 1, 2, 5 ... 100 ms
    at a time while another appended hundreds of records.) Counted in records, not seconds:
    by the time the first writer is done, every other one has written a good share of its own."""
    path = tmp_path / "audit.db"
    AuditLog(path, create=True).close()
    count, start = 300, time.time() + 3
    writers = [subprocess.Popen([sys.executable, "-c", TURNS, str(path), str(count), str(start)],
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    seqs = [[int(line) for line in w.communicate()[0].split()] for w in writers]
    assert all(w.returncode == 0 for w in writers) and all(len(s) == count for s in seqs)
    first_done = min(max(s) for s in seqs)
    written_by_then = sorted(sum(1 for seq in s if seq <= first_done) for s in seqs)
    assert written_by_then[0] >= count // 4, written_by_then
    with AuditLog(path, create=False) as log:
        assert log.verify().ok


def test_a_file_system_without_flock_falls_back_to_sqlites_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from govkit.audit import writerlock

    def no_locks(fd: int, operation: int) -> None:  # fault injection: flock refused (ENOLCK)
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(writerlock, "_flock", no_locks)
    with AuditLog(tmp_path / "audit.db", create=True) as log:
        assert [log.append("feedback").seq for _ in range(3)] == [2, 3, 4]  # after the genesis
        assert log.verify().ok
