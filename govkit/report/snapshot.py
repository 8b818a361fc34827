"""The evidence a report is rendered from, taken once at `as_of`: the chain's head as of then,
what verify says of the store, the gate's last recorded run, the newest rating, bias and
explanation evidence, lineage, incidents and the period's KPIs. Everything in it cites its
records (seq, record id) and MLflow runs, and it is plain JSON: the report's manifest holds it
whole, so `govkit report verify` can take it again and compare figure by figure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re
import sqlite3
from collections.abc import Callable, Generator
from typing import Any

from ..audit import AuditLog, AuditRecord, querykeys
from ..audit.checkpoints import key_id
from ..audit.connect import connect_read_only
from ..audit.incidents import open_incidents
from ..config import Inventory, Settings
from ..errors import InputError
from ..inventory import chained_inventory
from ..remediation import limitations, remediation_plans
from ..timestamps import input_date, normalise_ts, parse_ts
from .kpis import period_kpis

__all__ = ["LARGE_LOG", "Period", "fleet_parameters", "parse_period", "take_fleet", "take_snapshot"]

LARGE_LOG = 100_000  # records from which a report's steps are shown as they run


@dataclasses.dataclass(frozen=True)
class Period:
    start: str  # inclusive, the store's UTC form
    end: str  # exclusive
    label: str  # "2026-Q4", or "2026-10-01 to 2026-12-31"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def parse_period(period: str | None = None, *, start: str | None = None, end: str | None = None) -> Period:
    """A quarter ("2026-Q4"), a month ("2026-11"), a year ("2026"), or dates from `start` to `end`
    (both days included)."""
    if period and (start or end):
        raise InputError("give a period or a start and end date, not both", parameter="period")
    if period:
        found = re.match(r"\d{4}", period)
        if found and not 1 <= int(found[0]) <= 9998:  # the period's end (the next year) must be a date too
            raise InputError("the year must be 0001 to 9998", parameter="period", value=period)
        quarter = re.fullmatch(r"(\d{4})-Q([1-4])", period)
        month = re.fullmatch(r"(\d{4})-(\d{2})", period)
        year = re.fullmatch(r"(\d{4})", period)
        if quarter:
            y, q = int(quarter[1]), int(quarter[2])
            first, after = dt.date(y, 3 * q - 2, 1), (dt.date(y + 1, 1, 1) if q == 4 else dt.date(y, 3 * q + 1, 1))
        elif month and 1 <= int(month[2]) <= 12:
            y, m = int(month[1]), int(month[2])
            first, after = dt.date(y, m, 1), (dt.date(y + 1, 1, 1) if m == 12 else dt.date(y, m + 1, 1))
        elif year:
            first, after = dt.date(int(year[1]), 1, 1), dt.date(int(year[1]) + 1, 1, 1)
        else:
            raise InputError("expected a quarter (2026-Q4), a month (2026-11) or a year (2026)",
                             parameter="period", value=period)
        return Period(normalise_ts(first.isoformat()), normalise_ts(after.isoformat()), period)
    if not (start and end):
        raise InputError("give a period (2026-Q4), or both a start and an end date", parameter="period")
    first_day = input_date(start, parameter="start")
    last_day = input_date(end, parameter="end")
    if last_day < first_day:
        raise InputError(f"ends before it starts ({start})", parameter="end", value=end)
    if last_day >= dt.date(9999, 12, 31):
        raise InputError("the last day must be before 9999-12-31", parameter="end", value=end)
    return Period(normalise_ts(first_day.isoformat()), normalise_ts((last_day + dt.timedelta(days=1)).isoformat()),
                  f"{first_day.isoformat()} to {last_day.isoformat()}")




def take_snapshot(log: AuditLog, settings: Settings, period: Period, *, as_of: str, head: int | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The evidence as of `as_of` (the store's UTC form): only records up to the last one started
    by then count, so records appended later change nothing. `head` pins that seq (a report
    being verified names its own). On a large log (LARGE_LOG records or more) `progress` hears
    each step's name as it starts."""
    with _reading(log) as db:
        if head is None:
            head = _head_as_of(db, as_of)
        step = progress if progress is not None and head >= LARGE_LOG else (lambda _name: None)
        head_row = db.execute("SELECT record_hash FROM records WHERE seq = ?", (head,)).fetchone()
        step(f"verifying the chain ({head:,} records)")
        verified = _verified(log)
        step("aggregating the period's KPIs")
        kpis = period_kpis(db, head=head, start=period.start, end=period.end)
        step("reading the governance records")
        records = _Records(db, head)
        identity = (records.first("genesis") or _EMPTY).details or {}
        checkpoint = records.last("checkpoint")
        gate_runs = records.all("check_run")
        gate = gate_runs[-1] if gate_runs else None
        rating = records.last("risk_rating")
        incidents = records.all("incident")
        inventory_record = chained_inventory(reversed(records.all("config_change")))
        chained = ((inventory_record.details or {}).get("inventory") or {}) if inventory_record else {}
        inventory = {**dataclasses.asdict(Inventory()), **chained}  # a field added since is shown empty
        snapshot = {
            "as_of": as_of,
            "period": period.to_dict(),
            "model": {"id": chained.get("id") or settings.model.id, "name": chained.get("name") or settings.model.name},
            "store": {"store_id": identity.get("store_id"), "head_seq": head,
                      "head_hash": head_row[0] if head_row else None,
                      "records": head, "model_calls": records.count("inference"),
                      "checkpoint": _checkpoint(checkpoint)},
            "verify": verified,
            "kpis": kpis,
            "gate": _gate(gate, gate_runs, as_of),
            "inventory": inventory,  # as chained by its as-of, not as govkit.toml says today
            "inventory_record": _cite(inventory_record, details=("digest",)) if inventory_record else None,
            "rating": _cite(rating, details=("tier", "score", "previous_rating")) if rating else None,
            "fairness": [_bias(r) for r in _newest_by_data(records.all("bias_run"))],
            "explanations": {"records": records.count("explanation"),
                             "newest": [_cite(r, fields=("target_record_id", "explanation_method", "artifact_sha256"))
                                        for r in records.newest("explanation", 5)]},
            "lineage": _lineage(records.all("lineage")),
            "incidents": {"total": len([r for r in incidents if (r.details or {}).get("action") != "resolved"]),
                          "open": [_cite(r, details=("action", "kind")) for r in open_incidents(incidents)]},
            "oversight": {"overrides_total": records.count("override")},
            "remediation": remediation_plans(records.all("remediation")),
            "attestations": _attestations(settings.people.owner_public_key, records.all("attestation")),
            "probes": _probes(records.last("probe_run")),
            "limitations": limitations(records.all("limitation")),
            "monitoring": _monitoring(records.all("monitor_window"), records.all("config_change"), incidents, period),
        }
    return json.loads(json.dumps(snapshot, sort_keys=True, default=str))  # plain JSON, as the manifest holds it


