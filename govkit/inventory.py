"""The model inventory record (OSFI E-23 P2.1, Appendix 1) and the risk-rating worksheet (P2.2).

`validate` checks the record in govkit.toml: the Appendix 1 minimum fields for every model, the
extended fields for every model whose tier is not negligible (an unrated model counts as not
negligible), dates that parse, a review that is not overdue, and a reviewer who is neither the
developer nor the owner (P3.4). `rate` turns worksheet answers into a tier and keeps the reasoning.

The worksheet's weights and cut-offs are govkit's defaults, not OSFI's: E-23 asks for "clear,
measurable criteria" and leaves them to the institution.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import Inventory, Settings
from .errors import ConfigError, InputError
from .timestamps import parse_date

__all__ = ["EXTENDED_FIELDS", "FACTORS", "LEVELS", "MINIMUM_FIELDS", "Finding", "Rating", "RecordedRating", "rate",
           "chain_inventory", "chained_inventory", "inventory_digest", "read_answers", "record_rating", "validate"]

MINIMUM_FIELDS = ("id", "name", "description", "risk_rating", "owner", "developer", "origin")
EXTENDED_FIELDS = ("version", "deployment_date", "reviewer", "approver", "dependencies", "data_sources",
                   "approved_uses", "limitations", "last_review", "next_review", "monitoring_status")
DATE_FIELDS = ("deployment_date", "last_review", "next_review", "rating_date")
ORIGINS = ("internal", "vendor", "open-source")

LEVELS = {"low": 1, "moderate": 2, "high": 3, "very-high": 4}
# factor -> (E-23 P2.2 kind, weight, question, what each level means)
FACTORS: dict[str, tuple[str, float, str, dict[str, str]]] = {
    "financial_impact": ("quantitative", 0.20, "Financial or operational impact if the model is wrong", {
        "low": "immaterial amounts; easy to reverse", "moderate": "material to one business line",
        "high": "material to the institution", "very-high": "threatens capital, liquidity or critical operations"}),
    "customer_impact": ("qualitative", 0.20, "Effect of its outputs on customers", {
        "low": "no customer-facing effect", "moderate": "informs service, not decisions",
        "high": "shapes decisions about customers", "very-high": "decides eligibility, pricing or access"}),
    "autonomy": ("qualitative", 0.20, "Level of autonomy", {
        "low": "a human decides; the model only drafts", "moderate": "a human reviews every output",
        "high": "a human samples outputs after the fact", "very-high": "acts with no human in the loop"}),
    "complexity": ("qualitative", 0.10, "Complexity and opacity of the method", {
        "low": "rules or a linear model", "moderate": "tree ensembles, explainable",
        "high": "a neural network with post-hoc explanations", "very-high": "a generative model / LLM"}),
    "data_reliability": ("qualitative", 0.15, "Unreliability of its input data", {
        "low": "controlled, validated sources", "moderate": "mostly internal, some gaps",
        "high": "third-party or unstructured inputs", "very-high": "free text from the public, unvalidated"}),
    "regulatory_exposure": ("qualitative", 0.15, "Regulatory and legal exposure", {
        "low": "no specific regulation", "moderate": "general conduct rules",
        "high": "sector rules apply (credit, insurance, health)", "very-high": "a high-risk system under the EU AI Act"}),
}
CUTOFFS = ((1.75, "low"), (2.5, "medium"), (3.25, "high"), (99.0, "critical"))
TIER_ORDER = ("negligible", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Finding:
    field: str
    severity: str  # blocking | warning
    message: str
    clause: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def validate(inventory: Inventory, *, today: dt.date | None = None) -> list[Finding]:
    today = today or dt.date.today()
    findings: list[Finding] = []
    for name in MINIMUM_FIELDS:
        if not _filled(getattr(inventory, name)):
            findings.append(Finding(name, "blocking", "empty; a minimum field for every model", "E-23 App. 1"))
    if inventory.risk_rating == "unrated":
        findings.append(Finding("risk_rating", "blocking", "the model has no risk rating; run 'govkit inventory rate'",
                                "E-23 P2.2"))
    if inventory.risk_rating != "negligible":
        tier = "unrated (treated as non-negligible)" if inventory.risk_rating == "unrated" else inventory.risk_rating
        for name in EXTENDED_FIELDS:
            if not _filled(getattr(inventory, name)):
                findings.append(Finding(name, "blocking", f"empty; required for a {tier} model", "E-23 App. 1"))
    dates: dict[str, dt.date] = {}
    for name in DATE_FIELDS:
        value = getattr(inventory, name)
        if value:
            try:
                dates[name] = parse_date(value)
            except ValueError:
                findings.append(Finding(name, "blocking", f"'{value}' is not a date (YYYY-MM-DD)", "E-23 App. 1"))
    if "next_review" in dates and dates["next_review"] < today:
        findings.append(Finding("next_review", "blocking" if inventory.risk_rating != "negligible" else "warning",
                                f"review overdue since {dates['next_review']}", "E-23 P3.4"))
    if "last_review" in dates and dates["last_review"] > today:
        findings.append(Finding("last_review", "warning", f"{dates['last_review']} is in the future", "E-23 App. 1"))
    if inventory.origin and inventory.origin not in ORIGINS:
        findings.append(Finding("origin", "warning", f"'{inventory.origin}' is not one of {', '.join(ORIGINS)}",
                                "E-23 App. 1"))
    reviewer = inventory.reviewer.strip().lower()
    for other in ("developer", "owner"):
        if reviewer and reviewer == getattr(inventory, other).strip().lower():
            findings.append(Finding("reviewer", "blocking", f"the reviewer is also the {other}; "
                                    "review must be independent", "E-23 P3.4"))
    return findings


def _filled(value: Any) -> bool:
    return bool(value.strip()) if isinstance(value, str) else bool(value)


@dataclass(frozen=True)
class Rating:
    tier: str
    score: float
    answers: dict[str, dict[str, str]]  # factor -> {"level", "note"}
    reasoning: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rate(answers: dict[str, Any]) -> Rating:
    """The tier for worksheet answers {factor: level or {"level": ..., "note": ...}}."""
    unknown = sorted(set(answers) - set(FACTORS))
    if unknown:
        raise InputError(f"unknown worksheet factor(s) {', '.join(unknown)}; expected {', '.join(FACTORS)}")
    clean: dict[str, dict[str, str]] = {}
    for factor in FACTORS:
        if factor not in answers:
            raise InputError(f"worksheet factor '{factor}' is not answered")
        answer = answers[factor]
        answer = {"level": answer} if isinstance(answer, str) else answer
        if not isinstance(answer, dict) or answer.get("level") not in LEVELS:
            raise InputError(f"worksheet factor '{factor}': level must be one of {', '.join(LEVELS)}")
        clean[factor] = {"level": answer["level"], "note": str(answer.get("note", "")).strip()}
    levels = {f: LEVELS[a["level"]] for f, a in clean.items()}
    score = round(sum(FACTORS[f][1] * levels[f] for f in FACTORS), 3)
    reasoning = [f"{FACTORS[f][2]}: {clean[f]['level']} ({FACTORS[f][3][clean[f]['level']]})"
                 f"{' - ' + clean[f]['note'] if clean[f]['note'] else ''}; weight {FACTORS[f][1]:.2f}"
                 for f in FACTORS]
    if all(level == 1 for level in levels.values()):
        tier = "negligible"
        reasoning.append("every factor is low: negligible tier (the exemption still needs approval, E-23 P2.2)")
    else:
        tier = next(name for cut, name in CUTOFFS if score < cut)
        reasoning.append(f"weighted score {score:.2f} of 4 gives {tier} (cut-offs: <1.75 low, <2.5 medium, "
                         "<3.25 high, else critical)")
        for floor, why in _floors(levels):
            if TIER_ORDER.index(floor) > TIER_ORDER.index(tier):
                reasoning.append(f"raised from {tier} to {floor}: {why}")
                tier = floor
    return Rating(tier=tier, score=score, answers=clean, reasoning=reasoning)


def _floors(levels: dict[str, int]) -> list[tuple[str, str]]:
    floors = []
    if levels["customer_impact"] == 4 or levels["financial_impact"] == 4:
        floors.append(("high", "a very-high customer or financial impact is never below high"))
    if levels["autonomy"] >= 3 and levels["customer_impact"] >= 3:
        floors.append(("high", "it acts on customers with little human oversight"))
    if sum(1 for v in levels.values() if v == 4) >= 3:
        floors.append(("critical", "three or more factors are very high"))
    return floors


def read_answers(path: Path) -> dict[str, Any]:
    """A rating worksheet from a file: TOML or JSON, one table per factor with 'level' and 'note'."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); expected a JSON or TOML table of factors") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({exc})") from None
    try:
        return dict(data)
    except (TypeError, ValueError):
        raise InputError(f"{path}: expected a table of factors") from None


