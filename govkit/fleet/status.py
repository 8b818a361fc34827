"""Reading the fleet from the central store alone: each device's state, and a device's whole
chain verified from its segments (`govkit audit verify --from-mlflow`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, TrackingError
from .central import SYNC_FILTER, Central, is_deleted
from .notes import verify_note
from .registry import Device
from .segments import SegmentNote, check_segment, parse_head_note, parse_segment_note, segment_path, segment_rows, signed_by

__all__ = ["DeviceStatus", "fleet_status", "signed_verdict", "verdict_holds", "verify_device"]


@dataclass
class DeviceStatus:
    device_id: str
    store_id: str
    enrolled: bool
    syncs: int = 0
    last_sync: str | None = None
    shipped_seq: int = 0
    acked_seq: int = 0
    records: int = 0  # records in acknowledged syncs
    days_silent: float | None = None
    silent: bool = False
    late_acks: int = 0
    unchecked: int = 0  # shipped syncs the witness has not looked at yet
    unverified_figures: int = 0  # syncs whose range and records come from MLflow's tags, not a signed verdict
    findings: dict[str, list[str]] = field(default_factory=dict)  # kind -> details

    @property
    def healthy(self) -> bool:
        return self.enrolled and not self.silent and not self.late_acks and not any(
            k in self.findings for k in ("fork", "rollback", "altered", "unknown", "gap", "deleted", "missing",
                                         "unapproved", "monitoring_breach"))

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "store_id": self.store_id, "enrolled": self.enrolled,
                "syncs": self.syncs, "last_sync": self.last_sync, "shipped_seq": self.shipped_seq,
                "acked_seq": self.acked_seq, "records": self.records,
                "days_silent": None if self.days_silent is None else round(self.days_silent, 2),
                "silent": self.silent, "late_acks": self.late_acks, "unchecked": self.unchecked,
                "unverified_figures": self.unverified_figures,
                "findings": self.findings, "healthy": self.healthy}


def _ms(ts: str | None) -> int | None:
    if not ts:
        return None
    from ..timestamps import parse_ts

    return int(parse_ts(ts).timestamp() * 1000)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fleet_status(central: Central, experiment_ids: list[str], *, registry: dict[tuple[str, str], Device] | None = None,
                 witness_key: str | None = None, as_of: str | None = None, silent_days: float = 7.0,
                 late_hours: float = 24.0) -> list[DeviceStatus]:
    """Every device's state as the central store shows it at `as_of` (default now): syncs and their
    witness verdicts. With `witness_key`, an acknowledgement counts only if its cosignature verifies."""
    from .witness import verdict_figures

    now_ms = _ms(as_of) or int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    states: dict[tuple[str, str], DeviceStatus] = {}
    for key in (registry or {}):
        states[key] = DeviceStatus(key[0], key[1], True)
    for run in central.runs(experiment_ids, SYNC_FILTER, deleted=True):
        if run.info.start_time > now_ms:
            continue
        tags = run.data.tags
        key = (tags.get("govkit.device_id", ""), tags.get("govkit.store_id", ""))
        state = states.setdefault(key, DeviceStatus(key[0], key[1], registry is None))
        if is_deleted(run):  # its files are still read by the witness and by verify
            state.findings.setdefault("deleted", []).append(
                f"run {run.info.run_id}: marked deleted in MLflow (a deletion is a finding, not an erasure of evidence)")
        state.syncs += 1
        state.last_sync = max(state.last_sync or "", _iso(run.info.start_time))
        if tags.get("govkit.sync.status") != "shipped":
            continue
        try:
            hi = int(tags.get("govkit.seq_range", "0-0").split("-")[1])
        except (ValueError, IndexError):
            hi = 0
        if not witness_key:  # MLflow's tag, unverified (and said so): with the key, from the signed verdict below
            state.shipped_seq = max(state.shipped_seq, hi)
        checked_ms = _ms(tags.get("govkit.witness.checked_at"))
        verdict = tags.get("govkit.witness.status") if checked_ms is not None and checked_ms <= now_ms else None
        shipped_ms = _ms(tags.get("govkit.sync.shipped_at")) or run.info.start_time
        if verdict is None:
            state.unchecked += 1
            if now_ms - shipped_ms > late_hours * 3_600_000:
                state.late_acks += 1
            continue
        signed = signed_verdict(run, witness_key) if witness_key else None
        if witness_key and signed is None:
            # The witness signs each verdict: tags that do not match what it signed were edited (or
            # written by something else). Nothing of them is believed.
            state.findings.setdefault("altered", []).append(
                f"run {run.info.run_id}: its witness tags (status, time, findings) are not what the witness signed")
            continue
        figures = verdict_figures(signed) if signed is not None else None
        if signed is not None:
            if figures is None:  # a verdict signed before the witness signed its figures
                state.unverified_figures += 1
            else:
                state.shipped_seq = max(state.shipped_seq, figures[1])
        if checked_ms is not None and checked_ms - shipped_ms > late_hours * 3_600_000:
            state.late_acks += 1
        for kind in ("unapproved", "monitoring_breach"):  # the newest verdict's state, not every run's
            state.findings.pop(kind, None)
        for item in filter(None, tags.get("govkit.witness.findings", "").split("; ")):
            kind, _, detail = item.partition(": ")
            state.findings.setdefault(kind, []).append(detail)
        ack = tags.get("govkit.witness.ack")
        if ack and verdict in ("acknowledged", "duplicate", "rejected", "held"):
            try:
                note, parsed = parse_segment_note(ack, source="govkit.witness.ack")
            except InputError:
                state.findings.setdefault("altered", []).append(f"run {run.info.run_id}: its ack is not a segment note")
                continue
            if witness_key and not verify_note(parsed, witness_key, "witness"):
                state.findings.setdefault("altered", []).append(f"run {run.info.run_id}: its ack's cosignature does not verify")
                continue
            state.acked_seq = max(state.acked_seq, note.hi)
        if verdict == "acknowledged":
            if figures is not None:
                state.records += figures[2]
            else:  # MLflow's metric: unverified, and counted as such
                state.records += int(run.data.metrics.get("records", 0))
                if witness_key:
                    state.unverified_figures += 1
    for state in states.values():
        if state.last_sync is None:
            state.silent = True
        else:
            state.days_silent = (now_ms - (_ms(state.last_sync) or 0)) / 86_400_000
            state.silent = state.days_silent > silent_days
        if not state.enrolled:
            state.findings.setdefault("unknown", []).append("not in the device registry")
    return sorted(states.values(), key=lambda s: (s.device_id, s.store_id))


def verdict_holds(run: Any, witness_key: str) -> bool:
    """Whether the run's witness tags (status, time, findings) are what the witness signed."""
    return signed_verdict(run, witness_key) is not None


