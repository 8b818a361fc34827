"""Run the selected checks: every result is collected, whatever happens inside a check.

A checks folder is code with the gate's full privileges. The runner contains what a check can do
to the run, not to the machine: each check runs in a thread of its own with a time limit, and
anything it raises (SystemExit, KeyboardInterrupt, pytest's skip or fail, any BaseException) is
an ERROR result while the run goes on. A check still running at its limit is an ERROR and is
left behind (a thread cannot be stopped); the gate does not wait for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from ..errors import MissingDependency
from ._context import Context
from ._model import CheckResult, CheckSpec, NoEvidence, Result, Skip, Status

__all__ = ["DEFAULT_TIME_LIMIT_S", "run_checks"]

DEFAULT_TIME_LIMIT_S = 120.0


def run_checks(specs: Iterable[CheckSpec], ctx: Context, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> list[CheckResult]:
    results = []
    for spec in specs:
        started = time.perf_counter()
        outcome, raised = _call(spec, ctx, time_limit_s)
        if raised is not None:
            results.append(_failed(spec, ctx, raised, started, time_limit_s))
            continue
        if not isinstance(outcome, Result):
            results.append(_result(spec, Status.ERROR, f"returned {type(outcome).__name__}, not a Result", {},
                                   spec.blocking(ctx.tier), started))
            continue
        blocking = outcome.blocking if outcome.blocking is not None else spec.blocking(ctx.tier)
        status = Status.PASS if outcome.passed else Status.FAIL if blocking else Status.WARN
        results.append(_result(spec, status, outcome.message, outcome.evidence,
                               status is Status.FAIL, started))
    return results


class _TimedOut(Exception):
    pass


def _call(spec: CheckSpec, ctx: Context, limit: float) -> tuple[Any, BaseException | None]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["outcome"] = spec.function(ctx)
        except BaseException as exc:  # noqa: BLE001 - whatever a check raises is its result, not the gate's end
            box["raised"] = exc

    worker = threading.Thread(target=target, name=f"govkit-check-{spec.id}", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        return None, _TimedOut()
    return box.get("outcome"), box.get("raised")


def _failed(spec: CheckSpec, ctx: Context, exc: BaseException, started: float, limit: float) -> CheckResult:
    if isinstance(exc, (Skip, MissingDependency)):
        return _result(spec, Status.SKIP, str(exc), {}, False, started)
    if isinstance(exc, NoEvidence):
        blocking = spec.blocking(ctx.tier)
        return _result(spec, Status.NO_EVIDENCE, str(exc) or "no evidence", {}, blocking, started)
    # A control that could not be judged claims nothing: where it blocks, its error blocks too.
    blocking = spec.blocking(ctx.tier)
    if isinstance(exc, _TimedOut):
        return _result(spec, Status.ERROR, f"did not finish within its time limit of {limit:g} s", {}, blocking, started)
    return _result(spec, Status.ERROR, f"{type(exc).__name__}: {exc}", {}, blocking, started)


def _result(spec: CheckSpec, status: Status, message: str, evidence: dict, blocking: bool,
            started: float) -> CheckResult:
    return CheckResult(spec, status, message, evidence, blocking, time.perf_counter() - started)
