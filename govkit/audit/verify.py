"""Verification of an audit store, assuming an attacker who may have dropped every trigger.

It detects: an edited byte in any record or its stored content; a deleted, inserted or
reordered record; content removed other than by a recorded purge (or beyond what the purge
covered); and truncation behind a signed checkpoint (the sidecar file keeps checkpoints that a
truncation of the log removed). Records are checked by hashing their stored bytes, never by
re-serialising JSON; signatures are checked once per checkpoint, not per record.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoints
from .hashing import GENESIS_HASH, HASH_PREFIX
from .store import purge_covers

__all__ = ["Problem", "VerifyResult", "verify_store"]

_MAX_PROBLEMS = 100
# Records are found by these byte markers, then parsed and checked in Python: verification uses no
# generated column or index, and no JSON it has not checked, since an attacker may have changed both.
# A JSON string cannot hold an unescaped quote, so a marker only ever matches a key and its value.
_CHECKPOINT = b'"event_type":"checkpoint"'
_PURGE = b'"event_type":"purge"'
_CONTENT_MODE = b'"content_mode":'


@dataclass(frozen=True, order=True)
class Problem:
    seq: int
    reason: str


@dataclass
class VerifyResult:
    records: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    content_checked: int = 0
    content_purged: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        return min(p.seq for p in self.problems) if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_hash": self.head_hash,
                "checkpoints": self.checkpoints, "last_checkpoint_seq": self.last_checkpoint_seq,
                "content_checked": self.content_checked, "content_purged": self.content_purged,
                "first_bad_seq": self.first_bad_seq,
                "problems": [{"seq": p.seq, "reason": p.reason} for p in sorted(self.problems)],
                "warnings": self.warnings}

    def add(self, seq: int, reason: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(seq, reason))


def verify_store(db: sqlite3.Connection, path: Path, *, public_key: str | None,
                 meta_public_key: str | None, sidecar: str | Path | None = None) -> VerifyResult:
    result = VerifyResult()
    db.text_factory = bytes  # stored text may have been made undecodable: hash it as bytes
    db.execute("BEGIN")  # one snapshot for every query below, even while writers append
    try:
        signed = _collect_checkpoints(db, path, result, public_key, meta_public_key, sidecar)
        hashes_at = _verify_chain(db, result, {cp["seq"] for cp in signed})
        for checkpoint in signed:
            seq = checkpoint["seq"]
            if seq > result.records:
                result.add(result.records + 1,
                           f"truncated: a signed checkpoint says the log reached seq {seq} "
                           f"(hash {checkpoint['head_hash'][:19]}…), but it ends at seq {result.records}")
            elif seq in hashes_at and hashes_at[seq] != checkpoint["head_hash"]:
                result.add(seq, f"record differs from the signed checkpoint of seq {seq} (log rewritten)")
        if signed:
            result.last_checkpoint_seq = max(cp["seq"] for cp in signed)
        _verify_content(db, result)
        _verify_purges(db, result)
    finally:
        db.execute("COMMIT")
    return result


def _verify_chain(db: sqlite3.Connection, result: VerifyResult, wanted: set[int]) -> dict[int, str]:
    sha256 = hashlib.sha256
    prev = GENESIS_HASH.encode("ascii")
    prefix = HASH_PREFIX.encode("ascii")
    expected_seq = 1
    hashes_at: dict[int, str] = {}
    cursor = db.execute("SELECT seq, body, record_hash FROM records ORDER BY seq")
    cursor.arraysize = 4096
    while rows := cursor.fetchmany():
        for seq, body, record_hash in rows:
            if seq != expected_seq:
                if seq > expected_seq:
                    result.add(expected_seq, f"records {expected_seq}..{seq - 1} are missing (deleted)")
                else:
                    result.add(seq, f"seq {seq} appears out of order")
                expected_seq = seq
            if not isinstance(body, bytes):
                body = str(body).encode("utf-8")
            if not isinstance(record_hash, bytes):
                record_hash = str(record_hash).encode("utf-8")
            digest = sha256(b'{"body":%b,"prev_hash":"%b","seq":%d}' % (body, prev, seq)).hexdigest()
            if prefix + digest.encode("ascii") != record_hash:
                result.add(seq, "record hash mismatch: the record was edited, inserted or reordered")
            if seq in wanted:
                hashes_at[seq] = record_hash.decode("utf-8", "replace")
            prev = record_hash
            expected_seq += 1
    result.records = expected_seq - 1
    result.head_hash = prev.decode("ascii", "replace")
    return hashes_at


def _collect_checkpoints(db: sqlite3.Connection, path: Path, result: VerifyResult,
                         public_key: str | None, meta_public_key: str | None,
                         sidecar: str | Path | None) -> list[dict[str, Any]]:
    found: list[tuple[int | None, dict[str, Any]]] = []
    for seq, fields in _records_marked(db, _CHECKPOINT, result):
        if fields.get("event_type") == "checkpoint":
            if isinstance(fields.get("details"), dict):
                found.append((seq, fields["details"]))
            else:
                result.add(seq, "checkpoint record is not readable")
    sidecar_path = Path(sidecar) if sidecar else checkpoints.sidecar_path(path)
    extra, problems = checkpoints.read_sidecar(sidecar_path)
    result.warnings.extend(problems)
    found.extend((None, cp) for cp in extra)
    if not found:
        return []
    key = public_key or meta_public_key
    if public_key and meta_public_key and public_key != meta_public_key:
        result.add(1, "the store's recorded public key differs from the configured one")
    if not key:
        result.warnings.append("checkpoints present but no public key to check them: pass --public-key")
        return []
    store_id = {_text(k): _text(v) for k, v in db.execute("SELECT key, value FROM meta")}.get("store_id")
    valid: dict[tuple[int, str], dict[str, Any]] = {}
    for record_seq, checkpoint in found:
        where = record_seq if record_seq is not None else checkpoint.get("seq", 0)
        if not checkpoints.signature_valid(key, checkpoint):
            origin = "record" if record_seq is not None else f"sidecar {sidecar_path.name}"
            result.add(where, f"checkpoint signature invalid ({origin})")
            continue
        if checkpoint.get("store_id") != store_id:
            result.warnings.append(f"checkpoint of seq {checkpoint['seq']} belongs to another store; ignored")
            continue
        if record_seq is not None and record_seq != checkpoint["seq"] + 1:
            result.add(record_seq, "checkpoint record does not follow the head it signs")
        valid[(checkpoint["seq"], checkpoint["head_hash"])] = checkpoint
    result.checkpoints = len(valid)
    return list(valid.values())


def _records_marked(db: sqlite3.Connection, marker: bytes, result: VerifyResult) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for seq, body in db.execute("SELECT seq, body FROM records WHERE instr(body, ?) > 0 ORDER BY seq", (marker,)):
        try:
            fields = json.loads(body)
            if not isinstance(fields, dict):
                raise ValueError
        except (ValueError, TypeError):
            result.add(seq, "record is not readable JSON")
            continue
        out.append((seq, fields))
    return out


def _verify_content(db: sqlite3.Connection, result: VerifyResult) -> None:
    for seq, kind in db.execute(
            "SELECT c.seq, c.kind FROM content c LEFT JOIN records r ON r.seq = c.seq WHERE r.seq IS NULL"):
        result.add(seq, f"stored {_text(kind)} belongs to no record")
    sha256 = hashlib.sha256
    checked = 0
    for seq, kind, text, digest in db.execute(
            "SELECT c.seq, c.kind, c.text, CASE WHEN json_valid(CAST(r.body AS TEXT)) THEN "
            "json_extract(CAST(r.body AS TEXT), CASE c.kind WHEN 'prompt' THEN '$.input_sha256' "
            "ELSE '$.output_sha256' END) END "
            "FROM content c JOIN records r ON r.seq = c.seq WHERE c.text IS NOT NULL"):
        checked += 1
        data = text if isinstance(text, bytes) else str(text).encode("utf-8")
        if not isinstance(digest, bytes) or HASH_PREFIX + sha256(data).hexdigest() != _text(digest):
            result.add(seq, f"stored {_text(kind)} does not match the record's digest (content edited)")
    result.content_checked = checked
    for seq, kind in db.execute("""
            SELECT r.seq, k.kind FROM records r
            JOIN (SELECT 'prompt' AS kind, '$.input_sha256' AS field
                  UNION ALL SELECT 'response', '$.output_sha256') k
            WHERE instr(r.body, ?) > 0 AND json_valid(CAST(r.body AS TEXT))
              AND json_extract(CAST(r.body AS TEXT), '$.content_mode') IN ('redacted', 'full')
              AND json_extract(CAST(r.body AS TEXT), k.field) IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM content c WHERE c.seq = r.seq AND c.kind = k.kind)""",
            (_CONTENT_MODE,)):
        result.add(seq, f"stored {_text(kind)} was removed without a recorded purge")


def _verify_purges(db: sqlite3.Connection, result: VerifyResult) -> None:
    purges = {seq: fields.get("details") for seq, fields in _records_marked(db, _PURGE, result)
              if fields.get("event_type") == "purge"}
    emptied: dict[Any, int] = {}
    for seq, kind, purged_by, body in db.execute(
            "SELECT c.seq, c.kind, c.purged_by, r.body FROM content c LEFT JOIN records r ON r.seq = c.seq "
            "WHERE c.text IS NULL ORDER BY c.seq"):
        kind = _text(kind)
        emptied[purged_by] = emptied.get(purged_by, 0) + 1
        details = purges.get(purged_by)
        if not isinstance(details, dict):
            result.add(seq, f"stored {kind} emptied without a recorded purge")
            continue
        try:
            fields = json.loads(body) if body is not None else {}
        except ValueError:
            fields = {}
        if not isinstance(purged_by, int) or seq >= purged_by or not purge_covers(details.get("criteria") or {}, fields):
            result.add(seq, f"stored {kind} emptied outside what purge seq {purged_by} covered")
    result.content_purged = sum(emptied.values())
    for purge_seq, details in purges.items():
        recorded = details.get("purged_items") if isinstance(details, dict) else None
        if recorded != emptied.get(purge_seq, 0):
            result.add(purge_seq, f"purge recorded {recorded} item(s) but {emptied.get(purge_seq, 0)} are emptied")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
