"""The pre-deployment check framework: a decorator, a registry, a runner and report formats.

A check is a small function of the evidence context, declared with `@check(...)`; the built-in
ones live in the top-level `checks/` folder and are loaded by path, as are a user's own
(`govkit check --checks-dir DIR`).
"""

from ._context import DEFAULT_POLICY, Context
from ._model import CheckResult, CheckSpec, DuplicateCheck, NoEvidence, Result, Severity, Skip, Status
from ._registry import Registry, check, load
from ._runner import run_checks

__all__ = ["DEFAULT_POLICY", "CheckResult", "CheckSpec", "Context", "DuplicateCheck", "Registry", "Result",
           "NoEvidence", "Severity", "Skip", "Status", "check", "load", "run_checks"]
