"""The central witness: it checks what devices ship and cosigns what holds.

For each shipped sync run, oldest segment first per (device, store), the witness checks:
- the segment note's signature against the device registry (never a key that came with the upload);
- the file against the note (sha256, size), its seqs, every record hash, the chain from `prev` to `head`;
- continuity with what it already cosigned for that store: the segment's `prev` is the head it
  cosigned at lo-1.
What holds is cosigned (the witness adds its signature to the device's segment note, a C2SP
cosignature) and the run is tagged with the acknowledgement, which the device fetches at its next
sync. What does not is reported, never silently dropped:
- gap: a segment starts past the cosigned head (held until the missing seqs arrive);
- fork: two different heads for one seq from one store (a cloned or rewritten device log);
- rollback: the device's signed head is behind a head the witness already cosigned;
- altered: a file that is not the one the device signed, or a signature that does not verify;
- unknown: a device or store the registry does not hold;
- missing: a file the run names is gone from the central store (checked again at the next pass);
- duplicate: a run that replays a signed head the witness already checked (a copy, not a rollback).
A replayed segment (one already cosigned) changes nothing.

The witness's memory is its ledger (a SQLite file it alone writes), not MLflow's tags, which
anyone with access can edit: what it cosigned is what it remembers.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._lazy import require
from ..audit.hashing import GENESIS_HASH
from ..errors import ArtifactMissing, InputError, StoreError, StoreFull
from ..timestamps import utc_now
from .central import SYNC_FILTER, Central
from .notes import add_signature, sign_note
from .registry import Device
from .segments import SegmentNote, check_segment, parse_head_note, parse_segment_note, segment_path, signed_by

__all__ = ["Finding", "WitnessResult", "findings_digest", "verdict_fields", "verdict_figures", "verdict_text", "witness"]

SERIOUS = ("fork", "rollback", "altered", "unknown", "missing")


@dataclass(frozen=True)
class Finding:
    kind: str  # gap, fork, rollback, altered, unknown, missing, duplicate (a replay); unapproved, monitoring_breach (not serious)
    device_id: str
    store_id: str
    detail: str
    run_id: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "device_id": self.device_id, "store_id": self.store_id, "detail": self.detail,
                "run_id": self.run_id}


@dataclass
class WitnessResult:
    runs: int = 0
    segments: int = 0  # newly cosigned
    records: int = 0  # newly cosigned
    duplicates: int = 0  # segments already cosigned: replays, changing nothing
    held: int = 0  # runs waiting for missing seqs
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.kind in SERIOUS for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "runs": self.runs, "segments": self.segments, "records": self.records,
                "duplicates": self.duplicates, "held": self.held, "bytes": self.bytes,
                "findings": [f.to_dict() for f in self.findings]}


_LEDGER = """
CREATE TABLE IF NOT EXISTS heads (device_id TEXT, store_id TEXT, seq INTEGER NOT NULL, head_hash TEXT NOT NULL,
                                  acked_at TEXT NOT NULL, PRIMARY KEY (device_id, store_id));
CREATE TABLE IF NOT EXISTS segments (device_id TEXT, store_id TEXT, lo INTEGER, hi INTEGER, sha256 TEXT,
                                     prev_hash TEXT, head_hash TEXT, run_id TEXT, path TEXT, acked_at TEXT,
                                     PRIMARY KEY (device_id, store_id, lo, sha256));
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS findings (device_id TEXT, store_id TEXT, kind TEXT, detail TEXT, run_id TEXT, at TEXT);
CREATE TABLE IF NOT EXISTS answered (device_id TEXT, store_id TEXT, artifact TEXT, first_seq INTEGER,
                                     last_seq INTEGER, PRIMARY KEY (device_id, store_id, artifact));
CREATE TABLE IF NOT EXISTS signed (device_id TEXT, store_id TEXT, seq INTEGER, body TEXT,
                                   PRIMARY KEY (device_id, store_id, seq));
CREATE TABLE IF NOT EXISTS incidents (device_id TEXT, store_id TEXT, seq INTEGER, body TEXT,
                                      PRIMARY KEY (device_id, store_id, seq));
