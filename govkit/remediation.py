"""Remediation plans for findings and the register of known limitations, both chained.

A plan names who owns a finding, what they will do and by when (a `remediation` record); the
board report shows each finding with its plan's owner and due date, and marks it overdue once the
date has passed with the finding still open. A limitation is what the institution accepts about
the model, with the compensating control that makes it acceptable (a `limitation` record); the
board report and the model card list them. Owners are staff accountable for the work and are kept
as given; free text (the action, the limitation, the control) is redacted before it is chained,
as the chain cannot be purged.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .audit import AuditLog, AuditRecord
from .errors import InputError
from .timestamps import input_date

__all__ = ["CONTROL_ID", "add_limitation", "limitations", "plan_remediation", "remediation_plans", "retire_limitation"]

CONTROL_ID = re.compile(r"^[A-Z][A-Z0-9]{1,7}-\d{3}$")  # a control as plans and exemptions name it


def plan_remediation(log: AuditLog, check_id: str, *, owner: str, due: str, action: str,
                     model_id: str | None = None, today: dt.date | None = None) -> AuditRecord:
    """Chain a remediation plan for the finding of `check_id` (a later plan replaces it)."""
    if not CONTROL_ID.match(check_id):
        raise InputError("expected a control ID such as ETH-003", parameter="check_id", value=check_id)
    day = input_date(due, parameter="due")
    if day < (today or dt.date.today()):
        raise InputError("a plan's due date cannot be in the past", parameter="due", value=due)
    if not owner.strip() or not action.strip():
        raise InputError("a plan needs an owner and an action", parameter="owner" if not owner.strip() else "action")
    return log.append("remediation", model_id=model_id, details={
        "check_id": check_id, "owner": owner.strip()[:200], "due": day.isoformat(),
        "action": log.redact(action.strip()[:2000])})


def remediation_plans(records: list[AuditRecord]) -> dict[str, dict[str, Any]]:
    """The newest plan per control ID, from `remediation` records oldest first."""
    plans: dict[str, dict[str, Any]] = {}
    for record in records:
        details = record.details or {}
        if details.get("check_id"):
            plans[details["check_id"]] = {"owner": details.get("owner"), "due": details.get("due"),
                                          "action": details.get("action"), "record_id": record.record_id,
                                          "seq": record.seq, "ts": record.ts_start}
    return plans


def add_limitation(log: AuditLog, text: str, *, control: str, owner: str,
                   model_id: str | None = None) -> AuditRecord:
    """Chain a known limitation with its compensating control and who owns that control."""
    for name, value in (("text", text), ("control", control), ("owner", owner)):
        if not value.strip():
            raise InputError(f"a limitation needs its {name}", parameter=name)
    return log.append("limitation", model_id=model_id, details={
        "action": "added", "limitation": log.redact(text.strip()[:2000]),
        "control": log.redact(control.strip()[:2000]), "owner": owner.strip()[:200]})


def retire_limitation(log: AuditLog, record_id: str, *, reason: str, model_id: str | None = None) -> AuditRecord:
    """Chain that a limitation no longer holds (fixed, or the use it limited has ended)."""
    added = log.get(record_id)
    if added is None or added.event_type != "limitation" or (added.details or {}).get("action") != "added":
        raise InputError("no limitation was added with this record id", parameter="record_id", value=record_id)
    return log.append("limitation", model_id=model_id, target_record_id=record_id,
                      details={"action": "retired", "reason": log.redact(reason.strip()[:2000])})


def limitations(records: list[AuditRecord]) -> list[dict[str, Any]]:
    """The limitations standing (added, not retired), from `limitation` records oldest first."""
    standing: dict[str, dict[str, Any]] = {}
    for record in records:
        details = record.details or {}
        if details.get("action") == "added":
            standing[record.record_id] = {"limitation": details.get("limitation"), "control": details.get("control"),
                                          "owner": details.get("owner"), "record_id": record.record_id,
                                          "seq": record.seq, "ts": record.ts_start}
        elif details.get("action") == "retired":
            standing.pop(record.fields.get("target_record_id") or "", None)
    return list(standing.values())
