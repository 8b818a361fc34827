"""Sealed segments: a contiguous seq range of one device's log as Parquet, named by its sha256
and described by a note the device signs.

The Parquet file has the columns of `govkit audit export --format parquet` (so `audit verify
--export FILE --partial` checks one segment by itself, and any engine reads it); `content` holds
the stored (redacted) text only where `[sync] ship_content` allows it to leave the device.

The segment note, signed by the device key (c2sp.org/signed-note, see notes.py):

    govkit.dev/segment/v1
    device <device id>
    store <store id>
    range <lo> <hi>
    prev <record_hash of seq lo-1, or the genesis hash for lo = 1>
    head <record_hash of seq hi>
    file sha256:<hex of the Parquet file> <bytes>
    date <UTC day of the first record: the segment's partition>
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._lazy import require
from ..audit.export import COLUMNS
from ..audit.hashing import ENVELOPE, GENESIS_HASH, HASH_PREFIX
from ..errors import InputError
from .notes import parse_note, sign_note, verify_note

__all__ = ["Segment", "SegmentNote", "add_counts", "build_segments", "check_segment", "head_note", "parse_head_note",
           "parse_segment_note", "segment_path", "segment_rows", "tally_range"]

SEGMENT_MAGIC = "govkit.dev/segment/v1"
HEAD_MAGIC = "govkit.dev/head/v1"
_EVENT_COUNTS = {"inference": "inferences", "override": "overrides", "incident": "incidents", "purge": "purges"}


@dataclass(frozen=True)
class SegmentNote:
    """What a segment note states."""

    device_id: str
    store_id: str
    lo: int
    hi: int
    prev_hash: str
    head_hash: str
    sha256: str
    size: int
    date: str

    @property
    def records(self) -> int:
        return self.hi - self.lo + 1

    @property
    def key(self) -> str:
        """The segment's place: a file name that sorts in seq order and names the content."""
        return f"{self.lo:012d}-{self.hi:012d}-{self.sha256.removeprefix(HASH_PREFIX)[:16]}"

    def text(self) -> str:
        return (f"{SEGMENT_MAGIC}\ndevice {self.device_id}\nstore {self.store_id}\nrange {self.lo} {self.hi}\n"
                f"prev {self.prev_hash}\nhead {self.head_hash}\nfile {self.sha256} {self.size}\ndate {self.date}\n")


@dataclass
class Segment:
    """A built segment: its Parquet bytes, its signed note, and what it holds."""

    note: SegmentNote
    signed: str
    data: bytes
    counts: dict[str, int] = field(default_factory=dict)
    redactions: dict[str, int] = field(default_factory=dict)
    artifacts: dict[str, int] = field(default_factory=dict)  # model artifact sha256 -> inference records
    path: Any = None  # the file holding `data`, when it is already on disk (a sealed segment)


def segment_path(note: SegmentNote) -> str:
    """Where the segment's file lies in its sync run: partitioned by device and UTC day."""
    return f"segments/device_id={note.device_id}/date={note.date}/{note.key}.parquet"


def parse_segment_note(note: str, *, source: str = "segment note") -> tuple[SegmentNote, Any]:
    parsed = parse_note(note, source=source)
    lines = parsed.lines()
    try:
        if lines[0] != SEGMENT_MAGIC or len(lines) != 8:
            raise ValueError
        words = [line.split(" ") for line in lines[1:]]
        values = {w[0]: w[1:] for w in words}
        lo, hi = int(values["range"][0]), int(values["range"][1])
        statement = SegmentNote(values["device"][0], values["store"][0], lo, hi, values["prev"][0],
                                values["head"][0], values["file"][0], int(values["file"][1]), values["date"][0])
    except (ValueError, KeyError, IndexError):
        raise InputError(f"{source}: not a govkit segment note") from None
    if not 1 <= lo <= hi:
        raise InputError(f"{source}: range {lo}..{hi} is not a seq range")
    return statement, parsed


def head_note(private_key: Any, *, device_id: str, store_id: str, seq: int, head_hash: str, ts: str) -> str:
    """The device's signed statement of its store's head at the time of a sync (rollback evidence)."""
    return sign_note(f"{HEAD_MAGIC}\ndevice {device_id}\nstore {store_id}\nseq {seq}\nhead {head_hash}\ntime {ts}\n",
                     private_key, "device")


