"""Incidents and their resolution: an incident stays open until a chained record resolves it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InputError
from .records import AuditRecord

__all__ = ["open_incidents", "resolve"]

RESOLVED = "resolved"


def _is_resolution(record: AuditRecord) -> bool:
    return (record.details or {}).get("action") == RESOLVED


def open_incidents(incidents: Iterable[AuditRecord]) -> list[AuditRecord]:
    """Of these incident records, the ones no resolution among them names, oldest first."""
    incidents = list(incidents)
    resolved = {r.target_record_id for r in incidents if _is_resolution(r)}
    return [r for r in incidents if not _is_resolution(r) and r.record_id not in resolved]


def resolve(log: Any, incident_id: str, *, note: str, reviewer: str | None = None) -> AuditRecord:
    """Chain the resolution of an open incident (the note redacted: the chain cannot be purged)."""
    target = log.get(incident_id)
    if target is None:
        raise InputError(f"no audit record '{incident_id}' in {log.path}")
    if target.event_type != "incident" or _is_resolution(target):
        raise InputError(f"record {incident_id} is not an incident (it is a {target.event_type} record"
                         + (", a resolution" if _is_resolution(target) else "") + ")")
    if target.record_id not in {r.record_id for r in open_incidents(log.query(event_type="incident"))}:
        raise InputError(f"incident {incident_id} is already resolved")
    if not note.strip():
        raise InputError("say what was found and done", parameter="note")
    return log.append("incident", target_record_id=target.record_id, reviewer_id=reviewer,
                      override_reason=log.redact(note), details={"action": RESOLVED})
