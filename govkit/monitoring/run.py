"""`govkit monitor run`: every closed window of production calls since the reference, judged
against it, chained once (a window already chained under the same plan and reference is not
judged again, so a cron job may run it as often as it likes), mirrored to MLflow, and each new
breach an incident with its owner, deadline and contingency."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..audit import AuditLog, AuditRecord
from ..audit.connect import connect_read_only
from ..audit.incidents import open_incidents
from ..audit.querykeys import keyed_upto
from ..config import MonitoringPlan, Settings
from ..timestamps import normalise_ts, parse_ts, utc_now
from .judge import judge_window
from .sketch import STEP, WINDOW_FORMAT, Sketch, sketch_batches, window_end

__all__ = ["BREACH", "MonitorRun", "Reference", "breach_details", "breaches_open", "open_breaches", "reference_period",
           "run_monitoring", "store_sketches"]

BREACH = "monitoring_breach"  # the incident kind a breach opens
_BATCH = 50_000
# The seq range of the inference records started in [start, end), by the keys' time index; then
# the bodies of that range in seq order (a rowid range scan: cheaper than a join through the keys
# when, as here, most records are calls; DuckDB drops what is not a production call of a window).
_FIRST = ("SELECT seq FROM record_keys WHERE seq <= ? AND +ts_start >= ? AND +ts_start < ? "
          "AND +event_type = 'inference' ORDER BY seq {} LIMIT 1")  # the keys in seq order, not by the time index
_SPAN = "SELECT body FROM records WHERE seq BETWEEN ? AND ?"
_TAIL = "SELECT body FROM records WHERE seq > ?"


@dataclass(frozen=True)
class Reference:
    start: str
    end: str
    how: str  # what fixed it, in words

    @property
    def key(self) -> str:
        return f"{self.start}/{self.end}"


@dataclass
class MonitorRun:
    status: str  # ok, breach, no reference, or nothing to judge
    message: str
    plan_digest: str
    reference: Reference | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)  # judged and chained by this run
    already: int = 0  # windows chained by an earlier run
    opened: list[str] = field(default_factory=list)  # incidents this run opened
    still_open: list[AuditRecord] = field(default_factory=list)  # every open breach, old ones too


def _floor(ts: dt.datetime, kind: str) -> dt.datetime:
    ts = ts.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    if kind == "hour":
        return ts
    ts = ts.replace(hour=0)
    return ts - dt.timedelta(days=ts.weekday()) if kind == "week" else ts


def _text(ts: dt.datetime) -> str:
    return ts.strftime(WINDOW_FORMAT)


def reference_period(log: AuditLog, settings: Settings, plan: MonitoringPlan) -> Reference | str:
    """The reference the plan names, or why there is none (and what would settle it)."""
    if plan.reference != "approval":
        first, last = plan.reference.split("/")
        return Reference(f"{first}T00:00:00Z", f"{last}T00:00:00Z", f"the named period {plan.reference}")
    from ..attest.ledger import Attestations

    if not settings.people.owner_public_key:
        return ("the reference is the period after the newest signed approval, and no approval can be read: "
                "set [people] owner_public_key and sign one (govkit approve), or name a period in "
                "[monitoring] reference = \"YYYY-MM-DD/YYYY-MM-DD\"")
    approvals = Attestations.from_records(settings.people.owner_public_key,
                                          list(log.query(event_type="attestation"))).of_kind("approval")
    if not approvals:
        return ("no signed approval yet: the reference is the production after it (govkit approve), or name a "
                "period in [monitoring] reference = \"YYYY-MM-DD/YYYY-MM-DD\"")
    newest = max(approvals, key=lambda a: a.record.seq)
    signed = parse_ts(newest.record.ts_start)
    start = _floor(signed, plan.window)
    start = start if start == signed else start + STEP[plan.window]
    end = start + STEP[plan.window] * plan.reference_windows
    return Reference(_text(start), _text(end), f"the {plan.reference_windows} {plan.window}(s) after the approval "
                                                f"{newest.record.record_id} signed by {newest.person.name}")


def _bodies(db: sqlite3.Connection, start: str, end: str) -> Iterator[list[bytes]]:
    """Batches of bodies holding every inference record started in [start, end): the keyed ones'
    seq range and the unkeyed tail, whole (the sketch keeps only production calls of its windows)."""
    keyed = keyed_upto(db)
    # compared as text with the stored times, so in the store's own form: "...T00:00:00Z" sorts
    # after "...T00:00:00.000000Z", and a call at midnight would fall out of its window
    start, end = normalise_ts(start), normalise_ts(end)
    low = db.execute(_FIRST.format("ASC"), (keyed, start, end)).fetchone()
    high = db.execute(_FIRST.format("DESC"), (keyed, start, end)).fetchone()
    spans = [(_SPAN, (low[0], high[0]))] if low is not None and high is not None else []
    for query, params in (*spans, (_TAIL, (keyed,))):
        cursor = db.execute(query, params)
        while rows := cursor.fetchmany(_BATCH):
            yield [row[0] for row in rows]


def store_sketches(log: AuditLog, *, window: str, start: str, end: str,
                   attributes: tuple[str, ...] = ()) -> dict[str, Sketch]:
    """The sketch of each window (by its start) of the store's production calls in [start, end)."""
    db = connect_read_only(log.path)
    try:
        db.execute("BEGIN")  # one snapshot for both queries
        found = sketch_batches(_bodies(db, start, end), device="", window=window, attributes=attributes)
    finally:
        db.close()
    return {win: sketch for (_device, win), sketch in found.items() if start <= win < end}


