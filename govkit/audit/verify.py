"""Verification of an audit store, assuming an attacker who may have dropped every trigger,
index and constraint, or rebuilt the tables.

It detects: an edited byte in any record or its stored content; a deleted, inserted or
reordered record; content removed other than by a recorded purge (or beyond what the purge
covered); and truncation behind a signed checkpoint (the sidecar file keeps checkpoints that a
truncation of the log removed). One pass over the records hashes their stored bytes (never
re-serialised JSON) and checks each one's content beside it; signatures are checked once per
checkpoint, not per record.

It also checks the query keys (migrations m002) that filtered queries read instead of the
bodies: a key row edited, removed or added could hide a record from `list --event-type` or
`show ID` while the chain itself stays intact.

No generated column, index or unchecked JSON is trusted. Records are recognised by byte markers:
a JSON string cannot hold an unescaped quote, so `"event_type":"purge"` only ever matches a key
and its value, and the content-digest keys are reserved to the top level (records.RESERVED_KEYS),
so `"input_sha256":"<digest>"` inside a chain-verified body is the record's own digest.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import operator
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoints
from .connect import connect_read_only
from .hashing import ENVELOPE, GENESIS_HASH, HASH_PREFIX
from .identity import store_identity
from .querykeys import KEYS_DISAGREE_FAST, KEYS_DISAGREE_GUARDED
from .retention import purge_covers

_PREFIX = HASH_PREFIX.encode("ascii")

__all__ = ["SPLICED_GENESIS", "Problem", "VerifyResult", "check_claimed_identity", "verify_store"]

_MAX_PROBLEMS = 100
SPLICED_GENESIS = "a genesis record in the middle of the log: another store's start was spliced in"
_CHECKPOINT = b'"event_type":"checkpoint"'
_PURGE = b'"event_type":"purge"'
_GENESIS = b'"event_type":"genesis"'
_NEEDLE = {"prompt": '"input_sha256":"sha256:%s"', "response": '"output_sha256":"sha256:%s"'}
_CHUNK = 128  # rows per step: small enough that each step's objects stay in the CPU cache

_MARKERS = (_CHECKPOINT, _PURGE, _GENESIS)
_DECLARES = {"prompt": b'"input_sha256":', "response": b'"output_sha256":'}
_DIGEST_KEY = {kind: (needle % "").encode("ascii")[:-1] for kind, needle in _NEEDLE.items()}
_STORES_TEXT = (b'"content_mode":"redacted"', b'"content_mode":"full"')
_SCAN = "SELECT seq, body, record_hash FROM records ORDER BY seq"
# Content is read a chunk of records at a time (one range query per chunk), not joined: a join
# probes the content index twice per record, which costs more than the whole merge.
# The kind as a small integer (1 prompt, 2 response, 0 anything else): no bytes object per row.
_CONTENT_SCAN = ("SELECT seq, (kind = 'prompt') + 2 * (kind = 'response'), text FROM content "
                 "WHERE typeof(seq) = 'integer' AND seq BETWEEN ? AND ? ORDER BY seq, kind")
_KIND_KEYS = (("prompt", 1), ("response", 2))
_BOTH_KINDS = (1, 2)
_KIND_NAMES = {code: name for name, code in _KIND_KEYS}
_REBUILD = " (`govkit audit rebuild-keys` makes them anew)"
_HASH_LENGTH = len(HASH_PREFIX) + 64
_hexdigest = operator.methodcaller("hexdigest")


@dataclass(frozen=True, order=True)
class Problem:
    seq: int
    reason: str


@dataclass
class VerifyResult:
    records: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    content_checked: int = 0
    content_purged: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    store_id: str | None = None  # as the chain's first record fixes it
    # Where the verdict's trust comes from. Without a public key from outside the store (the
    # config, or given), its signatures and identity were checked only against its own claims,
    # which whoever rewrote the file could rewrite too: the log is self-consistent, no more.
    trusted_key: bool = False
    expected_store_id: str | None = None  # the store the config or the caller named
    offsite_checkpoints: bool = False  # an off-device copy of the checkpoint file was checked too

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def trusted(self) -> bool:
        """Intact, and checked against a public key from outside the store."""
        return self.ok and self.trusted_key

    @property
    def scope(self) -> str:
        """What an OK verdict means, in one phrase."""
        if not self.trusted_key:
            return ("self-consistent only: no trusted public key (none in govkit.toml, none given), so "
                    "signatures and identity were checked against the store's own claims")
        return "checked against the trusted device key" + (
            f" and store id {self.expected_store_id}" if self.expected_store_id else
            "; no store id named (govkit.toml has none)") + (
            "" if self.offsite_checkpoints else
            "; no off-device checkpoint copy given, so a cut at the end is caught only back to the last "
            "checkpoint this device still holds (pass --checkpoints)")

    @property
    def first_bad_seq(self) -> int | None:
        return min(p.seq for p in self.problems) if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq, "head_hash": self.head_hash,
                "checkpoints": self.checkpoints, "last_checkpoint_seq": self.last_checkpoint_seq,
                "content_checked": self.content_checked, "content_purged": self.content_purged,
                "first_bad_seq": self.first_bad_seq, "store_id": self.store_id,
                "expected_store_id": self.expected_store_id, "trusted_key": self.trusted_key,
                "trusted": self.trusted, "scope": self.scope,
                "problems": [{"seq": p.seq, "reason": p.reason} for p in sorted(self.problems)],
                "warnings": self.warnings}

    def add(self, seq: int, reason: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(seq, reason))


@dataclass
class _Scan:
    checkpoints: list[tuple[int | None, dict[str, Any]]] = field(default_factory=list)
    purges: dict[int, Any] = field(default_factory=dict)
    geneses: list[int] = field(default_factory=list)
    tombstones: list[tuple[int, str, Any, bytes]] = field(default_factory=list)
    content_rows: int = 0


def verify_store(db: sqlite3.Connection, path: Path, *, public_key: str | None,
                 meta_public_key: str | None, checkpoint_files: tuple[Path, ...] = (),
                 expected_store_id: str | None = None, workers: int | None = None) -> VerifyResult:
    """`public_key`: trusted, from outside the store (config or caller); `checkpoint_files`:
    off-device copies of the checkpoint file, read beside the on-device one; `expected_store_id`:
    the store the config names."""
    result = VerifyResult(trusted_key=bool(public_key), expected_store_id=expected_store_id or None,
                          offsite_checkpoints=bool(checkpoint_files))
    given = [checkpoints.read_checkpoint_file(file) for file in checkpoint_files]  # InputError first
    db.text_factory = bytes  # stored text may have been made undecodable: hash it as bytes
    db.execute("BEGIN")  # one snapshot for every query below, even while writers append
    try:
        ranges = _plan_ranges(db, workers)
        if len(ranges) == 1:
            scan = _scan_records(db, result)
        else:
            scan = _scan_in_processes(path, ranges, result)
        sidecar_path = checkpoints.sidecar_path(path)
        extra, problems = checkpoints.read_sidecar(sidecar_path)
        result.warnings.extend(problems)
        scan.checkpoints.extend((None, cp) for cp in extra)
        for found, problems in given:
            result.warnings.extend(problems)
            scan.checkpoints.extend((None, cp) for cp in found)
        meta = {_text(k): _text(v) for k, v in db.execute("SELECT key, value FROM meta")}
        identity = _check_identity(db, result, scan, meta, public_key, meta_public_key)
        _check_purge_finished(result, meta)
        signed = _valid_checkpoints(db, result, scan.checkpoints, public_key,
                                    (identity or {}).get("public_key") or meta_public_key)
        _check_heads(db, result, signed)
        _check_keys_cover(db, result)
        # Tombstones left by a purge committed after this snapshot (worker processes read a newer
        # one): check them against that purge record, read now; the next verify covers it fully.
        late = {purged_by for _, _, purged_by, _ in scan.tombstones
                if isinstance(purged_by, int) and purged_by > result.head_seq and purged_by not in scan.purges}
        if late:
            scan.purges.update(_purges_after_snapshot(path, late, result))
        _check_purges(result, scan, counted_elsewhere=late)
        total_content = db.execute("SELECT count(*) FROM content").fetchone()[0]
        if total_content != scan.content_rows:  # rows the scan did not meet: name them
            named = 0
            for seq, kind in db.execute(
                    "SELECT c.seq, c.kind FROM content c WHERE c.kind NOT IN ('prompt', 'response') "
                    "OR NOT EXISTS (SELECT 1 FROM records r WHERE r.seq = c.seq)"):
                result.add(seq if isinstance(seq, int) else 0, f"stored {_text(kind)} belongs to no record")
                named += 1
            if not named and result.ok:
                result.add(0, f"the content table holds {total_content} rows but the records account "
                              f"for {scan.content_rows}")
    finally:
        db.execute("COMMIT")
    return result


def _scan_records(db: sqlite3.Connection, result: VerifyResult, lo: int = 1, hi: int | None = None) -> _Scan:
    """One pass in chunks. Each check runs over a whole chunk through C-level map() calls and
    compares lists at once; only a chunk that fails a check is walked row by row to say why.

    With a range, the first record chains to the stored hash of the record before `lo`, whose
    own correctness the range before it checks.
    """
    scan = _Scan()
    prev, expected_seq = GENESIS_HASH.encode("ascii"), 1
    if lo > 1:
        row = db.execute("SELECT seq, record_hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1", (lo,)).fetchone()
        if row is not None:
            expected_seq, prev = row[0] + 1, _as_bytes(row[1])
    if hi is None:
        cursor = db.execute(_SCAN.replace("ORDER BY", "WHERE seq >= ? ORDER BY"), (lo,))
    else:
        cursor = db.execute(_SCAN.replace("ORDER BY", "WHERE seq BETWEEN ? AND ? ORDER BY"), (lo, hi))
    content = _ContentRows(db, lo)
    while rows := cursor.fetchmany(_CHUNK):
        seqs, bodies, hashes = zip(*rows)
        if not _all_bytes(bodies) or not _all_bytes(hashes) or not _all_int(seqs):
            bodies = tuple(_as_bytes(b) for b in bodies)
            hashes = tuple(_as_bytes(h) for h in hashes)
            for index, seq in enumerate(seqs):
                if not isinstance(seq, int):
                    result.add(expected_seq + index, f"seq {seq!r} is not an integer")
            seqs = tuple(seq if isinstance(seq, int) else -1 for seq in seqs)
        if seqs != tuple(range(expected_seq, expected_seq + len(seqs))):
            _report_seq_gaps(result, seqs, expected_seq)
        computed = map(_hexdigest, map(hashlib.sha256, map(ENVELOPE.__mod__, zip(bodies, (prev, *hashes[:-1]), seqs))))
        # Each stored hash exactly as written ("sha256:" and 64 lower-case hex digits): with every
        # one of that length, the joined strings are equal only if each pair is.
        if not all(map(operator.eq, map(len, hashes), itertools.repeat(_HASH_LENGTH))) or \
                b"".join(hashes) != (HASH_PREFIX + HASH_PREFIX.join(computed)).encode("ascii"):
            for seq, body, before, stored in zip(seqs, bodies, (prev, *hashes[:-1]), hashes):
                if _PREFIX + hashlib.sha256(ENVELOPE % (body, before, seq)).hexdigest().encode() != stored:
                    result.add(seq, "record hash mismatch: the record was edited, inserted or reordered")
        prev = hashes[-1]
        expected_seq = max(seqs[-1], expected_seq + len(seqs) - 1) + 1
        joined = b"\n".join(bodies)  # one search per chunk; no marker holds the separator
        for kind, (present, texts) in content.through(seqs, result).items():
            scan.content_rows += sum(present)
            _check_content(db, result, scan, kind, seqs, bodies, joined, present, texts)
        for marker in _MARKERS:
            if marker in joined:
                for index in itertools.compress(range(len(seqs)), map(operator.contains, bodies,
                                                                      itertools.repeat(marker))):
                    _collect_event(result, scan, seqs[index], bodies[index])
        result.records += len(seqs)
        result.head_seq = expected_seq - 1
    result.head_hash = prev.decode("ascii", "replace")
    _check_keys(db, result, lo, hi if hi is not None else result.head_seq)
    return scan


def _has_keys(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'record_keys'").fetchone() is not None


def _check_keys(db: sqlite3.Connection, result: VerifyResult, lo: int, hi: int) -> None:
    """Each query key of seqs lo..hi must say what its record's body says."""
    if not _has_keys(db):
        return
    try:
        wrong = db.execute(KEYS_DISAGREE_FAST, (lo, hi)).fetchall()
    except sqlite3.OperationalError as exc:
        if "JSON" not in str(exc):
            raise
        wrong = db.execute(KEYS_DISAGREE_GUARDED, (lo, hi)).fetchall()
    for (seq,) in wrong:
        result.add(seq if isinstance(seq, int) else lo,
                   "query keys disagree with the record: filtered queries could miss or misplace it" + _REBUILD)


