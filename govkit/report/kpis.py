"""Monitoring KPIs of a period, aggregated in SQL over the audit store's record bodies (the hashed
bytes, never the query keys, which are a cache). One pass parses each record of the period once
into a temporary table of the few fields the KPIs need (SQLite keeps it on disk past its cache,
so memory stays flat); counts, percentiles, redactions and models are then read from that."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

__all__ = ["period_kpis"]

_FIELDS = """
    CREATE TEMP TABLE kpi_rows AS
    SELECT seq,
           json_extract(b, '$.event_type') AS event_type,
           json_extract(b, '$.status') AS status,
           json_extract(b, '$.latency_ms') AS latency_ms,
           CASE WHEN instr(b, '"entities":{"') THEN json_extract(b, '$.redaction.entities') END AS entities,
           json_extract(b, '$.artifact_sha256') AS artifact,
           json_extract(b, '$.model_version') AS version
    FROM (SELECT seq, CAST(body AS TEXT) AS b FROM records WHERE seq <= :head)
    WHERE json_extract(b, '$.ts_start') >= :start AND json_extract(b, '$.ts_start') < :end
"""

_COUNTS = """
    SELECT count(*), min(seq), max(seq),
           sum(event_type = 'inference'),
           sum(event_type = 'inference' AND status IS NOT 'ok'),
           sum(event_type = 'request'),
           sum(event_type = 'request' AND status IN ('refused', 'rejected')),
           sum(event_type = 'override'),
           sum(event_type = 'explanation'),
           sum(event_type = 'model_change'),
           sum(event_type = 'incident'),
           sum(event_type = 'inference' AND latency_ms IS NOT NULL)
    FROM temp.kpi_rows
"""

_LATENCIES = ("SELECT latency_ms FROM temp.kpi_rows WHERE event_type = 'inference' AND latency_ms IS NOT NULL "
              "ORDER BY latency_ms LIMIT 1 OFFSET ?")

_REDACTIONS = """
    SELECT entity.key, sum(entity.value)
    FROM temp.kpi_rows AS row, json_each(row.entities) AS entity
    WHERE row.entities IS NOT NULL AND json_type(row.entities) = 'object'
    GROUP BY entity.key ORDER BY entity.key
"""

_MODELS = ("SELECT DISTINCT coalesce(artifact, ''), coalesce(version, '') FROM temp.kpi_rows "
           "WHERE event_type = 'inference' ORDER BY 1, 2")


def period_kpis(db: sqlite3.Connection, *, head: int, start: str, end: str) -> dict[str, Any]:
    """The KPIs of records with start <= ts_start < end and seq <= head (the snapshot's head)."""
    db.execute("DROP TABLE IF EXISTS temp.kpi_rows")
    db.execute(_FIELDS, {"head": head, "start": start, "end": end})
    try:
        (records, first, last, inference, errors, requests, refused, overrides, explanations, model_changes,
         incidents, timed) = (v or 0 for v in db.execute(_COUNTS).fetchone())
        return {
            "records": records, "seq_range": [first, last] if records else None,
            "inference": inference, "errors": errors, "error_rate": _rate(errors, inference),
            "requests": requests, "refused": refused, "refusal_rate": _rate(refused, requests),
            "overrides": overrides, "override_rate": _rate(overrides, inference),
            "explanations": explanations, "explanation_coverage": _rate(explanations, inference),
            "model_changes": model_changes, "incidents": incidents,
            "latency_ms": {"n": timed, "p50": _percentile(db, timed, 0.50), "p95": _percentile(db, timed, 0.95)},
            "redactions": {name: int(count) for name, count in db.execute(_REDACTIONS)},
            "models": [{"artifact_sha256": a or None, "model_version": v or None} for a, v in db.execute(_MODELS)],
        }
    finally:
        db.execute("DROP TABLE IF EXISTS temp.kpi_rows")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _percentile(db: sqlite3.Connection, n: int, q: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least q of the values at or below it."""
    if not n:
        return None
    rank = max(1, math.ceil(round(q * n, 9)))  # rounded first: 0.95 * 20 is 19.000000000000004
    row = db.execute(_LATENCIES, (rank - 1,)).fetchone()
    return float(row[0]) if row else None
