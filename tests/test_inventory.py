"""The inventory record (E-23 App. 1) and the risk-rating worksheet (E-23 P2.2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.config import Inventory, load_settings
from govkit.errors import InputError
from govkit.inventory import EXTENDED_FIELDS, FACTORS, MINIMUM_FIELDS, rate, validate

from .conftest import run

COMPLETE = Inventory(
    id="credit-assistant", name="Credit assistant", description="Drafts credit memos", risk_rating="medium",
    owner="a.owner@bank.example", developer="ml-team@bank.example", origin="open-source", version="1.2",
    deployment_date="2026-09-01", reviewer="mrm@bank.example", approver="Model Risk Committee",
    dependencies=("llama.cpp b4000",), data_sources=("core banking",), approved_uses=("memo drafts",),
    limitations=("English only",), last_review="2026-09-01", next_review="2027-03-01", monitoring_status="green")


def test_a_complete_record_passes() -> None:
    assert validate(COMPLETE, today=dt.date(2026, 11, 22)) == []


@pytest.mark.parametrize("name", MINIMUM_FIELDS)
def test_each_minimum_field_is_required_even_for_negligible_models(name: str) -> None:
    record = dataclasses.replace(COMPLETE, **{"risk_rating": "negligible", name: "" if name != "risk_rating" else "unrated"})
    findings = validate(record, today=dt.date(2026, 11, 22))
    assert any(f.field == name and f.severity == "blocking" for f in findings)


@pytest.mark.parametrize("name", EXTENDED_FIELDS)
def test_extended_fields_depend_on_the_tier(name: str) -> None:
    empty = "" if isinstance(getattr(COMPLETE, name), str) else ()
    for tier, required in (("negligible", False), ("low", True), ("critical", True), ("unrated", True)):
        findings = validate(dataclasses.replace(COMPLETE, risk_rating=tier, **{name: empty}), today=dt.date(2026, 11, 22))
        assert any(f.field == name and "required for" in f.message for f in findings) is required, (tier, name)


def test_dates_overdue_review_and_independence() -> None:
    record = dataclasses.replace(COMPLETE, next_review="2026-10-01", deployment_date="next week",
                                 reviewer="ML-Team@bank.example")
    found = {(f.field, f.clause): f for f in validate(record, today=dt.date(2026, 11, 22))}
    assert "overdue since 2026-10-01" in found[("next_review", "E-23 P3.4")].message
    assert "not a date" in found[("deployment_date", "E-23 App. 1")].message
    assert "also the developer" in found[("reviewer", "E-23 P3.4")].message


def test_worksheet_tiers_and_floors() -> None:
    low = {factor: "low" for factor in FACTORS}
    assert rate(low).tier == "negligible"
    assert rate({**low, "complexity": "very-high"}).tier == "low"
    middling = {factor: "moderate" for factor in FACTORS}
    assert rate(middling).tier == "medium" and rate(middling).score == 2.0
    # a very-high customer impact is never below high, whatever the average says
    floored = rate({**low, "customer_impact": "very-high"})
    assert floored.score < 1.75 and floored.tier == "high"
    assert any("raised from low to high" in line for line in floored.reasoning)
    assert rate({factor: "very-high" for factor in FACTORS}).tier == "critical"
    with pytest.raises(InputError, match="'autonomy' is not answered"):
        rate({k: v for k, v in low.items() if k != "autonomy"})
    with pytest.raises(InputError, match="level must be one of"):
        rate({**low, "autonomy": "extreme"})


def test_cli_validate_on_a_fresh_init_lists_every_gap(tmp_path: Path) -> None:
    assert run("init", "--yes", "--owner", "a.owner@bank.example").exit_code == 0
    result = run("inventory", "validate", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    fields = {f["field"] for f in report["findings"]}
    assert {"description", "developer", "origin", "risk_rating", "reviewer", "approver"} <= fields
    assert "owner" not in fields and report["passed"] is False


def test_cli_rate_writes_the_tier_keeps_comments_and_records_the_reasoning(tmp_path: Path) -> None:
    assert run("init", "--yes", "--model-id", "credit-assistant").exit_code == 0
    answers = tmp_path / "rating.toml"
    answers.write_text("\n".join(f'[{factor}]\nlevel = "{level}"\nnote = "evidence for {factor}"' for factor, level in {
        "financial_impact": "moderate", "customer_impact": "high", "autonomy": "high", "complexity": "very-high",
        "data_reliability": "high", "regulatory_exposure": "high"}.items()))
    result = run("inventory", "rate", "--answers", str(answers))
    assert result.exit_code == 0, result.output
    assert "Tier: high" in result.output
    text = Path("govkit.toml").read_text()
    assert "# Model inventory record: OSFI E-23 (2027) Appendix 1 minimum fields." in text
    settings = load_settings("govkit.toml")
    assert settings.model.risk_rating == "high" and settings.model.rating_date == dt.date.today().isoformat()
    with AuditLog.open(settings=settings) as log:
        rating = log.get(settings.model.rating_record)
        assert rating.event_type == "risk_rating" and rating.risk_rating == "high"
        assert rating.details["previous_rating"] == "unrated" and rating.details["score"] == 2.9
        assert rating.details["answers"]["autonomy"] == {"level": "high", "note": "evidence for autonomy"}
        assert any("evidence for complexity" in line for line in rating.details["reasoning"])
        assert list(log)[-1].event_type == "config_change"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '.govkit' / 'mlflow.db'}")
    mlrun = client.get_run(rating.mlflow_run_id)
    assert mlrun.data.params["tier"] == "high" and mlrun.data.metrics["risk_score"] == 2.9
    assert run("audit", "verify").exit_code == 0


def test_cli_rate_interactively_and_dry_run(tmp_path: Path) -> None:
    assert run("init", "--yes").exit_code == 0
    before = Path("govkit.toml").read_text()
    answers = "".join(f"{level}\nwhy {i}\n" for i, level in enumerate(
        ["low", "low", "moderate", "very-high", "low", "moderate"]))
    result = run("inventory", "rate", "--dry-run", input=answers)
    assert result.exit_code == 0, result.output
    assert "Tier: low" in result.output and Path("govkit.toml").read_text() == before


def test_cli_rate_bad_answers_file(tmp_path: Path) -> None:
    assert run("init", "--yes").exit_code == 0
    bad = tmp_path / "rating.toml"
    bad.write_text('[autonomy]\nlevel = "sometimes"\n')
    result = run("inventory", "rate", "--answers", str(bad))
    assert result.exit_code == 2 and "not answered" in result.output and "Traceback" not in result.output
    bad.write_text("[autonomy\n")
    result = run("inventory", "rate", "--answers", str(bad))
    assert result.exit_code == 2 and str(bad) in result.output and "not valid TOML" in result.output


def test_cli_show(tmp_path: Path) -> None:
    assert run("init", "--yes", "--model-id", "credit-assistant").exit_code == 0
    out = run("inventory", "show").output
    assert "id                 minimum   credit-assistant" in out and "approver           extended  -" in out


def test_tracking_table_is_validated(tmp_path: Path) -> None:
    assert run("init", "--yes").exit_code == 0
    config = Path("govkit.toml")
    config.write_text(config.read_text().replace("enabled = true", 'enabled = "yes"'))
    result = run("inventory", "show")
    assert result.exit_code == 2 and "key 'tracking.enabled'" in result.output and "true or false" in result.output
