"""A bias run as evidence: one chained `bias_run` event, one MLflow run, one JSON result file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..audit import AuditLog, AuditRecord
from ..config import Settings
from ..digests import sha256_digest
from ..evidence import evidence_run
from ..tracking import Tracker

__all__ = ["groups", "pairs_of", "record_bias_run", "summary"]


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What goes into the chain: each metric's value and status per view or attribute (no per-row data)."""
    if "attributes" in result:  # counterfactual: one entry per pair of groups
        return {attr: {f"{p['groups'][0]}_vs_{p['groups'][1]}.flip_rate": {
            "value": p["flip_rate"], "status": p.get("status") or ("fail" if p.get("difference_shown") else "inconclusive")}
            for p in data["pairs"]} for attr, data in result["attributes"].items()}
    return {view: {name: {"value": m["value"], "status": m["status"]} for name, m in data["metrics"].items()}
            for view, data in result.get("views", {}).items()}


MAX_GROUPS = 50  # per view in the chain; the whole table is in the MLflow run


def groups(result: dict[str, Any], redact: Any = str) -> dict[str, list[dict[str, Any]]]:
    """What the chain keeps per group, for the report's charts: size, selection rate and its
    interval; the group labels (data values) as the log's redaction lets them into the chain."""
    if "attributes" in result:  # counterfactual: the favourable-answer rate per group
        return {attr: [{"group": redact(group), "count": None, "selection_rate": rate, "interval": None, "small": False}
                       for group, rate in list(data.get("positive_rate", {}).items())[:MAX_GROUPS]]
                for attr, data in result["attributes"].items()}
    return {view: [{"group": redact(row["group"]), "count": row["count"], "selection_rate": row.get("selection_rate"),
                    "interval": (row.get("intervals") or {}).get("selection_rate"), "small": row.get("small", False)}
                   for row in data["by_group"][:MAX_GROUPS]]
            for view, data in result.get("views", {}).items()}


def pairs_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A counterfactual run's pairs as a report states them: what was swapped, how often the
    decision flipped (with its interval) and what the policy allows."""
    keep = ("groups", "rows", "flips", "flip_rate", "flip_interval", "max_flip_rate", "status", "difference_shown")
    return [{"attribute": attribute, **{k: pair.get(k) for k in keep}}
            for attribute, analysis in (result.get("attributes") or {}).items() for pair in analysis.get("pairs", [])]


def record_bias_run(log: AuditLog, settings: Settings | None, *, kind: str, result: dict[str, Any],
                    artifacts: dict[str, str], out: Path | None, fields: dict[str, Any] | None = None) -> AuditRecord:
    """Chain the run, mirror it into MLflow and write `out`; fills result['record_id'] and ['mlflow_run_id']."""
    tracker = Tracker.from_settings(settings, log.path)
    data = result.get("data", {})
    with evidence_run(log, tracker, f"bias {kind}: {data.get('name', '')}".strip(),
                      {"govkit.event": "bias_run", "govkit.bias_kind": kind}) as evidence:
        run = evidence.run
        run.log_params({"data": data.get("path"), "data_sha256": data.get("sha256"), "rows": result.get("rows"),
                        "sensitive": ",".join(result.get("sensitive", [])), "passed": result.get("passed")})
        for view, metrics in summary(result).items():
            run.log_metrics({f"{_metric_key(view)}.{name}": m["value"] for name, m in metrics.items()})
        quality = result.get("quality")
        if quality:
            from .tabular import TRUTH_METRICS

            run.log_metrics({f"quality.{name}": quality[name]["value"] for name in TRUTH_METRICS
                             if quality[name]["value"] is not None})
            run.log_metrics({name: value for name, value in (("quality.baseline_accuracy", quality["baseline"]["accuracy"]),
                                                             ("quality.lift", quality["lift"])) if value is not None})
        for name, text in artifacts.items():
            run.log_text(text, name)
        body = json.dumps(result, sort_keys=True, ensure_ascii=False, allow_nan=False)
        run.log_text(body, "bias_result.json")
        record = evidence.append("bias_run", purpose="evaluation", model_id=settings.model.id if settings else None,
                                 **(fields or {}), details={
                                     "kind": kind, "data": data, "passed": result.get("passed"),
                                     "status": result.get("status"),
                                     "metrics": summary(result), "groups": groups(result, log.redact),
                                     **({"quality": result["quality"]} if result.get("quality") else {}),
                                     **({"pairs": pairs_of(result)} if result.get("attributes") else {}),
                                     "to_conclude": [log.redact(str(t)) for t in (result.get("to_conclude") or [])[:50]],
                                     "warnings": result.get("warnings", [])[:50],
                                     "result_sha256": sha256_digest(body)})
    result["record_id"], result["mlflow_run_id"] = record.record_id, run.id
    if out is not None:
        from ..outputs import write_output

        write_output(out, json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n")
    return record


def _metric_key(view: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", view.replace(" x ", "_x_"))
