"""The tamper-evident audit log: store, chain, redaction, checkpoints, verification."""

from .records import EVENT_TYPES, HUMAN_DECISIONS, AuditRecord
from .redact import Redaction, Redactor
from .store import AuditLog
from .verify import Problem, VerifyResult

__all__ = ["EVENT_TYPES", "HUMAN_DECISIONS", "AuditLog", "AuditRecord", "Problem", "Redaction",
           "Redactor", "VerifyResult"]
