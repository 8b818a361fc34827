"""`govkit sync`: the device ships its log to the central MLflow, segment by segment.

The device's log is the queue. Nothing is dropped on the device's own account: no retry
timeout, no oldest-first drop; a sync that cannot reach the server stops and says how much
waits, and the next one starts where the central store ends. What the central store already
holds is read from it (the segment notes of this device and store), so a sync killed midway
resumes in its own unfinished run, without duplicates or gaps: a segment counts as uploaded once
its note, which is uploaded after its file, is there; a file without its note is removed.

The governance records of the range (overrides, incidents, purges, lineage, bias, checks ...)
ship first, in oversight/records.json with the overrides also as an MLflow table, so a link that
drops mid-sync still delivered the human-oversight trail, and `govkit trail` reads it centrally. The witness's
acknowledgements (cosigned segment notes) are fetched at each sync and kept beside the store in
`<db>.acks.jsonl`; retention purges content only up to the highest acknowledged seq.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit.checkpoints import load_private_key
from ..audit.connect import connect_read_only
from ..audit.identity import store_identity
from ..config import Settings
from ..errors import CentralUnreachable, InputError, StoreFull, StoreNotFound
from ..timestamps import utc_now
from .central import SYNC_FILTER, Central
from .notes import verify_note
from .sealed import SealResult, forget_shipped, seal_segments, usable_sealed
from .segments import Segment, SegmentNote, add_counts, build_segments, head_note, parse_segment_note, segment_path, tally_range

__all__ = ["SyncResult", "acknowledged_seq", "acks_path", "seal", "sync"]

Progress = Callable[[int, int], None]  # (records shipped so far, records to ship)


@dataclass(frozen=True)
class SyncResult:
    run_id: str | None
    device_id: str
    store_id: str
    shipped: tuple[tuple[int, int], ...]  # seq ranges shipped by this sync
    records: int
    bytes: int
    head_seq: int
    central_seq: int  # the central store holds this device's log up to here (before this sync)
    acknowledged_seq: int  # the highest seq the witness has cosigned, as the device knows it
    new_acks: int
    resumed: bool
    counts: dict[str, int] = field(default_factory=dict)
    sealed: int = 0  # segments shipped as they were sealed ahead of the link (govkit sync --seal)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "device_id": self.device_id, "store_id": self.store_id,
                "shipped": [list(r) for r in self.shipped], "records": self.records, "bytes": self.bytes,
                "head_seq": self.head_seq, "central_seq": self.central_seq,
                "acknowledged_seq": self.acknowledged_seq, "new_acks": self.new_acks, "resumed": self.resumed,
                "counts": self.counts, "sealed": self.sealed}


def acks_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".acks.jsonl")


def content_shipped_path(db_path: Path) -> Path:
    """Beside the store: each sync that shipped content ([sync] ship_content), with its run and
    seq ranges, so that an erasure knows which copies of a subject's text left the device."""
    return db_path.with_name(db_path.name + ".content-shipped.jsonl")