_EMPTY = AuditRecord(0, "", "", b"{}")


def _head_as_of(db: sqlite3.Connection, as_of: str) -> int:
    """The last seq started by `as_of`: from the query keys' time index, then the unkeyed tail."""
    upto = querykeys.keyed_upto(db)
    keyed = db.execute("SELECT coalesce(max(seq), 0) FROM record_keys WHERE ts_start <= ?", (as_of,)).fetchone()[0] \
        if upto else 0
    tail = db.execute("SELECT coalesce(max(seq), 0) FROM records WHERE seq > ? AND "
                      "json_extract(CAST(body AS TEXT), '$.ts_start') <= ?", (upto, as_of)).fetchone()[0]
    return int(max(keyed, tail))


class _Records:
    """Records up to the snapshot's head, found through the query keys (indexed by event type; the
    short tail after the last keyed record is scanned). The keys are a cache: verify, whose verdict
    the snapshot carries, checks every key against its record's body."""

    def __init__(self, db: sqlite3.Connection, head: int):
        self.db, self.head = db, head
        self._counts: dict[str, int] | None = None

    def _matching(self, event_type: str, limit: int | None, newest_first: bool) -> Generator[AuditRecord, None, None]:
        return querykeys.matching(self.db, [("{t}.event_type = ?", event_type)], [("r.seq <= ?", self.head)],
                                  limit, newest_first)

    def all(self, event_type: str) -> list[AuditRecord]:
        return list(self._matching(event_type, None, False))

    def first(self, event_type: str) -> AuditRecord | None:
        return querykeys.first(self._matching(event_type, 1, False))

    def last(self, event_type: str) -> AuditRecord | None:
        return querykeys.first(self._matching(event_type, 1, True))

    def newest(self, event_type: str, n: int) -> list[AuditRecord]:
        return list(reversed(list(self._matching(event_type, n, True))))

    def count(self, event_type: str) -> int:
        if self._counts is None:
            upto = min(querykeys.keyed_upto(self.db), self.head)
            counts: dict[str, int] = {}
            rows = [*(self.db.execute("SELECT event_type, count(*) FROM record_keys WHERE seq <= ? GROUP BY 1", (upto,))
                      if upto else []),
                    *self.db.execute("SELECT json_extract(CAST(body AS TEXT), '$.event_type'), count(*) FROM records "
                                     "WHERE seq > ? AND seq <= ? GROUP BY 1", (upto, self.head))]
            for name, n in rows:
                counts[str(name)] = counts.get(str(name), 0) + int(n)
            self._counts = counts
        return self._counts.get(event_type, 0)


