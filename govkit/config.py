"""govkit.toml -> frozen settings.

Three tables: [model] is the model inventory record (OSFI E-23 Appendix 1 fields), [policy] the
institution's numbers (E-23 sets none, so every number is configurable), [audit] the log's
settings. Every problem is reported with the file, the key, the line and what was expected.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "CONFIG_FILENAME",
    "REDACTION_MODES",
    "find_config",
    "AuditSettings",
    "ExplainSettings",
    "FairnessPolicy",
    "QualityPolicy",
    "FleetSettings",
    "PeopleSettings",
    "Inventory",
    "MonitoringPlan",
    "Policy",
    "Settings",
    "SyncSettings",
    "TrackingSettings",
    "load_settings",
]

CONFIG_FILENAME = "govkit.toml"
REDACTION_MODES = ("digest-only", "redacted", "full")
RISK_RATINGS = ("unrated", "negligible", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Inventory:
    """The model inventory record: OSFI E-23 (2027) Appendix 1 minimum fields."""

    id: str = ""
    name: str = ""
    description: str = ""
    risk_rating: str = "unrated"
    owner: str = ""
    developer: str = ""
    origin: str = ""
    version: str = ""
    deployment_date: str = ""
    reviewer: str = ""
    approver: str = ""
    dependencies: tuple[str, ...] = ()
    data_sources: tuple[str, ...] = ()
    approved_uses: tuple[str, ...] = ()
    limitations: tuple[str, ...] = ()
    last_review: str = ""
    next_review: str = ""
    monitoring_status: str = ""
    rating_date: str = ""  # set by 'govkit inventory rate'
    rating_record: str = ""  # the audit record holding the worksheet and its reasoning


@dataclass(frozen=True)
class FairnessPolicy:
    """Fairness thresholds. No regulation fixes them (regulation.md §(d)); these are the conventions."""

    demographic_parity_difference: float = 0.1  # max |SPD| (holisticai, TrustyAI)
    demographic_parity_ratio: float = 0.8  # min
    equalized_odds_difference: float = 0.1  # max
    disparate_impact_ratio: float = 0.8  # min: UGESP four-fifths rule, 29 CFR 1607.4(D)
    min_group_size: int = 30  # smaller groups are reported but too small to judge
    max_flip_rate: float = 0.05  # counterfactual: the most decisions a swap of name or pronoun may flip
    confidence: float = 0.95
    # tier: a breach blocks for a high or critical model (E-23 P2.3) and warns below; always; never
    # (for a high or critical model only with a chained decision: govkit policy decide).
    blocking: str = "tier"


@dataclass(frozen=True)
class QualityPolicy:
    """How well the model must decide where the outcomes are known (E-23 performance, SR 11-7
    outcomes analysis): its accuracy against the decision that needs no model (the majority one)."""

    min_lift: float = 0.0  # accuracy points above the no-model baseline, at the lower end of its interval
    blocking: str = "tier"  # as [policy.fairness] blocking


BLOCKING_VALUES = ("tier", "always", "never")


@dataclass(frozen=True)
class Policy:
    retention_days: int = 183  # EU AI Act Art. 19/26(6): at least six months
    redaction: str = "redacted"
    patterns: tuple[tuple[str, str], ...] = ()  # (entity name, regex) from [policy.patterns]
    fairness: FairnessPolicy = field(default_factory=FairnessPolicy)
    quality: QualityPolicy = field(default_factory=QualityPolicy)
    # [policy.probes]: category -> the highest attack-success (or error) rate accepted, judged at
    # the upper end of its interval; a category with no threshold here is not judged.
    probes: tuple[tuple[str, float], ...] = ()
    # A device's probe rates may differ from a reference run of the same file by at most this much
    # (and not significantly): E-23 P3.5, production parity.
    probe_parity_tolerance: float = 0.10


@dataclass(frozen=True)
class AuditSettings:
    db: Path = Path(".govkit/audit.db")
    device_id: str = ""
    private_key: Path = Path(".govkit/device_ed25519.pem")
    public_key: str = ""  # base64 of the raw 32-byte Ed25519 public key
    store_id: str = ""  # the store `govkit init` created; writers refuse any other, verify fails on it
    redaction_engine: str = "builtin"  # or "presidio": Presidio's analyzer beside the built-in recognizers
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 300.0
    busy_timeout_s: float = 10.0


@dataclass(frozen=True)
class TrackingSettings:
    """MLflow, where every evidence-producing action is mirrored as a run."""

    enabled: bool = True
    tracking_uri: str = ""  # default: a SQLite store beside the audit log (.govkit/mlflow.db)
    experiment: str = ""  # default: the inventory model id


@dataclass(frozen=True)
class SyncSettings:
    """`govkit sync`: shipping this device's log to the fleet's central MLflow."""

    to: str = ""  # the central tracking URI (default for `govkit sync --to`)
    ship_content: bool = False  # whether the stored (redacted) text may leave the device
    segment_records: int = 20000  # records per segment at most
    witness_public_key: str = ""  # the central witness's key: its acknowledgements are checked with it
    retries: int = 3  # MLflow's retries with backoff before a sync gives up (nothing is lost)


@dataclass(frozen=True)
class FleetSettings:
    """The central side's view of the fleet: `govkit report board --fleet` reads it from here."""

    central: str = ""  # the central tracking URI (default: [sync] to)
    registry: str = ""  # the device registry (TOML) the witness trusts; relative to govkit.toml
    witness_public_key: str = ""  # acknowledgements count only if this key verifies them (default: [sync]'s)
    experiments: tuple[str, ...] = ()  # only these models' experiments (default: every experiment)
    silent_days: float = 7.0  # a device with no sync for longer is silent
    late_hours: float = 24.0  # a sync not acknowledged within this many hours is late