CREATE TABLE IF NOT EXISTS signed_heads (device_id TEXT, store_id TEXT, seq INTEGER, head_hash TEXT, ts TEXT,
                                         run_id TEXT, PRIMARY KEY (device_id, store_id, seq, head_hash, ts));
"""


class Ledger:
    """What the witness has cosigned, per store: its head and every segment's place."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_LEDGER)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the witness ledger ({exc})") from None

    def head(self, device_id: str, store_id: str) -> tuple[int, str]:
        row = self.db.execute("SELECT seq, head_hash FROM heads WHERE device_id = ? AND store_id = ?",
                              (device_id, store_id)).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def holds(self, note: SegmentNote) -> bool:
        return self.db.execute("SELECT 1 FROM segments WHERE device_id = ? AND store_id = ? AND lo = ? AND sha256 = ?",
                               (note.device_id, note.store_id, note.lo, note.sha256)).fetchone() is not None

    def covering(self, device_id: str, store_id: str, lo: int, hi: int) -> list[tuple[int, int, str, str, str, str]]:
        return self.db.execute("SELECT lo, hi, prev_hash, head_hash, run_id, path FROM segments WHERE device_id = ? "
                               "AND store_id = ? AND hi >= ? AND lo <= ? ORDER BY lo",
                               (device_id, store_id, lo, hi)).fetchall()

    def segment_sha256(self, device_id: str, store_id: str, lo: int, run_id: str) -> str | None:
        row = self.db.execute("SELECT sha256 FROM segments WHERE device_id = ? AND store_id = ? AND lo = ? AND run_id = ?",
                              (device_id, store_id, lo, run_id)).fetchone()
        return row[0] if row else None

    def accept(self, note: SegmentNote, run_id: str, path: str, at: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO segments VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (note.device_id, note.store_id, note.lo, note.hi, note.sha256, note.prev_hash,
                             note.head_hash, run_id, path, at))
            self.db.execute("INSERT INTO heads VALUES (?,?,?,?,?) ON CONFLICT (device_id, store_id) DO UPDATE SET "
                            "seq = excluded.seq, head_hash = excluded.head_hash, acked_at = excluded.acked_at "
                            "WHERE excluded.seq > heads.seq", (note.device_id, note.store_id, note.hi, note.head_hash, at))

    def note_sign_off(self, note: SegmentNote, data: bytes, *, sign_off: bool = True) -> None:
        """From a cosigned segment: its incidents and (with `sign_off`) which model files answered
        live calls (first and last seq of each) and the signed statements. Only the few incident
        and attestation rows' bodies are read."""
        pa = require("pyarrow", "parquet")
        pc = require("pyarrow.compute", "parquet")
        pq = require("pyarrow.parquet", "parquet")
        table = pq.read_table(io.BytesIO(data), columns=["seq", "event_type", "artifact_sha256"])
        spans = []
        if sign_off:
            calls = table.filter(pc.and_(pc.equal(table["event_type"], "inference"),
                                         pc.is_valid(table["artifact_sha256"])))
            spans = calls.group_by("artifact_sha256").aggregate([("seq", "min"), ("seq", "max")]).to_pylist()
        kept: dict[str, list[tuple[str, str, int, str]]] = {"incident": [], **({"attestation": []} if sign_off else {})}
        wanted = pc.is_in(table["event_type"], value_set=pa.array(sorted(kept)))
        if pc.any(wanted).as_py():
            rows = table.filter(wanted)
            kinds = dict(zip(rows["seq"].to_pylist(), rows["event_type"].to_pylist()))
            bodies = pq.read_table(io.BytesIO(data), columns=["seq", "body"])
            bodies = bodies.filter(pc.is_in(bodies["seq"], value_set=pa.array(sorted(kinds))))
            for seq, body in zip(bodies["seq"].to_pylist(), bodies["body"].to_pylist()):
                kept[kinds[seq]].append((note.device_id, note.store_id, seq, body))
        signed = kept.get("attestation", [])
        with self.db:
            for span in spans:
                self.db.execute("INSERT INTO answered VALUES (?,?,?,?,?) ON CONFLICT (device_id, store_id, artifact) "
                                "DO UPDATE SET first_seq = min(first_seq, excluded.first_seq), "
                                "last_seq = max(last_seq, excluded.last_seq)",
                                (note.device_id, note.store_id, span["artifact_sha256"], span["seq_min"],
                                 span["seq_max"]))
            self.db.executemany("INSERT OR IGNORE INTO signed VALUES (?,?,?,?)", signed)
            self.db.executemany("INSERT OR IGNORE INTO incidents VALUES (?,?,?,?)", kept["incident"])

    def incidents(self, device_id: str, store_id: str) -> list[tuple[int, str]]:
        return self.db.execute("SELECT seq, body FROM incidents WHERE device_id = ? AND store_id = ? ORDER BY seq",
                               (device_id, store_id)).fetchall()

    def sign_off(self, device_id: str, store_id: str) -> tuple[list[tuple[str, int, int]], list[tuple[int, str]]]:
        answered = self.db.execute("SELECT artifact, first_seq, last_seq FROM answered WHERE device_id = ? AND "
                                   "store_id = ? ORDER BY first_seq", (device_id, store_id)).fetchall()
        signed = self.db.execute("SELECT seq, body FROM signed WHERE device_id = ? AND store_id = ? ORDER BY seq",
                                 (device_id, store_id)).fetchall()
        return answered, signed

    def head_seen(self, head: dict[str, Any]) -> str | None:
        """The run in which the witness first checked this very signed head (a replay shows it again)."""
        row = self.db.execute("SELECT run_id FROM signed_heads WHERE device_id = ? AND store_id = ? AND seq = ? AND "
                              "head_hash = ? AND ts = ?", (head["device_id"], head["store_id"], head["seq"],
                                                           head["head_hash"], head["ts"])).fetchone()
        return row[0] if row else None

    def saw_head(self, head: dict[str, Any], run_id: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO signed_heads VALUES (?,?,?,?,?,?)", (
                head["device_id"], head["store_id"], head["seq"], head["head_hash"], head["ts"], run_id))

    def done(self, run_id: str) -> bool:
        row = self.db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row is not None and row[0] != "held"

    def finish(self, run_id: str, status: str, findings: list[Finding]) -> None:
        at = utc_now()
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?)", (run_id, status, at))
            self.db.executemany("INSERT INTO findings VALUES (?,?,?,?,?,?)",
                                [(f.device_id, f.store_id, f.kind, f.detail, f.run_id, at) for f in findings])

    def close(self) -> None:
        self.db.close()


