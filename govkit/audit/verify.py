"""Verification of an audit store, assuming an attacker who may have dropped every trigger,
index and constraint, or rebuilt the tables.

It detects: an edited byte in any record or its stored content; a deleted, inserted or
reordered record; content removed other than by a recorded purge (or beyond what the purge
covered); and truncation behind a signed checkpoint (the sidecar file keeps checkpoints that a
truncation of the log removed). One pass over the records hashes their stored bytes (never
re-serialised JSON) and checks each one's content beside it; signatures are checked once per
checkpoint, not per record.

No generated column, index or unchecked JSON is trusted. Records are recognised by byte markers:
a JSON string cannot hold an unescaped quote, so `"event_type":"purge"` only ever matches a key
and its value, and the content-digest keys are reserved to the top level (records.RESERVED_KEYS),
so `"input_sha256":"<digest>"` inside a chain-verified body is the record's own digest.
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
_CHECKPOINT = b'"event_type":"checkpoint"'
_PURGE = b'"event_type":"purge"'
_STORES_TEXT = (b'"content_mode":"redacted"', b'"content_mode":"full"')
_DIGEST_KEY = {"prompt": b'"input_sha256":"', "response": b'"output_sha256":"'}
_SCAN = ("SELECT r.seq, r.body, r.record_hash, p.seq IS NOT NULL, p.text, p.purged_by, "
         "o.seq IS NOT NULL, o.text, o.purged_by FROM records r "
         "LEFT JOIN content p ON p.seq = r.seq AND p.kind = 'prompt' "
         "LEFT JOIN content o ON o.seq = r.seq AND o.kind = 'response' ORDER BY r.seq")


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


@dataclass
class _Scan:
    checkpoints: list[tuple[int | None, dict[str, Any]]] = field(default_factory=list)
    purges: dict[int, Any] = field(default_factory=dict)
    tombstones: list[tuple[int, str, Any, bytes]] = field(default_factory=list)
    content_rows: int = 0


def verify_store(db: sqlite3.Connection, path: Path, *, public_key: str | None,
                 meta_public_key: str | None, sidecar: str | Path | None = None) -> VerifyResult:
    result = VerifyResult()
    db.text_factory = bytes  # stored text may have been made undecodable: hash it as bytes
    db.execute("BEGIN")  # one snapshot for every query below, even while writers append
    try:
        scan = _scan_records(db, result)
        sidecar_path = Path(sidecar) if sidecar else checkpoints.sidecar_path(path)
        extra, problems = checkpoints.read_sidecar(sidecar_path)
        result.warnings.extend(problems)
        scan.checkpoints.extend((None, cp) for cp in extra)
        signed = _valid_checkpoints(db, result, scan.checkpoints, public_key, meta_public_key, sidecar_path)
        _check_heads(db, result, signed)
        _check_purges(result, scan)
        total_content = db.execute("SELECT count(*) FROM content").fetchone()[0]
        if total_content != scan.content_rows:  # rows the scan did not meet: name them
            for seq, kind in db.execute(
                    "SELECT c.seq, c.kind FROM content c WHERE c.kind NOT IN ('prompt', 'response') "
                    "OR NOT EXISTS (SELECT 1 FROM records r WHERE r.seq = c.seq)"):
                result.add(seq, f"stored {_text(kind)} belongs to no record")
    finally:
        db.execute("COMMIT")
    return result


def _scan_records(db: sqlite3.Connection, result: VerifyResult) -> _Scan:
    scan = _Scan()
    sha256 = hashlib.sha256
    prev = GENESIS_HASH.encode("ascii")
    prefix = HASH_PREFIX.encode("ascii")
    expected_seq = 1
    cursor = db.execute(_SCAN)
    cursor.arraysize = 4096
    while rows := cursor.fetchmany():
        for seq, body, record_hash, has_p, p_text, p_by, has_o, o_text, o_by in rows:
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
            prev = record_hash
            expected_seq += 1
            if has_p or has_o or b'"content_mode":' in body:
                _check_content(result, scan, seq, body, "prompt", has_p, p_text, p_by)
                _check_content(result, scan, seq, body, "response", has_o, o_text, o_by)
            if _CHECKPOINT in body or _PURGE in body:
                _collect_event(result, scan, seq, body)
    result.records = expected_seq - 1
    result.head_hash = prev.decode("ascii", "replace")
    return scan


def _check_content(result: VerifyResult, scan: _Scan, seq: int, body: bytes, kind: str,
                   present: int, text: Any, purged_by: Any) -> None:
    key = _DIGEST_KEY[kind]
    if not present:
        if key in body and any(mode in body for mode in _STORES_TEXT):
            result.add(seq, f"stored {kind} was removed without a recorded purge")
        return
    scan.content_rows += 1
    if text is None:
        if purged_by is None:
            result.add(seq, f"stored {kind} emptied without a recorded purge")
        else:
            scan.tombstones.append((seq, kind, purged_by, body))
        return
    data = text if isinstance(text, bytes) else str(text).encode("utf-8")
    result.content_checked += 1
    if key + b"sha256:" + hashlib.sha256(data).hexdigest().encode("ascii") + b'"' not in body:
        result.add(seq, f"stored {kind} does not match the record's digest (content edited)")


def _collect_event(result: VerifyResult, scan: _Scan, seq: int, body: bytes) -> None:
    try:
        fields = json.loads(body)
        if not isinstance(fields, dict):
            raise ValueError
    except ValueError:
        result.add(seq, "record is not readable JSON")
        return
    details = fields.get("details")
    if fields.get("event_type") == "checkpoint":
        if isinstance(details, dict):
            scan.checkpoints.append((seq, details))
        else:
            result.add(seq, "checkpoint record is not readable")
    elif fields.get("event_type") == "purge":
        scan.purges[seq] = details


def _valid_checkpoints(db: sqlite3.Connection, result: VerifyResult,
                       found: list[tuple[int | None, dict[str, Any]]], public_key: str | None,
                       meta_public_key: str | None, sidecar_path: Path) -> list[dict[str, Any]]:
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


def _check_heads(db: sqlite3.Connection, result: VerifyResult, signed: list[dict[str, Any]]) -> None:
    if not signed:
        return
    result.last_checkpoint_seq = max(cp["seq"] for cp in signed)
    for checkpoint in signed:
        seq = checkpoint["seq"]
        if seq > result.records:
            result.add(result.records + 1,
                       f"truncated: a signed checkpoint says the log reached seq {seq} "
                       f"(hash {checkpoint['head_hash'][:19]}…), but it ends at seq {result.records}")
            continue
        stored = [_text(h) for (h,) in db.execute("SELECT record_hash FROM records WHERE seq = ?", (seq,))]
        if stored != [checkpoint["head_hash"]]:
            result.add(seq, f"record differs from the signed checkpoint of seq {seq} (log rewritten)")


def _check_purges(result: VerifyResult, scan: _Scan) -> None:
    emptied: dict[Any, int] = {}
    for seq, kind, purged_by, body in scan.tombstones:
        emptied[purged_by] = emptied.get(purged_by, 0) + 1
        details = scan.purges.get(purged_by)
        if not isinstance(details, dict):
            result.add(seq, f"stored {kind} emptied without a recorded purge")
            continue
        try:
            fields = json.loads(body)
        except ValueError:
            fields = {}
        if not isinstance(purged_by, int) or seq >= purged_by or not purge_covers(details.get("criteria") or {}, fields):
            result.add(seq, f"stored {kind} emptied outside what purge seq {purged_by} covered")
    result.content_purged = sum(emptied.values())
    for purge_seq, details in scan.purges.items():
        recorded = details.get("purged_items") if isinstance(details, dict) else None
        if recorded != emptied.get(purge_seq, 0):
            result.add(purge_seq, f"purge recorded {recorded} item(s) but {emptied.get(purge_seq, 0)} are emptied")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
