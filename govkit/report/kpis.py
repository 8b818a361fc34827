"""Monitoring KPIs of a period, aggregated in SQL over the audit store's record bodies (the hashed
bytes, never the query keys, which are a cache): one scan for the counts, one sorted read of the
latencies for the percentiles. Nothing loads the records into memory."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

__all__ = ["period_kpis"]

# The period's records up to the snapshot's head, with the fields the KPIs need.
_PERIOD = """
    SELECT seq,
           json_extract(b, '$.event_type') AS event_type,
           json_extract(b, '$.status') AS status,
           json_extract(b, '$.latency_ms') AS latency_ms,
           b
    FROM (SELECT seq, CAST(body AS TEXT) AS b FROM records WHERE seq <= :head)
    WHERE json_extract(b, '$.ts_start') >= :start AND json_extract(b, '$.ts_start') < :end
"""

_COUNTS = f"""
    SELECT count(*),
           min(seq), max(seq),
           sum(event_type = 'inference'),
           sum(event_type = 'inference' AND status IS NOT 'ok'),
           sum(event_type = 'request'),
           sum(event_type = 'request' AND status IN ('refused', 'rejected')),
           sum(event_type = 'override'),
           sum(event_type = 'explanation'),
           sum(event_type = 'model_change'),
           sum(event_type = 'incident'),
           sum(event_type = 'inference' AND latency_ms IS NOT NULL)
    FROM ({_PERIOD})
"""

_LATENCY = f"""
    SELECT latency_ms FROM ({_PERIOD})
    WHERE event_type = 'inference' AND latency_ms IS NOT NULL
    ORDER BY latency_ms LIMIT 1 OFFSET :offset
"""

_REDACTIONS = f"""
    SELECT entity.key, sum(entity.value)
    FROM ({_PERIOD}) AS period, json_each(json_extract(period.b, '$.redaction.entities')) AS entity
    WHERE json_type(period.b, '$.redaction.entities') = 'object'
    GROUP BY entity.key ORDER BY entity.key
"""

_MODELS = f"""
    SELECT DISTINCT coalesce(json_extract(b, '$.artifact_sha256'), ''), coalesce(json_extract(b, '$.model_version'), '')
    FROM ({_PERIOD}) WHERE event_type = 'inference'
    ORDER BY 1, 2
"""


def period_kpis(db: sqlite3.Connection, *, head: int, start: str, end: str) -> dict[str, Any]:
    """The KPIs of records with start <= ts_start < end and seq <= head (the snapshot's head)."""
    where = {"head": head, "start": start, "end": end}
    (records, first, last, inference, errors, requests, refused, overrides, explanations, model_changes,
     incidents, timed) = (v or 0 for v in db.execute(_COUNTS, where).fetchone())
    return {
        "records": records, "seq_range": [first, last] if records else None,
        "inference": inference, "errors": errors, "error_rate": _rate(errors, inference),
        "requests": requests, "refused": refused, "refusal_rate": _rate(refused, requests),
        "overrides": overrides, "override_rate": _rate(overrides, inference),
        "explanations": explanations, "explanation_coverage": _rate(explanations, inference),
        "model_changes": model_changes, "incidents": incidents,
        "latency_ms": {"n": timed, "p50": _percentile(db, where, timed, 0.50),
                       "p95": _percentile(db, where, timed, 0.95)},
        "redactions": {name: int(count) for name, count in db.execute(_REDACTIONS, where)},
        "models": [{"artifact_sha256": a or None, "model_version": v or None} for a, v in db.execute(_MODELS, where)],
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _percentile(db: sqlite3.Connection, where: dict[str, Any], n: int, q: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least q of the values at or below it."""
    if not n:
        return None
    rank = max(1, math.ceil(round(q * n, 9)))  # rounded first: 0.95 * 20 is 19.000000000000004
    row = db.execute(_LATENCY, {**where, "offset": rank - 1}).fetchone()
    return float(row[0]) if row else None
