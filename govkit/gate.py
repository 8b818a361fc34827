"""The pre-deployment gate as a library call: load the checks, run them against the evidence,
and record the run (a chained `check_run` record and an MLflow run).

    from govkit import load_settings, run_gate

    gate = run_gate(load_settings(), select=["GOV", "ETH-002"])
    print(gate.passed, [r.spec.id for r in gate.results if r.blocking])

`govkit check` is this call and a renderer (table, JSON, JUnit, SARIF).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import CheckResult, CheckSpec, Registry
from .checks._runner import DEFAULT_TIME_LIMIT_S
from .config import Settings

__all__ = ["GateResult", "crosswalk", "load_registry", "run_gate"]


@dataclass(frozen=True)
class GateResult:
    """One gate run: every check's result, the summary, and the record that chains the run."""

    results: tuple[CheckResult, ...]
    specs: tuple[CheckSpec, ...]
    summary: dict[str, Any]
    record_id: str | None  # None: not recorded (record=False)
    model_id: str
    risk_rating: str
    provenance: dict[str, Any] = field(default_factory=dict)  # user check files' sha256, policy overrides

    @property
    def passed(self) -> bool:
        """No blocking finding: no blocking FAIL, NO EVIDENCE or ERROR."""
        return bool(self.summary["passed"])

    @property
    def blocking(self) -> list[str]:
        return [r.spec.id for r in self.results if r.blocking]

    def to_dict(self) -> dict[str, Any]:
        from .checks._formats import as_json

        data: dict[str, Any] = json.loads(as_json(list(self.results), self._extra()))
        return data

    def _extra(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "model_id": self.model_id, "risk_rating": self.risk_rating,
                **self.provenance}


def load_registry(checks_dirs: Sequence[Path] = ()) -> Registry:
    """The built-in checks, then each folder's own (a folder's POLICY dict overrides policy values)."""
    from ._resources import builtin_dir
    from .checks import load

    registry = Registry()
    load(registry, builtin_dir("checks"), builtin=True)
    for folder in checks_dirs:
        load(registry, Path(folder), builtin=False)
    return registry


def crosswalk() -> dict[str, Any]:
    """The regulation crosswalk the checks cite (requirement, clauses, evidence per row)."""
    from importlib import resources

    data: dict[str, Any] = json.loads((resources.files("govkit.checks") / "crosswalk.json").read_text(encoding="utf-8"))
    return data


def run_gate(settings: Settings, *, select: Sequence[str] = (), ignore: Sequence[str] = (),
             checks_dirs: Sequence[Path] = (), registry: Registry | None = None, db: Path | None = None,
             record: bool = True, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> GateResult:
    """Run the selected checks (IDs, ID prefixes or principles; all by default) against the
    evidence in the audit store, lineage and govkit.toml.

    `db` judges another store (an auditor's copy) by this project's config. With `record` the run
    is chained into the existing store (never a new one: a missing or other store fails at once,
    before any check runs) and mirrored to MLflow; without it nothing is written.
    """
    from .audit import AuditLog
    from .checks import Context, run_checks
    from .checks._formats import summary

    registry = registry if registry is not None else load_registry(checks_dirs)
    specs = registry.select(list(select), list(ignore))
    if db is not None:
        settings = dataclasses.replace(settings, audit=dataclasses.replace(settings.audit, db=db))
    provenance = {"user_check_files": registry.user_files, "policy_overrides": registry.policy}
    writer = AuditLog.open(settings=settings) if record else None
    try:
        context = Context(settings, policy=registry.policy)
        try:
            results = run_checks(specs, context, time_limit_s=time_limit_s)
        finally:
            context.close()
        totals = summary(results)
        chained = _record(writer, settings, results, totals, provenance) if writer is not None else None
    finally:
        if writer is not None:
            writer.close()
    return GateResult(tuple(results), tuple(specs), totals, chained, settings.model.id,
                      settings.model.risk_rating, provenance)


MESSAGE_LIMIT = 4000  # characters of a finding's message in the chain; past it, a note says where the rest is
ITEMS_LIMIT = 100  # structured items (what failed, with its figures) kept per finding


def _chained_result(log: Any, result: CheckResult, where: str) -> dict[str, Any]:
    """A finding as the chain keeps it: its message whole (or, past MESSAGE_LIMIT, cut with a note
    naming how much is missing and where the whole text is), and its items as a list."""
    message = log.redact(result.message)
    if len(message) > MESSAGE_LIMIT:
        message = (message[:MESSAGE_LIMIT] + f" [... {len(message) - MESSAGE_LIMIT} more characters, not chained; "
                                              f"the whole text is in {where}]")
    chained: dict[str, Any] = {"status": result.status.value, "blocking": result.blocking, "message": message}
    items = result.evidence.get("items") if isinstance(result.evidence, dict) else None
    if items:
        chained["items"] = [log.redact(str(item)) for item in items[:ITEMS_LIMIT]]
        if len(items) > ITEMS_LIMIT:
            chained["items"].append(f"... {len(items) - ITEMS_LIMIT} more items, in {where}")
    note = result.evidence.get("blocking_note") if isinstance(result.evidence, dict) else None
    if note:
        chained["blocking_note"] = log.redact(str(note))
    return chained


def _record(log: Any, settings: Settings, results: list[CheckResult], totals: dict[str, Any],
            provenance: dict[str, Any]) -> str:
    from .checks import Status
    from .evidence import evidence_run
    from .tracking import Tracker

    scores = {Status.PASS: 1.0, Status.WARN: 0.5, Status.FAIL: 0.0, Status.NO_EVIDENCE: 0.0, Status.ERROR: -1.0}
    from .inventory import chain_inventory

    chain_inventory(log, settings)  # the inventory the checks judged, as it stood
    tracker = Tracker.from_settings(settings, log.path)
    with evidence_run(log, tracker, "check: pre-deployment gate", {"govkit.event": "check_run",
                                                                  "govkit.passed": str(totals["passed"])}) as evidence:
        evidence.run.log_metrics({r.spec.id: scores[r.status] for r in results if r.status in scores})
        evidence.run.log_dict({"summary": totals, "results": [r.to_dict() for r in results], **provenance},
                              "check_results.json")
        where = f"MLflow run {evidence.run.id}, check_results.json"
        record = evidence.append("check_run", model_id=settings.model.id, risk_rating=settings.model.risk_rating,
                                 details={"summary": totals, **provenance, "results": {
                                     r.spec.id: _chained_result(log, r, where) for r in results}})
    return record.record_id