def witness(central: Central, *, registry: dict[tuple[str, str], Device], key: Any, ledger: Path,
            experiments: list[str] | None = None, progress: Callable[[int], None] | None = None) -> WitnessResult:
    """One pass over every shipped sync run not yet settled: check, cosign, report."""
    result = WitnessResult()
    book = Ledger(ledger)
    try:
        ids = experiments if experiments is not None else central.experiments()
        runs = [r for r in central.runs(ids, f"{SYNC_FILTER} and tags.`govkit.sync.status` = 'shipped'", deleted=True)
                if not book.done(r.info.run_id)]
        # Per store in the order the device shipped; a run held for a gap is tried again at the next pass.
        runs.sort(key=lambda r: (r.data.tags.get("govkit.device_id", ""), r.data.tags.get("govkit.store_id", ""),
                                 r.info.start_time, _range_lo(r)))
        for run in runs:
            try:
                _witness_run(central, book, registry, key, run, result)
            except ArtifactMissing as exc:  # a note or head gone mid-pass: a finding for this device alone
                tags = run.data.tags
                result.findings.append(Finding("missing", tags.get("govkit.device_id", ""),
                                               tags.get("govkit.store_id", ""), str(exc), run.info.run_id))
            except sqlite3.Error as exc:  # the ledger could not keep it: the run is not settled, the next pass retries
                kind = StoreFull if "full" in str(exc) else StoreError
                raise kind(f"{ledger}: the witness ledger could not record run {run.info.run_id} ({exc}); what "
                           f"was not recorded is checked again at the next pass") from None
            result.runs += 1
            if progress:
                progress(result.runs)
    finally:
        book.close()
    return result