def _chained_windows(log: AuditLog) -> set[tuple[Any, ...]]:
    out = set()
    for record in log.query(event_type="monitor_window"):
        details = record.details or {}
        out.add((details.get("window", {}).get("kind"), details.get("window", {}).get("start"),
                 details.get("plan_digest"), details.get("reference", {}).get("key")))
    return out


def _chain_plan(log: AuditLog, settings: Settings, plan: MonitoringPlan) -> str:
    """The plan's digest, chained (with the plan) whenever it differs from the newest chained one."""
    digest = plan.digest()
    newest = None
    for record in log.query(event_type="config_change"):
        if (record.details or {}).get("action") == "monitoring_plan":
            newest = record
    if newest is None or (newest.details or {}).get("digest") != digest:
        log.append("config_change", model_id=settings.model.id, details={
            "action": "monitoring_plan", "digest": digest, "tier": settings.model.risk_rating, "plan": plan.to_dict()})
    return digest


def breaches_open(incidents: Iterable[AuditRecord]) -> list[AuditRecord]:
    """Of these incident records, the open ones a monitoring breach opened, oldest first."""
    return [r for r in open_incidents(incidents) if (r.details or {}).get("kind") == BREACH]


def open_breaches(log: AuditLog) -> list[AuditRecord]:
    """The store's open monitoring breaches, oldest first."""
    return breaches_open(log.query(event_type="incident"))


def breach_details(record: AuditRecord) -> dict[str, Any]:
    """What a breach incident says: the signal, why, the window, who answers it by when, and meanwhile."""
    details = record.details or {}
    return {key: details.get(key) for key in ("signal", "why", "window", "owner", "due", "contingency")}


