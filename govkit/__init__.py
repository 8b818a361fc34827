"""govkit: a governance and compliance audit around locally deployed small language models."""

from .audit import AuditLog, AuditRecord, Redactor, VerifyResult
from .config import Settings, load_settings
from .errors import GovkitError
from .inference.wrappers import AuditedLlama, audited, audited_client

__all__ = ["AuditLog", "AuditRecord", "AuditedLlama", "GovkitError", "Redactor", "Settings", "VerifyResult",
           "__version__", "audited", "audited_client", "load_settings"]

__version__ = "0.1.0"