def _range_lo(run: Any) -> int:
    try:
        return int(run.data.tags.get("govkit.seq_range", "0-0").split("-")[0])
    except ValueError:
        return 0


def _witness_run(central: Central, book: Ledger, registry: dict[tuple[str, str], Device], key: Any, run: Any,
                 result: WitnessResult) -> None:
    tags = run.data.tags
    device_id, store_id, run_id = tags.get("govkit.device_id", ""), tags.get("govkit.store_id", ""), run.info.run_id
    findings: list[Finding] = []

    def find(kind: str, detail: str) -> None:
        findings.append(Finding(kind, device_id, store_id, detail, run_id))

    device = registry.get((device_id, store_id))
    status, ack, rejected = "acknowledged", None, []
    held: list[tuple[int, int, int]] = []  # (lo, hi, records) of the segments that hold: what the verdict counts
    if device is None:
        others = [d for (i, _), d in registry.items() if i == device_id]
        find("unknown", f"store {store_id} of device {device_id} is not enrolled" + (
            " (the device is enrolled with another store: re-initialised, replaced or cloned)" if others else "")
             + "; its syncs wait, and are checked at the first pass after it is enrolled")
        status = "held"  # not settled: enrolment makes the run checkable, and the next pass checks it
    else:
        notes = []
        with _Prefetch(central, run_id) as fetch:
            note_paths = central.list(run_id, "notes")
            for path, text in zip(note_paths, fetch.all(note_paths)):
                try:
                    note, parsed = parse_segment_note(text, source=path)
                except InputError as exc:
                    find("altered", str(exc))
                    rejected.append(Path(path).stem)
                    continue
                if not signed_by(parsed, device.public_key) or (note.device_id, note.store_id) != (device_id, store_id) \
                        or note.key != Path(path).stem:
                    find("altered", f"{path}: not signed by device {device_id}'s enrolled key for store {store_id}")
                    rejected.append(Path(path).stem)
                    continue
                notes.append((note, text))
            notes.sort(key=lambda n: n[0].lo)
            fetch.ahead([segment_path(note) for note, _ in notes if not book.holds(note)])
            for note, text in notes:
                verdict = _witness_segment(central, book, note, run_id, find, fetch, bool(device.owner_public_key))
                if verdict == "accepted":
                    ack = add_signature(text, key, "witness")
                    held.append((note.lo, note.hi, note.records))
                    result.segments += 1
                    result.records += note.records
                    result.bytes += note.size
                elif verdict == "duplicate":
                    result.duplicates += 1
                    held.append((note.lo, note.hi, note.records))
                    ack = ack or add_signature(text, key, "witness")
                elif verdict == "held":
                    status = "held"
                    break
                else:
                    rejected.append(note.key)
        _witness_head(central, book, device, run_id, find)
        if device.owner_public_key:
            _approvals(book, device, find)
        _breaches(book, device, find)
    if status != "held" and (rejected or any(f.kind in SERIOUS for f in findings)):
        status = "rejected"
    if status == "held":
        result.held += 1
    result.findings.extend(findings)
    seq, _ = book.head(device_id, store_id)
    checked_at, told = utc_now(), "; ".join(f"{f.kind}: {f.detail}" for f in findings)[:4900]
    seq_range = f"{min(lo for lo, _, _ in held)}-{max(hi for _, hi, _ in held)}" if held else "0-0"
    central.set_tags(run_id, {"govkit.witness.status": status, "govkit.witness.checked_at": checked_at,
                              "govkit.witness.findings": told, "govkit.witness.rejected": ",".join(rejected),
                              "govkit.witness.acked_seq": seq,
                              "govkit.witness.verdict": verdict_note(key, run_id=run_id, status=status,
                                                                     checked_at=checked_at, findings=told,
                                                                     seq_range=seq_range,
                                                                     records=sum(n for _, _, n in held)),
                              **({"govkit.witness.ack": ack} if ack else {})})
    book.finish(run_id, status, findings)


