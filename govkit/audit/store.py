"""The append-only, hash-chained, durable audit store (SQLite in WAL mode).

An append returns only after its record is committed with `synchronous=FULL`. Concurrent
appends in one process share commits (groupcommit.py), and several processes may append to
one store: each commit reads the head under SQLite's write lock, so the chain stays linear.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._ids import new_ulid
from ..config import REDACTION_MODES, Settings, load_settings
from ..errors import (
    GovkitError,
    InputError,
    InvalidRecord,
    PurgeIncomplete,
    StoreCorrupt,
    StoreMismatch,
    StoreNotFound,
    StoreReplaced,
)
from ..timestamps import normalise_ts, parse_ts, utc_now, utc_text
from . import checkpoints, migrations, querykeys
from .connect import connect_read_only, store_error
from .groupcommit import GroupCommit, Pending
from .hashing import GENESIS_HASH, canonical_json, chain_hash, content_digest, encode_body
from .identity import store_identity
from .records import SCHEMA_VERSION, AuditRecord, check_fields
from .redact import Redactor
from .retention import purge_covers, purge_criteria
from .verify import VerifyResult, verify_store
from .writerlock import WriterLock

__all__ = ["AuditLog", "StoreWarning"]

HASH_ALGORITHM = "sha256/canonical-json-envelope/v1"


class StoreWarning(UserWarning):
    """Something the operator must know that does not fail the call (shown on stderr)."""


_CONTENT_FIELDS = {"prompt": "input_sha256", "response": "output_sha256"}
KEYS_EVERY = 256  # records appended between two updates of the query keys (see migrations.m002)



@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, rows: int) -> str:
    """One INSERT of many rows: a single statement step, where executemany() takes one per row
    (and gives up the GIL around each, which lets other threads cut in on the commit)."""
    return f"INSERT INTO {table} VALUES " + ",".join(["(?, ?, ?)"] * rows)


def _flat(rows: list[tuple[Any, Any, Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(rows))


@dataclass
class _CheckpointState:
    seq: int = -1  # the head seq the last checkpoint signed; -1: not looked up yet
    wall: float = 0.0


class AuditLog:
    """The audit log. Open with `AuditLog.open(path)` or `AuditLog.open()` (from ./govkit.toml)."""

    def __init__(self, path: str | Path, *, create: bool = False, read_only: bool = False,
                 redaction: str = "redacted",
                 patterns: tuple[tuple[str, str], ...] = (), retention_days: int = 183,
                 device_id: str = "", private_key: Any = None, public_key: str = "",
                 checkpoint_every: int = 1000, checkpoint_seconds: float = 300.0,
                 busy_timeout_s: float = 10.0, store_id: str = "", redaction_engine: Any = None):
        if redaction not in REDACTION_MODES:
            raise InputError(f"redaction mode '{redaction}': expected one of {', '.join(REDACTION_MODES)}")
        self.path = Path(path)
        self.read_only = read_only
        self.redaction = redaction
        self.retention_days = retention_days
        self.device_id = device_id
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.busy_timeout_s = busy_timeout_s
        self.expected_store_id = store_id
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the file this writer opened
        self._lost: dict[str, Any] | None = None  # since when the path no longer names that file
        self._sidecar_pending: list[dict[str, Any]] = []  # signed checkpoints the sidecar missed
        self._wal_emptied = True  # the last truncating checkpoint emptied the WAL
        if redaction_engine == "presidio":  # a reader redacts nothing: it needs no language model
            from .redact import presidio_engine

            redaction_engine = None if read_only else presidio_engine()
        self._redactor = Redactor(patterns, engine=None if redaction_engine in (None, "builtin") else redaction_engine)
        self._private_key = private_key
        if isinstance(private_key, (str, Path)):
            self._private_key = checkpoints.load_private_key(Path(private_key))
        if self._private_key is not None and not public_key:
            public_key = checkpoints.public_key_b64(self._private_key)
        self.public_key = public_key
        self._group = GroupCommit(self._commit, label=str(self.path))
        self._checkpoint = _CheckpointState()
        self._keyed_upto = 0  # the query keys cover records up to here (at least)
        if not self.path.exists():
            if not create or read_only:
                raise StoreNotFound(self._missing("no audit store here"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, not an audit database")
        elif not create and self.path.stat().st_size == 0:  # refused before SQLite writes a header
            raise StoreNotFound(self._missing("empty file, no audit store"))
        if read_only:
            self._writer: sqlite3.Connection | None = None
            self._read_schema()
            return
        self._writer_lock = WriterLock(self.path, busy_timeout_s)
        self._writer = self._connect()
        try:
            self._file_id = self._current_file_id()
            self._prepare_schema(create)
            self._flush_sidecar(reconcile=True)
        except BaseException:
            self._writer.close()
            self._writer_lock.close()
            raise

    @classmethod
    def open(cls, path: str | Path | None = None, *, settings: Settings | None = None,
             create: bool = False, **overrides: Any) -> AuditLog:
        """Open a store. With no path, path and policy come from ./govkit.toml (or `settings`).

        Only `create=True` (what `govkit init` does) makes a new store; otherwise a missing or
        empty file, or a store other than the one govkit.toml names, is refused (StoreError)."""
        if settings is None and path is None:
            settings = load_settings()
        options: dict[str, Any] = {}
        if settings is not None:
            audit, policy = settings.audit, settings.policy
            options = dict(redaction=policy.redaction, patterns=policy.patterns,
                           retention_days=policy.retention_days, device_id=audit.device_id,
                           public_key=audit.public_key, checkpoint_every=audit.checkpoint_every,
                           checkpoint_seconds=audit.checkpoint_seconds,
                           busy_timeout_s=audit.busy_timeout_s, store_id=audit.store_id,
                           redaction_engine=audit.redaction_engine)
            if audit.private_key.exists():
                options["private_key"] = audit.private_key
            path = path if path is not None else audit.db
        options.update(overrides)
        return cls(path, create=create, **options)  # type: ignore[arg-type]

    # -- connections and schema ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")  # purged text is overwritten, not just unlinked
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, self.busy_timeout_s) from None
        return conn

    def _prepare_schema(self, create: bool) -> None:
        db = self._writer_db()
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "_govkit_migrations" not in tables:
                raise StoreCorrupt(f"{self.path}: a SQLite database, but not a govkit audit store")
            if not tables and not create:
                raise StoreNotFound(self._missing("empty file, no audit store"))
            if migrations.pending(db):
                with self._writer_lock.held():
                    migrations.apply(db)
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if "store_id" not in meta or (self.public_key and "public_key" not in meta):
                with self._writer_lock.held():
                    self._init_meta(db)
            self.meta = dict(db.execute("SELECT key, value FROM meta"))
            self._check_identity(db)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, self.busy_timeout_s) from None

    def _missing(self, what: str) -> str:
        expected = f" (govkit.toml names store {self.expected_store_id})" if self.expected_store_id else ""
        return (f"{self.path}: {what}{expected}; only 'govkit init' creates an audit store, and no "
                f"writer makes a new one in place of a missing log")

    def _check_identity(self, db: sqlite3.Connection) -> None:
        """A writer appends only to the store it was meant for: the one govkit.toml names, whose
        first record (the genesis) fixes the same store id and public key as its metadata."""
        genesis = store_identity(db)
        store_id = self.meta.get("store_id")
        if genesis is None:
            raise StoreMismatch(f"{self.path}: its first record does not fix the store's identity "
                                f"(not a store 'govkit init' created, or its first record was replaced)")
        if genesis.get("store_id") != store_id:
            raise StoreMismatch(f"{self.path}: its metadata names store {store_id}, but its first record "
                                f"fixes store {genesis.get('store_id')}: the store was altered")
        if self.expected_store_id and store_id != self.expected_store_id:
            raise StoreMismatch(f"{self.path}: holds store {store_id}, but govkit.toml names store "
                                f"{self.expected_store_id}; nothing was written")
        bound_key = genesis.get("public_key")
        if bound_key and self.public_key and bound_key != self.public_key:
            raise StoreMismatch(f"{self.path}: store {store_id} was created for device key "
                                f"{checkpoints.key_id(bound_key)}, not {checkpoints.key_id(self.public_key)}")

    def _current_file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _check_file(self) -> None:
        """Before a commit: the path must still name the file this writer opened. A file moved
        over it, or the store unlinked, would take every later acknowledged record with it."""
        now = self._current_file_id()
        if now == self._file_id:
            return
        found = "removed" if now is None else "replaced by another file"
        if self._lost is None:
            self._lost = {"since": utc_now(), "refused_commits": 0, "found": found}
            warnings.warn(f"{self.path}: the audit store was {found} while govkit had it "
                          f"open; nothing more is acknowledged until the original store is back at this path",
                          StoreWarning, stacklevel=2)
        self._lost["refused_commits"] += 1
        self._lost["found"] = found
        raise StoreReplaced(f"{self.path}: the audit store was {found} while open "
                            f"(store {self.meta.get('store_id')}); nothing was acknowledged")

    def _read_schema(self) -> None:
        """Open for reading only: no migration, no metadata written, nothing changed on disk
        (an auditor's copy of a device's log is evidence)."""
        with self._reader() as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                raise StoreNotFound(self._missing("empty file, no audit store"))
            if not {"_govkit_migrations", "records", "meta"} <= tables:
                raise StoreCorrupt(f"{self.path}: a SQLite database, but not a govkit audit store")
            self.meta = dict(db.execute("SELECT key, value FROM meta"))

    def _writable(self) -> None:
        if self.read_only:
            raise InputError(f"{self.path}: the audit log is open read-only")

    def _init_meta(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if "store_id" not in meta:
                if db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is not None:
                    raise StoreCorrupt(f"{self.path}: holds records but no store identity in its metadata "
                                       f"(the metadata was removed)")
                store_id, created = new_ulid(), utc_now()
                identity = {"store_id": store_id, "created_at": created, "hash_algorithm": HASH_ALGORITHM}
                if self.device_id:
                    identity["device_id"] = self.device_id
                if self.public_key:
                    identity.update(public_key=self.public_key, public_key_id=checkpoints.key_id(self.public_key))
                body = self._store_record("genesis", created, identity)
                db.execute("INSERT INTO records (seq, body, record_hash) VALUES (1, ?, ?)",
                           (body, chain_hash(body, GENESIS_HASH, 1)))
                db.executemany("INSERT INTO meta VALUES (?, ?)",
                               [("store_id", store_id), ("created_at", created),
                                ("hash_algorithm", HASH_ALGORITHM)])
            if self.public_key and "public_key" not in meta:
                db.execute("INSERT INTO meta VALUES ('public_key', ?)", (self.public_key,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Wait for queued appends to commit, then close the store."""
        self._group.close()
        if self._sidecar_pending:
            self._flush_sidecar()
        if self._writer is not None:
            self._writer.close()
            self._writer_lock.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redact(self, text: str, *, field: str = "text") -> str:
        """Free text as this log's policy lets it reach the chain: redacted (recognizers and
        policy patterns) in every mode, since the chain cannot be purged. `field` names the text
        in the error when it is not valid UTF-8."""
        return self._redactor.redact(_as_text(field, text)).text

    def _store_record(self, event_type: str, ts: str, details: dict[str, Any]) -> bytes:
        """The body of a record the store writes itself (the genesis, a checkpoint)."""
        return canonical_json({"record_id": new_ulid(), "schema_version": SCHEMA_VERSION, "event_type": event_type,
                               "ts_start": ts, **({"device_id": self.device_id} if self.device_id else {}),
                               "details": details})

    # -- appending ----------------------------------------------------------------------------

    def append(self, event_type: str, *, prompt: str | None = None, response: str | None = None,
               **fields: Any) -> AuditRecord:
        """Append one record; returns once it is committed and synced to disk.

        `prompt` and `response` are content: redacted per policy and kept in the content table
        (purgeable); the chained record keeps only their digests and the redaction summary.
        """
        self._writable()
        item = self._prepare(event_type, prompt, response, fields)
        self._group.submit([item])
        assert item.record is not None
        return item.record

    async def journal_async(self, request_seq: int, part: int, size: int, running_sha256: str, *,
                            inline_when_idle: bool = False) -> None:
        """Make durable that part `part` of the streamed answer to the request at `request_seq`
        (`size` bytes; `running_sha256` over every byte forwarded so far) is about to be
        forwarded: returns once it is committed and synced, with every other caller's records."""
        self._writable()
        item = Pending(b"", [], journal=(request_seq, part, size, running_sha256, utc_now()))
        await self._group.submit_async(item, inline_when_idle=inline_when_idle)

    def recover_streams(self) -> list[AuditRecord]:
        """Streams whose final record never came (the process died mid-answer): for each, chain an
        incident naming the request and what reached the client (parts, bytes, sha256), and
        clear its journal rows, in one transaction. Returns the incidents."""
        with self._maintenance() as db:
            rows = db.execute("SELECT request_seq, count(*), sum(bytes), max(part), max(ts) FROM stream_journal "
                              "GROUP BY request_seq ORDER BY request_seq").fetchall()
            incidents = []
            for request_seq, parts, size, last, ts in rows:
                digest = db.execute("SELECT sha256 FROM stream_journal WHERE request_seq = ? AND part = ?",
                                    (request_seq, last)).fetchone()[0]
                request = db.execute("SELECT json_extract(CAST(body AS TEXT), '$.record_id') FROM records "
                                     "WHERE seq = ?", (request_seq,)).fetchone()
                incidents.append(self._chain_event(db, "incident", {
                    "kind": "stream_without_record", "request_seq": request_seq,
                    "request_record_id": request[0] if request else None, "parts_forwarded": parts,
                    "bytes_forwarded": size, "sha256_forwarded": digest, "last_forwarded_at": ts}, None))
            db.execute("DELETE FROM stream_journal")
        return incidents

    async def append_async(self, event_type: str, *, prompt: str | None = None,
                           response: str | None = None, inline_when_idle: bool = False,
                           seals_journal: int | None = None, **fields: Any) -> AuditRecord:
        """append() for asyncio code: the event loop does not wait on the disk.

        A background thread commits (group commit with every other caller); the coroutine
        resumes once its record is committed and synced. `inline_when_idle`: when nothing else
        is being written, commit right away on this thread (lower latency for a lone request;
        blocks the loop for one fsync), as govkit proxy does when it serves a single request.
        """
        self._writable()
        item = self._prepare(event_type, prompt, response, fields)
        item.seals = seals_journal
        await self._group.submit_async(item, inline_when_idle=inline_when_idle)
        assert item.record is not None
        return item.record

    def append_many(self, records: Iterable[dict[str, Any]]) -> list[AuditRecord]:
        """Append several records, up to 256 per durable commit; each dict holds `event_type`
        plus the keyword arguments of append(). For imports, sync and bulk evidence."""
        self._writable()
        items = []
        for spec in records:
            spec = dict(spec)
            items.append(self._prepare(spec.pop("event_type", None), spec.pop("prompt", None),
                                       spec.pop("response", None), spec))
        if items:
            self._group.submit(items)
        return [item.record for item in items if item.record is not None]

    def _prepare(self, event_type: str, prompt: Any, response: Any, fields: dict[str, Any]) -> Pending:
        check_fields(event_type, fields)
        body = {name: value for name, value in fields.items() if value is not None}
        now_ns = time.time_ns()
        body["record_id"] = new_ulid(now_ns)
        body["schema_version"] = SCHEMA_VERSION
        body["event_type"] = event_type
        if "ts_start" not in body:
            body["ts_start"] = utc_text(now_ns)
        if self.device_id:
            body.setdefault("device_id", self.device_id)
        contents: list[tuple[str, str]] = []
        entities: dict[str, int] = {}
        for kind, text in (("prompt", prompt), ("response", response)):
            if text is None:
                continue
            text = _as_text(kind, text)
            if self.redaction == "redacted":
                redaction = self._redactor.redact(text)
                text = redaction.text
                for name, count in redaction.counts.items():
                    entities[name] = entities.get(name, 0) + count
            body[_CONTENT_FIELDS[kind]] = content_digest(text)
            if self.redaction != "digest-only":
                contents.append((kind, text))
        if prompt is not None or response is not None:
            body["content_mode"] = self.redaction
            body["redaction"] = {"mode": self.redaction, "entities": dict(sorted(entities.items()))}
            if "expires_at" not in body:
                expiry = parse_ts(body["ts_start"]) + dt.timedelta(days=self.retention_days)
                body["expires_at"] = expiry.isoformat(timespec="microseconds").replace("+00:00", "Z")
            body.setdefault("retention_class", "standard")
        try:
            encoded = encode_body(body)  # check_fields has refused NaN and infinity
        except ValueError as exc:
            raise InvalidRecord(f"record cannot be stored as JSON: {exc}") from None
        return Pending(encoded, contents)

    def _writer_db(self) -> sqlite3.Connection:
        assert self._writer is not None, "a read-only log has no writer connection"
        return self._writer

    def _commit(self, batch: list[Pending], before_sync: Any = None, *,
                force_checkpoint: bool = False) -> dict[str, Any] | None:
        """Write a batch (and a checkpoint when due) in one transaction; see GroupCommit."""
        db = self._writer_db()
        signed = None
        alone = not batch  # a checkpoint with no records: its error is raised, not handed out
        try:
            lock = self._writer_lock.acquire()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._check_file()
                    seq, prev = self._head(db)
                    rows: list[tuple[int, bytes, str]] = []
                    content_rows: list[tuple[int, str, str]] = []
                    if self._lost is not None:  # the store is back: say first what happened meanwhile
                        batch = [self._prepare("incident", None, None, {"details": {
                            "action": "audit store missing from its path", **self._lost,
                            "back": utc_now()}}), *batch]
                    journal_rows: list[tuple[int, int, int, str, str]] = []
                    sealed: list[tuple[int]] = []
                    for item in batch:
                        if item.journal is not None:  # not a record: a durable note of what a stream forwarded
                            journal_rows.append(item.journal)
                            continue
                        if item.seals is not None:
                            sealed.append((item.seals,))
                        seq += 1
                        record_hash = chain_hash(item.body, prev, seq)
                        rows.append((seq, item.body, record_hash))
                        item.record = AuditRecord(seq, record_hash, prev, item.body)
                        if item.contents:
                            content_rows.extend((seq, kind, text) for kind, text in item.contents)
                        prev = record_hash
                    signed = self._checkpoint_due(db, seq, prev, force_checkpoint)
                    if signed is not None:
                        body = self._store_record("checkpoint", signed["ts"], signed)
                        seq += 1
                        rows.append((seq, body, chain_hash(body, prev, seq)))
                    if len(rows) == 1:
                        db.execute("INSERT INTO records (seq, body, record_hash) VALUES (?, ?, ?)", rows[0])
                    elif rows:
                        db.execute(_insert_sql("records (seq, body, record_hash)", len(rows)), _flat(rows))
                    if content_rows:
                        db.execute(_insert_sql("content (seq, kind, text)", len(content_rows)), _flat(content_rows))
                    if journal_rows:
                        db.executemany("INSERT OR REPLACE INTO stream_journal (request_seq, part, bytes, sha256, ts) "
                                       "VALUES (?, ?, ?, ?, ?)", journal_rows)
                    if sealed:
                        db.executemany("DELETE FROM stream_journal WHERE request_seq = ?", sealed)
                    if seq - self._keyed_upto >= KEYS_EVERY:
                        self._key_records(db, seq)
                    if before_sync is not None:
                        before_sync()
                    db.execute("COMMIT")
                    self._lost = None
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            finally:
                self._writer_lock.release(lock)
        except (sqlite3.Error, GovkitError) as exc:
            error = exc if isinstance(exc, GovkitError) else store_error(self.path, exc, self.busy_timeout_s)
            self._checkpoint = _CheckpointState()
            self._keyed_upto = 0
            for item in batch:
                item.record, item.error = None, error
            if alone:
                raise error from None
            return None
        if signed is not None:
            self._checkpoint = _CheckpointState(signed["seq"], time.time())
            self._sidecar_pending.append(signed)
        if self._sidecar_pending:
            self._flush_sidecar()
        return signed

    def _flush_sidecar(self, *, reconcile: bool = False) -> None:
        """Copy signed checkpoints to the sidecar file. One that could not be written (a full
        disk) is kept and written after the next commit or at close, once space returns.
        `reconcile`: also copy the chain's newest checkpoint if the sidecar lacks it (a process
        that died between its commit and the copy)."""
        if reconcile and self._private_key is not None:
            with self._reader() as db:
                newest = querykeys.last_checkpoint(db)
            if newest is not None:
                signed = json.loads(newest.body).get("details") or {}
                have, _ = checkpoints.read_sidecar(checkpoints.sidecar_path(self.path))
                if signed and not any(cp.get("signature") == signed.get("signature") for cp in have):
                    self._sidecar_pending.append(signed)
        while self._sidecar_pending:
            try:
                checkpoints.append_sidecar(self.path, self._sidecar_pending[0])
            except (OSError, GovkitError) as exc:
                # The checkpoint is committed in the chain; only its off-log copy waits.
                warnings.warn(f"checkpoint at seq {self._sidecar_pending[0]['seq']} not yet copied to the "
                              f"sidecar ({exc}); it is written once the disk has room", StoreWarning, stacklevel=2)
                return
            self._sidecar_pending.pop(0)

    def _key_records(self, db: sqlite3.Connection, head_seq: int) -> None:
        """Add the query keys of the records not yet keyed, once KEYS_EVERY have gathered (any
        process may have done it meanwhile: look first). Runs inside the append's transaction.

        Keys that cannot be written (their table damaged or removed) must not stop the log from
        recording: the append goes on, queries scan the records the keys do not cover, and a
        warning says so."""
        keyed = querykeys.keyed_upto(db)
        if head_seq - keyed >= KEYS_EVERY:
            try:
                db.execute(querykeys.KEYS_AFTER, (keyed,))
            except (sqlite3.IntegrityError, sqlite3.OperationalError) as exc:
                if isinstance(exc, sqlite3.OperationalError) and "no such" not in str(exc):
                    raise  # locked, full, I/O: the append fails cleanly like any other
                warnings.warn(f"{self.path}: query keys not updated ({exc}); queries scan the records "
                              f"instead. verify still checks every record", stacklevel=2)
            keyed = head_seq
        self._keyed_upto = keyed

    @staticmethod
    def _head(db: sqlite3.Connection) -> tuple[int, str]:
        row = db.execute("SELECT seq, record_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def _checkpoint_due(self, db: sqlite3.Connection, head_seq: int, head_hash: str,
                        force: bool) -> dict[str, Any] | None:
        if self._private_key is None or head_seq == 0:
            if force:
                raise InputError("no device key: run 'govkit init' or pass private_key= to sign checkpoints")
            return None
        state = self._checkpoint
        if not force and state.seq >= 0:
            due = (head_seq - state.seq >= self.checkpoint_every
                   or time.time() - state.wall >= self.checkpoint_seconds)
            if not due:
                return None
        # Look at the log itself: another process may have signed one meanwhile.
        row = querykeys.last_checkpoint(db)
        if row is None:  # nothing signed yet: the interval runs from the store's creation
            last_seq, last_wall = 0, parse_ts(self.meta["created_at"]).timestamp()
        else:
            details = json.loads(row.body)["details"]
            last_seq, last_wall = details["seq"], parse_ts(details["ts"]).timestamp()
            if row.seq == head_seq:  # the head is a checkpoint: nothing new to sign
                last_seq = head_seq
        self._checkpoint = _CheckpointState(last_seq, last_wall)
        if last_seq == head_seq:
            return None
        if not force and head_seq - last_seq < self.checkpoint_every and (
                time.time() - last_wall < self.checkpoint_seconds or head_seq == last_seq):
            return None
        return checkpoints.sign_checkpoint(self._private_key, store_id=self.meta["store_id"],
                                           seq=head_seq, head_hash=head_hash, ts=utc_now(),
                                           device_id=self.device_id)

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current head now; returns the checkpoint (None if the head is already signed)."""
        self._writable()
        with self._group.exclusive():
            return self._commit([], force_checkpoint=True)

    # -- purge and key rebuilds: maintenance beside the group commit --------------------------

    def purge(self, *, expired: bool = False, before: str | None = None,
              subject_ref: str | None = None, reason: str | None = None,
              now: str | None = None, upto_seq: int | None = None) -> AuditRecord:
        """Erase stored content (never the chained records) and chain a `purge` event saying so.

        `expired`: content past its expires_at; `before`: content of records started before that
        time; `subject_ref`: an erasure request for one data subject. Records under legal hold
        are kept. Criteria combine with AND; `upto_seq` keeps every record after it (a fleet
        device's content waits for the witness's acknowledgement).
        """
        criteria = purge_criteria(expired=expired, before=before, subject_ref=subject_ref, now=now, upto_seq=upto_seq)
        with self._maintenance(truncate_wal=True) as db:
            pending = dict(db.execute("SELECT key, value FROM meta WHERE key = 'purge_pending'"))
            covered = [(row_seq, kind) for row_seq, kind, body in db.execute(
                "SELECT c.seq, c.kind, r.body FROM content c JOIN records r ON r.seq = c.seq "
                "WHERE c.text IS NOT NULL ORDER BY c.seq") if purge_covers(criteria, json.loads(body), row_seq)]
            details = {"criteria": criteria, "purged_items": len(covered),
                       "purged_records": len({row_seq for row_seq, _ in covered})}
            record = self._chain_event(db, "purge", details, reason)
            db.executemany("UPDATE content SET text = NULL, purged_by = ? WHERE seq = ? AND kind = ?",
                           [(record.seq, row_seq, kind) for row_seq, kind in covered])
            # Until the WAL is checkpointed and emptied, its older frames still hold the erased
            # text: say so in the store until a purge completes (verify reads it).
            db.execute("INSERT OR REPLACE INTO meta VALUES ('purge_pending', ?)",
                       (pending.get("purge_pending") or str(record.seq),))
        if self._wal_emptied:  # the marker holds no erased text: its own removal needs no truncation
            with self._maintenance() as db:
                db.execute("DELETE FROM meta WHERE key = 'purge_pending'")
        else:
            raise PurgeIncomplete(
                f"{self.path}: purge recorded (seq {record.seq}, {details['purged_items']} item(s)), but an open "
                f"reader keeps the write-ahead log from being emptied, so the erased text is still on disk; close "
                f"the readers (other govkit commands, backups, viewers) and run the purge again to finish it",
                record)
        return record

    def rebuild_keys(self, *, reason: str | None = None) -> AuditRecord | None:
        """Make the query keys anew from the records' bodies, and chain an `incident` saying so;
        None, with nothing changed and nothing chained, when the keys were right.

        The keys (migrations m002) are derived data that filtered queries read. When verify
        finds them edited, missing or damaged, this repairs them; the record keeps how many
        rows were wrong or missing. The records themselves are not touched: a damaged body stays
        damaged (keyed with nulls), and verify still reports it.
        """
        try:
            return self._rebuild_keys(reason)
        except _KeysHealthy:
            return None

    def _rebuild_keys(self, reason: str | None) -> AuditRecord:
        with self._maintenance() as db:
            head_seq = self._head(db)[0]
            old = querykeys.copy_keys(db)
            migrations.rebuild_keys(db)
            details: dict[str, Any] = {"action": "query keys rebuilt", "keyed_records": head_seq}
            if old:
                details["wrong_rows_removed"] = db.execute(
                    "SELECT count(*) FROM (SELECT * FROM temp.old_keys EXCEPT SELECT * FROM main.record_keys)").fetchone()[0]
                # Up to the old last key only: the records after it were not keyed yet, as usual.
                details["missing_rows_added"] = db.execute(
                    "SELECT count(*) FROM (SELECT * FROM main.record_keys WHERE seq <= "
                    "(SELECT coalesce(max(seq), 0) FROM temp.old_keys) EXCEPT SELECT * FROM temp.old_keys)").fetchone()[0]
                db.execute("DROP TABLE temp.old_keys")
                if not details["wrong_rows_removed"] and not details["missing_rows_added"]:
                    raise _KeysHealthy  # rolls the rebuild back: healthy keys are left as they were
            else:
                details["previous_keys"] = "missing or unreadable"
            record = self._chain_event(db, "incident", details, reason)
        self._keyed_upto = head_seq
        return record

    @contextmanager
    def _maintenance(self, *, truncate_wal: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction beside the group commit (purge, key rebuilds): it holds the lead
        and the writer lock, commits when the block ends and rolls back on any error."""
        self._writable()
        db = self._writer_db()
        with self._group.exclusive(), self._writer_lock.held():
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._check_file()
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                if truncate_wal:  # move overwritten pages out of the WAL too: no old copy lingers on disk
                    busy, frames, copied = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    self._wal_emptied = busy == 0 and frames == copied
            except sqlite3.Error as exc:
                raise store_error(self.path, exc, self.busy_timeout_s) from None

    def _chain_event(self, db: sqlite3.Connection, event_type: str, details: dict[str, Any],
                     reason: str | None) -> AuditRecord:
        """Append, inside a _maintenance() transaction, the record of what it did."""
        seq, prev = self._head(db)
        fields: dict[str, Any] = {"details": details}
        if reason:
            fields["override_reason"] = self.redact(reason, field="reason")
        item = self._prepare(event_type, None, None, fields)
        record = AuditRecord(seq + 1, chain_hash(item.body, prev, seq + 1), prev, item.body)
        db.execute("INSERT INTO records (seq, body, record_hash) VALUES (?, ?, ?)",
                   (record.seq, record.body, record.record_hash))
        return record

    # -- reading ------------------------------------------------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            db = connect_read_only(self.path, self.busy_timeout_s)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, self.busy_timeout_s) from None
        try:
            yield db
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, self.busy_timeout_s) from None
        finally:
            db.close()

    def query(self, *, event_type: str | None = None, since: str | None = None,
              until: str | None = None, subject_ref: str | None = None,
              target_record_id: str | None = None, limit: int | None = None,
              newest_first: bool = False) -> Iterator[AuditRecord]:
        """Records by time range (ts_start, ISO 8601 UTC) and event type, in chain order."""
        keyed, other = [], []  # (condition with {t} for the table, value)
        for column, op, value in (("event_type", "=", event_type), ("ts_start", ">=", since),
                                  ("ts_start", "<", until)):
            if value is not None:
                keyed.append((f"{{t}}.{column} {op} ?", normalise_ts(value) if column == "ts_start" else value))
        if subject_ref is not None:
            other.append(("r.subject_ref = ?", subject_ref))
        if target_record_id is not None:
            other.append(("json_extract(CAST(r.body AS TEXT), '$.target_record_id') = ?", target_record_id))
        yield from self._select(keyed, other, limit, newest_first)

    def __iter__(self) -> Iterator[AuditRecord]:
        return self.query()

    def get(self, record_id_or_seq: str | int) -> AuditRecord | None:
        key = str(record_id_or_seq)
        if key.isdigit():
            if int(key) >= 2**63:  # past any seq SQLite can hold: no such record
                return None
            return querykeys.first(self._select([], [("r.seq = ?", int(key))], 1, False))
        return querykeys.first(self._select([("{t}.record_id = ?", key)], [], 1, False))

    def _select(self, keyed: list[tuple[str, Any]], other: list[tuple[str, Any]], limit: int | None,
                newest_first: bool) -> Generator[AuditRecord, None, None]:
        with self._reader() as db:
            db.execute("BEGIN")  # one snapshot for both parts
            yield from querykeys.matching(db, keyed, other, limit, newest_first)

    def content(self, record: AuditRecord | int) -> dict[str, str | None]:
        """The stored prompt/response of a record; None where purged."""
        seq = record.seq if isinstance(record, AuditRecord) else int(record)
        with self._reader() as db:
            return {kind: text for kind, text in db.execute(
                "SELECT kind, text FROM content WHERE seq = ? ORDER BY kind", (seq,))}

    def stats(self) -> dict[str, Any]:
        with self._reader() as db:
            db.execute("BEGIN")
            upto = querykeys.keyed_upto(db)
            by_type, times = {}, []
            if upto:
                by_type = dict(db.execute("SELECT event_type, count(*) FROM record_keys GROUP BY event_type"))
                times = list(db.execute("SELECT (SELECT min(ts_start) FROM record_keys), "
                                        "(SELECT max(ts_start) FROM record_keys)"))
            for event_type, n, low, high in db.execute("SELECT event_type, count(*), min(ts_start), max(ts_start) "
                                                       "FROM records WHERE seq > ? GROUP BY event_type", (upto,)):
                by_type[event_type] = by_type.get(event_type, 0) + n
                times.append((low, high))
            firsts, lasts = [t[0] for t in times if t[0] is not None], [t[1] for t in times if t[1] is not None]
            first, last = min(firsts, default=None), max(lasts, default=None)
            count = sum(by_type.values())
            by_type = dict(sorted(by_type.items(), key=lambda item: str(item[0])))
            stored, purged = db.execute(
                "SELECT count(text), count(*) - count(text) FROM content").fetchone()
            head_seq, head_hash = self._head(db)
            checkpoint = querykeys.last_checkpoint(db)
            signed = json.loads(checkpoint.body) if checkpoint else None
            last_cp = (signed.get("details", {}).get("seq"), signed.get("ts_start")) if signed else None
        return {
            "path": str(self.path), "store_id": self.meta.get("store_id"), "records": count,
            "by_event_type": by_type, "first_ts": first, "last_ts": last,
            "head_seq": head_seq, "head_hash": head_hash,
            "content_stored": stored, "content_purged": purged,
            "last_checkpoint_seq": last_cp[0] if last_cp else None,
            "last_checkpoint_ts": last_cp[1] if last_cp else None,
            "unsigned_records": head_seq - (last_cp[0] if last_cp else 0),
            "bytes": sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists()),
        }

    def verify(self, *, public_key: str | None = None, checkpoint_files: Iterable[str | Path] = (),
               store_id: str | None = None, workers: int | None = None) -> VerifyResult:
        """Check every record, its content, the store's identity and the signed checkpoints (the
        on-device checkpoint file and any off-device copies in `checkpoint_files`); see govkit.audit.verify.

        `public_key` and `store_id` default to the ones the config names. Large logs are scanned
        in `workers` processes (default: one per core, at most 4).
        """
        with self._reader() as db:
            return verify_store(db, self.path, public_key=public_key or self.public_key,
                                meta_public_key=self.meta.get("public_key"),
                                checkpoint_files=tuple(Path(p) for p in checkpoint_files),
                                expected_store_id=store_id or self.expected_store_id, workers=workers)


class _KeysHealthy(Exception):
    """The query keys matched the records: the rebuild is rolled back."""


def _as_text(kind: str, text: Any) -> str:
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord(f"{kind} is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(text, str):
        raise InvalidRecord(f"{kind} must be text, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecord(f"{kind} is not valid UTF-8 text (position {exc.start})") from None
    return text


