"""Parquet export of audit records (pyarrow, optional extra `parquet`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._lazy import require

__all__ = ["COLUMNS", "export_row", "verify_export", "verify_rows", "write_parquet"]

# Common fields as columns; `body` keeps every field as the exact hashed text, so a reader can
# recompute record_hash from (body, prev_hash, seq) without trusting the columns (README: "How
# the log works" gives the formula).
COLUMNS = ("seq", "record_id", "event_type", "ts_start", "ts_end", "model_id", "artifact_sha256",
           "status", "subject_ref", "input_sha256", "output_sha256", "prev_hash", "record_hash")


def write_parquet(rows: Iterable[dict[str, Any]], output: Path, batch_size: int = 50_000) -> int:
    pa = require("pyarrow", "parquet")
    pq = require("pyarrow.parquet", "parquet")
    schema = pa.schema([("seq", pa.int64())] + [(c, pa.string()) for c in COLUMNS[1:]]
                       + [("body", pa.string()), ("content", pa.string())])
    from ..outputs import open_output

    count = 0
    with open_output(output, "wb") as stream, pq.ParquetWriter(stream, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append({**{c: _text(row.get(c)) for c in COLUMNS}, "seq": row["seq"],
                          "body": row["body"],  # the exact hashed text, never re-serialised
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


def export_row(record: Any, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """One exported record: its fields for reading, and `body`, the exact text that was hashed."""
    row = {**record.to_dict(), "body": record.body.decode("utf-8")}
    if content is not None:
        row["content"] = content
    return row


_ENVELOPE_KEYS = ("seq", "prev_hash", "record_hash", "body", "content")


def verify_export(path: Path, *, public_key: str | None = None, expected_store_id: str | None = None,
                  partial: bool = False, checkpoint_files: tuple[Path, ...] = ()) -> Any:
    """Recompute the chain of a JSONL or Parquet export (`govkit audit export`), reading it a row at
    a time: every record's hash from its exported body, prev_hash and seq (the README's formula),
    each record's link to the one before it, that the readable fields say what the hashed body
    says, exported content against its digests, the store's identity and the checkpoints'
    signatures. A gap in the seqs fails it (records deleted from the file), unless `partial`
    says the export was filtered: then each contiguous run is checked and the gaps are named.

    An export cut short at its end looks whole by itself: `checkpoint_files` (off-device copies of
    the checkpoint file) settle it, as for a store. Each signed head they name must be in the
    export with that hash, and none may lie past its end."""
    from .checkpoints import read_checkpoint_file, signature_valid
    from .verify import VerifyResult

    result = VerifyResult(trusted_key=bool(public_key), expected_store_id=expected_store_id or None,
                          offsite_checkpoints=bool(checkpoint_files))
    heads: dict[int, dict[str, Any]] = {}  # seq -> a signed checkpoint of that head, from the given files
    for file in checkpoint_files:
        found, problems = read_checkpoint_file(file)
        result.warnings.extend(problems)
        for checkpoint in found:
            if public_key and not signature_valid(public_key, checkpoint):
                result.add(checkpoint["seq"], f"checkpoint signature invalid ({file.name})")
            else:
                heads[checkpoint["seq"]] = checkpoint
    return verify_rows(_export_rows(Path(path)), result, heads=heads, public_key=public_key, partial=partial)


def verify_rows(rows: Any, result: Any, *, heads: dict[int, dict[str, Any]], public_key: str | None,
                partial: bool = False, heads_source: str = "the checkpoint file") -> Any:
    """The chain of exported rows ((where, row, whether its fields are text columns), in seq
    order) checked into `result`: what `verify_export` does for a file, and `audit verify
    --from-mlflow` for a device's segments. `heads` are signed heads (seq -> checkpoint) the
    rows must agree with and reach."""
    from .checkpoints import signature_valid
    from .hashing import GENESIS_HASH, chain_hash, content_digest
    from .identity import identity_of
    from .verify import SPLICED_GENESIS, check_claimed_identity

    prev_seq, prev_hash, gaps = 0, GENESIS_HASH, 0
    for where, row, textual in rows:
        if isinstance(row, str):
            result.add(prev_seq + 1, f"{where}: {row}")
            continue
        seq, body, stored, claimed_prev = row.get("seq"), row.get("body"), row.get("record_hash"), row.get("prev_hash")
        if not isinstance(seq, int) or not isinstance(body, str) or not isinstance(stored, str) \
                or not isinstance(claimed_prev, str):
            result.add(prev_seq + 1, f"{where}: needs seq, body, prev_hash and record_hash (an export from an "
                                     f"older govkit has no body: export again)")
            continue
        if chain_hash(body.encode("utf-8"), claimed_prev, seq) != stored:
            result.add(seq, "record hash mismatch: the exported record was edited")
        if seq == prev_seq + 1:
            if claimed_prev != prev_hash:
                result.add(seq, "does not chain to the record before it: a record was replaced or inserted")
        elif seq <= prev_seq:
            result.add(seq, f"seq {seq} after seq {prev_seq}: records reordered or repeated")
        elif not partial:
            result.add(prev_seq + 1, f"records {prev_seq + 1}..{seq - 1} are missing from the export (deleted; "
                                     f"for an export filtered on purpose, pass --partial)")
        else:
            gaps += 1
            if gaps <= 5:
                result.warnings.append(f"seqs {prev_seq + 1}..{seq - 1} are not in this filtered export; "
                                       f"they were not checked")
        try:
            fields = json.loads(body)
        except ValueError:
            result.add(seq, "the exported body is not JSON")
            fields = {}
        # The readable fields (JSONL) or columns (Parquet, as text) must say what the hashed body says.
        as_shown = _text if textual else (lambda value: value)
        shown = {k: v for k, v in row.items() if k not in _ENVELOPE_KEYS}
        wrong = sorted(k for k, v in shown.items() if as_shown(fields.get(k)) != v)
        if wrong:
            result.add(seq, f"exported field(s) {', '.join(wrong)} differ from the hashed body")
        for kind, key in (("prompt", "input_sha256"), ("response", "output_sha256")):
            text = (row.get("content") or {}).get(kind) if isinstance(row.get("content"), dict) else None
            if isinstance(text, str):
                result.content_checked += 1
                if content_digest(text) != fields.get(key):
                    result.add(seq, f"exported {kind} does not match the record's digest")
        event = fields.get("event_type")
        details = fields.get("details") if isinstance(fields.get("details"), dict) else {}
        if event == "genesis":
            identity = identity_of(fields)
            if seq != 1:
                result.add(seq, SPLICED_GENESIS)
            elif identity is None:
                result.add(1, "the genesis record does not name its store")
            else:
                check_claimed_identity(result, identity, public_key)
        elif event == "checkpoint":
            if public_key and not signature_valid(public_key, details):
                result.add(seq, "checkpoint signature invalid")
            elif details.get("store_id") != result.store_id and result.store_id is not None:
                result.add(seq, f"a checkpoint of another store ({details.get('store_id')})")
            elif seq == prev_seq + 1 and (details.get("seq") != prev_seq or details.get("head_hash") != prev_hash):
                result.add(seq, "checkpoint record does not follow the head it signs")
            elif public_key:
                result.checkpoints += 1
                result.last_checkpoint_seq = details.get("seq")
        signed = heads.get(seq)
        if signed is not None and signed.get("head_hash") != stored:
            result.add(seq, f"record differs from the signed checkpoint of seq {seq} (log rewritten)")
        prev_seq, prev_hash = seq, stored
        result.records += 1
    for seq, signed in sorted(heads.items()):
        if result.store_id is not None and signed.get("store_id") != result.store_id:
            result.add(1, f"a checkpoint of another store ({signed.get('store_id')}) in {heads_source}")
        elif seq > prev_seq:
            result.add(prev_seq + 1, f"truncated: a signed checkpoint says the log reached seq {seq}, but the export "
                                     f"ends at seq {prev_seq}")
            break
    if not heads and result.records and not partial:  # the verdict's scope says so too
        result.warnings.append("no checkpoint file given (--checkpoints): an export cut short at its end cannot be "
                               "told from a whole one")
    if result.records and result.store_id is None:
        result.warnings.append("the export does not hold the store's first record: its identity was not checked")
    result.head_seq, result.head_hash = prev_seq, prev_hash
    return result


def _export_rows(path: Path) -> Any:
    """(where, row dict, whether its readable fields are text columns) for each exported record;
    a string in place of the row names a problem."""
    from ..errors import InputError

    if not path.is_file():
        raise InputError(f"{path}: no such export file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"PAR1":
        pq = require("pyarrow.parquet", "parquet")
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000, columns=[*COLUMNS, "body", "content"]):
            for row in batch.to_pylist():
                number += 1
                if isinstance(row.get("content"), str):
                    row["content"] = json.loads(row["content"])
                elif row.get("content") is None:
                    row.pop("content", None)
                yield f"{path.name}, row {number}", row, True
        return
    with path.open("r", encoding="utf-8", errors="surrogateescape") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                yield f"{path.name}, line {number}", "not a JSON line", False
                continue
            yield f"{path.name}, line {number}", row if isinstance(row, dict) else "not a JSON object", False