def _approvals(book: Ledger, device: Device, find: Any) -> None:
    """Each model file that answered live calls on the device with no valid approval over it, read
    against the device's own roster (its owner key as enrolled): a finding named `unapproved`."""
    import datetime as dt

    from ..attest import Attestations
    from ..audit import AuditRecord

    answered, signed = book.sign_off(device.id, device.store_id)
    records = [AuditRecord(seq, "", "", body.encode("utf-8")) for seq, body in signed]
    found = Attestations.from_records(device.owner_public_key, records)
    today = dt.datetime.now(dt.UTC).date()
    approved: set[str] = set()
    for approval in found.of_kind("approval"):
        if approval.current_on(today):
            approved |= approval.artifacts
    for artifact, lo, hi in answered:
        if artifact not in approved:
            find("unapproved", f"model file {artifact[:19]}… answered calls (seqs {lo}..{hi}) with no valid approval "
                               f"on the device's roster over it")


def _breaches(book: Ledger, device: Device, find: Any) -> None:
    """Each monitoring breach the device's own log holds open (govkit monitor run opened it and no
    chained resolution answers it): a finding named `monitoring_breach`; the evidence holds."""
    from ..audit import AuditRecord
    from ..monitoring.run import breach_details, breaches_open

    records = [AuditRecord(seq, "", "", body.encode("utf-8")) for seq, body in book.incidents(device.id, device.store_id)]
    for record in breaches_open(records):
        d = breach_details(record)
        find("monitoring_breach", f"{d['why']} (window {str(d['window'])[:13]}; {d['owner']} by {str(d['due'])[:10]})")


VERDICT_MAGIC = "govkit.dev/witness-verdict/v2"


def verdict_text(*, run_id: str, status: str, checked_at: str, findings: str, seq_range: str, records: int) -> str:
    """What the witness states of one sync run: its verdict, when, the digest of its findings as
    the run's `govkit.witness.findings` tag holds them, and the figures it checked (the seq range
    of the segments it cosigned or found already cosigned, and their records). The views check the
    tags against it and take their figures from it, so a status, a finding, a range or a count
    edited in MLflow is seen, not believed."""
    return (f"{VERDICT_MAGIC}\nrun {run_id}\nstatus {status}\nchecked {checked_at}\nfindings {findings_digest(findings)}\n"
            f"range {seq_range}\nrecords {records}\n")


def findings_digest(findings: str) -> str:
    """What a verdict states of its findings: the sha256 of the `govkit.witness.findings` tag."""
    return "sha256:" + hashlib.sha256(findings.encode("utf-8")).hexdigest()


def verdict_fields(text: str) -> dict[str, str]:
    """A verdict's fields by name (run, status, checked, findings, and from v2 range and records)."""
    return dict(line.split(" ", 1) for line in text.splitlines()[1:] if " " in line)


def verdict_figures(text: str) -> tuple[int, int, int] | None:
    """(lo, hi, records) of a verdict the witness signed, None when it carries none."""
    fields = verdict_fields(text)
    try:
        lo, _, hi = fields["range"].partition("-")
        return int(lo), int(hi), int(fields["records"])
    except (KeyError, ValueError):
        return None


def verdict_note(key: Any, **fields: Any) -> str:
    return sign_note(verdict_text(**fields), key, "witness")


