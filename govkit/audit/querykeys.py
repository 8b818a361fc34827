"""The query keys: record_id, event_type and ts_start of each record in their own indexed table,
so that lists and lookups need not parse every body. The keys are a cache of the records, never
evidence: verify checks them against the bodies, and `rebuild_keys` makes them anew."""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from typing import Any

from .hashing import GENESIS_HASH
from .records import AuditRecord

__all__ = ["KEYS_AFTER", "KEYS_DISAGREE_FAST", "KEYS_DISAGREE_GUARDED", "KEY_FIELDS", "RECORD_SQL", "copy_keys",
           "first", "keyed_upto", "last_checkpoint", "matching"]

# The keys of records after seq ?. A body that is not JSON (a damaged store) gets NULL keys
# rather than stopping every later append; verify reports the damage.
KEY_FIELDS = ("record_id", "event_type", "ts_start")  # each a top-level field of the body, a column here
KEYS_AFTER = ("INSERT INTO record_keys (seq, " + ", ".join(KEY_FIELDS) + ") "
              "SELECT seq, " + ", ".join("json_extract(j, '$.%s')" % name for name in KEY_FIELDS) + " "
              "FROM (SELECT seq, CASE WHEN json_valid(CAST(body AS TEXT)) THEN CAST(body AS TEXT) END AS j "
              "FROM records WHERE seq > ?)")
# Key rows of a seq range that disagree with their record (json_extract reads the record's own
# top-level fields, as KEYS_AFTER wrote them). A body that is not JSON makes json_extract fail:
# the guarded form then expects NULL keys for it, as KEYS_AFTER gives.
_KEYS_DISAGREE = ("SELECT k.seq FROM record_keys k LEFT JOIN records r ON r.seq = k.seq "
                  "WHERE k.seq BETWEEN ? AND ? AND (r.seq IS NULL"
                  + "".join(" OR k.%s IS NOT json_extract({j}, '$.%s')" % (name, name) for name in KEY_FIELDS)
                  + ") ORDER BY k.seq LIMIT 100")
KEYS_DISAGREE_FAST = _KEYS_DISAGREE.format(j="CAST(r.body AS TEXT)")
KEYS_DISAGREE_GUARDED = _KEYS_DISAGREE.format(
    j="(CASE WHEN json_valid(CAST(r.body AS TEXT)) THEN CAST(r.body AS TEXT) END)")
RECORD_SQL = ("SELECT r.seq, r.record_hash, coalesce((SELECT p.record_hash FROM records p WHERE p.seq = r.seq - 1), ?), "
           "r.body ")


def copy_keys(db: sqlite3.Connection) -> bool:
    """Copy the query keys as they are into temp.old_keys; False if there are none to read
    (the table missing, or rebuilt without its columns)."""
    try:
        db.execute(f"CREATE TEMP TABLE old_keys AS SELECT seq, {', '.join(KEY_FIELDS)} FROM main.record_keys")
        return True
    except sqlite3.OperationalError:
        return False


def keyed_upto(db: sqlite3.Connection) -> int:
    """The last seq the query keys cover; 0 for a store from before the keys table (read-only:
    not migrated), whose records are then all scanned."""
    try:
        return db.execute("SELECT coalesce(max(seq), 0) FROM record_keys").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return 0


def matching(db: sqlite3.Connection, keyed: list[tuple[str, Any]], other: list[tuple[str, Any]],
              limit: int | None, newest_first: bool) -> Generator[AuditRecord, None, None]:
    """Records matching every condition, in chain order. `keyed` conditions are answered from
    the query keys up to the last keyed record, and by scanning the records after it."""
    order = " DESC" if newest_first else ""
    keyed_values, other_values = [v for _, v in keyed], [v for _, v in other]
    also = "".join(f" AND {c}" for c, _ in other)
    upto = keyed_upto(db)
    left = limit
    for part in ("newer", "older") if newest_first else ("older", "newer"):
        if left is not None and left <= 0:
            break
        cap = "" if left is None else f" LIMIT {int(left)}"
        if part == "newer":
            sql = (RECORD_SQL + "FROM records r WHERE r.seq > ?" + "".join(f" AND {c.format(t='r')}" for c, _ in keyed)
                   + also + f" ORDER BY r.seq{order}{cap}")
            params = [GENESIS_HASH, upto, *keyed_values, *other_values]
        elif not upto:
            continue  # nothing keyed yet (or no keys table: a store from before it)
        elif not keyed:
            sql = RECORD_SQL + f"FROM records r WHERE r.seq <= ?{also} ORDER BY r.seq{order}{cap}"
            params = [GENESIS_HASH, upto, *other_values]
        else:
            # Every keyed record is at or before `upto`: no need to say so. With nothing
            # but keyed conditions, the keys alone settle which records and how many.
            where = " AND ".join(c.format(t="k") for c, _ in keyed)
            keys = (f"(SELECT seq FROM record_keys k WHERE {where} ORDER BY seq{order}{cap})"
                    if not other else f"(SELECT seq FROM record_keys k WHERE {where})")
            sql = RECORD_SQL + f"FROM {keys} k JOIN records r ON r.seq = k.seq WHERE 1{also} ORDER BY k.seq{order}{cap}"
            params = [GENESIS_HASH, *keyed_values, *other_values]
        for seq, record_hash, prev, body in db.execute(sql, params):
            if left is not None:
                left -= 1
            yield AuditRecord(seq, record_hash, prev, bytes(body))


def last_checkpoint(db: sqlite3.Connection) -> AuditRecord | None:
    return first(matching(db, [("{t}.event_type = ?", "checkpoint")], [], 1, True))


def first(found: Generator[AuditRecord, None, None]) -> AuditRecord | None:
    """The first record found, or None; the search is closed at once (and with it its cursor,
    or its reader's connection), not when collected."""
    try:
        return next(found, None)
    finally:
        found.close()