def shipped_content(db_path: Path) -> list[dict[str, Any]]:
    return _read_jsonl(content_shipped_path(db_path))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a file kept beside the store (none when it is missing). A line that does
    not parse is a torn last write, skipped: what it held is fetched or noted again."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _append_synced(path: Path, text: str) -> None:
    """Append to a file kept beside the store, durably (fsync) before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _without_credentials(uri: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else uri


def _note_content_shipped(db_path: Path, central: str, run_id: str, ranges: list[tuple[int, int]]) -> None:
    line = json.dumps({"central": central, "run_id": run_id, "ranges": [list(r) for r in ranges]}) + "\n"
    _append_synced(content_shipped_path(db_path), line)


def read_acks(db_path: Path) -> list[dict[str, Any]]:
    return _read_jsonl(acks_path(db_path))  # a torn last line: the ack is fetched again at the next sync


def acknowledged_seq(db_path: Path, witness_public_key: str, store_id: str) -> int:
    """The highest seq of this store the witness has cosigned (0 with no trusted key or no ack).
    Only acknowledgements whose witness signature verifies with the configured key count."""
    best = 0
    for ack in read_acks(db_path):
        try:
            statement, parsed = parse_segment_note(ack["note"])
        except (InputError, KeyError, TypeError):
            continue
        if statement.store_id == store_id and verify_note(parsed, witness_public_key, "witness"):
            best = max(best, statement.hi)
    return best


def _keep_acks(db_path: Path, notes: list[str]) -> int:
    known = {a.get("note") for a in read_acks(db_path)}
    new = [n for n in notes if n not in known]
    if new:
        try:
            _append_synced(acks_path(db_path), "".join(json.dumps({"note": n}) + "\n" for n in new))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise StoreFull(f"{acks_path(db_path)}: disk full while keeping the witness's acknowledgements; they stay "
                            f"on the central store and the next sync fetches them again (nothing was lost)") from None
    return len(new)


def _opened(settings: Settings, db: Path | None) -> tuple[Path, Any]:
    db_path = Path(db or settings.audit.db)
    if not db_path.is_file():
        raise StoreNotFound(f"{db_path}: no audit store here; only 'govkit init' creates one")
    if not settings.audit.private_key.is_file():
        raise InputError(f"{settings.audit.private_key}: no device key; a sync ships only segments the device signs")
    return db_path, load_private_key(settings.audit.private_key)


@contextlib.contextmanager
def _reading(settings: Settings, db_path: Path) -> Iterator[sqlite3.Connection]:
    try:
        with contextlib.closing(connect_read_only(db_path, settings.audit.busy_timeout_s)) as reader:
            yield reader
    except sqlite3.Error as exc:
        from ..audit.connect import store_error

        raise store_error(db_path, exc, settings.audit.busy_timeout_s) from None


def sync(settings: Settings, *, to: str | None = None, db: Path | None = None, progress: Progress | None = None,
         max_records: int | None = None) -> SyncResult:
    """Ship this device's unshipped records to the central MLflow at `to` (default `[sync] to`)."""
    uri = to or settings.sync.to
    if not uri:
        raise InputError("no central store to sync to: give --to URI or set [sync] to in govkit.toml", parameter="to")
    db_path, key = _opened(settings, db)
    central = Central(uri, retries=settings.sync.retries, parameter="to")
    try:
        with _reading(settings, db_path) as reader:
            return _sync(settings, central, reader, db_path, key, progress, max_records or settings.sync.segment_records)
    except CentralUnreachable as exc:
        raise CentralUnreachable(f"{exc}. Nothing was lost: every record the witness has not acknowledged stays in "
                            f"{db_path} and is shipped at the next sync, which resumes this one") from None
    finally:
        central.close()


def seal(settings: Settings, *, db: Path | None = None, max_records: int | None = None) -> SealResult:
    """Seal this device's complete segments ahead of the link (no network): the next sync only
    uploads them. Refused with `[sync] ship_content` on (sealed segments never hold content)."""
    if settings.sync.ship_content:
        raise InputError("[sync] ship_content is on: segments that carry content are built at sync time, so that an "
                         "erasure between sealing and shipping cannot leave a copy; nothing was sealed",
                         parameter="seal")
    db_path, key = _opened(settings, db)
    with _reading(settings, db_path) as reader:
        store_id, device_id = _identity(settings, reader, db_path)
        head = reader.execute("SELECT max(seq) FROM records").fetchone()[0] or 0
        return seal_segments(reader, db_path, head_seq=head, device_id=device_id, store_id=store_id,
                             private_key=key, max_records=max_records or settings.sync.segment_records)


def _identity(settings: Settings, db: sqlite3.Connection, db_path: Path) -> tuple[str, str]:
    """(store id, device id) of the store, checked against govkit.toml."""
    identity = store_identity(db)
    if identity is None:
        raise StoreNotFound(f"{db_path}: its first record does not name a store; only 'govkit init' creates one")
    store_id = identity["store_id"]
    if settings.audit.store_id and settings.audit.store_id != store_id:
        from ..errors import StoreMismatch

        raise StoreMismatch(f"{db_path}: store {store_id}, but govkit.toml names store {settings.audit.store_id}")
    return store_id, settings.audit.device_id or str(identity.get("device_id") or "") or store_id