class _Prefetch:
    """A run's files downloaded ahead, two at a time, while the witness checks the one before:
    each request waits on the server more than on this machine. At most two segments wait in
    memory beside the one being checked."""

    WINDOW = 2

    def __init__(self, central: Central, run_id: str):
        from concurrent.futures import ThreadPoolExecutor

        self.central, self.run_id = central, run_id
        self.pool = ThreadPoolExecutor(max_workers=self.WINDOW, thread_name_prefix="govkit-witness")
        self.queued: list[str] = []
        self.pending: dict[str, Any] = {}

    def all(self, paths: list[str]) -> list[str]:
        """Small files (notes), all at once, as text."""
        return [data.decode("utf-8", "replace") for data in
                self.pool.map(lambda path: self.central.download(self.run_id, path), paths)]

    def ahead(self, paths: list[str]) -> None:
        self.queued = list(paths)
        self._top_up()

    def _top_up(self) -> None:
        while self.queued and len(self.pending) < self.WINDOW:
            path = self.queued.pop(0)
            self.pending[path] = self.pool.submit(self.central.download, self.run_id, path)

    def get(self, path: str) -> bytes:
        future = self.pending.pop(path, None)
        if future is None:
            if path in self.queued:
                self.queued.remove(path)
            data = self.central.download(self.run_id, path)
        else:
            data = future.result()
        self._top_up()
        return bytes(data)

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.queued.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _witness_segment(central: Central, book: Ledger, note: SegmentNote, run_id: str, find: Any,
                     fetch: _Prefetch, sign_off: bool = False) -> str:
    if book.holds(note):
        return "duplicate"
    seq, head = book.head(note.device_id, note.store_id)
    if note.lo > seq + 1:
        find("gap", f"seqs {seq + 1}..{note.lo - 1} have not arrived; segment {note.lo}..{note.hi} waits for them")
        return "held"
    path = segment_path(note)
    try:
        data = fetch.get(path)
    except ArtifactMissing as exc:  # a finding for this device; the pass goes on with the others
        find("missing", f"segment {note.lo}..{note.hi}: {path} is gone from the central store ({exc}); it is "
                        f"checked again at the next pass")
        return "held"
    problems = check_segment(note, data)
    if problems:
        find("altered", problems[0])
        return "rejected"
    if note.lo == seq + 1:
        if note.prev_hash != head:
            find("fork", f"seq {seq}: the witness cosigned head {head[:19]}…, this segment chains from "
                         f"{note.prev_hash[:19]}… (two different logs under one store)")
            return "rejected"
    else:  # it overlaps what is cosigned: it must hold the records the witness cosigned there
        differing = _differs_from_cosigned(central, book, note, data, seq, find)
        if differing == UNDECIDED:
            find("altered", f"segment {note.lo}..{note.hi}: its seqs cannot be compared with the records the witness "
                            f"cosigned, whose file is gone or replaced; it is not cosigned")
            return "rejected"
        if differing is not None:
            find("fork", f"seq {differing}: a different record than the one the witness cosigned (a second "
                         f"history for seqs the witness already cosigned: never cosigned, whatever MLflow shows)")
            return "rejected"
        if note.hi <= seq:
            return "duplicate"
    book.accept(note, run_id, path, utc_now())
    # what ran and what was signed, where the device is enrolled with its roster's anchor; its
    # incidents always (an open monitoring breach is named whatever the roster)
    book.note_sign_off(note, data, sign_off=sign_off)
    return "accepted"


UNDECIDED = -1


def _differs_from_cosigned(central: Central, book: Ledger, note: SegmentNote, data: bytes, seq: int,
                           find: Any) -> int | None:
    """The first seq at which `note`'s segment holds another record than the one the witness
    cosigned, None when it holds the same ones, UNDECIDED when that cannot be known. Decided by
    the ledger first: the hashes it cosigned at the ends of each cosigned segment (the chain links
    every record below an end to it). MLflow's copy of a cosigned file is read only for seqs
    between ends, and only once it matches the sha256 the ledger holds for it."""
    shared_hi = min(note.hi, seq)
    covering = book.covering(note.device_id, note.store_id, note.lo - 1, shared_hi)
    ends: dict[int, str] = {}
    for lo, hi, prev_hash, head_hash, _, _ in covering:
        ends[hi] = head_hash
        if lo > 1:
            ends[lo - 1] = prev_hash
    if note.lo - 1 in ends and note.prev_hash != ends[note.lo - 1]:
        return note.lo
    inside = sorted(s for s in ends if note.lo <= s <= shared_hi)
    mine = _hashes_at(data, set(inside))
    wrong = [s for s in inside if mine.get(s) != ends[s]]
    agreed = max((s for s in inside if s not in wrong and (not wrong or s < wrong[0])), default=note.lo - 1)
    upto = wrong[0] if wrong else shared_hi
    if agreed >= upto:
        return None
    for lo, hi, _, _, other_run, other_path in covering:  # seqs agreed+1..upto lie inside this cosigned segment
        if not lo <= agreed + 1 <= hi:
            continue
        cosigned = _cosigned_file(central, book, note.device_id, note.store_id, (lo, hi, other_run, other_path), find)
        if cosigned is None:
            break
        theirs = _hashes_at(cosigned, set(range(agreed + 1, upto + 1)))
        ours = _hashes_at(data, set(theirs))
        return min((s for s in sorted(theirs) if ours.get(s) != theirs[s]), default=wrong[0] if wrong else None)
    return wrong[0] if wrong else UNDECIDED