@dataclass(frozen=True)
class RecordedRating:
    rating: Rating
    record_id: str  # the chained risk_rating record
    mlflow_run_id: str | None
    config_change_id: str  # the record of govkit.toml's change

    def to_dict(self) -> dict[str, Any]:
        return {**self.rating.to_dict(), "record_id": self.record_id, "mlflow_run_id": self.mlflow_run_id,
                "config_change_id": self.config_change_id}


def record_rating(settings: Settings, rating: Rating, *, today: dt.date | None = None) -> RecordedRating:
    """Store a rating: chained with its worksheet and reasoning, mirrored to MLflow, and written
    into govkit.toml's [model] (risk_rating, rating_date, rating_record; comments kept)."""
    from .audit import AuditLog
    from .config import load_settings
    from .digests import sha256_digest
    from .evidence import evidence_run
    from .tracking import Tracker

    if settings.path is None:
        raise ConfigError("govkit.toml", None, "the rating goes into a govkit.toml: load the settings from one")
    day = (today or dt.date.today()).isoformat()
    with AuditLog.open(settings=settings) as log:
        tracker = Tracker.from_settings(settings, log.path)
        with evidence_run(log, tracker, f"inventory: risk rating {rating.tier}",
                          {"govkit.event": "risk_rating"}) as evidence:
            evidence.run.log_params({f: a["level"] for f, a in rating.answers.items()})
            evidence.run.log_params({"tier": rating.tier, "previous_tier": settings.model.risk_rating})
            evidence.run.log_metrics({"risk_score": rating.score})
            evidence.run.log_dict(rating.to_dict(), "risk_rating.json")
            record = evidence.append("risk_rating", model_id=settings.model.id, risk_rating=rating.tier,
                                     details={**rating.to_dict(), "previous_rating": settings.model.risk_rating})
        text = _set_rating(settings.path, rating.tier, day, record.record_id)
        change = log.append("config_change", model_id=settings.model.id, details={
            "action": "risk_rating", "config_sha256": sha256_digest(text), "rating_record": record.record_id})
        chain_inventory(log, load_settings(settings.path))  # with the rating just written
    return RecordedRating(rating, record.record_id, record.mlflow_run_id, change.record_id)