def parse_head_note(note: str, *, source: str = "head note") -> tuple[dict[str, Any], Any]:
    parsed = parse_note(note, source=source)
    lines = parsed.lines()
    try:
        if lines[0] != HEAD_MAGIC or len(lines) != 6:
            raise ValueError
        values = dict(line.split(" ", 1) for line in lines[1:])
        head = {"device_id": values["device"], "store_id": values["store"], "seq": int(values["seq"]),
                "head_hash": values["head"], "ts": values["time"]}
    except (ValueError, KeyError):
        raise InputError(f"{source}: not a govkit head note") from None
    return head, parsed


# Columns with few distinct values: dictionary-encoded (smaller and faster to write); the rest plain.
_DICTIONARY = ["event_type", "model_id", "artifact_sha256", "status", "subject_ref"]


def _schema() -> Any:
    pa = require("pyarrow", "parquet")
    return pa.schema([("seq", pa.int64())] + [(c, pa.string()) for c in COLUMNS[1:]]
                     + [("body", pa.string()), ("content", pa.string())])


def build_segments(db: sqlite3.Connection, *, start: int, stop: int, max_records: int, device_id: str,
                   store_id: str, private_key: Any, with_content: bool) -> Iterator[Segment]:
    """Segments covering seqs start..stop of the store, at most `max_records` each, a new one
    when the UTC day of the records moves on. Each record's hash is recomputed on the way: the
    device never signs a segment of a chain that does not verify (InputError naming the seq).
    The per-record work other than hashing is done in C: Arrow parses the bodies into the
    export's columns, the days among them."""
    if start > 1:
        row = db.execute("SELECT record_hash FROM records WHERE seq = ?", (start - 1,)).fetchone()
        if row is None:
            raise InputError(f"the store has no seq {start - 1}: cannot chain a segment from it")
        prev = row[0]
    else:
        prev = GENESIS_HASH
    rows = db.execute("SELECT seq, body, record_hash FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq", (start, stop))
    expected = start
    bodies: list[bytes] = []
    hashes: list[str] = []
    segment_prev = prev
    sha256, envelope = hashlib.sha256, ENVELOPE
    for seq, body, stored in rows:
        if seq != expected:
            raise InputError(f"seq {expected} is missing from the store: run 'govkit audit verify' before a sync")
        if HASH_PREFIX + sha256(envelope % (body, prev.encode("ascii"), seq)).hexdigest() != stored:
            raise InputError(f"seq {seq} does not verify: the store was altered; run 'govkit audit verify' "
                             f"(nothing was shipped from seq {seq} on)")
        if len(bodies) >= max_records:
            yield from _seal_days(db, seq - len(bodies), bodies, hashes, segment_prev, device_id, store_id,
                                  private_key, with_content)
            segment_prev, bodies, hashes = hashes[-1], [], []
        bodies.append(bytes(body))
        hashes.append(stored)
        prev, expected = stored, seq + 1
    if expected <= stop:
        raise InputError(f"the store ends at seq {expected - 1}, before seq {stop}")
    if bodies:
        yield from _seal_days(db, expected - len(bodies), bodies, hashes, segment_prev, device_id, store_id,
                              private_key, with_content)


def _seal_days(db: sqlite3.Connection, lo: int, bodies: list[bytes], hashes: list[str], prev: str, device_id: str,
               store_id: str, private_key: Any, with_content: bool) -> Iterator[Segment]:
    """The batch's segments: a new one wherever the UTC day of the records moves on."""
    pa = require("pyarrow", "parquet")
    fields = _fields(pa, bodies)
    days = [str(ts or "")[:10] for ts in fields.column("ts_start").to_pylist()]
    first, date = 0, days[0] or "unknown"
    for i in range(1, len(days) + 1):
        if i == len(days) or days[i] > date:
            yield _seal(db, lo + first, bodies[first:i], hashes[first:i], prev if first == 0 else hashes[first - 1],
                        date, device_id, store_id, private_key, with_content, fields.slice(first, i - first))
            if i < len(days):
                first, date = i, days[i] or "unknown"


