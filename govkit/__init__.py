"""govkit: a governance and compliance audit around locally deployed small language models."""

from .audit import AuditLog, AuditRecord, Redactor, VerifyResult
from .config import Settings, load_settings
from .errors import GovkitError

__all__ = ["AuditLog", "AuditRecord", "GovkitError", "Redactor", "Settings", "VerifyResult",
           "__version__", "load_settings"]

__version__ = "0.1.0"
