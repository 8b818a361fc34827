"""Parquet export of audit records (pyarrow, optional extra `parquet`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._lazy import require

__all__ = ["COLUMNS", "write_parquet"]

# Common fields as columns; `body` keeps every field as the exact hashed JSON, so a reader can
# recompute record_hash from (body, prev_hash, seq) without trusting the columns.
COLUMNS = ("seq", "record_id", "event_type", "ts_start", "ts_end", "model_id", "artifact_sha256",
           "status", "subject_ref", "input_sha256", "output_sha256", "prev_hash", "record_hash")


def write_parquet(rows: Iterable[dict[str, Any]], output: Path, batch_size: int = 50_000) -> int:
    pa = require("pyarrow", "parquet")
    pq = require("pyarrow.parquet", "parquet")
    schema = pa.schema([("seq", pa.int64())] + [(c, pa.string()) for c in COLUMNS[1:]]
                       + [("body", pa.string()), ("content", pa.string())])
    count = 0
    with pq.ParquetWriter(output, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            fields = {k: v for k, v in row.items() if k not in ("seq", "prev_hash", "record_hash", "content")}
            batch.append({**{c: _text(row.get(c)) for c in COLUMNS}, "seq": row["seq"],
                          "body": json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                          "content": json.dumps(row["content"], ensure_ascii=False) if "content" in row else None})
            if len(batch) >= batch_size:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