def run_monitoring(log: AuditLog, settings: Settings, *, as_of: str | None = None, tracked: bool = True) -> MonitorRun:
    """Judge and chain every closed window since the reference up to `as_of` (default: now)."""
    from ..evidence import evidence_run
    from ..tracking import Tracker

    plan = settings.monitoring_plan()
    digest = _chain_plan(log, settings, plan)
    reference = reference_period(log, settings, plan)
    if isinstance(reference, str):
        return MonitorRun("no reference", reference, digest, still_open=open_breaches(log))
    now = parse_ts(as_of) if as_of else parse_ts(utc_now())
    last_end = _floor(now, plan.window)
    chained = _chained_windows(log)
    windows = []
    cursor = parse_ts(reference.end)
    while cursor + STEP[plan.window] <= last_end:
        start = _text(cursor)
        if (plan.window, start, digest, reference.key) not in chained:
            windows.append(start)
        cursor += STEP[plan.window]
    already = sum(1 for key in chained if key[2] == digest and key[3] == reference.key)
    # one pass over the store where the windows to judge follow the reference (a first run), two otherwise
    contiguous = bool(windows) and windows[0] == reference.end
    read_end = window_end(windows[-1], plan.window) if contiguous else reference.end
    found = store_sketches(log, window=plan.window, start=reference.start, end=read_end,
                           attributes=plan.group_attributes)
    ref_sketches = {win: s for win, s in found.items() if win < reference.end}
    base = Sketch()
    for sketch in ref_sketches.values():
        base.add(sketch)
    reference_windows = math.ceil((parse_ts(reference.end) - parse_ts(reference.start)) / STEP[plan.window])
    if base.calls < plan.min_calls:
        return MonitorRun("no reference", f"the reference ({reference.how}, {reference.key}) holds {base.calls} "
                          f"production calls, fewer than min_calls = {plan.min_calls}: nothing can be judged against "
                          "it; name a period with traffic in [monitoring] reference", digest, reference,
                          already=already, still_open=open_breaches(log))
    if not windows:
        still = open_breaches(log)
        return MonitorRun("breach" if still else "nothing to judge",
                          f"no closed {plan.window} window since {reference.end} is left to judge", digest, reference,
                          already=already, still_open=still)
    current = found if contiguous else store_sketches(log, window=plan.window, start=windows[0],
                                                      end=window_end(windows[-1], plan.window),
                                                      attributes=plan.group_attributes)
    tracker = Tracker.from_settings(settings, log.path) if tracked else Tracker.disabled()
    opened_signals = {(r.details or {}).get("signal") for r in open_breaches(log)}
    result = MonitorRun("ok", "", digest, reference, already=already)
    reference_info = {"start": reference.start, "end": reference.end, "key": reference.key, "how": reference.how,
                      "calls": base.calls, "windows": reference_windows}
    texts: dict[str, Any] = {}  # the reference's embeddings, once a run
    for start in windows:
        sketch = current.get(start, Sketch())
        judged = judge_window(base, sketch, plan, reference_windows=reference_windows)
        if plan.text_endpoint and judged["status"] != "not judged":
            _judge_text(log, settings, plan, reference, start, judged, texts)
        details = {"window": {"kind": plan.window, "start": start, "end": window_end(start, plan.window)},
                   "plan_digest": digest, "tier": settings.model.risk_rating, "reference": reference_info,
                   **judged, "sketch": sketch.to_json()}
        with evidence_run(log, tracker, f"monitor window {start}", {"govkit.event": "monitor_window"}) as evidence:
            evidence.run.log_params({"window": plan.window, "start": start, "plan_digest": digest,
                                     "reference": reference.key})
            evidence.run.log_metrics(_metrics(judged))
            evidence.run.log_dict(details, "monitor_window.json")
            record = evidence.append("monitor_window", model_id=settings.model.id, details=details)
        window = {"record_id": record.record_id, **details}
        result.windows.append(window)
        for breach in judged["breaches"]:
            if breach["signal"] in opened_signals:
                continue  # already open and unresolved: this window is named in its record, not a new incident
            opened_signals.add(breach["signal"])
            result.opened.append(_open_incident(log, settings, plan, record, start, breach).record_id)
    result.still_open = open_breaches(log)
    result.status = "breach" if result.still_open else "ok"
    judged_n = sum(1 for w in result.windows if w["status"] != "not judged")
    result.message = (f"{len(result.windows)} {plan.window} window(s) chained ({judged_n} judged), "
                      f"{len(result.opened)} new breach(es), {len(result.still_open)} open")
    return result


def _judge_text(log: AuditLog, settings: Settings, plan: MonitoringPlan, reference: Reference, start: str,
                judged: dict[str, Any], cache: dict[str, Any]) -> None:
    from .textdrift import text_drift

    found = text_drift(log, plan.text_endpoint, reference=(reference.start, reference.end),
                       window=(start, window_end(start, plan.window)), sample=plan.text_sample,
                       threshold=plan.text_auc, model_id=settings.model.id, cached=cache)
    judged["signals"]["prompt_text"] = found
    if found["breach"]:
        judged["breaches"].append({"signal": "prompt_text", "why": f"prompt text drifted: a classifier tells this "
                                   f"window's prompts from the reference's with ROC AUC {found['auc']:.3f} (over "
                                   f"{plan.text_auc:g}; {found['window_texts']} and {found['reference_texts']} "
                                   "prompts embedded by the served model)", "value": found["auc"]})
        judged["status"] = "breach"


def _metrics(judged: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {"calls": float(judged["signals"]["volume"]["calls"]), "breaches": float(len(judged["breaches"]))}
    for name, signal in judged["signals"].items():
        if not isinstance(signal, dict):
            continue
        for key in ("rate", "psi", "p95", "p99"):
            if isinstance(signal.get(key), (int, float)):
                out[f"{name}.{key}"] = float(signal[key])
    return out


def _open_incident(log: AuditLog, settings: Settings, plan: MonitoringPlan, window_record: AuditRecord, start: str,
                   breach: dict[str, Any]) -> AuditRecord:
    owner = plan.escalate_to or settings.model.owner  # nobody named: the incident says so, and GOV-015 fails
    due = parse_ts(window_record.ts_start) + dt.timedelta(hours=plan.escalate_hours)
    return log.append("incident", model_id=settings.model.id, target_record_id=window_record.record_id,
                      anomaly_flag=True, details={
                          "kind": BREACH, "signal": breach["signal"], "why": breach["why"], "window": start,
                          "owner": owner or "nobody named ([monitoring] escalate_to)",
                          "due": _text(due), "contingency": plan.contingency or
                          "none named ([monitoring] contingency)", "plan_digest": window_record.details["plan_digest"]})

