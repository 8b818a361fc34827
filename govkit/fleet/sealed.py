"""Segments sealed ahead of the link: built and signed while the device is offline, so that a
sync spends the link's time on the upload, not on building.

`govkit sync --seal` (no network) seals the complete segments of the records that follow what
the device knows the central store holds: a segment is complete when it is full
(`segment_records`) or its UTC day is over. The open tail is left for the sync itself. Sealed
segments live beside the store, in `<db>.segments/`:

    <key>.parquet   the segment's file, exactly as it will be uploaded
    <key>.json      its signed note and what it holds; written last: a segment without it is unfinished
    central         the seq up to which the central store held this log at the last sync

A sync uses a sealed segment only when it is exactly the next one the central store needs and
still true of the store: its note verifies with the device's key and names this device and
store, it continues the chain at the store's record before it, its head is the store's record
at its last seq, and its file's sha256 is the one signed. Anything else (an older timeline
restored from a backup, a damaged file, another store) is set aside, and the sync builds that
range from the store as it would have without it. Once the central store holds a segment, its
sealed copy is removed.

Sealed segments never carry content: with `[sync] ship_content` on, segments are built at sync
time, so that an erasure between sealing and shipping cannot leave a copy of the text behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audit.hashing import GENESIS_HASH, HASH_PREFIX
from ..errors import InputError, StoreFull
from .segments import Segment, build_segments, parse_segment_note, signed_by

__all__ = ["SealResult", "forget_shipped", "seal_segments", "sealed_folder", "usable_sealed"]


@dataclass(frozen=True)
class SealResult:
    segments: int  # newly sealed
    records: int
    bytes: int
    ready_upto: int  # the log is sealed, or was at the central store at the last sync, up to this seq
    open_tail: int  # records after it, left for the sync itself (an open segment)

    def to_dict(self) -> dict[str, int]:
        return {"segments": self.segments, "records": self.records, "bytes": self.bytes,
                "ready_upto": self.ready_upto, "open_tail": self.open_tail}


def sealed_folder(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".segments")


def _listed(folder: Path) -> list[tuple[int, int, Path]]:
    """(lo, hi, json path) of the finished sealed segments, in seq order."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in folder.glob("*.json"):
            with contextlib.suppress(ValueError):
                lo, hi = (int(part) for part in path.stem.split("-")[:2])
                found.append((lo, hi, path))
    return sorted(found)


def _central_seq(folder: Path) -> int:
    try:
        return int((folder / "central").read_text(encoding="ascii").strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write(path: Path, data: bytes) -> None:
    """Atomically: a temporary file, synced, then renamed into place."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if exc.errno != errno.ENOSPC:
            raise
        raise StoreFull(f"{path.parent}: disk full while sealing segments; nothing was lost (the records stay in "
                        f"the store, and the sync builds what is not sealed)") from None


def seal_segments(db: sqlite3.Connection, db_path: Path, *, head_seq: int, device_id: str, store_id: str,
                  private_key: Any, max_records: int) -> SealResult:
    """Seal the complete segments after what is sealed (or what the central store held at the
    last sync), up to the store's head. The chain is re-verified as a sync would."""
    folder = sealed_folder(db_path)
    ready = max([_central_seq(folder)] + [hi for _, hi, _ in _listed(folder)])  # sealed or central up to here
    made = records = size = 0
    if ready < head_seq:
        folder.mkdir(exist_ok=True)
        for segment in build_segments(db, start=ready + 1, stop=head_seq, max_records=max_records,
                                      device_id=device_id, store_id=store_id, private_key=private_key,
                                      with_content=False):
            note = segment.note
            if note.hi == head_seq and note.records < max_records:
                break  # the open tail: more records may join it today
            _write(folder / f"{note.key}.parquet", segment.data)
            _write(folder / f"{note.key}.json", json.dumps({
                "note": segment.signed, "counts": segment.counts, "redactions": segment.redactions,
                "artifacts": segment.artifacts}, sort_keys=True).encode("utf-8"))
            made, records, size, ready = made + 1, records + note.records, size + note.size, note.hi
        _sync_folder(folder)
    return SealResult(made, records, size, ready, max(0, head_seq - ready))


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _record_hash(db: sqlite3.Connection, seq: int) -> str | None:
    if seq == 0:
        return GENESIS_HASH
    row = db.execute("SELECT record_hash FROM records WHERE seq = ?", (seq,)).fetchone()
    return row[0] if row else None


def usable_sealed(db: sqlite3.Connection, db_path: Path, *, start: int, device_id: str, store_id: str,
                  public_key: str) -> Iterator[Segment]:
    """The sealed segments that continue the central store's copy from seq `start`, one at a
    time (one file in memory), each checked against the store and its own signature; stops at
    the first that does not hold."""
    expected = start
    for lo, hi, path in _listed(sealed_folder(db_path)):
        if hi < expected:
            continue
        if lo != expected:
            return
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            note, parsed = parse_segment_note(meta["note"], source=str(path))
            data = path.with_suffix(".parquet").read_bytes()
        except (OSError, ValueError, KeyError, TypeError, InputError):
            return
        if not (note.lo == lo and note.hi == hi and note.device_id == device_id and note.store_id == store_id
                and signed_by(parsed, public_key)
                and _record_hash(db, lo - 1) == note.prev_hash and _record_hash(db, hi) == note.head_hash
                and len(data) == note.size and HASH_PREFIX + hashlib.sha256(data).hexdigest() == note.sha256):
            return
        yield Segment(note, meta["note"], data, _counts(meta.get("counts")), _counts(meta.get("redactions")),
                      _counts(meta.get("artifacts")), path.with_suffix(".parquet"))
        expected = hi + 1


def _counts(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else {}


def forget_shipped(db_path: Path, central_seq: int) -> None:
    """After a sync: the central store holds the log up to `central_seq`; its sealed copies go."""
    folder = sealed_folder(db_path)
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        return  # nothing sealed can be here; the next seal asks nothing of it
    for _, hi, path in _listed(folder):
        if hi <= central_seq:
            path.unlink(missing_ok=True)  # the note first: a file without it is unfinished, never used
            path.with_suffix(".parquet").unlink(missing_ok=True)
    for leftover in folder.glob("*.tmp"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # a hint for the next seal; a sync always asks the central store
        _write(folder / "central", str(central_seq).encode("ascii"))
