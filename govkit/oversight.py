"""Human oversight and housekeeping of the audit store, as library calls: a reviewer's override
of a logged decision, an erasure (purge) that reaches MLflow too, incidents and their resolution,
and a checkpoint signed now. Each `govkit audit ...` command is one of these and a renderer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .audit import HUMAN_DECISIONS, AuditLog, AuditRecord
from .audit.incidents import open_incidents, resolve
from .config import Settings
from .errors import InputError
from .timestamps import seconds_between, utc_now

__all__ = ["Checkpoint", "PurgeResult", "checkpoint", "open_incidents", "override", "purge", "resolve_incident"]


def override(log: AuditLog, record_id: str, *, decision: str, reviewer: str, reason: str) -> AuditRecord:
    """Chain a human review of the decision in inference record `record_id` (EU AI Act Art. 14,
    E-23 overrides): the decision, the pseudonymous reviewer, the reason (always redacted: the
    chain cannot be purged) and how long after the decision the review came."""
    if decision not in HUMAN_DECISIONS:
        raise InputError(f"expected one of {', '.join(HUMAN_DECISIONS)}", parameter="decision", value=decision)
    target = log.get(record_id)
    if target is None:
        raise InputError(f"no audit record '{record_id}' in {log.path}")
    if target.event_type != "inference":
        raise InputError(f"record {record_id} is a {target.event_type} record, not a decision: an override "
                         f"targets the inference record of the decision it reviews")
    fields = target.fields
    now = utc_now()
    latency = seconds_between(fields.get("ts_end") or fields["ts_start"], now)
    return log.append("override", ts_start=now, target_record_id=fields["record_id"], reviewer_id=reviewer,
                      human_decision=decision, override_reason=log.redact(reason, field="reason"),
                      review_latency_s=round(latency, 3), model_id=fields.get("model_id"),
                      subject_ref=fields.get("subject_ref"))


@dataclass(frozen=True)
class PurgeResult:
    record: AuditRecord  # the chained purge event
    purged_items: int
    purged_records: int
    erased_runs: tuple[str, ...]  # MLflow runs about the subject whose artifacts were erased
    acknowledged_upto: int | None = None  # a fleet device: content after this seq waits for the witness
    # Copies the purge could not reach: the subject's records whose text was shipped to a central
    # store ([sync] ship_content), per sync run; chained as an open incident, and not a success.
    remaining: tuple[dict[str, Any], ...] = ()
    incident: AuditRecord | None = None

    @property
    def complete(self) -> bool:
        return not self.remaining

    def to_dict(self) -> dict[str, Any]:
        return {"record_id": self.record.record_id, "seq": self.record.seq, "purged_items": self.purged_items,
                "purged_records": self.purged_records, "erased_runs": list(self.erased_runs),
                "acknowledged_upto": self.acknowledged_upto, "complete": self.complete,
                "remaining": list(self.remaining), "incident": self.incident.record_id if self.incident else None}


def purge(log: AuditLog, settings: Settings | None, *, expired: bool = False, before: str | None = None,
          subject_ref: str | None = None, reason: str | None = None) -> PurgeResult:
    """Erase stored content (never the chained records; legal hold wins) and chain a `purge`
    event. An erasure request (`subject_ref`) also erases the artifacts of the MLflow runs about
    that subject. Criteria combine with AND.

    On a fleet device ([sync] to is set) a retention purge (`expired`, `before`) reaches only the
    records the central witness has acknowledged, as its cosignatures kept beside the store show
    under [sync] witness_public_key (none without that key): the device never lets evidence go
    before the central side holds it. An erasure request is not held back: the law does not wait
    for a sync, and the chain's digests, which are what ships, stay."""
    upto = None
    if settings is not None and settings.sync.to and not subject_ref:
        from .fleet.sync import acknowledged_seq

        key = settings.sync.witness_public_key
        upto = acknowledged_seq(log.path, key, settings.audit.store_id) if key else 0
    record = log.purge(expired=expired, before=before, subject_ref=subject_ref, reason=reason, upto_seq=upto)
    erased: list[str] = []
    if subject_ref:
        from .tracking import erase_subject_artifacts

        erased = erase_subject_artifacts(log, settings, subject_ref)
    details = record.fields["details"]
    remaining = _shipped_copies(log, settings, subject_ref) if subject_ref else []
    incident = log.append("incident", target_record_id=record.record_id, details={
        "kind": "erasure_incomplete", "purge_record": record.record_id, "subject_ref": subject_ref,
        "remaining": remaining}) if remaining else None
    return PurgeResult(record, details["purged_items"], details["purged_records"], tuple(erased), upto,
                       tuple(remaining), incident)


def _shipped_copies(log: AuditLog, settings: Settings | None, subject_ref: str) -> list[dict[str, Any]]:
    """Where the subject's text left the device: the sync runs that shipped content holding any of
    its records (a record of the subject inside a shipped range counts: fail closed). A device
    that ships content but kept no note of what it shipped (a govkit before the note) cannot say,
    and says so."""
    from .fleet.sync import acks_path, shipped_content

    entries = shipped_content(log.path)
    seqs = sorted(r.seq for r in log.query(subject_ref=subject_ref))
    copies = []
    for entry in entries:
        inside = [seq for seq in seqs if any(lo <= seq <= hi for lo, hi in entry.get("ranges") or [])]
        if inside:
            copies.append({"central": entry.get("central"), "run_id": entry.get("run_id"), "seqs": inside})
    if not entries and seqs and settings is not None and settings.sync.ship_content and acks_path(log.path).exists():
        copies.append({"central": settings.sync.to, "run_id": None, "seqs": seqs,
                       "unknown": "this device ships content and kept no note of which runs held it"})
    return copies


def resolve_incident(log: AuditLog, incident_id: str, *, note: str, reviewer: str | None = None) -> AuditRecord:
    """Chain the resolution of an open incident, with what was found and done."""
    return resolve(log, incident_id, note=note, reviewer=reviewer)


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    key_id: str
    signed: dict[str, Any]  # the whole signed checkpoint, as the checkpoint file holds it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def checkpoint(log: AuditLog) -> Checkpoint | None:
    """Sign the chain's head now with the device key; None when it is already signed."""
    signed = log.checkpoint()
    if signed is None:
        return None
    return Checkpoint(signed["seq"], signed["head_hash"], signed["key_id"], signed)
