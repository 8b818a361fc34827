"""govkit: a governance and compliance audit around locally deployed small language models."""

from ._version import __version__
from .audit import AuditLog, AuditRecord, Redactor, VerifyResult
from .config import Settings, load_settings
from .errors import GovkitError
from .gate import GateResult, run_gate
from .inference.wrappers import AuditedLlama, audited, audited_client

__all__ = ["AuditLog", "AuditRecord", "AuditedLlama", "GateResult", "GovkitError", "Redactor", "Settings",
           "VerifyResult", "__version__", "audited", "audited_client", "load_settings", "run_gate"]