def _check_keys_cover(db: sqlite3.Connection, result: VerifyResult) -> None:
    """The keys cover seqs 1..K, once each, with K at most the head: a missing row would hide its
    record from filtered queries, and a row past the head would hide the records appended up
    to it (queries scan only the records after the last key)."""
    if not _has_keys(db):
        try:
            applied = {_text(name) for (name,) in db.execute("SELECT name FROM _govkit_migrations")}
        except sqlite3.OperationalError:
            applied = set()
        if "m002_deferred_keys" in applied:
            result.warnings.append("the query keys table is missing: queries scan every record")
        return
    count, low, high = db.execute("SELECT count(*), min(seq), max(seq) FROM record_keys").fetchone()
    if not count:
        return
    if not all(isinstance(value, int) for value in (low, high)):
        result.add(1, "query keys hold a seq that is not an integer")
        return
    if high > result.head_seq:
        result.add(result.head_seq + 1, f"query keys name seq {high}, past the log's head "
                                        f"{result.head_seq}: later records would be missing from filtered queries" + _REBUILD)
    if low != 1 or count != high:
        gap = (1,) if low != 1 else db.execute(
            "SELECT k.seq + 1 FROM record_keys k WHERE k.seq < ? AND NOT EXISTS "
            "(SELECT 1 FROM record_keys n WHERE n.seq = k.seq + 1) ORDER BY k.seq LIMIT 1", (high,)).fetchone()
        if gap is None:  # no gap: some seq is keyed twice (a rebuilt table)
            result.add(low, f"query keys hold {count} rows for seqs {low}..{high}: some seq is keyed twice" + _REBUILD)
        else:
            result.add(gap[0], "query keys are missing for this record: filtered queries would not find it" + _REBUILD)


