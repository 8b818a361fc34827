"""The audit record: its event types, its fields, and the frozen object the store hands back.

Fields follow ../shared/reference/regulation.md §(b) (EU AI Act Art. 12, OSFI E-23 P3.6). The
chain covers only these fields; raw prompt and response text lives in the content table.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRecord

__all__ = ["EVENT_TYPES", "FIELDS", "HUMAN_DECISIONS", "STORE_EVENT_TYPES", "AuditRecord", "check_fields"]

SCHEMA_VERSION = 1

EVENT_TYPES = (
    "request", "inference", "override", "feedback", "incident", "config_change", "model_change",
    "lineage", "risk_rating", "check_run", "bias_run", "explanation", "report", "purge", "checkpoint",
    "genesis", "remediation", "limitation", "attestation", "probe_run", "monitor_window",
)
# Written by the store itself, never by a caller: the first record (the store's identity) and the
# signed checkpoints.
STORE_EVENT_TYPES = frozenset({"genesis", "checkpoint"})
HUMAN_DECISIONS = ("accepted", "edited", "overridden", "escalated")

# name -> accepted Python types. Set by the store, not by callers: record_id, schema_version,
# event_type, input_sha256, output_sha256, content_mode, redaction.
FIELDS: dict[str, tuple[type, ...]] = {
    # identity and time
    "ts_start": (str,), "ts_end": (str,), "latency_ms": (int, float),
    "device_id": (str,), "session_id": (str,),
    # model identity
    "model_id": (str,), "model_version": (str,), "artifact_sha256": (str,),
    "quantization": (str,), "architecture": (str,), "parameter_count": (int,),
    "runtime": (str,), "runtime_version": (str,), "runtime_sha256": (str,), "chat_template_sha256": (str,),
    "adapter_id": (str,), "approval_id": (str,), "risk_rating": (str,), "sampling": (dict,),
    "request_params": (dict,),  # every other request field that may change the answer: name -> digest
    "config_sha256": (str,), "mlflow_run_id": (str,),
    # input and output
    "input_tokens": (int,), "output_tokens": (int,), "finish_reason": (str,),
    "status": (str,), "error": (str,), "endpoint": (str,), "purpose": (str,),
    "request_record_id": (str,),  # the `request` record written before the model was called
    # explainability
    "explanation_ref": (str,), "explanation_method": (str,),
    # human oversight
    "target_record_id": (str,), "reviewer_id": (str,), "human_decision": (str,),
    "override_reason": (str,), "review_latency_s": (int, float),
    # affected person
    "subject_ref": (str,), "disclosure_shown": (bool,), "decision_impact": (str,),
    # risk
    "incident_id": (str,), "anomaly_flag": (bool,),
    # retention
    "retention_class": (str,), "expires_at": (str,), "legal_hold": (bool,),
    # event-specific payload (check results, purge criteria, checkpoint signature, ...)
    "details": (dict,),
}


# Set by the store at the top level only; verification relies on these keys appearing nowhere else.
RESERVED_KEYS = frozenset({"input_sha256", "output_sha256", "content_mode"})
STORE_FIELDS = frozenset({"record_id", "schema_version", "event_type", "redaction", *RESERVED_KEYS})


# The common values, settled by one exact-type test: ASCII text and plain ints (a bool is not an int here).
_TEXT_FIELDS = frozenset(name for name, kinds in FIELDS.items() if str in kinds)
_INT_FIELDS = frozenset(name for name, kinds in FIELDS.items() if int in kinds)


def check_fields(event_type: str, fields: dict[str, Any]) -> None:
    if event_type not in EVENT_TYPES:
        raise InvalidRecord(f"unknown event_type '{event_type}'; expected one of {', '.join(EVENT_TYPES)}")
    if event_type in STORE_EVENT_TYPES:
        raise InvalidRecord(f"'{event_type}' records are written by the audit store itself, not appended")
    for name, value in fields.items():
        kind = type(value)
        if kind is str:
            if name in _TEXT_FIELDS and value.isascii():
                continue
        elif kind is int:
            if name in _INT_FIELDS:
                continue
        elif value is None:
            continue
        _check_field(name, value)
    if event_type == "override" and fields.get("human_decision") not in HUMAN_DECISIONS:
        raise InvalidRecord(f"field 'human_decision' must be one of {', '.join(HUMAN_DECISIONS)}")


def _check_field(name: str, value: Any) -> None:
    kinds = FIELDS.get(name)
    if kinds is None:
        raise InvalidRecord(f"unknown audit record field '{name}'")
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise InvalidRecord(f"field '{name}' must be {expected}, got {type(value).__name__}")
    if isinstance(value, str):
        _check_text(name, value)
    elif isinstance(value, dict):
        _check_nested(name, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecord(f"field '{name}' is {value}: JSON has no NaN or infinity")


def _check_nested(path: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in RESERVED_KEYS:
                raise InvalidRecord(f"field '{path}' may not contain the reserved key '{key}'")
            kind = type(item)
            if kind is int or kind is bool or item is None or (kind is str and item.isascii()):
                continue  # nothing to check in these: no path string to build
            _check_nested(f"{path}.{key}", item)
    elif isinstance(value, list):
        for item in value:
            _check_nested(path, item)
    elif isinstance(value, str):
        _check_text(path, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecord(f"field '{path}' is {value}: JSON has no NaN or infinity")


def _check_text(name: str, value: str) -> None:
    if value.isascii():  # the common case; only non-ASCII text can hold lone surrogates
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecord(f"field '{name}' is not valid UTF-8 text (position {exc.start})") from None


@dataclass(frozen=True)
class AuditRecord:
    """One committed record: its place in the chain and its fields, exactly as hashed.

    A field is an attribute (`record.event_type`); a field the record does not carry is None.
    A name that is no record field raises AttributeError, so a typo cannot read as "absent".
    The body is parsed once, on first use.
    """

    seq: int
    record_hash: str
    prev_hash: str
    body: bytes

    @functools.cached_property
    def _parsed(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def fields(self) -> dict[str, Any]:
        """The body's fields (a copy: the record itself cannot change)."""
        return dict(self._parsed)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        parsed = self._parsed
        if name in parsed:
            return parsed[name]
        if name in FIELDS or name in STORE_FIELDS:
            return None
        raise AttributeError(f"'AuditRecord' has no field '{name}' (the record fields are in "
                             "govkit.audit.records.FIELDS)")

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, **self._parsed, "prev_hash": self.prev_hash,
                "record_hash": self.record_hash}