def signed_verdict(run: Any, witness_key: str) -> str | None:
    """The text of the verdict the witness signed for this run, when it verifies and the run's
    witness tags (status, time, findings) are what it states; else None."""
    from .notes import parse_note
    from .witness import VERDICT_MAGIC, findings_digest, verdict_fields

    tags = run.data.tags
    try:
        parsed = parse_note(tags.get("govkit.witness.verdict", ""), source="govkit.witness.verdict")
    except InputError:
        return None
    if parsed.text.split("\n", 1)[0] not in (VERDICT_MAGIC, "govkit.dev/witness-verdict/v1"):
        return None
    fields = verdict_fields(parsed.text)
    expected = {"run": run.info.run_id, "status": tags.get("govkit.witness.status", ""),
                "checked": tags.get("govkit.witness.checked_at", ""),
                "findings": findings_digest(tags.get("govkit.witness.findings", ""))}
    if any(fields.get(name) != value for name, value in expected.items()):
        return None
    return parsed.text if verify_note(parsed, witness_key, "witness") else None


def verify_device(central: Central, experiment_ids: list[str], *, device_id: str, public_key: str | None,
                  store_id: str | None = None, witness_key: str | None = None) -> Any:
    """A device's whole chain from its segments on the central store: every segment note's
    signature, every file against its note, the segments covering seqs 1.. without a gap or a
    conflicting copy, then the chain itself as `audit verify --export` checks an export (every
    hash, every link, fields against bodies, the genesis record's identity), and every signed
    head the device shipped. The witness's cosignatures are counted with `witness_key`."""
    from ..audit.export import verify_rows
    from ..audit.verify import VerifyResult

    runs = central.runs(experiment_ids, f"{SYNC_FILTER} and tags.`govkit.device_id` = '{device_id}'", deleted=True)
    stores = sorted({r.data.tags.get("govkit.store_id", "") for r in runs})
    if not runs:
        raise InputError(f"no sync of device {device_id} on the central store {central.uri}", parameter="device")
    if store_id is None:
        if len(stores) > 1:
            raise InputError(f"device {device_id} shipped {len(stores)} stores ({', '.join(stores)}): say which",
                             parameter="store_id")
        store_id = stores[0]
    runs = [r for r in runs if r.data.tags.get("govkit.store_id") == store_id]
    result = VerifyResult(trusted_key=bool(public_key), expected_store_id=store_id, offsite_checkpoints=True)
    for run in runs:
        _witness_rejections(run, witness_key, result)
    notes: dict[str, tuple[SegmentNote, list[str]]] = {}  # key -> (note, the runs holding a copy, oldest first)
    heads: dict[int, dict[str, Any]] = {}
    for run in runs:
        run_id = run.info.run_id
        for path in central.list(run_id, "notes"):
            text = central.download(run_id, path).decode("utf-8", "replace")
            try:
                note, parsed = parse_segment_note(text, source=path)
            except InputError as exc:
                result.add(1, str(exc))
                continue
            if public_key and not signed_by(parsed, public_key):
                result.add(note.lo, f"segment {note.lo}..{note.hi} (run {run_id}): its note is not signed by the device key")
                continue
            notes.setdefault(note.key, (note, []))[1].append(run_id)
        if run.data.tags.get("govkit.sync.status") == "shipped" and "head.note" in central.list(run_id, None):
            head, parsed = parse_head_note(central.download(run_id, "head.note").decode("utf-8", "replace"))
            if public_key and not signed_by(parsed, public_key):
                result.add(head["seq"], f"run {run_id}: its head note is not signed by the device key")
            elif head["store_id"] == store_id:
                heads[head["seq"]] = {"seq": head["seq"], "head_hash": head["head_hash"], "store_id": store_id}
    cover, spare, reached = [], [], 0
    for note, run_ids in sorted(notes.values(), key=lambda n: (n[0].lo, -n[0].hi)):
        if note.lo > reached + 1:
            result.add(reached + 1, f"seqs {reached + 1}..{note.lo - 1} are not on the central store (a gap)")
        if note.hi <= reached:
            heads.setdefault(note.hi, {"seq": note.hi, "head_hash": note.head_hash, "store_id": store_id})
            spare.append((note, run_ids))
            continue  # a copy of what the cover holds: its head must agree (checked as a signed head)
        if note.lo <= reached:
            result.add(note.lo, f"segment {note.lo}..{note.hi} overlaps another copy of seqs {note.lo}..{reached}")
            continue
        cover.append((note, run_ids))
        reached = note.hi
    cosigned = 0
    if witness_key:
        acks = [r.data.tags.get("govkit.witness.ack") for r in runs if r.data.tags.get("govkit.witness.ack")]
        for ack in acks:
            try:
                note, parsed = parse_segment_note(ack)
            except InputError:
                continue
            if verify_note(parsed, witness_key, "witness") and note.store_id == store_id:
                cosigned = max(cosigned, note.hi)
    result = verify_rows(_rows(central, cover, result, spare), result, heads=heads, public_key=public_key,
                         heads_source="a head the device signed")
    _check_copies(central, spare, result)
    if witness_key:
        if cosigned < result.head_seq:
            result.warnings.append(f"the witness has cosigned seqs up to {cosigned} of {result.head_seq}")
    result.warnings = [w for w in result.warnings if "no checkpoint file given" not in w]
    return result


