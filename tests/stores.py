"""Stores as older govkit versions left them, for the tests of migrations and read-only opening."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path


def as_first_schema(path: Path) -> None:
    """Turn a store back into one written before the query keys table (migrations m002, m003):
    the records table carries its three indexes, and no keys table exists."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TABLE record_keys")
    db.execute("CREATE UNIQUE INDEX records_record_id ON records(record_id)")
    db.execute("CREATE INDEX records_event_type ON records(event_type, seq)")
    db.execute("CREATE INDEX records_ts_start ON records(ts_start)")
    db.execute("DELETE FROM _govkit_migrations WHERE name IN ('m002_deferred_keys', 'm003_record_keys_guards')")
    db.close()


def hold_writer_lock(path: Path) -> int:
    """Take the writers' lock as another govkit process would (a descriptor of our own)."""
    fd = os.open(f"{path}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def edit_bodies(db_path: Path, old: str, new: str, where: str) -> None:
    """A tamperer's edit: `old` replaced by `new` in the body of each record `where` selects, past
    the append-only trigger (which stops accidents, not an attacker with the file)."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("DROP TRIGGER records_append_only_update")
        db.execute(f"UPDATE records SET body = CAST(replace(CAST(body AS TEXT), ?, ?) AS BLOB) WHERE {where}", (old, new))
    finally:
        db.close()