def _content_rows(db: sqlite3.Connection, start: int, stop: int) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for seq, kind, text in db.execute("SELECT seq, kind, text FROM content WHERE seq BETWEEN ? AND ? "
                                      "AND text IS NOT NULL", (start, stop)):
        found.setdefault(seq, {})[kind] = text
    return found


def _fields(pa: Any, bodies: list[bytes]) -> Any:
    """The export's field columns of these bodies (one canonical JSON object per line), parsed by
    Arrow; a field of another JSON type than text is taken as Python's str() of it, as exports are."""
    pj = require("pyarrow.json", "parquet")
    names = COLUMNS[1:-2]  # the hashed body's fields; prev_hash and record_hash are the envelope's
    schema = pa.schema([(name, pa.string()) for name in names])
    try:
        table = pj.read_json(io.BytesIO(b"\n".join(bodies)), read_options=pj.ReadOptions(block_size=1 << 26),
                             parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
        if table.num_rows == len(bodies):  # a body is one line in canonical JSON; any other takes the slow way
            return table
    except pa.ArrowInvalid:  # a field that is not text somewhere: the slow, general way
        pass
    parsed = [json.loads(b) for b in bodies]
    return pa.table({name: [None if f.get(name) is None else str(f[name]) for f in parsed] for name in names},
                    schema=schema)


def _strings(pa: Any, numpy: Any, items: list[bytes]) -> Any:
    """A string array of UTF-8 byte strings, from one buffer and their offsets (no per-item objects)."""
    offsets = numpy.zeros(len(items) + 1, dtype=numpy.int32)
    numpy.cumsum([len(item) for item in items], out=offsets[1:])
    array = pa.StringArray.from_buffers(len(items), pa.py_buffer(offsets), pa.py_buffer(b"".join(items)))
    array.validate(full=True)  # valid UTF-8, as the hashed bodies are
    return array


def _seal(db: sqlite3.Connection, lo: int, bodies: list[bytes], hashes: list[str], prev: str, date: str,
          device_id: str, store_id: str, private_key: Any, with_content: bool, fields: Any) -> Segment:
    pa = require("pyarrow", "parquet")
    pq = require("pyarrow.parquet", "parquet")
    numpy = require("numpy", "parquet")
    hi = lo + len(bodies) - 1
    columns = {"seq": pa.array(numpy.arange(lo, hi + 1, dtype=numpy.int64)),
               **{name: fields.column(name) for name in COLUMNS[1:-2]},
               "prev_hash": pa.array([prev, *hashes[:-1]], pa.string()), "record_hash": pa.array(hashes, pa.string()),
               "body": _strings(pa, numpy, bodies)}
    if with_content:
        contents = _content_rows(db, lo, hi)
        columns["content"] = pa.array([json.dumps(contents[seq], ensure_ascii=False) if contents.get(seq) else None
                                       for seq in range(lo, hi + 1)], pa.string())
    else:
        columns["content"] = pa.nulls(len(bodies), pa.string())
    table = pa.table(columns, schema=_schema())
    counts, redactions, artifacts = _tally(fields, bodies)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=_DICTIONARY)
    data = sink.getvalue()
    note = SegmentNote(device_id, store_id, lo, hi, prev, hashes[-1],
                       HASH_PREFIX + hashlib.sha256(data).hexdigest(), len(data), date)
    return Segment(note, sign_note(note.text(), private_key, "device"), data, counts, redactions, artifacts)


