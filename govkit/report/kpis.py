"""Monitoring KPIs of a period, aggregated over the audit store in one streamed pass: the period's
records are found by the query keys (indexed event type and time, read in seq order) up to the
last keyed record and by their bodies in the short unkeyed tail, and each body is parsed once
(orjson; SQLite's json_extract would parse it again for every field). Latencies go to a
temporary table that SQLite sorts on disk past its cache, so memory stays flat in the record
count. The keys are a cache, checked by the verify the snapshot carries."""

from __future__ import annotations

import itertools
import math
import sqlite3
from typing import Any

import orjson

from ..audit.querykeys import keyed_upto

__all__ = ["SYNTHETIC", "period_kpis"]

SYNTHETIC = "synthetic"  # the purpose of a record no model produced (`govkit demo --scripted`)

_BATCH = 10_000
# (seq, body) of the period's records: keyed ones by their keys, in seq order (no time index: that
# would read the records in time order, a random walk through the file), then the unkeyed tail.
# Two queries, one after the other: a UNION ALL with ORDER BY would sort every body on disk.
_KEYED = ("SELECT r.seq, r.body FROM record_keys k JOIN records r ON r.seq = k.seq "
          "WHERE k.seq <= :keyed AND +k.ts_start >= :start AND +k.ts_start < :end")
_TAIL = "SELECT seq, body FROM records WHERE seq > :keyed AND seq <= :head"
# What identifies the model that answered: its file, its version, its runtime, its quantization.
_IDENTITY = ("artifact_sha256", "model_version", "runtime", "runtime_version", "runtime_sha256", "quantization")
NOT_LIVE = ("evaluation", "explanation")  # purposes of calls that are not live traffic
_LATENCY = "SELECT ms FROM temp.kpi_latency ORDER BY ms LIMIT 1 OFFSET ?"


def period_kpis(db: sqlite3.Connection, *, head: int, start: str, end: str) -> dict[str, Any]:
    """The KPIs of records with start <= ts_start < end and seq <= head (the snapshot's head)."""
    keyed = min(keyed_upto(db), head)
    # One population per figure: "inference" and every rate over it count live traffic only, as the
    # gate's checks do; calls made by evaluations (bias runs, counterfactuals) and explanations are
    # counted apart and never dilute a rate.
    counts = {"records": 0, "inference": 0, "errors": 0, "requests": 0, "refused": 0, "overrides": 0,
              "explanations": 0, "model_changes": 0, "incidents": 0, "synthetic": 0, "evaluation_calls": 0,
              "explanation_calls": 0}
    per_event = {"inference": "inference", "request": "requests", "override": "overrides",
                 "explanation": "explanations", "model_change": "model_changes", "incident": "incidents"}
    redactions: dict[str, int] = {}
    models: set[tuple[str, ...]] = set()
    first = last = None
    db.execute("DROP TABLE IF EXISTS temp.kpi_latency")
    db.execute("CREATE TEMP TABLE kpi_latency (ms REAL)")
    try:
        pending: list[tuple[float]] = []
        where = {"keyed": keyed, "head": head, "start": start, "end": end}
        for seq, body in itertools.chain(db.execute(_KEYED, where), db.execute(_TAIL, where)):
            try:
                record = orjson.loads(body)
            except orjson.JSONDecodeError:
                continue  # verify reports a body that is not JSON
            stamp = record.get("ts_start")
            if not isinstance(stamp, str) or not start <= stamp < end:
                continue
            counts["records"] += 1
            first = seq if first is None else first
            last = seq
            event = record.get("event_type")
            purpose = record.get("purpose") if event == "inference" else None
            if purpose in NOT_LIVE:
                counts[f"{purpose}_calls"] += 1
            elif event in per_event:
                counts[per_event[event]] += 1
            if event == "inference" and purpose not in NOT_LIVE:
                if record.get("status") != "ok":
                    counts["errors"] += 1
                if purpose == SYNTHETIC:
                    counts["synthetic"] += 1
                latency = record.get("latency_ms")
                if isinstance(latency, (int, float)) and not isinstance(latency, bool):
                    pending.append((float(latency),))
                    if len(pending) >= _BATCH:
                        db.executemany("INSERT INTO temp.kpi_latency VALUES (?)", pending)
                        pending.clear()
                entities = (record.get("redaction") or {}).get("entities")
                if isinstance(entities, dict):
                    for name, n in entities.items():
                        if isinstance(n, int):
                            redactions[name] = redactions.get(name, 0) + n
            if event == "inference":
                models.add(tuple(str(record.get(k) or "") for k in _IDENTITY))
            elif event == "request" and record.get("status") in ("refused", "rejected"):
                counts["refused"] += 1
        if pending:
            db.executemany("INSERT INTO temp.kpi_latency VALUES (?)", pending)
        db.execute("CREATE INDEX temp.kpi_latency_ms ON kpi_latency (ms)")  # one sort for both percentiles
        timed = db.execute("SELECT count(*) FROM temp.kpi_latency").fetchone()[0]
        latency_ms = {"n": timed, "p50": _percentile(db, timed, 0.50), "p95": _percentile(db, timed, 0.95)}
    finally:
        db.execute("DROP TABLE IF EXISTS temp.kpi_latency")
    inference = counts["inference"]
    return {
        **counts, "seq_range": [first, last] if counts["records"] else None,
        "error_rate": _rate(counts["errors"], inference), "refusal_rate": _rate(counts["refused"], counts["requests"]),
        "override_rate": _rate(counts["overrides"], inference),
        "explanation_coverage": _rate(counts["explanations"], inference),
        "latency_ms": latency_ms, "redactions": dict(sorted(redactions.items())),
        "models": [{k: v or None for k, v in zip(_IDENTITY, model)} for model in sorted(models)],
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _percentile(db: sqlite3.Connection, n: int, q: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least q of the values at or below it."""
    if not n:
        return None
    rank = max(1, math.ceil(round(q * n, 9)))  # rounded first: 0.95 * 20 is 19.000000000000004
    row = db.execute(_LATENCY, (rank - 1,)).fetchone()
    return float(row[0]) if row else None