def _check_copies(central: Central, copies: list[tuple[SegmentNote, list[str]]], result: Any) -> None:
    """Every other copy of a segment (a replay, an older run) must still be the file its note names:
    a file swapped after it was shipped or cosigned fails verification, even where a good copy exists."""
    for note, run_ids in copies:
        for run_id in run_ids:
            try:
                data = central.download(run_id, segment_path(note))
            except TrackingError as exc:
                result.add(note.lo, f"segment {note.lo}..{note.hi}, run {run_id}: {exc}")
                continue
            problems = check_segment(note, data)
            if problems:
                result.add(note.lo, f"run {run_id}: {problems[0]}")


def _witness_rejections(run: Any, witness_key: str | None, result: Any) -> None:
    """A run the witness rejected fails the device's verification (its signed verdict checked with
    `witness_key`; without the key, the tags are believed when they say rejected: failing closed).
    A run marked deleted is said, and its files are still checked."""
    tags, run_id = run.data.tags, run.info.run_id
    if is_deleted(run):
        result.warnings.append(f"run {run_id} is marked deleted in MLflow; its files were checked all the same")
    if tags.get("govkit.witness.status") != "rejected":
        return
    if witness_key and not verdict_holds(run, witness_key):
        result.add(1, f"run {run_id}: its witness tags say rejected but are not what the witness signed")
        return
    told = tags.get("govkit.witness.findings", "") or "no finding named"
    unverified = "" if witness_key else " (unverified: give --witness-key)"
    result.add(_range_lo(tags), f"run {run_id}: the witness rejected this history{unverified}: {told}")