def _tally(fields: Any, bodies: list[bytes]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """What these records hold: counts by kind (records, inferences, errors, overrides, incidents,
    purges), redactions by entity type, and inference records by model artifact sha256."""
    pc = require("pyarrow.compute", "parquet")
    events = fields.column("event_type")
    counts = dict.fromkeys(("records", "inferences", "errors", "overrides", "incidents", "purges"), 0)
    counts["records"] = len(bodies)
    for item in pc.value_counts(events).to_pylist():
        if item["values"] in _EVENT_COUNTS:
            counts[_EVENT_COUNTS[item["values"]]] += item["counts"]
    inference = pc.equal(events, "inference")
    counts["errors"] = int(pc.sum(pc.and_kleene(inference, pc.invert(pc.fill_null(
        pc.equal(fields.column("status"), "ok"), False)))).as_py() or 0)
    artifacts = {item["values"]: item["counts"] for item in pc.value_counts(pc.filter(
        fields.column("artifact_sha256"), inference)).to_pylist() if item["values"]}
    redactions: dict[str, int] = {}
    marked = pc.indices_nonzero(pc.fill_null(inference, False)).to_pylist() if counts["inferences"] else []
    for i in marked:  # only a body holding a non-empty "entities" object is parsed again (canonical JSON)
        if b'"entities":{"' in bodies[i]:
            entities = (json.loads(bodies[i]).get("redaction") or {}).get("entities") or {}
            for name, n in entities.items():
                if isinstance(n, int) and not isinstance(n, bool):
                    redactions[name] = redactions.get(name, 0) + n
    return counts, redactions, artifacts


def tally_range(db: sqlite3.Connection, lo: int, hi: int, *, batch: int = 50_000) -> tuple[
        dict[str, int], dict[str, int], dict[str, int]]:
    """`_tally` of the store's records lo..hi, read in batches (a resumed sync's run counts what
    its earlier part shipped)."""
    pa = require("pyarrow", "parquet")
    totals: tuple[dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {})
    for start in range(lo, hi + 1, batch):
        bodies = [bytes(body) for (body,) in db.execute(
            "SELECT body FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq", (start, min(hi, start + batch - 1)))]
        if bodies:
            for total, part in zip(totals, _tally(_fields(pa, bodies), bodies)):
                add_counts(total, part)
    return totals


def add_counts(total: dict[str, int], part: dict[str, int]) -> dict[str, int]:
    """`part`'s counts added into `total`, which is returned."""
    for name, n in part.items():
        total[name] = total.get(name, 0) + n
    return total


def check_segment(note: SegmentNote, data: bytes) -> list[str]:
    """What is wrong with a segment's bytes against its (signature-checked) note: its sha256 and
    size, its seqs lo..hi in order, every record's hash recomputed from its body, the chain from
    `prev` to `head`. An empty list: the segment is exactly what the device signed."""
    if len(data) != note.size or HASH_PREFIX + hashlib.sha256(data).hexdigest() != note.sha256:
        return [f"segment {note.lo}..{note.hi}: its file is not the one the device signed (sha256 or size differs)"]
    pq = require("pyarrow.parquet", "parquet")
    try:
        table = pq.read_table(io.BytesIO(data), columns=["seq", "body", "record_hash"])
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        return [f"segment {note.lo}..{note.hi}: not a readable Parquet file ({exc})"]
    seqs = table.column("seq").to_pylist()
    if seqs != list(range(note.lo, note.hi + 1)):
        return [f"segment {note.lo}..{note.hi}: its seqs are not {note.lo}..{note.hi} in order"]
    stored_hashes = table.column("record_hash").to_pylist()
    if any(not isinstance(h, str) for h in stored_hashes) or table.column("body").null_count:
        return [f"segment {note.lo}..{note.hi}: a record without its body or hash"]
    prev = note.prev_hash.encode("ascii")
    sha256 = hashlib.sha256
    for seq, body, stored in zip(seqs, table.column("body").to_pylist(), stored_hashes):
        if HASH_PREFIX + sha256(ENVELOPE % (body.encode("utf-8"), prev, seq)).hexdigest() != stored:
            return [f"seq {seq}: record hash mismatch in segment {note.lo}..{note.hi}"]
        prev = stored.encode("ascii")
    if prev.decode("ascii") != note.head_hash:
        return [f"segment {note.lo}..{note.hi}: its last record is not the head its note names"]
    return []


def segment_rows(data: bytes) -> Iterator[dict[str, Any]]:
    """The rows of a segment's Parquet file, as `audit verify --export` reads an export's."""
    pq = require("pyarrow.parquet", "parquet")
    for batch in pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            if isinstance(row.get("content"), str):
                row["content"] = json.loads(row["content"])
            else:
                row.pop("content", None)
            yield row


def signed_by(note: Any, public_key: str) -> bool:
    return verify_note(note, public_key, "device")
