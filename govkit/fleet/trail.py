"""The governance timeline, read from MLflow alone (`govkit trail`).

Two sources, one timeline: the runs of governance actions (lineage, bias, explanations, checks,
ratings, reports), tagged with the govkit convention; and each sync run's
`oversight/records.json`, the governance records the device shipped (overrides, incidents,
purges, and the same actions when they were mirrored only into the device's own MLflow). A
record seen both ways is listed once.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ..tracking import PRINCIPLES
from .central import Central

__all__ = ["GOVERNANCE_EVENTS", "timeline"]

GOVERNANCE_EVENTS = ("override", "incident", "purge", "feedback", "config_change", "model_change", "lineage",
                     "risk_rating", "check_run", "bias_run", "explanation", "report")


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timeline(central: Central, experiment_ids: list[str], *, device_id: str | None = None,
             witness_key: str | None = None) -> list[dict[str, Any]]:
    """The events, oldest first. A sync's witness verdict is MLflow's tag, which anyone with
    write access can edit: with `witness_key` it is checked against the witness's signed verdict
    (an edited one reads ALTERED), without it the event says the verdict is unverified."""
    where = f"tags.`govkit.device_id` = '{device_id}'" if device_id else ""
    events: list[dict[str, Any]] = []
    seen: set[str] = set()
    shipped: list[tuple[Any, list[dict[str, Any]]]] = []
    for run in central.runs(experiment_ids, where):
        tags = run.data.tags
        if "govkit.version" not in tags:
            continue
        operation = tags.get("govkit.operation", "")
        base = {"device_id": tags.get("govkit.device_id", ""), "store_id": tags.get("govkit.store_id", ""),
                "model_id": tags.get("govkit.model_id", ""), "artifact_sha256": tags.get("govkit.artifact_sha256", ""),
                "run_id": run.info.run_id}
        if operation == "sync":
            witness = _witness(run, witness_key)
            count = int(run.data.metrics.get("records", 0))
            events.append({**base, "ts": _iso(run.info.start_time), "principle": "Governance", "operation": "sync",
                           "who": tags.get("mlflow.user", ""),
                           "what": f"{run.info.run_name}: {count} records shipped; witness: {witness}",
                           "evidence": f"seqs {tags.get('govkit.seq_range', '?')}, "
                                       f"head {tags.get('govkit.chain_head', '?')[:19]}"})
            if "oversight/records.json" in central.list(run.info.run_id, "oversight"):
                shipped.append((base, json.loads(central.download(run.info.run_id, "oversight/records.json"))))
            continue
        if tags.get("govkit.record_id"):
            seen.add(tags["govkit.record_id"])
        events.append({**base, "ts": _iso(run.info.start_time), "principle": tags.get("govkit.principle", ""),
                       "operation": operation, "who": tags.get("mlflow.user", ""), "what": run.info.run_name or "",
                       "evidence": f"record {tags.get('govkit.record_id', '?')} (seq {tags.get('govkit.seq_range', '?')})"})
    for base, records in shipped:
        for record in records:
            if record.get("record_id") in seen:
                continue
            seen.add(str(record.get("record_id")))
            event = str(record.get("event_type", ""))
            events.append({**base, "ts": str(record.get("ts_start", "")), "principle": PRINCIPLES.get(event, "Governance"),
                           "operation": event, "who": str(record.get("reviewer_id") or ""), "what": _summary(record),
                           "evidence": f"record {record.get('record_id')} (seq {record.get('seq')}, shipped)",
                           "artifact_sha256": str(record.get("artifact_sha256") or base["artifact_sha256"])})
    return sorted(events, key=lambda e: (e["ts"], e["device_id"], e["evidence"]))


def _witness(run: Any, witness_key: str | None) -> str:
    status = run.data.tags.get("govkit.witness.status")
    if status is None:
        return "not yet checked by the witness"
    if not witness_key:
        return f"{status} (unverified: MLflow's tag; --witness-key checks the witness's signature)"
    from .status import verdict_holds

    if not verdict_holds(run, witness_key):
        return f"ALTERED (the tags say {status}, which is not what the witness signed)"
    return f"{status} (signed by the witness)"


def _summary(record: dict[str, Any]) -> str:
    event = record.get("event_type")
    if event == "override":
        reason = f" ({record['override_reason']})" if record.get("override_reason") else ""
        return f"{record.get('human_decision', 'reviewed')} decision {record.get('target_record_id', '?')}{reason}"
    if event == "incident":
        return f"incident {record.get('incident_id') or ''} {record.get('status') or ''}: {record.get('error') or ''}".strip()
    details: dict[str, Any] = record["details"] if isinstance(record.get("details"), dict) else {}
    if event == "purge":
        return f"purge of {details.get('purged_items', '?')} stored text(s) ({', '.join(sorted(details.get('criteria', {})))})"
    return f"{event}: {details.get('action') or record.get('purpose') or ''}".strip()