_PARALLEL_MIN_RECORDS = 200_000
_OWN_SCHEMA = "seq          INTEGER PRIMARY KEY"


def _plan_ranges(db: sqlite3.Connection, workers: int | None) -> list[tuple[int, int | None]]:
    """Seq ranges to scan, one per worker process. Splitting needs the store's own schema (seq a
    unique integer key); a rebuilt table is scanned whole, in this process."""
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4)
    # Two subqueries: SQLite answers a lone min() or max() from the key, but scans for both at once.
    low, high = db.execute("SELECT (SELECT min(seq) FROM records), (SELECT max(seq) FROM records)").fetchone()
    schema = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone()
    if (workers < 2 or not isinstance(high, int) or not isinstance(low, int) or high - low < _PARALLEL_MIN_RECORDS
            or schema is None or _OWN_SCHEMA.encode() not in _as_bytes(schema[0])):
        return [(1, None)]
    step = (high - low + workers) // workers
    bounds = [low + i * step for i in range(workers)]
    # The first range starts at 1 so that missing leading records are reported; the last is
    # closed at this snapshot's head, so records appended meanwhile are left for the next verify.
    return [(1 if i == 0 else start, (bounds[i + 1] - 1) if i + 1 < workers else high)
            for i, start in enumerate(bounds)]


