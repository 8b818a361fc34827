"""What a check is (its spec), what it returns (a Result), and what the runner makes of it."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DuplicateCheck, InputError

__all__ = ["PRINCIPLES", "SECTIONS", "CheckResult", "CheckSpec", "DuplicateCheck", "NoEvidence", "Result", "Severity",
           "Skip", "Status", "check_spec"]

PRINCIPLES = {"EXP": "Explainability", "DAT": "Data", "GOV": "Governance", "ETH": "Ethics"}
SECTIONS = ("What it checks", "Why it matters", "How to fix")
_ID = re.compile(r"^(EXP|DAT|GOV|ETH)-\d{3}$")


class Status(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    NO_EVIDENCE = "NO EVIDENCE"  # nothing to judge by: never a pass; blocks where the control blocks
    ERROR = "ERROR"
    SKIP = "SKIP"  # the control does not apply (e.g. a negligible tier), never for missing evidence


HIGH_TIERS = ("high", "critical", "unrated")  # where a breach the model shows blocks by default (not rated: failing closed)


class Severity(str, enum.Enum):
    BLOCKING = "blocking"
    WARNING = "warning"
    TIER = "blocking (tier)"  # blocking unless the model's risk tier is negligible (E-23 P2.3)
    HIGH_TIER = "blocking (high tier)"  # blocking for a high, critical or unrated model, a warning below


class Skip(Exception):
    """Raise inside a check when it does not apply; the message is the reason."""


class NoEvidence(Exception):
    """Raise inside a check when the evidence it judges is not there; the message says what is
    missing and how to make it. Never a pass: a blocking control without evidence blocks."""


@dataclass(frozen=True)
class Result:
    """What a check function returns: passed or not, a message, and the evidence it looked at."""

    passed: bool
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    blocking: bool | None = None  # set by a check whose policy decides (e.g. [policy.fairness] blocking)


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    severity: Severity
    references: dict[str, str]  # framework -> clause, e.g. {"OSFI E-23": "P2.1, Appendix 1"}
    crosswalk: str | None  # the row of regulation.md §(a) it answers, e.g. "inventory_min_fields"
    function: Callable[[Any], Result]
    source: str  # the file it was loaded from
    builtin: bool = True

    @property
    def principle(self) -> str:
        return PRINCIPLES[self.id[:3]]

    @property
    def doc(self) -> str:
        import inspect

        return inspect.cleandoc(self.function.__doc__ or "")

    def section(self, name: str) -> str:
        """One section of the docstring ("What it checks: ..." up to the next section)."""
        pattern = rf"{re.escape(name)}:\s*(.*?)(?=\n(?:{'|'.join(map(re.escape, SECTIONS))}):|\Z)"
        found = re.search(pattern, self.doc, re.S)
        return " ".join(found.group(1).split()) if found else ""

    def blocking(self, tier: str) -> bool:
        return (self.severity is Severity.BLOCKING or (self.severity is Severity.TIER and tier != "negligible")
                or (self.severity is Severity.HIGH_TIER and tier in HIGH_TIERS))


def check_spec(function: Callable[..., Result], *, id: str, title: str, severity: str | Severity,
               references: dict[str, str], crosswalk: str | None, source: str, builtin: bool) -> CheckSpec:
    if not _ID.match(id):
        raise InputError(f"{source}: check id '{id}' must look like EXP-001, DAT-001, GOV-001 or ETH-001")
    try:
        severity = Severity(severity)
    except ValueError:
        raise InputError(f"{source}: check {id}: severity must be one of "
                         f"{', '.join(s.value for s in Severity)}") from None
    if not references:
        raise InputError(f"{source}: check {id} cites no regulatory reference")
    return CheckSpec(id, title, severity, dict(references), crosswalk, function, source, builtin)


@dataclass(frozen=True)
class CheckResult:
    spec: CheckSpec
    status: Status
    message: str
    evidence: dict[str, Any]
    blocking: bool  # a FAIL that blocks the deployment
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.spec.id, "title": self.spec.title, "principle": self.spec.principle,
                "severity": self.spec.severity.value, "status": self.status.value, "blocking": self.blocking,
                "message": self.message, "evidence": self.evidence, "references": self.spec.references,
                "crosswalk": self.spec.crosswalk, "seconds": round(self.seconds, 4)}