class _reading:
    def __init__(self, log: AuditLog):
        self.db = connect_read_only(log.path)

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN")  # one snapshot of the store for every query
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _cite(record: AuditRecord, *, fields: tuple[str, ...] = (), details: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record as the report cites it: seq, id, time, MLflow run, and the named fields."""
    body = record.fields
    shown = {"seq": record.seq, "record_id": body.get("record_id"), "ts": body.get("ts_start"),
             "mlflow_run_id": body.get("mlflow_run_id")}
    shown.update({name: body.get(name) for name in fields})
    shown.update({name: (body.get("details") or {}).get(name) for name in details})
    return shown


def _probes(record: AuditRecord | None) -> dict[str, Any] | None:
    """The newest GenAI probe run: its set, seed, thresholds record and each category's figures."""
    if record is None:
        return None
    details = record.details or {}
    keep = ("n", "succeeded", "rate", "interval", "threshold", "status", "owasp", "nist_600_1", "to_settle", "reason")
    return {**_cite(record, fields=("artifact_sha256",)), "suite": details.get("suite"),
            "probe_set": {k: (details.get("probe_set") or {}).get(k) or "?" for k in ("name", "version", "sha256")},
            "seed": details.get("seed"), "probes": details.get("probes"),
            "seconds": details.get("seconds"), "thresholds_record": details.get("thresholds_record"),
            "status": details.get("status"), "previous_run": details.get("previous_run"),
            "categories": {name: {k: c.get(k) for k in keep} | {"regressed": bool(c.get("regression"))}
                           for name, c in (details.get("categories") or {}).items()}}


def _monitoring(windows: list[AuditRecord], changes: list[AuditRecord], incidents: list[AuditRecord],
                period: Period) -> dict[str, Any]:
    """The period's monitored windows (each signal's figure, no sketch), the plan they were judged
    by, and the breaches still open."""
    from ..monitoring.run import breach_details, breaches_open

    plans = [r for r in changes if (r.details or {}).get("action") == "monitoring_plan"]
    plan = (plans[-1].details or {}).get("plan") or {} if plans else {}
    newest: dict[tuple[Any, Any], AuditRecord] = {}  # a window judged again (a new plan) is shown as last judged
    for record in windows:
        window = (record.details or {}).get("window") or {}
        newest[(window.get("kind"), window.get("start"))] = record
    shown = []
    for record in sorted(newest.values(), key=lambda r: ((r.details or {}).get("window") or {}).get("start") or ""):
        d = record.details or {}
        start = (d.get("window") or {}).get("start") or ""
        if not period.start[:10] <= start[:10] < period.end[:10]:
            continue
        signals = d.get("signals") or {}
        figure = functools.partial(_figure, signals)
        shown.append({"record_id": record.record_id, "start": start, "kind": (d.get("window") or {}).get("kind"),
                      "status": d.get("status"), "calls": (signals.get("volume") or {}).get("calls"),
                      "p50": figure("latency_ms", "p50"), "p95": figure("latency_ms", "p95"),
                      "p99": figure("latency_ms", "p99"), "error_rate": figure("error_rate", "rate"),
                      "refusal_rate": figure("refusal_rate", "rate"), "truncation_rate": figure("truncation_rate", "rate"),
                      "redaction_rate": figure("redaction_rate", "rate"),
                      "input_psi": figure("input_tokens", "psi"), "output_psi": figure("output_tokens", "psi"),
                      "decision_psi": figure("decision", "psi"),
                      "breaches": [{"signal": b.get("signal"), "why": b.get("why")} for b in d.get("breaches") or []]})
    return {"windows": shown, "plan": {k: plan.get(k) for k in ("window", "reference", "latency_p95_ms",
                                                                 "psi_moderate", "psi_significant", "escalate_to",
                                                                 "escalate_hours", "contingency")} if plan else None,
            "plan_record_id": plans[-1].record_id if plans else None,
            "open_breaches": [{**_cite(r), **breach_details(r)} for r in breaches_open(incidents)]}


def _figure(signals: dict[str, Any], name: str, key: str) -> Any:
    value = (signals.get(name) or {}).get(key)
    return round(value, 6) if isinstance(value, float) else value


def _attestations(owner_key: str, records: list[AuditRecord]) -> dict[str, Any]:
    """Who signed what, as the roster (signed by the owner key govkit.toml pins) lets it hold."""
    from ..attest import Attestations

    found = Attestations.from_records(owner_key, records)
    return {"owner_key_id": key_id(owner_key) if owner_key else None,
            "roster": found.roster.listing(),
            "valid": [a.to_dict() for a in found.valid], "invalid": found.invalid}


def _checkpoint(record: AuditRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    details = record.details or {}
    return {"record_seq": record.seq, "signs_seq": details.get("seq"), "head_hash": details.get("head_hash"),
            "ts": details.get("ts"), "key_id": details.get("key_id")}


def _verified(log: AuditLog) -> dict[str, Any]:
    """What verify says of the whole store now: its verdict covers the records the report cites."""
    result = log.verify()
    return {"ok": result.ok, "trusted": result.trusted, "trusted_key": result.trusted_key, "scope": result.scope,
            "offsite_checkpoints": result.offsite_checkpoints, "problem_count": len(result.problems),
            "problems": [f"seq {p.seq}: {p.reason}" for p in result.problems[:10]]}


def _gate(record: AuditRecord | None, runs: list[AuditRecord], as_of: str) -> dict[str, Any] | None:
    """The gate's last recorded run, and for each finding in it since when it has stood: the first
    of the unbroken run of gate runs, back from the last, in which the control did not pass."""
    if record is None:
        return None
    details = record.details or {}
    results = details.get("results") or {}
    since = {}
    for check_id, result in results.items():
        if result.get("status") in ("PASS", "SKIP"):
            continue
        first = record
        for earlier in reversed(runs[:-1]):
            status = ((earlier.details or {}).get("results") or {}).get(check_id, {}).get("status")
            if status in (None, "PASS", "SKIP"):
                break
            first = earlier
        days = (parse_ts(as_of) - parse_ts(first.ts_start)).total_seconds() / 86400
        since[check_id] = {"since": first.ts_start, "since_record_id": first.record_id, "age_days": round(days, 1)}
    return {**_cite(record), "summary": details.get("summary"), "results": results, "open_since": since,
            "user_check_files": details.get("user_check_files") or {}}


def _bias(record: AuditRecord) -> dict[str, Any]:
    details = record.details or {}
    return {**_cite(record, fields=("artifact_sha256",)), "kind": details.get("kind"), "status": details.get("status"),
            "data": {k: (details.get("data") or {}).get(k) for k in ("name", "sha256")},
            "metrics": details.get("metrics") or {}, "groups": details.get("groups"),
            "quality": details.get("quality"), "pairs": details.get("pairs"), "to_conclude": details.get("to_conclude"),
            "warnings": (details.get("warnings") or [])[:10]}


def _newest_by_data(records: list[AuditRecord]) -> list[AuditRecord]:
    """The newest bias run of each (kind, data file): a later run on other data clears nothing."""
    newest: dict[tuple[Any, ...], AuditRecord] = {}
    for record in records:
        details = record.details or {}
        key = (details.get("kind"), (details.get("data") or {}).get("sha256"))
        newest[key] = record
    return sorted(newest.values(), key=lambda r: r.seq)


def _lineage(records: list[AuditRecord]) -> dict[str, Any]:
    actions: dict[str, int] = {}
    entities = []
    for record in records:
        details = record.details or {}
        action = details.get("action", "?")
        actions[action] = actions.get(action, 0) + 1
        entity = details.get("entity") or {}
        if entity:
            metadata = entity.get("metadata") or {}
            entities.append({"seq": record.seq, "id": entity.get("id"), "kind": entity.get("kind"),
                             "sha256": entity.get("sha256"), "mlflow_run_id": record.mlflow_run_id,
                             "findings": len(entity.get("findings") or []), "role": entity.get("role"),
                             "source": entity.get("source"), "license": entity.get("license") or metadata.get("license"),
                             "rows": entity.get("rows"), "base_model": entity.get("base_model") or entity.get("base_model_ref"),
                             "metadata": {k: metadata.get(k) for k in ("architecture", "parameter_count", "quantization",
                                                                        "context_length", "name") if metadata.get(k)}})
    return {"actions": dict(sorted(actions.items())), "entities": entities[-20:]}


def fleet_parameters(settings: Settings) -> dict[str, Any]:
    """What a fleet section is taken with, from [fleet] (this model's experiment by default)."""
    fleet = settings.fleet
    return {"central_uri": fleet.central, "registry": fleet.registry, "witness_public_key": fleet.witness_public_key,
            "experiments": fleet.experiments or (settings.model.id,), "silent_days": fleet.silent_days,
            "late_hours": fleet.late_hours}


def take_fleet(parameters: dict[str, Any], as_of: str) -> dict[str, Any]:
    """The fleet section of a snapshot: every device as the central store shows it at `as_of`."""
    from ..fleet.summary import fleet_summary

    return json.loads(json.dumps(fleet_summary(**parameters, as_of=as_of), sort_keys=True))


def claimed_fleet_parameters(fleet: dict[str, Any]) -> dict[str, Any]:
    """The parameters a report's fleet section was taken with, to take it again."""
    try:
        return {"central_uri": fleet["central"], "registry": (fleet.get("registry") or {}).get("path") or "",
                "witness_public_key": fleet.get("witness_public_key") or "",
                "experiments": tuple(fleet.get("experiments") or ()), "silent_days": float(fleet["silent_days"]),
                "late_hours": float(fleet["late_hours"])}
    except (KeyError, TypeError, ValueError):
        raise InputError("its manifest's fleet section lacks what it was taken with") from None


def default_as_of(period: Period) -> str:
    """The end of the period, or now if it has not ended (the manifest records which)."""
    now = dt.datetime.now(dt.UTC)
    end = parse_ts(period.end)
    return normalise_ts((min(now, end) - dt.timedelta(microseconds=1)).isoformat())
