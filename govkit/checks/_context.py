"""The evidence a check reads: settings, the audit log, lineage, bias and explanation runs.

Everything is read lazily and once per run; checks never write (the log is opened read-only). Policy values a check uses come
from `policy` (built-in defaults below, overridable by a user checks folder's `POLICY` dict).
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..audit import AuditLog, AuditRecord, VerifyResult
from ..config import Settings
from ..timestamps import parse_ts
from ._model import HIGH_TIERS, NoEvidence

if TYPE_CHECKING:
    from ..lineage import LineageGraph

__all__ = ["DEFAULT_POLICY", "Context"]

DEFAULT_POLICY: dict[str, Any] = {
    "evidence_max_age_days": 90,  # bias and explanation evidence older than this is stale
    "checkpoint_max_age_hours": 24,  # the newest signed checkpoint must be this recent (or cover the head)
    "override_rate_max": 0.2,  # overrides per decision over the window (E-23: "excessive overrides")
    "override_window_days": 30,
    "explanation_coverage_min": 0.8,  # explained / eligible in the proxy's sampling
    "disclosure_share_min": 0.95,  # share of inference records that say the user was told it is AI
    "logging_quiet_days": 7,  # no inference record for this long while deployed: is logging on?
}


class Context:
    """What a check reads: the settings, the policy values, the audit store (read-only), the
    lineage graph, and the evidence about the model under review. Checks annotate `ctx: Context`."""

    def __init__(self, settings: Settings, *, policy: dict[str, Any] | None = None, now: dt.datetime | None = None):
        self.settings = settings
        self.policy = {**DEFAULT_POLICY, **(policy or {})}
        self.now = now or dt.datetime.now(dt.UTC)
        self._log: AuditLog | None = None

    @property
    def tier(self) -> str:
        return self.settings.model.risk_rating

    def policy_decision(self, setting: str) -> AuditRecord | None:
        """The newest chained decision on a policy setting (`govkit policy decide`)."""
        for record in reversed(self.records("config_change")):
            details = record.details or {}
            if details.get("action") == "policy_decision" and details.get("setting") == setting:
                return record
        return None

    def model_finding_blocks(self, setting: str, configured: str) -> tuple[bool, str]:
        """Whether a breach the model itself shows (fairness, counterfactual, decision quality)
        blocks, and what the reader must be told about it. "tier": for a high or critical model
        (or one not yet rated: failing closed) it blocks. "never" holds for such a model only when
        a chained policy decision says who set it and why; the report names them."""
        high = self.tier in HIGH_TIERS
        if configured == "always":
            return True, ""
        if configured == "tier":
            return high, ""
        if not high:  # "never", for a model below the high tier: as configured
            return False, ""
        decision = self.policy_decision(setting)
        details = (decision.details or {}) if decision else {}
        if decision is not None and details.get("value") == "never":
            return False, (f"{setting} is set not to block, by {details.get('by')} on {(decision.ts_start or '')[:10]}, "
                           f"because {details.get('reason')} (record {decision.record_id})")
        return True, (f"{setting} = \"never\" is not a chained decision, so for a {self.tier}-tier model a breach "
                      f"blocks; record one with: govkit policy decide {setting} never --by NAME --reason TEXT")

    @cached_property
    def log(self) -> AuditLog | None:
        if not self.settings.audit.db.exists():
            return None
        self._log = AuditLog.open(settings=self.settings, read_only=True)  # the gate reads; it never writes
        return self._log

    @property
    def store(self) -> AuditLog:
        """The audit store, for a check that cannot judge without one (NoEvidence when there is none)."""
        if self.log is None:
            raise NoEvidence(f"no audit store at {self.settings.audit.db}")
        return self.log

    @property
    def graph(self) -> LineageGraph:
        """The lineage graph, for a check that cannot judge without one (NoEvidence when there is none)."""
        if self.lineage is None:
            raise NoEvidence(f"no audit store at {self.settings.audit.db}, so no lineage")
        return self.lineage

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def records(self, event_type: str) -> list[AuditRecord]:
        cache = self.__dict__.setdefault("_records", {})
        if event_type not in cache:
            cache[event_type] = list(self.log.query(event_type=event_type)) if self.log else []
        return cache[event_type]

    def latest(self, event_type: str, **details: Any) -> AuditRecord | None:
        """The newest record of a type whose details match the given keys."""
        for record in reversed(self.records(event_type)):
            d = record.details or {}
            if all(d.get(k) == v for k, v in details.items()):
                return record
        return None

    def age_days(self, record: AuditRecord) -> float:
        stamp = parse_ts(record.ts_start)
        return (self.now - stamp).total_seconds() / 86400

    @cached_property
    def verified(self) -> VerifyResult | None:
        return self.log.verify() if self.log else None  # against govkit.toml's public key and store id

    @cached_property
    def lineage(self) -> LineageGraph | None:
        if self.log is None:
            return None
        from ..lineage import Lineage
        from ..tracking import Tracker

        return Lineage(self.log, settings=self.settings,
                       tracker=Tracker.disabled()).graph()

    @cached_property
    def decisions(self) -> list[AuditRecord]:
        """Inference records of live traffic (not evaluation or explanation calls)."""
        return [r for r in self.records("inference") if r.purpose not in ("evaluation", "explanation")]

    @cached_property
    def deployed_artifacts(self) -> set[str]:
        return {r.artifact_sha256 for r in self.decisions if r.artifact_sha256}

    @cached_property
    def attestations(self) -> Any:
        """The chained attestations read against the roster ([people] owner_public_key)."""
        from ..attest import Attestations

        return Attestations.from_records(self.settings.people.owner_public_key, self.records("attestation"))

    @cached_property
    def reviewed_artifacts(self) -> set[str]:
        """The model file(s) under review: the models linked to the deployment in the lineage,
        else the ones that answered live traffic. Evidence about any other model is not evidence."""
        from ..lineage.reviewed import reviewed_artifacts

        return reviewed_artifacts(self.lineage, self.decisions)

    def artifact_of(self, record: AuditRecord) -> str | None:
        """The model artifact a piece of evidence is about: its own, or that of the decision it targets."""
        if record.artifact_sha256:
            return record.artifact_sha256
        if record.target_record_id:
            target = self._inference_by_id.get(record.target_record_id)
            return target.artifact_sha256 if target is not None else None
        return None

    @cached_property
    def _inference_by_id(self) -> dict[str, AuditRecord]:
        return {r.record_id: r for r in self.records("inference")}

    def about_reviewed_model(self, records: list[AuditRecord]) -> tuple[list[AuditRecord], str]:
        """The records about the model under review, and a phrase saying what was found: how many,
        for which artifact, and what else was left out."""
        wanted = self.reviewed_artifacts
        kept: list[AuditRecord] = []
        others: dict[str, int] = {}
        for record in records:
            artifact = self.artifact_of(record)
            if artifact is not None and artifact in wanted:
                kept.append(record)
            else:
                name = _short(artifact) if artifact else "no model artifact"
                others[name] = others.get(name, 0) + 1
        target = ", ".join(_short(a) for a in sorted(wanted)) or "none known (link the model to the deployment)"
        phrase = f"{len(kept)} about the reviewed artifact {target}"
        if others:
            phrase += "; left out: " + ", ".join(f"{n} about {name}" for name, n in sorted(others.items()))
        return kept, phrase


def _short(sha256: str) -> str:
    return sha256[:19] + "…" if len(sha256) > 19 else sha256