@dataclass(frozen=True)
class ExplainSettings:
    """Explanations the proxy makes in the background for a sample of live decisions."""

    sample_rate: float = 0.0  # share of eligible chat completions to explain (0: none)
    match: str = ""  # also explain every decision whose answer matches this regular expression
    choices: tuple[str, ...] = ()  # the decision's possible answers, e.g. ["approve", "deny"]
    positive: str = ""
    max_evals: int = 100  # shap budget per explanation
    max_queue: int = 32  # explanations waiting; beyond this a sampled record is counted as dropped
    segments: str = "word"
    idle_ms: float = 500.0  # evaluate only after the proxy has had no request for this long


@dataclass(frozen=True)
class PeopleSettings:
    """Who may sign: the roster's trust anchor and how fresh the signed evidence must be."""

    owner_public_key: str = ""  # the model owner's own key (never the device key): it signs the roster
    review_max_age_days: int = 365  # a review older than this is stale
    training_max_age_days: int = 365  # an overseer trained longer ago is not current (AI Act Art. 14(4), 26(2))
    board_report_max_age_days: int = 100  # the board must have acknowledged a report this recent


@dataclass(frozen=True)
class MonitoringPlan:
    """[monitoring]: what is watched, over which windows, against which reference, with which
    thresholds, who answers a breach by when, and what happens if nobody does (E-23 P3.6). A
    [monitoring.tiers.<rating>] table changes any of these for models of that risk rating. The
    defaults are Evidently's (p 0.05; normed Wasserstein and Jensen-Shannon 0.1) and the board's
    PSI bands (0.1 and 0.25)."""

    window: str = "day"  # hour, day or week (UTC; weeks start on Monday)
    # "approval": the reference_windows windows of production after the newest signed approval;
    # or a named period "YYYY-MM-DD/YYYY-MM-DD" (the end day not included)
    reference: str = "approval"
    reference_windows: int = 7
    # a window with fewer production calls is shown, not judged: below a few hundred calls a window,
    # the distance tests and PSI flag sampling noise (a weekly window gathers more)
    min_calls: int = 100
    decision_choices: tuple[str, ...] = ()  # a declared decision prompt's answers (default: [explain] choices)
    positive: str = ""  # the favourable one (default: [explain] positive)
    group_attributes: tuple[str, ...] = ()  # attributes a call may carry (header X-Govkit-Group: name=value)
    latency_p95_ms: float = 0.0  # the latency SLO (0: none)
    latency_p99_ms: float = 0.0
    p_value: float = 0.05  # KS, chi-square and z-tests (Evidently's default)
    wasserstein: float = 0.1  # normed Wasserstein distance, over 1,000 reference calls (Evidently)
    jensen_shannon: float = 0.1  # Jensen-Shannon distance, over 1,000 reference calls (Evidently)
    psi_moderate: float = 0.1
    psi_significant: float = 0.25  # PSI above this is a breach
    min_rate_change: float = 0.01  # a rate must also move this much (absolute) to breach
    # prompt-text drift on the served model's own embeddings (its OpenAI-compatible base URL, with
    # /embeddings on: govkit serve --embedding); "" leaves it off
    text_endpoint: str = ""
    text_sample: int = 500  # prompts embedded a side, at most
    text_auc: float = 0.55  # a classifier telling the window from the reference above this: drift (Evidently)
    escalate_to: str = ""  # who answers a breach
    escalate_hours: float = 72.0  # by when (the incident's deadline)
    contingency: str = ""  # what is done meanwhile, e.g. "route decisions to manual review"

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def digest(self) -> str:
        import hashlib
        import json

        return "sha256:" + hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Settings:
    path: Path | None
    model: Inventory = field(default_factory=Inventory)
    policy: Policy = field(default_factory=Policy)
    audit: AuditSettings = field(default_factory=AuditSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    explain: ExplainSettings = field(default_factory=ExplainSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    people: PeopleSettings = field(default_factory=PeopleSettings)
    monitoring: MonitoringPlan = field(default_factory=MonitoringPlan)
    monitoring_tiers: tuple[tuple[str, MonitoringPlan], ...] = ()  # risk rating -> its plan

    def monitoring_plan(self, rating: str | None = None) -> MonitoringPlan:
        """The plan for the model's risk rating (or the one given): [monitoring] with its tier's changes."""
        return dict(self.monitoring_tiers).get(rating or self.model.risk_rating, self.monitoring)


def find_config(start: Path | None = None) -> Path:
    """The govkit.toml of the project the folder is in: found by walking up from `start` (default:
    the current folder), as git finds its repository; ./govkit.toml when there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return here / CONFIG_FILENAME


def load_settings(path: str | Path | None = None) -> Settings:
    """Read govkit.toml (default: the project's, found from the current folder up). Relative paths
    resolve against its folder."""
    path = Path(path) if path is not None else find_config()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file; run 'govkit init' first") from None
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"invalid TOML: {exc}") from None
    return _Parser(path, text).settings(data)


class _Parser:
    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def fail(self, section: str, key: str | None, message: str) -> ConfigError:
        dotted = f"{section}.{key}" if key else section
        return ConfigError(self.path, dotted, message, _line_of(self.text, section, key))

    def settings(self, data: dict[str, Any]) -> Settings:
        for name in data:
            if name not in ("model", "policy", "audit", "tracking", "explain", "sync", "fleet", "people", "monitoring"):
                raise self.fail(name, None, "unknown table; expected [model], [policy], [audit], [tracking], "
                                            "[explain], [sync], [fleet], [people] or [monitoring]")
        model = self.table(data, "model", Inventory)
        if model.risk_rating not in RISK_RATINGS:
            raise self.fail("model", "risk_rating", f"expected one of {', '.join(RISK_RATINGS)}")
        policy_data = dict(self.section(data, "policy"))
        patterns = self.patterns(policy_data.pop("patterns", {}))
        fairness_data = dict(self.section(policy_data, "fairness"))
        policy_data.pop("fairness", None)
        fairness = self.table({"policy.fairness": fairness_data}, "policy.fairness", FairnessPolicy,
                              blocking=self.blocking("policy.fairness", fairness_data.pop("blocking", "tier")))
        quality_data = dict(self.section(policy_data, "quality"))
        policy_data.pop("quality", None)
        quality = self.table({"policy.quality": quality_data}, "policy.quality", QualityPolicy,
                             blocking=self.blocking("policy.quality", quality_data.pop("blocking", "tier")))
        probes = self.probe_thresholds(policy_data.pop("probes", {}))
        if not 0 < fairness.confidence < 1:
            raise self.fail("policy.fairness", "confidence", "expected a number between 0 and 1, e.g. 0.95")
        if fairness.min_group_size < 2:
            raise self.fail("policy.fairness", "min_group_size", "expected at least 2")
        policy = self.table({"policy": policy_data}, "policy", Policy, patterns=patterns, fairness=fairness,
                            quality=quality, probes=probes)
        if policy.redaction not in REDACTION_MODES:
            raise self.fail("policy", "redaction", f"expected one of {', '.join(REDACTION_MODES)}")
        if policy.retention_days < 1:
            raise self.fail("policy", "retention_days", "expected a positive number of days")
        audit = self.table(data, "audit", AuditSettings)
        if audit.checkpoint_every < 1:
            raise self.fail("audit", "checkpoint_every", "expected a positive number of records")
        if audit.redaction_engine not in ("builtin", "presidio"):
            raise self.fail("audit", "redaction_engine", "expected \"builtin\" or \"presidio\"")
        if audit.public_key and not _is_public_key(audit.public_key):
            raise self.fail("audit", "public_key", "expected the base64 of a 32-byte Ed25519 public key")
        base = self.path.parent
        audit = dataclasses.replace(audit, db=base / audit.db, private_key=base / audit.private_key)
        tracking = self.table(data, "tracking", TrackingSettings)
        explain = self.table(data, "explain", ExplainSettings)
        self.check_explain(explain)
        sync = self.table(data, "sync", SyncSettings)
        if sync.segment_records < 1:
            raise self.fail("sync", "segment_records", "expected a positive number of records")
        if sync.witness_public_key and not _is_public_key(sync.witness_public_key):
            raise self.fail("sync", "witness_public_key", "expected the base64 of a 32-byte Ed25519 public key")
        fleet = self.table(data, "fleet", FleetSettings)
        if fleet.witness_public_key and not _is_public_key(fleet.witness_public_key):
            raise self.fail("fleet", "witness_public_key", "expected the base64 of a 32-byte Ed25519 public key")
        fleet = dataclasses.replace(fleet, central=fleet.central or sync.to,
                                    registry=str(base / fleet.registry) if fleet.registry else "",
                                    witness_public_key=fleet.witness_public_key or sync.witness_public_key)
        people = self.table(data, "people", PeopleSettings)
        if people.owner_public_key and not _is_public_key(people.owner_public_key):
            raise self.fail("people", "owner_public_key", "expected the base64 of a 32-byte Ed25519 public key")
        monitoring, tiers = self.monitoring(data, explain)
        return Settings(path=self.path, model=model, policy=policy, audit=audit, tracking=tracking, explain=explain,
                        sync=sync, fleet=fleet, people=people, monitoring=monitoring, monitoring_tiers=tiers)

    def monitoring(self, data: dict[str, Any], explain: ExplainSettings
                   ) -> tuple[MonitoringPlan, tuple[tuple[str, MonitoringPlan], ...]]:
        raw = dict(self.section(data, "monitoring"))
        tiers_data = raw.pop("tiers", {})
        base = self.plan("monitoring", raw, MonitoringPlan(decision_choices=explain.choices, positive=explain.positive))
        if not isinstance(tiers_data, dict):
            raise self.fail("monitoring.tiers", None, "expected tables [monitoring.tiers.<risk rating>]")
        tiers = []
        for rating, values in sorted(tiers_data.items()):
            if rating not in RISK_RATINGS:
                raise self.fail("monitoring.tiers", rating, f"expected one of {', '.join(RISK_RATINGS)}")
            if not isinstance(values, dict):
                raise self.fail(f"monitoring.tiers.{rating}", None, "expected a table")
            tiers.append((rating, self.plan(f"monitoring.tiers.{rating}", values, base)))
        return base, tuple(tiers)

    def plan(self, section: str, values: dict[str, Any], base: MonitoringPlan) -> MonitoringPlan:
        declared = typing.get_type_hints(MonitoringPlan)
        changes = {}
        for key, value in values.items():
            if key not in declared:
                raise self.fail(section, key, f"unknown key; expected one of {', '.join(sorted(declared))}")
            changes[key] = self.coerce(section, key, value, declared[key])
        plan = dataclasses.replace(base, **changes)
        if plan.window not in ("hour", "day", "week"):
            raise self.fail(section, "window", "expected hour, day or week")
        if plan.reference != "approval" and not re.fullmatch(r"\d{4}-\d{2}-\d{2}/\d{4}-\d{2}-\d{2}", plan.reference):
            raise self.fail(section, "reference", 'expected "approval" or a period "YYYY-MM-DD/YYYY-MM-DD"')
        if plan.text_sample < 20:
            raise self.fail(section, "text_sample", "expected at least 20 prompts a side")
        if plan.reference_windows < 1 or plan.min_calls < 1:
            raise self.fail(section, "reference_windows" if plan.reference_windows < 1 else "min_calls",
                            "expected a positive number")
        if not 0 < plan.p_value < 1:
            raise self.fail(section, "p_value", "expected a number between 0 and 1, e.g. 0.05")
        if plan.psi_significant < plan.psi_moderate:
            raise self.fail(section, "psi_significant", "expected at least psi_moderate")
        bad = [a for a in plan.group_attributes if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,39}", a)]
        if bad:
            raise self.fail(section, "group_attributes", f"not an attribute name: {bad[0]!r} (letters, digits, _)")
        if plan.positive and plan.positive not in plan.decision_choices:
            raise self.fail(section, "positive", "expected one of decision_choices")
        return plan

    def probe_thresholds(self, data: Any) -> tuple[tuple[str, float], ...]:
        if not isinstance(data, dict):
            raise self.fail("policy.probes", None, "expected a table of category = rate")
        out = []
        for name, value in sorted(data.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise self.fail("policy.probes", name, "expected a rate from 0 to 1")
            out.append((name, float(value)))
        return tuple(out)

    def blocking(self, section: str, value: Any) -> str:
        """A `blocking` key: "tier", "always" or "never" (true and false, as written before, mean
        always and never)."""
        if value is True or value is False:
            return "always" if value else "never"
        if isinstance(value, str) and value in BLOCKING_VALUES:
            return value
        raise self.fail(section, "blocking", 'expected "tier", "always" or "never"')

    def check_explain(self, explain: ExplainSettings) -> None:
        if not 0 <= explain.sample_rate <= 1:
            raise self.fail("explain", "sample_rate", "expected a share between 0 and 1")
        try:
            re.compile(explain.match)
        except re.error as exc:
            raise self.fail("explain", "match", f"invalid regular expression: {exc}") from None
        if (explain.sample_rate or explain.match) and (len(explain.choices) < 2 or explain.positive not in explain.choices):
            raise self.fail("explain", "choices", "sampling explanations needs two or more choices and a "
                                                  "positive one among them")
        if explain.segments not in ("word", "sentence"):
            raise self.fail("explain", "segments", "expected word or sentence")

    def section(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, None, "expected a table")
        return value

    def table(self, data: dict[str, Any], name: str, cls: type, **fixed: Any) -> Any:
        values: dict[str, Any] = {}
        declared = typing.get_type_hints(cls)  # the field types themselves, not their spelling
        for key, value in self.section(data, name).items():
            if key not in declared or key in fixed:
                raise self.fail(name, key, f"unknown key; expected one of {', '.join(sorted(declared))}")
            values[key] = self.coerce(name, key, value, declared[key])
        return cls(**values, **fixed)

    def coerce(self, section: str, key: str, value: Any, kind: Any) -> Any:
        """`value` as the declared type `kind` of the field (str, bool, int, float, Path or
        tuple[str, ...]), or a config error naming the key."""
        if kind is str:
            if isinstance(value, (dt.date, dt.datetime)):
                return value.isoformat()
            if isinstance(value, str):
                return value
            raise self.fail(section, key, f"expected a string, got {_toml_type(value)}")
        if kind == tuple[str, ...]:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise self.fail(section, key, "expected a list of strings")
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise self.fail(section, key, f"expected true or false, got {_toml_type(value)}")
        if kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise self.fail(section, key, f"expected an integer, got {_toml_type(value)}")
        if kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                return float(value)
            raise self.fail(section, key, f"expected a non-negative number, got {_toml_type(value)}")
        if kind is Path:
            if isinstance(value, str) and value:
                return Path(value)
            raise self.fail(section, key, "expected a path string")
        raise AssertionError(f"unhandled config type {kind}")  # pragma: no cover

    def patterns(self, value: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise self.fail("policy", "patterns", "expected a table of NAME = \"regex\"")
        out = []
        for name, regex in value.items():
            if not isinstance(regex, str):
                raise self.fail("policy.patterns", name, "expected a regular expression string")
            try:
                re.compile(regex)
            except re.error as exc:
                raise self.fail("policy.patterns", name, f"invalid regular expression: {exc}") from None
            out.append((name.upper(), regex))
        return tuple(out)


def _is_public_key(text: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line number of `key` inside `[section]` (or of the section header)."""
    current = ""
    header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
    for number, line in enumerate(text.splitlines(), 1):
        match = header.match(line)
        if match:
            current = match.group(1)
            if key is None and current == section:
                return number
            continue
        if key and current == section and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return None