def _hashes_at(data: bytes, wanted: set[int]) -> dict[int, str]:
    if not wanted:
        return {}
    pq = require("pyarrow.parquet", "parquet")
    table = pq.read_table(io.BytesIO(data), columns=["seq", "record_hash"])
    return {s: h for s, h in zip(table.column("seq").to_pylist(), table.column("record_hash").to_pylist()) if s in wanted}


def _witness_head(central: Central, book: Ledger, device: Device, run_id: str, find: Any) -> None:
    """The device's signed head against what the witness cosigned: behind it is a rollback, or a
    fork when the device's record at that seq is not the one cosigned."""
    if "head.note" not in central.list(run_id, None):
        find("altered", "head.note: the sync run holds no signed head")
        return
    text = central.download(run_id, "head.note").decode("utf-8", "replace")
    try:
        head, parsed = parse_head_note(text, source="head.note")
    except InputError as exc:
        find("altered", str(exc))
        return
    if not signed_by(parsed, device.public_key) or (head["device_id"], head["store_id"]) != (device.id, device.store_id):
        find("altered", "head.note: not signed by the device's enrolled key")
        return
    first_run = book.head_seen(head)
    if first_run is not None and first_run != run_id:
        find("duplicate", f"this run shows the head the device signed at {head['ts']} (seq {head['seq']}), which the "
                          f"witness checked in run {first_run}: a copy of an earlier sync, not a rollback")
        return
    seq, cosigned = book.head(device.id, device.store_id)
    if head["seq"] > seq or (head["seq"] == seq and head["head_hash"] == cosigned):
        book.saw_head(head, run_id)
        return
    if head["seq"] == seq:
        find("fork", f"seq {seq}: the device's head is not the record the witness cosigned")
        return
    theirs = _record_hash_at(central, book, device, head["seq"], find)
    if theirs is not None and theirs != head["head_hash"]:
        find("fork", f"seq {head['seq']}: the device's head is not the record the witness cosigned at that seq "
                     f"(its log was replaced by another, or cloned)")
    else:
        find("rollback", f"the device's signed head is seq {head['seq']} ({head['ts']}), behind seq {seq}, which the "
                         f"witness cosigned: records {head['seq'] + 1}..{seq} are gone from the device")


def _record_hash_at(central: Central, book: Ledger, device: Device, seq: int, find: Any) -> str | None:
    """The record hash the witness cosigned at `seq`: from the ledger at a segment's end, else from
    the cosigned file once it matches the sha256 the ledger holds for it."""
    for lo, hi, prev_hash, head_hash, run_id, path in book.covering(device.id, device.store_id, seq, seq):
        if hi == seq:
            return head_hash
        if lo - 1 == seq:
            return prev_hash
        data = _cosigned_file(central, book, device.id, device.store_id, (lo, hi, run_id, path), find)
        return None if data is None else _hashes_at(data, {seq}).get(seq)
    return None


def _cosigned_file(central: Central, book: Ledger, device_id: str, store_id: str,
                   segment: tuple[int, int, str, str], find: Any) -> bytes | None:
    """MLflow's copy of a segment the witness cosigned, (lo, hi, run, path), when it is still the
    file the ledger holds the sha256 of; a replaced one is `altered`, and None either way."""
    lo, hi, run_id, path = segment
    # Only a file that is gone is decided without it; any other failure is the environment's (exit
    # 3), and the run stays unsettled for the next pass.
    try:
        data = central.download(run_id, path)
    except ArtifactMissing:
        return None
    if "sha256:" + hashlib.sha256(data).hexdigest() != book.segment_sha256(device_id, store_id, lo, run_id):
        find("altered", f"run {run_id}: {path} is not the file the witness cosigned for seqs {lo}..{hi} "
                        f"(replaced after it was cosigned)")
        return None
    return data
