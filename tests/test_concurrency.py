"""Durability and concurrency: killed writers lose nothing acknowledged; many writers, one chain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from govkit.audit import AuditLog

pytestmark = pytest.mark.slow

WRITER = r"""
import sys, threading
from govkit.audit import AuditLog
path, key, threads, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
log = AuditLog(path, private_key=key or None, checkpoint_every=50)
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
    AuditLog(path).close()  # create the schema once, so the writers race only on appends
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


def test_sixteen_threads_share_commits_and_keep_one_chain(tmp_path: Path, key_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", private_key=key_path, checkpoint_every=100) as log:
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
        assert result.ok and result.records == 3200 + result.checkpoints