def _read_only(path: str | Path) -> sqlite3.Connection:
    db = connect_read_only(Path(path))
    db.text_factory = bytes  # stored text may have been made undecodable: hash it as bytes
    return db


def _scan_range(path: str, lo: int, hi: int | None) -> tuple[_Scan, VerifyResult]:
    """Scan one range of seqs with a connection of its own (run in a worker process)."""
    db = _read_only(path)
    try:
        db.execute("BEGIN")
        partial = VerifyResult()
        return _scan_records(db, partial, lo, hi), partial
    finally:
        db.close()


def _scan_in_processes(path: Path, ranges: list[tuple[int, int | None]], result: VerifyResult) -> _Scan:
    # Plain `python -m govkit.audit.verify` workers, not multiprocessing: they need nothing from
    # the caller's __main__ (a script on stdin, a notebook) and copy no locks of a threaded server.
    import pickle
    import subprocess
    import sys

    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    workers = [subprocess.Popen([sys.executable, "-m", "govkit.audit.verify", str(path), str(lo), str(hi or "")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for lo, hi in ranges]
    outputs = [worker.communicate() for worker in workers]
    if any(worker.returncode != 0 for worker in workers):
        failed = next(err for worker, (_, err) in zip(workers, outputs) if worker.returncode != 0)
        detail = failed.decode("utf-8", "replace").strip().splitlines()
        result.warnings.append("parallel scan failed, scanned in one process instead"
                               + (f": {detail[-1]}" if detail else ""))
        parts = [_scan_range(str(path), 1, ranges[-1][1])]
    else:
        parts = [pickle.loads(out) for out, _ in outputs]  # our own child processes' output
    merged = _Scan()
    for scan, partial in parts:
        merged.checkpoints += scan.checkpoints
        merged.purges.update(scan.purges)
        merged.tombstones += scan.tombstones
        merged.content_rows += scan.content_rows
        result.records += partial.records
        result.content_checked += partial.content_checked
        for problem in partial.problems:
            result.add(problem.seq, problem.reason)
    result.head_hash, result.head_seq = parts[-1][1].head_hash, parts[-1][1].head_seq
    return merged


class _ContentRows:
    """The content rows of a chunk of records, by kind, aligned with the chunk's seqs."""

    def __init__(self, db: sqlite3.Connection, lo: int):
        self._db = db
        self._next = lo  # content below this seq was handed out with an earlier chunk

    def through(self, seqs: tuple, result: VerifyResult) -> dict[str, tuple[tuple, tuple]]:
        """{kind: (present, texts)}: present[i] whether record i has a row of that kind, texts[i]
        its text (None: no row, or a purge tombstone)."""
        last = max(seqs)
        rows = self._db.execute(_CONTENT_SCAN, (self._next, last)).fetchall()
        self._next = last + 1
        count = len(seqs)
        if not rows:
            nothing = (False,) * count, (None,) * count
            return {"prompt": nothing, "response": nothing}
        row_seqs, kinds, texts = zip(*rows)
        if len(rows) == 2 * count and kinds == _BOTH_KINDS * count and row_seqs == tuple(
                itertools.chain.from_iterable(zip(seqs, seqs))):  # the common case: both, in order
            both = (True,) * count
            return {"prompt": (both, texts[0::2]), "response": (both, texts[1::2])}
        stored = dict(zip(zip(row_seqs, kinds), texts))
        if len(stored) != len(rows):  # only a rebuilt table without its primary key allows this
            for (seq, kind), times in collections.Counter(zip(row_seqs, kinds)).items():
                if times > 1 and kind:
                    result.add(seq, f"stored {_KIND_NAMES[kind]} appears {times} times")
        aligned = {}
        for kind, key in _KIND_KEYS:
            keys = tuple(zip(seqs, itertools.repeat(key)))
            aligned[kind] = tuple(map(stored.__contains__, keys)), tuple(map(stored.get, keys))
        return aligned


def _check_content(db: sqlite3.Connection, result: VerifyResult, scan: _Scan, kind: str, seqs: tuple,
                   bodies: tuple, joined: bytes, present: tuple, texts: tuple) -> None:
    """present[i]: record i has a content row of this kind; texts[i]: its text (None: no row,
    or a purge tombstone)."""
    if None not in texts:  # every record of the chunk has its text stored: the common case
        chosen_seqs, chosen_bodies, chosen_texts = seqs, bodies, texts
    else:
        stored = list(map(operator.is_not, texts, itertools.repeat(None)))
        chosen_seqs = tuple(itertools.compress(seqs, stored))
        chosen_bodies = tuple(itertools.compress(bodies, stored))
        chosen_texts = tuple(itertools.compress(texts, stored))
        if any(present) or _DECLARES[kind] in joined:  # else: no row, and no record says it has one
            _check_absent_content(db, result, scan, kind, seqs, bodies, present, texts)
    if chosen_texts:
        if not _all_bytes(chosen_texts):
            chosen_texts = tuple(_as_bytes(t) for t in chosen_texts)
        hex_digests = tuple(map(_hexdigest, map(hashlib.sha256, chosen_texts)))
        # The 64 hex digits (and the quote) after the record's digest key (its first occurrence is the key: see
        # the module's docstring), all compared at once.
        starts = tuple(map(operator.add, map(bytes.find, chosen_bodies, itertools.repeat(_DIGEST_KEY[kind])),
                           itertools.repeat(len(_DIGEST_KEY[kind]))))
        declared = b"".join(map(operator.getitem, chosen_bodies,
                                map(slice, starts, map(operator.add, starts, itertools.repeat(65)))))
        if declared != ('"'.join(hex_digests) + '"').encode("ascii"):  # each digest and its closing quote
            for seq, body, digest in zip(chosen_seqs, chosen_bodies, hex_digests):
                if (_NEEDLE[kind] % digest).encode("ascii") not in body:
                    result.add(seq, f"stored {kind} does not match the record's digest (content edited)")
        result.content_checked += len(chosen_texts)


def _check_absent_content(db: sqlite3.Connection, result: VerifyResult, scan: _Scan, kind: str, seqs: tuple,
                          bodies: tuple, present: tuple, texts: tuple) -> None:
    """Records without text: no row at all (fine unless the record declares stored text), or a
    tombstone that a recorded purge must account for. Only those are walked one by one."""
    absent = map(operator.is_, texts, itertools.repeat(None))
    declares = map(operator.contains, bodies, itertools.repeat(_DECLARES[kind]))
    for index in itertools.compress(range(len(seqs)), map(operator.and_, absent, map(operator.or_, present, declares))):
        seq, body = seqs[index], bodies[index]
        if not present[index]:
            if any(mode in body for mode in _STORES_TEXT):
                result.add(seq, f"stored {kind} was removed without a recorded purge")
            continue
        row = db.execute("SELECT purged_by FROM content WHERE seq = ? AND kind = ?", (seq, kind)).fetchone()
        purged_by = row[0] if row else None
        if purged_by is None:
            result.add(seq, f"stored {kind} emptied without a recorded purge")
        else:
            scan.tombstones.append((seq, kind, purged_by, body))


def _report_seq_gaps(result: VerifyResult, seqs: tuple, expected: int) -> None:
    for seq in seqs:
        if seq != expected:
            if isinstance(seq, int) and seq > expected:
                result.add(expected, f"records {expected}..{seq - 1} are missing (deleted)")
            else:
                result.add(seq if isinstance(seq, int) else expected, f"seq {seq} appears out of order")
        expected = seq + 1 if isinstance(seq, int) else expected + 1


def _all_bytes(values: tuple) -> bool:
    return all(map(bytes.__instancecheck__, values))


def _all_int(values: tuple) -> bool:
    return all(map(int.__instancecheck__, values))


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


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
    elif fields.get("event_type") == "genesis":
        scan.geneses.append(seq)


def _check_identity(db: sqlite3.Connection, result: VerifyResult, scan: _Scan, meta: dict[str, str],
                    public_key: str | None, meta_public_key: str | None) -> dict[str, Any] | None:
    """The store is the one it claims to be, and the one it should be: its first record fixes its
    id (and device key), its metadata agrees, and the config names the same store."""
    identity = store_identity(db)
    for seq in scan.geneses:
        if seq != 1:
            result.add(seq, SPLICED_GENESIS)
    if identity is None:
        result.add(1, "the first record does not fix the store's identity: not a store 'govkit init' "
                      "created, or its first record was replaced")
        return None
    if meta.get("store_id") != identity["store_id"]:
        result.add(1, f"the store's metadata names store {meta.get('store_id')}, but its first record "
                      f"fixes store {identity['store_id']}")
    bound = identity.get("public_key")
    if bound and meta_public_key and bound != meta_public_key:
        result.add(1, "the store's metadata holds another public key than its first record")
    check_claimed_identity(result, identity, public_key)
    return identity


def check_claimed_identity(result: VerifyResult, identity: dict[str, Any], public_key: str | None) -> None:
    """What the first record fixes against what the verifier trusts (a store or an export of one):
    the store it was expected to be, and the device key."""
    result.store_id = identity["store_id"]
    if result.expected_store_id and result.expected_store_id != identity["store_id"]:
        result.add(1, f"this is store {identity['store_id']}, but store {result.expected_store_id} was "
                      f"expected (govkit.toml or --store-id): another store was put in its place")
    bound = identity.get("public_key")
    if bound and public_key and bound != public_key:
        result.add(1, f"the store was created for device key {checkpoints.key_id(bound)}, "
                      f"not the trusted key {checkpoints.key_id(public_key)}")


def _check_purge_finished(result: VerifyResult, meta: dict[str, str]) -> None:
    """A purge an open reader kept from emptying the WAL left the text it erased on disk."""
    pending = meta.get("purge_pending")
    if pending:
        result.add(int(pending) if pending.isdigit() else 1,
                   "text this purge erased may still be physically on disk (a reader kept the write-ahead log "
                   "from being emptied): run the purge again with no reader open")


def _valid_checkpoints(db: sqlite3.Connection, result: VerifyResult,
                       found: list[tuple[int | None, dict[str, Any]]], public_key: str | None,
                       store_key: str | None) -> list[dict[str, Any]]:
    """The checkpoints that count: signed by the key and of this store. A checkpoint of another
    store is a failure wherever it sits. Without any key, signatures cannot be checked, but the
    checkpoints' claims still fail the log closed (another store, a seq past the end)."""
    if not found:
        return []
    key = public_key or store_key
    if public_key and store_key and public_key != store_key:
        result.add(1, "the store's recorded public key differs from the trusted one")
    if not key:
        result.warnings.append("checkpoints present but no public key to check their signatures: pass "
                               "--public-key (or keep govkit.toml); their claims are still checked")
    store_id = result.store_id
    valid: dict[tuple[int, str], dict[str, Any]] = {}
    verdicts: dict[str, bool] = {}  # the sidecar repeats the chain's checkpoints: check each once
    for record_seq, checkpoint in found:
        where = record_seq if record_seq is not None else checkpoint.get("seq", 0)
        where = where if isinstance(where, int) else 0
        origin = "record" if record_seq is not None else "checkpoint file"
        if key:
            identity = json.dumps(checkpoint, sort_keys=True, default=repr)
            if identity not in verdicts:
                verdicts[identity] = checkpoints.signature_valid(key, checkpoint)
            if not verdicts[identity]:
                result.add(where, f"checkpoint signature invalid ({origin})")
                continue
        if store_id is not None and checkpoint.get("store_id") != store_id:  # unknown: judged by its claims
            result.add(min(where, result.head_seq + 1) if where else 1,
                       f"a checkpoint of another store ({checkpoint.get('store_id')}, seq {checkpoint.get('seq')}) "
                       f"in the {origin}: this is store {store_id}")
            continue
        if not isinstance(checkpoint.get("seq"), int) or not isinstance(checkpoint.get("head_hash"), str):
            result.add(where, f"checkpoint is not readable ({origin})")
            continue
        if record_seq is not None and record_seq != checkpoint["seq"] + 1:
            result.add(record_seq, "checkpoint record does not follow the head it signs")
        valid[(checkpoint["seq"], checkpoint["head_hash"])] = checkpoint
    result.checkpoints = len(valid) if key else 0
    return list(valid.values())


def _check_heads(db: sqlite3.Connection, result: VerifyResult, signed: list[dict[str, Any]]) -> None:
    if not signed:
        return
    result.last_checkpoint_seq = max(cp["seq"] for cp in signed)
    for checkpoint in signed:
        seq = checkpoint["seq"]
        if seq > result.head_seq:
            result.add(result.head_seq + 1,
                       f"truncated: a signed checkpoint says the log reached seq {seq} "
                       f"(hash {checkpoint['head_hash'][:19]}…), but it ends at seq {result.head_seq}")
            continue
        stored = [_text(h) for (h,) in db.execute("SELECT record_hash FROM records WHERE seq = ?", (seq,))]
        if stored != [checkpoint["head_hash"]]:
            result.add(seq, f"record differs from the signed checkpoint of seq {seq} (log rewritten)")


def _purges_after_snapshot(path: Path, seqs: set[int], result: VerifyResult) -> dict[int, Any]:
    found: dict[int, Any] = {}
    db = _read_only(path)
    try:
        for seq in sorted(seqs):
            rows = {row[0]: (row[1], row[2]) for row in db.execute(
                "SELECT seq, body, record_hash FROM records WHERE seq IN (?, ?)", (seq - 1, seq))}
            if seq not in rows or seq - 1 not in rows:
                continue
            body, stored = _as_bytes(rows[seq][0]), _as_bytes(rows[seq][1])
            if _PREFIX + hashlib.sha256(ENVELOPE % (body, _as_bytes(rows[seq - 1][1]), seq)).hexdigest().encode() != stored:
                result.add(seq, "record hash mismatch: the record was edited, inserted or reordered")
                continue
            try:
                fields = json.loads(body)
            except ValueError:
                continue
            if isinstance(fields, dict) and fields.get("event_type") == "purge":
                found[seq] = fields.get("details")
    finally:
        db.close()
    return found


def _check_purges(result: VerifyResult, scan: _Scan, counted_elsewhere: frozenset[int] | set[int] = frozenset()) -> None:
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
        if not isinstance(purged_by, int) or seq >= purged_by or not purge_covers(details.get("criteria") or {}, fields, seq):
            result.add(seq, f"stored {kind} emptied outside what purge seq {purged_by} covered")
    result.content_purged = sum(emptied.values())
    for purge_seq, details in scan.purges.items():
        if purge_seq in counted_elsewhere:
            continue  # its items reach past this snapshot: the next verify counts them
        recorded = details.get("purged_items") if isinstance(details, dict) else None
        if recorded != emptied.get(purge_seq, 0):
            result.add(purge_seq, f"purge recorded {recorded} item(s) but {emptied.get(purge_seq, 0)} are emptied")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


if __name__ == "__main__":  # a worker of _scan_in_processes: scan a range, pickle the result
    import pickle
    import sys

    from govkit.audit import verify as _module  # the importable module, so results unpickle by name

    _path, _lo, _hi = sys.argv[1], int(sys.argv[2]), (int(sys.argv[3]) if sys.argv[3] else None)
    sys.stdout.buffer.write(pickle.dumps(_module._scan_range(_path, _lo, _hi)))