def _sync(settings: Settings, central: Central, db: sqlite3.Connection, db_path: Path, key: Any,
          progress: Progress | None, max_records: int) -> SyncResult:
    from ..tracking import Tracker

    store_id, device_id = _identity(settings, db, db_path)
    head_seq, head_hash = db.execute("SELECT seq, record_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    experiment = Tracker.from_settings(settings, db_path).experiment
    experiment_id = central.experiment(experiment)
    assert experiment_id is not None
    runs = central.runs([experiment_id], f"{SYNC_FILTER} and tags.`govkit.device_id` = '{device_id}' "
                                         f"and tags.`govkit.store_id` = '{store_id}'")
    new_acks = _keep_acks(db_path, [r.data.tags["govkit.witness.ack"] for r in runs if "govkit.witness.ack" in r.data.tags])
    witness_key = settings.sync.witness_public_key
    acked = acknowledged_seq(db_path, witness_key, store_id) if witness_key else 0
    central_seq = _contiguous(_held_ranges(central, runs, acked))
    unfinished = next((r for r in reversed(runs) if r.data.tags.get("govkit.sync.status") == "uploading"), None)
    from ..tracking import _version

    # A sync with nothing new still ships the device's signed head: a heartbeat that shows the
    # device alive, and the evidence of a rollback behind what the witness cosigned.
    pending = f"{central_seq + 1}-{head_seq}" if head_seq > central_seq else "none"
    shipped: list[tuple[int, int]] = []
    totals: dict[str, int] = {}
    redactions: dict[str, int] = {}
    artifacts: dict[str, int] = {}
    size = 0
    total = head_seq - central_seq
    sealed = 0

    def planned() -> Iterator[Segment]:
        """The sealed segments that continue the central copy, then the rest built from the store."""
        nonlocal sealed
        start = central_seq + 1
        if not settings.sync.ship_content:
            from ..audit.checkpoints import public_key_b64

            for segment in usable_sealed(db, db_path, start=start, device_id=device_id, store_id=store_id,
                                         public_key=public_key_b64(key)):
                yield segment
                sealed, start = sealed + 1, segment.note.hi + 1
        if start <= head_seq:
            yield from build_segments(db, start=start, stop=head_seq, max_records=max_records, device_id=device_id,
                                      store_id=store_id, private_key=key, with_content=settings.sync.ship_content)

    segments = planned()

    # The run opens (or an interrupted one is cleaned) while the device reads the oversight
    # records and builds its first segment, or checks its sealed copy: the link's round trip and
    # the device's first work overlap.
    from concurrent.futures import Future, ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="govkit-open") as opener:
        if unfinished is not None:
            opening: Future[Any] = opener.submit(_clean_unfinished, central, unfinished)
        else:
            opening = opener.submit(central.create_run, experiment_id, f"sync {device_id} {pending}", {
                "govkit.operation": "sync", "govkit.principle": "Governance", "govkit.model_id": settings.model.id,
                "govkit.device_id": device_id, "govkit.store_id": store_id, "govkit.version": _version(),
                "govkit.sync.status": "uploading", "govkit.seq_range": pending, "govkit.chain_head": head_hash})
        oversight = _oversight_rows(db, central_seq + 1, head_seq)
        upcoming = next(segments, None)
        opened = opening.result()
    resumed = unfinished is not None
    run_id: str = unfinished.info.run_id if unfinished is not None else opened
    earlier: list[SegmentNote] = opened if resumed else []  # what the interrupted run already holds
    run_totals: dict[str, int] = {}  # the run's figures count what it already held, too
    run_redactions: dict[str, int] = {}
    for note in earlier:
        for total_of, part in zip((run_totals, run_redactions), tally_range(db, note.lo, note.hi)[:2]):
            add_counts(total_of, part)
    earlier_bytes = sum(note.size for note in earlier)

    def counted(segment: Segment) -> None:
        nonlocal size
        size += segment.note.size
        add_counts(totals, segment.counts)
        add_counts(redactions, segment.redactions)
        add_counts(artifacts, segment.artifacts)

    def metrics() -> dict[str, float]:
        """The run's figures: this sync's segments and, for a resumed run, those it already held."""
        counts, redacted = add_counts(dict(run_totals), totals), add_counts(dict(run_redactions), redactions)
        inferences = counts.get("inferences", 0)
        return {"records": counts.get("records", 0), "inference_volume": inferences,
                "overrides": counts.get("overrides", 0), "incidents": counts.get("incidents", 0),
                "purges": counts.get("purges", 0),
                "error_rate": (counts.get("errors", 0) / inferences) if inferences else 0.0,
                "bytes": earlier_bytes + size, **{f"redactions.{name}": n for name, n in sorted(redacted.items())}}

    # Two segment files upload at once while the next is built (three segments in memory at most);
    # each note (which makes its segment count as uploaded) goes once its own file is there and
    # every earlier note has been sent: notes arrive in seq order, so a sync cut short leaves
    # the run holding 1..n and nothing past a hole. The device's signed head (read before the
    # first segment) goes beside the first files; the run's metrics go with its "shipped" tags,
    # in one request after every note, so a shipped run always has its figures and a run with
    # figures is shipped.
    ts = utc_now()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="govkit-upload") as uploader:
        # The governance records go beside the first files; the first note waits for them, so no
        # segment counts as shipped before the oversight trail has arrived.
        first: Future[None] | None = uploader.submit(_ship_oversight, central, run_id, oversight) if oversight else None
        uploading: list[tuple[Future[None], Segment]] = []
        noting: list[tuple[Future[None], Segment | None]] = [
            (uploader.submit(central.upload, run_id, "head.note", head_note(
                key, device_id=device_id, store_id=store_id, seq=head_seq, head_hash=head_hash, ts=ts).encode("utf-8")),
             None)]

        def settle(*, wait: bool) -> None:
            while noting and (wait or noting[0][0].done()):
                future, done = noting.pop(0)
                future.result()  # a failed upload stops the sync here; the next one resumes
                if done is None:  # the head note
                    continue
                shipped.append((done.note.lo, done.note.hi))
                if progress:
                    progress(done.note.hi - central_seq, total)

        def note_uploaded(*, keep: int) -> None:
            """Notes for the oldest files in flight, in order, until `keep` files are left."""
            while len(uploading) > keep or (uploading and uploading[0][0].done()):
                future, done = uploading.pop(0)
                future.result()  # nothing is built past a failed upload
                if first is not None:
                    first.result()
                before = noting[-1][0] if noting else None
                noting.append((uploader.submit(_upload_note, central, run_id, done, before), done))

        for segment in itertools.chain([] if upcoming is None else [upcoming], segments):
            counted(segment)
            note_uploaded(keep=1)
            settle(wait=False)
            uploading.append((uploader.submit(_upload_file, central, run_id, segment), segment))
        note_uploaded(keep=0)
        settle(wait=True)
        # The run's range: a resumed run's starts where its first part did.
        run_lo = min([note.lo for note in earlier] + [lo for lo, _ in shipped[:1]], default=0)
        # The run's status (what the UI shows) and its "shipped" tags are independent: both at once.
        finished = uploader.submit(central.finish, run_id)
        central.set_tags(run_id, {
            "govkit.seq_range": f"{run_lo}-{head_seq}" if run_lo else "none", "govkit.chain_head": head_hash,
            "govkit.artifact_sha256": max(artifacts, key=artifacts.__getitem__) if artifacts else None,
            "govkit.sync.shipped_at": utc_now(), "govkit.sync.status": "shipped"}, metrics())
        finished.result()
    if settings.sync.ship_content and shipped:
        _note_content_shipped(db_path, _without_credentials(central.uri), run_id, shipped)
    forget_shipped(db_path, shipped[-1][1] if shipped else central_seq)
    return SyncResult(run_id, device_id, store_id, tuple(shipped), totals.get("records", 0), size, head_seq,
                      central_seq, acked, new_acks, resumed, totals, sealed)


