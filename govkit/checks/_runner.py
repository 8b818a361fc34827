"""Run the selected checks: every result is collected, whatever happens inside a check."""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..errors import MissingDependency
from ._context import Context
from ._model import CheckResult, CheckSpec, Result, Skip, Status

__all__ = ["run_checks"]


def run_checks(specs: Iterable[CheckSpec], ctx: Context) -> list[CheckResult]:
    results = []
    for spec in specs:
        started = time.perf_counter()
        try:
            outcome = spec.function(ctx)
        except Skip as exc:
            results.append(_result(spec, Status.SKIP, str(exc), {}, False, started))
            continue
        except MissingDependency as exc:
            results.append(_result(spec, Status.SKIP, str(exc), {}, False, started))
            continue
        except Exception as exc:  # a crashing check is an ERROR result, never a crashed run
            results.append(_result(spec, Status.ERROR, f"{type(exc).__name__}: {exc}", {}, False, started))
            continue
        if not isinstance(outcome, Result):
            results.append(_result(spec, Status.ERROR, f"returned {type(outcome).__name__}, not a Result", {},
                                   False, started))
            continue
        blocking = outcome.blocking if outcome.blocking is not None else spec.blocking(ctx.tier)
        status = Status.PASS if outcome.passed else Status.FAIL if blocking else Status.WARN
        results.append(_result(spec, status, outcome.message, outcome.evidence,
                               status is Status.FAIL, started))
    return results


def _result(spec: CheckSpec, status: Status, message: str, evidence: dict, blocking: bool,
            started: float) -> CheckResult:
    return CheckResult(spec, status, message, evidence, blocking, time.perf_counter() - started)
