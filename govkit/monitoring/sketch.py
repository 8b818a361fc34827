"""A window's sketch: what monitoring keeps of its production calls, as counts that add up (so a
day is the sum of its hours, and a fleet the sum of its devices), and never any text.

The calls are read by DuckDB from the records' hashed bodies, whether they come from a device's
audit store (in batches, so memory stays flat in the record count) or from the fleet's synced
Parquet segments (one dataset, partitioned by device and day). Production calls only: inference
records whose purpose is not evaluation, explanation or synthetic."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .._lazy import require

__all__ = ["NUMERIC", "STEP", "WINDOWS", "WINDOW_FORMAT", "Sketch", "sketch_batches", "sketch_sql", "window_end", "window_start"]

WINDOWS = ("hour", "day", "week")
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}  # a window's length
WINDOW_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # a window's start as the records and the reports show it
# The signals kept as counts of their values; the numeric ones are compared as distributions.
NUMERIC = ("input_tokens", "output_tokens", "latency_ms")
NOT_PRODUCTION = ("evaluation", "explanation", "synthetic")
TALLIES = ("calls", "errors", "truncated", "refusals", "refusal_known", "redacted")  # a sketch's plain counts
_IDENTITY = ("artifact_sha256", "model_version", "runtime", "runtime_version", "quantization")
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


@dataclass
class Sketch:
    """The counts of one window's production calls (of one device, or of several added up)."""

    calls: int = 0
    errors: int = 0  # status other than ok
    truncated: int = 0  # finish_reason "length": the answer was cut at its token limit
    refusals: int = 0
    refusal_known: int = 0  # calls whose record says whether the model refused
    redacted: int = 0  # calls with personal data redacted from their text
    values: dict[str, dict[str, int]] = field(default_factory=dict)  # signal -> value -> calls
    groups: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # attribute -> value -> decision -> calls

    def add(self, other: Sketch) -> Sketch:
        for name in TALLIES:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for signal, counts in other.values.items():
            mine = self.values.setdefault(signal, {})
            for value, n in counts.items():
                mine[value] = mine.get(value, 0) + n
        for attribute, by_value in other.groups.items():
            mine_attr = self.groups.setdefault(attribute, {})
            for value, decisions in by_value.items():
                mine_value = mine_attr.setdefault(value, {})
                for decision, n in decisions.items():
                    mine_value[decision] = mine_value.get(decision, 0) + n
        return self

    def counts(self, signal: str) -> dict[Any, int]:
        """The counts of a signal's values, numbers as numbers."""
        raw = self.values.get(signal, {})
        if signal in NUMERIC:
            return {int(v): n for v, n in raw.items()}
        return dict(raw)

    def to_json(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in TALLIES},
                "values": {s: dict(sorted(c.items(), key=lambda kv: _order(s, kv[0])))
                           for s, c in sorted(self.values.items())},
                "groups": {a: {v: dict(sorted(d.items())) for v, d in sorted(g.items())}
                           for a, g in sorted(self.groups.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sketch:
        return cls(**{k: int(data.get(k) or 0) for k in TALLIES},
                   values={s: {str(v): int(n) for v, n in c.items()} for s, c in (data.get("values") or {}).items()},
                   groups={a: {v: {d: int(n) for d, n in ds.items()} for v, ds in g.items()}
                           for a, g in (data.get("groups") or {}).items()})


def _order(signal: str, value: str) -> Any:
    return (int(value), "") if signal in NUMERIC and value.lstrip("-").isdigit() else (0, value)


def window_start(kind: str) -> str:
    """DuckDB's expression for the UTC start of the window a call's ts_start falls in (weeks start on Monday)."""
    if kind == "hour":
        return "left(ts, 13) || ':00:00Z'"
    if kind == "day":
        return "left(ts, 10) || 'T00:00:00Z'"
    return "strftime(date_trunc('week', CAST(left(ts, 10) AS DATE)), '%Y-%m-%dT00:00:00Z')"


def window_end(start: str, kind: str) -> str:
    return (datetime.strptime(start, WINDOW_FORMAT) + STEP[kind]).strftime(WINDOW_FORMAT)


def _checked(attributes: Iterable[str]) -> list[str]:
    attributes = list(attributes)
    for name in attributes:
        if not _ATTRIBUTE.match(name):
            raise ValueError(f"not an attribute name: {name!r}")
    return attributes


def _body_calls(source: str, attributes: list[str], device: str) -> str:
    """The calls of `source`, a relation with `body` (a record's hashed JSON text) and `device`:
    each body parsed once, for every path at once."""
    paths = (["$.ts_start", "$.event_type", "$.purpose", "$.status", "$.latency_ms", "$.input_tokens",
              "$.output_tokens", "$.finish_reason", "$.details.signals.refusal", "$.details.signals.decision"]
             + [f"$.{k}" for k in _IDENTITY] + [f"$.details.group.{a}" for a in attributes])
    identity = " || '|' || ".join(f"coalesce(f[{11 + i}], '')" for i in range(len(_IDENTITY)))
    groups = "".join(f", f[{11 + len(_IDENTITY) + i}] AS g_{a}" for i, a in enumerate(attributes))
    listed = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
    return f"""
    raw AS (
        SELECT {device} AS device, json_extract_string(body, {listed}) AS f,
               json_extract(body, '$.redaction.entities') AS entities FROM {source}),
    calls AS (
        SELECT device, f[1] AS ts, f[4] AS status, TRY_CAST(f[5] AS DOUBLE) AS latency,
               TRY_CAST(f[6] AS BIGINT) AS input_tokens, TRY_CAST(f[7] AS BIGINT) AS output_tokens,
               f[8] AS finish_reason, TRY_CAST(f[9] AS BOOLEAN) AS refusal, f[10] AS decision,
               {identity} AS model, coalesce(entities IS NOT NULL AND entities::VARCHAR <> '{{}}', false) AS redacted
               {groups}
        FROM raw WHERE f[2] = 'inference' AND coalesce(f[3], '') NOT IN {NOT_PRODUCTION!r} AND f[1] IS NOT NULL)"""


# The fields read from newline-delimited bodies (DuckDB's JSON reader reads only these).
_JSON_COLUMNS = {"ts_start": "VARCHAR", "event_type": "VARCHAR", "purpose": "VARCHAR", "status": "VARCHAR",
                 "latency_ms": "DOUBLE", "input_tokens": "BIGINT", "output_tokens": "BIGINT", "finish_reason": "VARCHAR",
                 **{k: "VARCHAR" for k in _IDENTITY},
                 "details": 'STRUCT(signals STRUCT(refusal BOOLEAN, decision VARCHAR), "group" JSON)',
                 "redaction": "STRUCT(entities JSON)"}


def _json_calls(path: str, attributes: list[str], device: str) -> str:
    """The calls of a newline-delimited file of bodies, read by DuckDB's JSON reader (which parses
    only the fields named, in parallel: several times faster than a JSON function over text)."""
    identity = " || '|' || ".join(f"coalesce({k}, '')" for k in _IDENTITY)
    groups = "".join(f", json_extract_string(details.\"group\", '$.{a}') AS g_{a}" for a in attributes)
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _JSON_COLUMNS.items()) + "}"
    return f"""
    calls AS (
        SELECT {device} AS device, ts_start AS ts, status, latency_ms AS latency, input_tokens, output_tokens,
               finish_reason, details.signals.refusal AS refusal, details.signals.decision AS decision,
               {identity} AS model,
               coalesce(redaction.entities IS NOT NULL AND redaction.entities::VARCHAR <> '{{}}', false) AS redacted
               {groups}
        FROM read_json('{path}', format = 'newline_delimited', columns = {columns}, ignore_errors = true)
        WHERE event_type = 'inference' AND coalesce(purpose, '') NOT IN {NOT_PRODUCTION!r} AND ts_start IS NOT NULL)"""


def sketch_sql(source: str, *, window: str, attributes: Iterable[str] = (), device: str = "device_id",
               json_file: bool = False) -> str:
    """One query giving (device, window, signal, key, calls) rows, the sketches of every window in
    `source`: a relation with `body` and `device` columns, or (json_file) a newline-delimited
    file of bodies."""
    attributes = _checked(attributes)
    calls = _json_calls(source, attributes, device) if json_file else _body_calls(source, attributes, device)
    head = f"WITH {calls},\n    windowed AS MATERIALIZED (SELECT *, {window_start(window)} AS win FROM calls)"
    parts = ["SELECT device, win, 'tally' AS signal, name AS key, value AS calls FROM ("
             "SELECT device, win, count(*) AS calls, count(*) FILTER (status IS DISTINCT FROM 'ok') AS errors, "
             "count(*) FILTER (finish_reason = 'length') AS truncated, count(*) FILTER (refusal) AS refusals, "
             "count(refusal) AS refusal_known, count(*) FILTER (redacted) AS redacted FROM windowed GROUP BY ALL) "
             f"UNPIVOT (value FOR name IN ({', '.join(TALLIES)}))"]
    columns = {"input_tokens": "input_tokens", "output_tokens": "output_tokens",
               "latency_ms": "CAST(ceil(latency) AS BIGINT)", "finish_reason": "finish_reason",
               "decision": "decision", "model": "NULLIF(model, '||||')"}
    for signal, expression in columns.items():
        parts.append(f"SELECT device, win, '{signal}', CAST({expression} AS VARCHAR), count(*) FROM windowed "
                     f"WHERE {expression} IS NOT NULL GROUP BY ALL")
    for a in attributes:
        parts.append(f"SELECT device, win, 'group:{a}', g_{a} || chr(31) || coalesce(decision, ''), count(*) "
                     f"FROM windowed WHERE g_{a} IS NOT NULL GROUP BY ALL")
    return head + "\n" + "\nUNION ALL\n".join(parts)


def add_rows(sketches: dict[tuple[str, str], Sketch], rows: Iterable[tuple[Any, ...]]) -> None:
    """Add (device, window, signal, key, calls) rows to the sketches by (device, window)."""
    for device, win, signal, key, n in rows:
        sketch = sketches.setdefault((str(device), str(win)), Sketch())
        n = int(n)
        if signal == "tally":
            setattr(sketch, key, getattr(sketch, key) + n)
        elif signal.startswith("group:"):
            value, _, decision = key.partition("\x1f")
            decisions = sketch.groups.setdefault(signal[6:], {}).setdefault(value, {})
            decisions[decision] = decisions.get(decision, 0) + n
        else:
            counts = sketch.values.setdefault(signal, {})
            counts[key] = counts.get(key, 0) + n


def sketch_batches(batches: Iterator[list[bytes]], *, device: str, window: str,
                   attributes: Iterable[str] = ()) -> dict[tuple[str, str], Sketch]:
    """The sketches, by (device, window), of records' bodies given in batches. Each batch is
    written as newline-delimited JSON to a private temporary file (in memory where /dev/shm
    is) and read there by DuckDB, in a thread of its own, while the next batch is read: on two
    cores the read and the parse overlap instead of adding up. The files are gone on return."""
    import os
    import queue
    import shutil
    import tempfile
    import threading

    duckdb = require("duckdb", "monitor")
    sketches: dict[tuple[str, str], Sketch] = {}
    handed: queue.Queue[str | None] = queue.Queue(maxsize=2)
    failed: list[BaseException] = []
    folder = tempfile.mkdtemp(prefix="govkit-monitor-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)

    def parse() -> None:
        try:
            with duckdb.connect(config={"threads": 1}) as con:
                while (path := handed.get()) is not None:
                    query = sketch_sql(path, window=window, attributes=attributes, device="?", json_file=True)
                    add_rows(sketches, con.execute(query, [device]).fetchall())
                    os.unlink(path)
        except BaseException as exc:  # handed back to the caller below
            failed.append(exc)
            while handed.get() is not None:  # drain, so the reader never blocks
                pass

    worker = threading.Thread(target=parse, name="govkit-monitor-parse", daemon=True)
    worker.start()
    try:
        for number, bodies in enumerate(batches):
            if bodies:
                path = os.path.join(folder, f"{number}.jsonl")
                with open(path, "wb") as handle:
                    handle.write(b"\n".join(bodies))
                handed.put(path)
    finally:
        handed.put(None)
        worker.join()
        shutil.rmtree(folder, ignore_errors=True)
    if failed:
        raise failed[0]
    return sketches