def _held_ranges(central: Central, runs: list[Any], acked: int = 0) -> list[tuple[int, int]]:
    """The seq ranges this device's segments cover on the central store: those of finished syncs
    (their notes), and the completed segments of an unfinished one. A segment the witness
    rejected does not count: it is shipped again. A run whose range tag ends at or below `acked`,
    the highest seq the witness has cosigned (its signature checked), is taken at its tag and
    not listed again: a year of daily syncs costs a listing for the newest, not 365. A deleted
    run still leaves its hole, and a tag can only mislead within what the witness verified."""
    ranges: list[tuple[int, int]] = []
    for run in runs:
        tagged = _tagged_range(run.data.tags.get("govkit.seq_range", ""))
        if tagged is not None and acked and tagged[1] <= acked:
            if tagged[1]:  # "none": a heartbeat, holding no segment
                ranges.append(tagged)
            continue
        rejected = set(filter(None, run.data.tags.get("govkit.witness.rejected", "").split(",")))
        for path in central.list(run.info.run_id, "notes"):
            name = Path(path).stem
            if name in rejected:
                continue
            try:
                lo, hi = (int(part) for part in name.split("-")[:2])
            except ValueError:
                continue
            ranges.append((lo, hi))
    return ranges


def _tagged_range(tag: str) -> tuple[int, int] | None:
    """A `govkit.seq_range` tag as (lo, hi): "none" is (0, 0), anything else unparsable None."""
    if tag == "none":
        return 0, 0
    try:
        lo, hi = (int(part) for part in tag.split("-"))
    except ValueError:
        return None
    return (lo, hi) if 1 <= lo <= hi else None


