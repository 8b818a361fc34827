"""Versioned, append-only schema migrations for the audit store. Never edit an applied one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from .querykeys import KEYS_AFTER

__all__ = ["MIGRATIONS", "apply", "pending", "rebuild_keys"]

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []
migration = MIGRATIONS.append


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    # The body is the only stored copy of a record's fields; the queryable columns are
    # generated from it, so there is no second copy to tamper with.
    _script(db, """
    CREATE TABLE records (
        seq          INTEGER PRIMARY KEY,
        body         BLOB NOT NULL,
        record_hash  TEXT NOT NULL,
        record_id    TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.record_id')) VIRTUAL,
        event_type   TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.event_type')) VIRTUAL,
        ts_start     TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.ts_start')) VIRTUAL,
        subject_ref  TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.subject_ref')) VIRTUAL,
        expires_at   TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.expires_at')) VIRTUAL,
        legal_hold   INTEGER GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.legal_hold')) VIRTUAL
    );
    CREATE UNIQUE INDEX records_record_id ON records(record_id);
    CREATE INDEX records_event_type ON records(event_type, seq);
    CREATE INDEX records_ts_start ON records(ts_start);

    -- Prompt and response text (as the redaction policy keeps it). A purge sets text to NULL
    -- and names the chained purge record that did it; verification checks both.
    CREATE TABLE content (
        seq        INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        text       TEXT,
        purged_by  INTEGER,
        PRIMARY KEY (seq, kind)
    ) WITHOUT ROWID;

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    -- Guard rails against accidents, not the security boundary: verification assumes an
    -- attacker can drop these and still detects every change.
    CREATE TRIGGER records_append_only_update BEFORE UPDATE ON records
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    CREATE TRIGGER records_append_only_delete BEFORE DELETE ON records
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    CREATE TRIGGER content_purge_only BEFORE UPDATE ON content
        WHEN NEW.text IS NOT NULL OR NEW.purged_by IS NULL OR NEW.seq != OLD.seq OR NEW.kind != OLD.kind
        BEGIN SELECT RAISE(ABORT, 'content can only be purged'); END;
    CREATE TRIGGER content_no_delete BEFORE DELETE ON content
        BEGIN SELECT RAISE(ABORT, 'content can only be purged'); END;
    """)


@migration
def m002_deferred_keys(db: sqlite3.Connection) -> None:
    # Three indexes on the records table cost every append three more pages in its synced
    # commit (20-40 us of 200). The query keys now live in their own table, filled in batches
    # of KEYS_EVERY records inside an append's transaction (store.py); queries read the keys for
    # the indexed part and scan the short tail of records not yet keyed.
    _script(db, """
    DROP INDEX IF EXISTS records_record_id;
    DROP INDEX IF EXISTS records_event_type;
    DROP INDEX IF EXISTS records_ts_start;
    """)
    _script(db, _KEYS_TABLE)
    db.execute(KEYS_AFTER, (0,))


@migration
def m003_record_keys_guards(db: sqlite3.Connection) -> None:
    # Like the records' triggers, these stop accidents, not an attacker: edited keys could hide
    # a record from a filtered query (never change what it returns). verify compares every key
    # with its record's body and checks that the keys cover seqs 1..K once each.
    _script(db, _KEYS_GUARDS)


@migration
def m004_stream_journal(db: sqlite3.Connection) -> None:
    # What a streamed answer has forwarded to the client so far, durable before it is forwarded:
    # per part, its length and the running sha256 of every byte forwarded (no text: a stream cut
    # into chunks cannot be redacted reliably, and the final record keeps the whole answer). The
    # final inference record takes it over and deletes the rows in its own transaction; rows left
    # by a crash become a chained incident when the proxy next starts (store.recover_streams).
    _script(db, """
    CREATE TABLE stream_journal (
        request_seq  INTEGER NOT NULL,
        part         INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        ts           TEXT NOT NULL,
        PRIMARY KEY (request_seq, part)
    ) WITHOUT ROWID;
    """)


def rebuild_keys(db: sqlite3.Connection) -> None:
    """Make the query keys anew from the records' bodies (inside the caller's transaction):
    the table, its indexes and guards as m002 and m003 left them, whatever became of them."""
    db.execute("DROP TABLE IF EXISTS record_keys")  # its indexes and triggers go with it
    _script(db, _KEYS_TABLE)
    _script(db, _KEYS_GUARDS)
    db.execute(KEYS_AFTER, (0,))


# The SQL of m002 and m003 exactly as first applied (sqlite_master keeps each statement's text).
_KEYS_TABLE = """
    CREATE TABLE record_keys (
        seq         INTEGER PRIMARY KEY,
        record_id   TEXT,
        event_type  TEXT,
        ts_start    TEXT
    );
    CREATE INDEX record_keys_record_id ON record_keys(record_id);
    CREATE INDEX record_keys_event_type ON record_keys(event_type, seq);
    CREATE INDEX record_keys_ts_start ON record_keys(ts_start);
    """
_KEYS_GUARDS = """
    CREATE TRIGGER record_keys_append_only_update BEFORE UPDATE ON record_keys
        BEGIN SELECT RAISE(ABORT, 'query keys are append-only'); END;
    CREATE TRIGGER record_keys_append_only_delete BEFORE DELETE ON record_keys
        BEGIN SELECT RAISE(ABORT, 'query keys are append-only'); END;
    """


def _script(db: sqlite3.Connection, sql: str) -> None:
    # executescript() would COMMIT the migration's transaction first; run statement by statement.
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _ensure_table(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _govkit_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")


def pending(db: sqlite3.Connection) -> list[str]:
    _ensure_table(db)
    done = {row[0] for row in db.execute("SELECT name FROM _govkit_migrations")}
    return [m.__name__ for m in MIGRATIONS if m.__name__ not in done]


def apply(db: sqlite3.Connection) -> list[str]:
    """Apply the pending migrations, all in one transaction (all of them or none); returns the names applied.

    `db` must be in autocommit mode (isolation_level=None). Concurrent openers serialise on
    BEGIN IMMEDIATE and re-check what is pending once they hold the lock.
    """
    applied: list[str] = []
    if not pending(db):
        return applied
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in pending(db):
            step = next(m for m in MIGRATIONS if m.__name__ == name)
            step(db)
            db.execute("INSERT INTO _govkit_migrations VALUES (?, ?)",
                       (name, datetime.now(UTC).isoformat()))
            applied.append(name)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return applied