def _range_lo(tags: dict[str, str]) -> int:
    try:
        return max(1, int(tags.get("govkit.seq_range", "1-1").split("-")[0]))
    except ValueError:
        return 1


def _rows(central: Central, cover: list[tuple[SegmentNote, list[str]]], result: Any,
          spare: list[tuple[SegmentNote, list[str]]]) -> Iterator[tuple[str, Any, bool]]:
    """The records of each segment of the cover, from the first copy whose file matches its note
    (a replayed upload is a second copy; an altered one does not hide a good one)."""
    for note, run_ids in cover:
        first_problem, data = "", b""
        for index, run_id in enumerate(run_ids):
            try:
                data = central.download(run_id, segment_path(note))
            except TrackingError as exc:  # the file is missing (or the server stopped answering): said, not hidden
                first_problem = first_problem or f"segment {note.lo}..{note.hi}, run {run_id}: {exc}"
                continue
            problems = check_segment(note, data)
            if not problems:
                if index + 1 < len(run_ids):
                    spare.append((note, run_ids[index + 1:]))  # the other copies are checked too
                break
            first_problem = first_problem or f"run {run_id}: {problems[0]}"
        else:
            result.add(note.lo, first_problem)
            continue
        for row in segment_rows(data):
            yield f"segment {note.lo}..{note.hi}, seq {row['seq']}", row, True


def device_key(registry_path: Path | None, device_id: str, store_id: str | None) -> tuple[str | None, str | None]:
    """The enrolled public key (and store) of a device, from the registry file."""
    if registry_path is None:
        return None, store_id
    from .registry import load_registry

    found = [d for (i, s), d in load_registry(registry_path).items() if i == device_id and (store_id in (None, s))]
    if not found:
        raise InputError(f"{registry_path}: device {device_id} is not enrolled" + (f" with store {store_id}" if store_id else ""))
    if len(found) > 1:
        raise InputError(f"{registry_path}: device {device_id} has {len(found)} enrolled stores: give --store-id")
    return found[0].public_key, found[0].store_id
