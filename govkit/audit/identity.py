"""A store's identity: what its first (genesis) record fixes, covered by every later hash."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

__all__ = ["identity_of", "store_identity"]


def store_identity(db: sqlite3.Connection) -> dict[str, Any] | None:
    """The identity the chain's first record fixes (store id, creation time, device key), or None
    when seq 1 is not a genesis record. Its bytes are covered by every later record's hash."""
    row = db.execute("SELECT body FROM records WHERE seq = 1").fetchone()
    if row is None:
        return None
    try:
        return identity_of(json.loads(row[0]))
    except (ValueError, TypeError):
        return None


def identity_of(fields: Any) -> dict[str, Any] | None:
    """The identity a genesis record's fields fix, or None when they are not a genesis record's."""
    if not isinstance(fields, dict) or fields.get("event_type") != "genesis":
        return None
    details = fields.get("details")
    return details if isinstance(details, dict) and isinstance(details.get("store_id"), str) else None