def _set_rating(path: Path, tier: str, today: str, record_id: str) -> str:
    """Rewrite the three rating keys of [model] in place, keeping the file's comments."""
    import tomlkit

    text = path.read_text(encoding="utf-8")
    document = tomlkit.parse(text)
    model = document.get("model")
    if model is None:
        raise ConfigError(path, "model", "no [model] table to hold the rating")
    model["risk_rating"] = tier
    model["rating_date"] = today
    model["rating_record"] = record_id
    text = tomlkit.dumps(document)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    from .config import load_settings

    load_settings(path)  # the file still parses as a govkit config
    return text


INVENTORY_ACTION = "inventory"  # the config_change that chains the inventory record as govkit.toml then gave it


def inventory_digest(inventory: Inventory) -> str:
    from .digests import sha256_digest

    return sha256_digest(json.dumps(asdict(inventory), sort_keys=True, ensure_ascii=False))


def chained_inventory(newest_first: Any) -> Any:
    """The first inventory record among config_change records given newest first, or None."""
    for record in newest_first:
        if (record.details or {}).get("action") == INVENTORY_ACTION:
            return record
    return None


def chain_inventory(log: Any, settings: Settings) -> Any:
    """Chain the inventory record of govkit.toml when it differs from the one chained last (or
    none is), so that a report reads the inventory as it stood at its as-of, not as it is today.
    Returns the new record, or None when the chain already holds this inventory. The fields are
    the institution's description of its model and its staff's roles (E-23 App. 1), kept whole:
    a record of accountability, not a data subject's content."""
    digest = inventory_digest(settings.model)
    last = chained_inventory(log.query(event_type="config_change", newest_first=True))
    if last is not None and (last.details or {}).get("digest") == digest:
        return None
    return log.append("config_change", model_id=settings.model.id, details={
        "action": INVENTORY_ACTION, "digest": digest, "inventory": asdict(settings.model),
        "config": str(settings.path) if settings.path else None})
