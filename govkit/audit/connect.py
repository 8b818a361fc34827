"""Opening the store's SQLite file to read, and what a SQLite failure means for the caller."""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

from ..errors import GovkitError, StoreBusy, StoreCorrupt, StoreError, StoreFull

__all__ = ["connect_read_only", "store_error"]


def store_error(path: Path, exc: BaseException, busy_timeout_s: float = 0) -> GovkitError:
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return StoreBusy(f"{path}: the audit store stayed locked by another writer for "
                         f"{busy_timeout_s:g} s; nothing was written, committed records are intact")
    if "full" in message:
        return StoreFull(f"{path}: {message}; nothing was written, committed records are intact")
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in message or "malformed" in message):
        return StoreCorrupt(f"{path}: not a readable audit database ({message})")
    if "unable to open" in message:
        return StoreError(f"{path}: cannot open the audit database ({message})")
    return StoreError(f"{path}: {message}")


def connect_read_only(path: Path, timeout_s: float = 10.0) -> sqlite3.Connection:
    """A reading connection that writes nothing, also on read-only media (an auditor's copy on a
    write-protected disk), where SQLite cannot make the WAL index a WAL-mode store needs: then
    the file is opened as immutable, which is exact only when no WAL is beside it, so a store
    with an unmerged WAL there is refused rather than read short."""
    uri = f"file:{urllib.parse.quote(str(path))}"
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout_s, isolation_level=None,
                         check_same_thread=False)
    if os.access(path.parent, os.W_OK):  # the usual case: SQLite can make its WAL index beside the file
        return db
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # the WAL index is made here
        return db
    except sqlite3.OperationalError as exc:
        db.close()
        if "unable to open" not in str(exc):
            raise
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(f"{path}: on read-only media with a write-ahead log ({wal.name}) beside it but no "
                         f"{path.name}-shm: copy the three files to writable storage to read it whole")
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout_s, isolation_level=None,
                           check_same_thread=False)