def _contiguous(ranges: list[tuple[int, int]]) -> int:
    """The highest seq up to which the ranges cover 1..seq without a hole."""
    reached = 0
    for lo, hi in sorted(ranges):
        if lo > reached + 1:
            break
        reached = max(reached, hi)
    return reached


def _clean_unfinished(central: Central, run: Any) -> list[SegmentNote]:
    """An interrupted sync's run, before the sync goes on in it: files whose note never arrived
    are removed (they were cut short, and are shipped again). Returns the notes it holds."""
    paths = central.list(run.info.run_id, "notes")
    noted = {Path(p).stem for p in paths}
    for path in _parquet_files(central, run.info.run_id):
        if Path(path).stem not in noted:
            central.delete(run, path)
    notes = []
    for path in paths:
        with contextlib.suppress(InputError):  # a note that does not parse is the witness's to report
            notes.append(parse_segment_note(central.download(run.info.run_id, path).decode("utf-8", "replace"))[0])
    return notes


def _parquet_files(central: Central, run_id: str) -> list[str]:
    found: list[str] = []
    for device in central.list(run_id, "segments", dirs=True):
        for day in central.list(run_id, device, dirs=True):
            found.extend(p for p in central.list(run_id, day) if p.endswith(".parquet"))
    return found


def _upload_file(central: Central, run_id: str, segment: Segment) -> None:
    if segment.path is not None:  # sealed: the file itself, checked against its note just before
        central.upload_file(run_id, segment_path(segment.note), segment.path)
    else:
        central.upload(run_id, segment_path(segment.note), segment.data)


def _upload_note(central: Central, run_id: str, segment: Segment, after: Any = None) -> None:
    """The segment's note, once the note before it (`after`, a future) is there: notes arrive in order."""
    if after is not None:
        after.result()
    central.upload(run_id, f"notes/{segment.note.key}.note", segment.signed.encode("utf-8"))


def _oversight_rows(db: sqlite3.Connection, lo: int, hi: int) -> list[dict[str, Any]]:
    """The governance records (overrides, incidents, purges, lineage, bias, checks ...) of lo..hi."""
    from ..audit.querykeys import matching
    from .trail import GOVERNANCE_EVENTS

    # Through the query keys' event-type index, then the short unkeyed tail; a key that lies only
    # loses an early copy: the segments carry every record.
    found = matching(db, [("{t}.event_type IN (SELECT value FROM json_each(?))", json.dumps(GOVERNANCE_EVENTS))],
                     [("r.seq >= ?", lo), ("r.seq <= ?", hi)], None, False)
    return [record.fields | {"seq": record.seq, "record_hash": record.record_hash} for record in found]


def _ship_oversight(central: Central, run_id: str, rows: list[dict[str, Any]]) -> None:
    central.upload(run_id, "oversight/records.json", json.dumps(rows, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    overrides = [r for r in rows if r.get("event_type") == "override"]
    if overrides:
        columns = ("seq", "ts_start", "record_id", "target_record_id", "reviewer_id", "human_decision", "override_reason")
        table = {c: [str(r.get(c) or "") for r in overrides] for c in columns}
        central.log_table(run_id, table, "oversight/overrides.json")
