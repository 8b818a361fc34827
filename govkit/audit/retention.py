"""Retention and purge policy: which stored content a purge erases (one definition for the
purge and for its later verification), and the criteria a purge request becomes."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..timestamps import normalise_ts, utc_now

__all__ = ["purge_covers", "purge_criteria"]


def purge_criteria(*, expired: bool = False, before: str | None = None, subject_ref: str | None = None,
                   now: str | None = None, upto_seq: int | None = None) -> dict[str, Any]:
    """The criteria of a purge request, as the purge record states them. They combine with AND.
    `upto_seq` bounds a purge to the records the fleet's witness has acknowledged."""
    criteria: dict[str, Any] = {}
    if expired:
        criteria["expired_at_or_before"] = now or utc_now()
    if before:
        criteria["before"] = normalise_ts(before, parameter="before")
    if subject_ref:
        criteria["subject_ref"] = subject_ref
    if not criteria:
        raise InputError("a purge needs a criterion: give at least one", parameter=("expired", "before", "subject_ref"))
    if upto_seq is not None:
        criteria["acknowledged_upto_seq"] = upto_seq
    return criteria


def purge_covers(criteria: dict[str, Any], fields: dict[str, Any], seq: int) -> bool:
    """Whether a purge with these criteria covers the record `seq` with these fields.

    One definition serves the purge and its later verification. Legal hold always wins.
    """
    if fields.get("legal_hold"):
        return False
    if "acknowledged_upto_seq" in criteria:
        bound = criteria["acknowledged_upto_seq"]
        if not isinstance(bound, int) or isinstance(bound, bool) or seq > bound:
            return False
    if "expired_at_or_before" in criteria:
        expires = fields.get("expires_at")
        if not isinstance(expires, str) or expires > criteria["expired_at_or_before"]:
            return False
    if "before" in criteria:
        started = fields.get("ts_start")
        if not isinstance(started, str) or started >= criteria["before"]:
            return False
    if "subject_ref" in criteria and fields.get("subject_ref") != criteria["subject_ref"]:
        return False
    return bool(criteria)
