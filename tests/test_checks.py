"""`govkit check`: the framework, every built-in check against a passing and a failing fixture, and
the report formats read by the tools CI systems use (SARIF schema + sarif-tools, junitparser)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

from govkit.audit import AuditLog
from govkit.checks import Context, Registry, Status, load, run_checks
from govkit.checks._model import SECTIONS
from govkit.config import load_settings
from govkit.gate import load_registry
from govkit.inference.fingerprint import fingerprint_artifact
from govkit.timestamps import utc_now

from .conftest import run
from .conftest import run_in as in_folder
from .servers import smollm2_gguf
from .stores import edit_bodies

DATA = Path(__file__).parent / "data"
TODAY = dt.date.today()


def edit_config(folder: Path, section: str, **values) -> None:
    path = folder / "govkit.toml"
    document = tomlkit.parse(path.read_text())
    for key, value in values.items():
        document[section][key] = value
    path.write_text(tomlkit.dumps(document))


def write_predictions(path: Path, rates: dict[str, float], n: int = 200) -> None:
    lines = ["applicant,group,y_true,y_pred"]
    for group, rate in rates.items():
        for i in range(n):
            lines.append(f"{group}-{i},{group},{i % 2},{1 if i < rate * n else 0}")
    path.write_text("\n".join(lines) + "\n")


def write_accurate_predictions(path: Path, n: int = 200) -> None:
    """Two groups decided alike, and right for nine rows in ten: fair, and clearly better than the
    majority decision (half the outcomes are favourable)."""
    lines = ["applicant,group,y_true,y_pred"]
    for group in ("a", "b"):
        for i in range(n):
            truth = i % 2
            lines.append(f"{group}-{i},{group},{truth},{1 - truth if i % 10 == 0 else truth}")
    path.write_text("\n".join(lines) + "\n")


def decisions(log: AuditLog, count: int, **overrides) -> list:
    identity = fingerprint_artifact(smollm2_gguf(), cache_file=log.path.with_name("artifacts.json"))
    out = []
    for i in range(count):
        fields = dict(prompt=f"Loan request {i} from a customer", response="approve", model_id="credit-assistant",
                      ts_end=utc_now(), latency_ms=120.0, status="ok", disclosure_shown=True, finish_reason="stop",
                      **identity.record_fields())
        fields.update(overrides)
        out.append(log.append("inference", **fields))
    return out


def monitored(folder: Path) -> None:
    """Nine days of steady production calls before today, the first seven the reference, and
    `govkit monitor run` over them: two days judged, nothing breached."""
    first = TODAY - dt.timedelta(days=9)
    edit_config(folder, "monitoring", reference=f"{first}/{TODAY - dt.timedelta(days=2)}", min_calls=5,
                contingency="route credit memos to manual drafting")
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        for day in range(9):
            for i in range(12):
                stamp = f"{first + dt.timedelta(days=day)}T{8 + i % 10:02d}:{i:02d}:00.000000Z"
                decisions(log, 1, ts_start=stamp, ts_end=stamp, input_tokens=40 + i % 3, output_tokens=12 + i % 2,
                          latency_ms=120.0 + i % 4)
    assert run("monitor", "run").exit_code == 0


def build_good(folder: Path) -> None:
    """A deployment with complete evidence: every built-in check passes on it."""
    from govkit.fairness.evidence import record_bias_run

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert run("init", "--yes", "--model-id", "credit-assistant", "--owner", "owner@bank.example").exit_code == 0
        edit_config(folder, "model", description="Drafts credit memos for underwriters", developer="ml@bank.example",
                    origin="open-source", version="1.0", deployment_date=str(TODAY - dt.timedelta(days=10)),
                    reviewer="mrm@bank.example", approver="Model Risk Committee", dependencies=["llama.cpp"],
                    data_sources=["core banking"], approved_uses=["memo drafts"], limitations=["English only"],
                    last_review=str(TODAY - dt.timedelta(days=10)),
                    next_review=str(TODAY + dt.timedelta(days=170)), monitoring_status="green")
        answers = folder / "rating.toml"
        answers.write_text("".join(f'[{f}]\nlevel = "{lvl}"\nnote = "evidence"\n' for f, lvl in {
            "financial_impact": "moderate", "customer_impact": "moderate", "autonomy": "moderate",
            "complexity": "very-high", "data_reliability": "moderate", "regulatory_exposure": "moderate"}.items()))
        assert run("inventory", "rate", "--answers", str(answers)).exit_code == 0
        write_accurate_predictions(folder / "eval.csv")
        assert run("lineage", "dataset", "add", "eval.csv", "--role", "eval", "--source", "holdout 2026-10",
                   "--license", "internal").exit_code == 0
        (folder / "augment.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
        assert run("lineage", "dataset", "add", "augment.csv", "--role", "fine-tune", "--synthetic", "--source",
                   "generated by a rules engine from policy text", "--license", "internal").exit_code == 0
        assert run("lineage", "model", "add", str(smollm2_gguf()), "--name", "smollm2.gguf").exit_code == 0
        assert run("lineage", "link", "eval.csv", "smollm2.gguf").exit_code == 0
        assert run("lineage", "link", "smollm2.gguf", "deployment").exit_code == 0
        assert run("bias", "tabular", "--data", "eval.csv", "--y-true", "y_true", "--y-pred", "y_pred",
                   "--sensitive", "group", "--bootstrap", "200", "--model-artifact", str(smollm2_gguf())).exit_code == 0
        settings = load_settings("govkit.toml")
        with AuditLog.open(settings=settings) as log:
            calls = decisions(log, 10)
            log.append("override", target_record_id=calls[0].record_id, reviewer_id="rev-1", human_decision="overridden",
                       override_reason="income misread", model_id="credit-assistant")
            log.append("explanation", target_record_id=calls[1].record_id, purpose="explanation",
                       explanation_method="shap.PartitionExplainer", details={
                           "kind": "sampled", "value": 1.2, "base_value": 0.4, "additive": True, "evaluations": 60,
                           "fidelity": {"k": 3, "top_k_drop": 1.5, "random_k_drop": 0.2}})
            log.append("explanation", purpose="explanation", details={
                "kind": "coverage", "eligible": 2, "explained": 2, "dropped": 0, "failed": 0})
            record_bias_run(log, settings, kind="counterfactual", out=None, artifacts={},
                            fields=fingerprint_artifact(smollm2_gguf()).record_fields(), result={
                "kind": "counterfactual", "data": {"name": "cases.csv", "sha256": "sha256:" + "0" * 64},
                "passed": True, "attributes": {"name": {"pairs": [
                    {"groups": ["female", "male"], "flip_rate": 0.0, "difference_shown": False, "status": "pass"}]}}})
        monitored(folder)
        sign_in(folder)
        passing_probe_run(folder)
        assert run("report", "model-card", "--period", str(TODAY.year), "--format", "md", "-o", "card.md").exit_code == 0
        with AuditLog.open(settings=load_settings("govkit.toml")) as log:
            log.checkpoint()
    finally:
        os.chdir(cwd)


def passing_probe_run(folder: Path, *, overrides: dict | None = None, parity: dict | None = None) -> None:
    """A probe run about the deployed model that passes every category, judged by the thresholds
    chained before it (the probes themselves run against the real model in test_probes.py)."""
    import hashlib

    from govkit.probes.run import judge
    from govkit.probes.suite import load_probe_set

    settings = load_settings(folder / "govkit.toml")
    thresholds = dict(settings.policy.probes)
    digest = "sha256:" + hashlib.sha256(json.dumps(thresholds, sort_keys=True).encode()).hexdigest()
    probe_set = load_probe_set()
    probes = probe_set.probes(100, 0)
    safe = {"canary": "I can only help with banking questions.", "leak": "I cannot share that.",
            "pii": "I cannot share customer data.", "complies": "I cannot help with that.",
            "refuses": "Here is how to do it: visit the branch.", "unsafe_output": "I cannot do that.",
            "runaway": "loan loan loan"}
    answers = []
    for probe in probes:
        detector = probe_set.categories[probe.category]["detector"]
        if detector == "fact":
            truth = probe.expect["truth"]
            text = ("I am not aware of such a place." if probe.expect["kind"] == "fabricated" else
                    ("yes" if truth else "no") if probe.expect["kind"] == "prime" else str(truth))
        else:
            text = safe[detector]
        answers.append({"text": text, "finish_reason": "stop"})
    categories = judge(probe_set, probes, answers, thresholds, 0.95)
    categories.update(overrides or {})
    with AuditLog.open(settings=settings) as log:
        committed = log.append("config_change", details={"action": "probe_thresholds", "thresholds": thresholds,
                                                          "digest": digest})
        log.append("probe_run", purpose="evaluation", artifact_sha256=fingerprint_artifact(smollm2_gguf()).sha256,
                   details={"probe_set": {"sha256": probe_set.sha256}, "categories": categories,
                            "thresholds_digest": digest, "thresholds_record": committed.record_id,
                            "parity": parity or {"holds": True, "tolerance": 0.1, "apart": [], "categories": {
                                "direct_injection": {"device": 0.0, "reference": 0.0, "gap": 0.0, "p_value": 1.0}}},
                            "status": "pass"})


KEYS: dict[str, Path] = {}  # person -> private key file, outside every project folder


def keys_for(folder: Path) -> dict[str, Path]:
    """Each person's own key, made once per session, in a folder beside (not inside) the project."""
    if not KEYS:
        place = folder.parent / f"{folder.name}-keys"
        for person in ("owner", "developer", "reviewer", "approver", "overseer", "board"):
            assert run("keygen", "--person", person, "-o", str(place / f"{person}.key")).exit_code == 0
            KEYS[person] = place / f"{person}.key"
    return KEYS


def public_of(path: Path) -> str:
    from govkit.audit.checkpoints import load_private_key, public_key_b64

    return public_key_b64(load_private_key(path))


def sign_in(folder: Path) -> None:
    """The roster (signed by the owner) and the statements a governed model carries: a review, an
    approval, an impact assessment, a passed contingency test, the board's acknowledgement."""
    keys = keys_for(folder)
    assert run("people", "init", "--name", "Olive Owner", "--key", str(keys["owner"])).exit_code == 0
    for name, person, roles, trained in (("Dev Eloper", "developer", ["developer"], None),
                                         ("Val Idator", "reviewer", ["reviewer"], str(TODAY - dt.timedelta(days=40))),
                                         ("Ann Prover", "approver", ["approver"], None),
                                         ("Otto Versight", "overseer", ["oversight"], str(TODAY - dt.timedelta(days=30))),
                                         ("Bea Board", "board", ["board"], None)):
        args = ["people", "add", name, *[a for r in roles for a in ("--role", r)], "--public-key",
                public_of(keys[person]), "--key", str(keys["owner"])]
        result = run(*args, *(["--trained", trained] if trained else []))
        assert result.exit_code == 0, result.output
    assert run("limitation", "add", "English only", "--control", "other languages are routed to staff",
               "--owner", "branch operations").exit_code == 0
    for args in (["review", "sign", "--recommendation", "approve", "--finding", "fair and accurate on the holdout",
                  "--key", str(keys["reviewer"])],
                 ["approve", "--residual-risk", "low", "--valid-until", str(TODAY + dt.timedelta(days=180)),
                  "--key", str(keys["approver"])],
                 ["attest", "impact-assessment", "--statement", "DPIA 2026-07 accepted", "--reference", "DPIA-2026-07",
                  "--key", str(keys["approver"])],
                 ["attest", "contingency-test", "--statement", "fallback to manual review in 4 minutes",
                  "--outcome", "passed", "--key", str(keys["overseer"])]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
    assert run("report", "board", "--period", str(TODAY.year), "--format", "json", "-o", "board.json").exit_code == 0
    result = run("attest", "board-ack", "--statement", "received", "--reference", "board.json", "--key",
                 str(keys["board"]))
    assert result.exit_code == 0, result.output


def sign_as(folder: Path, person: str, *args: str):
    result = in_folder(folder, *args, "--key", str(KEYS[person]))
    assert result.exit_code == 0, result.output
    return result


def _signed_directly(folder: Path, person: str, kind: str, predicate: dict) -> None:
    """A statement signed with a person's key through the library: as time passing would leave it
    (a date the commands refuse today)."""
    from govkit.attest import record_attestation
    from govkit.audit.checkpoints import load_private_key

    settings = load_settings(folder / "govkit.toml")
    with AuditLog.open(settings=settings) as log:
        record_attestation(log, settings, kind, predicate, load_private_key(KEYS[person]))


def _dual_role_review(folder: Path) -> None:
    """A newer review, signed by a key that is also a developer's."""
    dual = folder.parent / "dual.key"
    in_folder(folder, "keygen", "--person", "dual", "-o", str(dual))
    sign_as(folder, "owner", "people", "add", "Dee Dual", "--role", "developer", "--role", "reviewer",
            "--public-key", public_of(dual))
    assert in_folder(folder, "review", "sign", "--recommendation", "approve", "--finding", "fine",
                     "--key", str(dual)).exit_code == 0


def _revoke(folder: Path, **target: str) -> None:
    (flag, value), = target.items()
    sign_as(folder, "owner", "attestations", "revoke", f"--{flag.replace('_', '-')}", value, "--reason", "test")


def _newest(folder: Path, kind: str) -> str:
    with AuditLog.open(settings=load_settings(folder / "govkit.toml"), read_only=True) as log:
        return [r for r in log.query(event_type="attestation") if r.details["kind"] == kind][-1].record_id


@pytest.fixture(scope="session")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    build_good(folder)
    return folder


@pytest.fixture
def copy(good: Path, tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(good, target)
    return target


def run_one(folder: Path, check_id: str, policy: dict | None = None):
    registry = load_registry(())
    context = Context(load_settings(folder / "govkit.toml"), policy=policy)
    try:
        [result] = run_checks([registry.specs[check_id]], context)
    finally:
        context.close()
    return result


def append(folder: Path, event_type: str, **fields) -> None:
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        log.append(event_type, **fields)


def add_dataset(folder: Path, name: str, text: str, *args: str) -> None:
    (folder / name).write_text(text)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = run("lineage", "dataset", "add", name, *args)
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(cwd)


def tamper(folder: Path) -> None:
    edit_bodies(folder / ".govkit" / "audit.db", "income misread", "typo", "CAST(body AS TEXT) LIKE '%income misread%'")


# check id -> how to break the good project so that the check no longer passes
BREAK = {
    "GOV-001": lambda f: edit_config(f, "model", description=""),
    "GOV-002": lambda f: edit_config(f, "model", approved_uses=[]),
    "GOV-003": lambda f: edit_config(f, "model", risk_rating="critical"),
    "GOV-004": lambda f: append(f, "model_change", model_id="credit-assistant", artifact_sha256="sha256:" + "1" * 64),
    "GOV-005": lambda f: edit_config(f, "model", next_review=str(TODAY - dt.timedelta(days=1))),
    "GOV-006": lambda f: edit_config(f, "model", approver=""),
    "GOV-007": _dual_role_review,
    "GOV-008": lambda f: _revoke(f, key_id=__import__("govkit.audit.checkpoints", fromlist=["key_id"]).key_id(
        public_of(KEYS["approver"]))),
    "GOV-009": {"logging_quiet_days": -1},
    "GOV-010": tamper,
    "GOV-011": lambda f: edit_config(f, "policy", retention_days=30),
    "GOV-012": (lambda f: [append(f, "feedback", model_id="m") for _ in range(3)], {"checkpoint_max_age_hours": -1}),
    "GOV-013": lambda f: append(f, "inference", prompt="x", response="y", status="ok", latency_ms=1.0,
                                ts_end="2026-01-01T00:00:00Z", artifact_sha256="sha256:" + "2" * 64),
    "GOV-014": lambda f: append(f, "inference", prompt="x", response="y", model_id="credit-assistant"),
    "GOV-015": lambda f: (edit_config(f, "monitoring", escalate_to=""), edit_config(f, "model", owner="")),
    "GOV-035": lambda f: _breach_of_the_last_day(f),
    "GOV-016": lambda f: append(f, "incident", model_id="credit-assistant", details={"what": "outage"}),
    "GOV-017": lambda f: edit_config(f, "tracking", enabled=False),
    "GOV-018": lambda f: _unlicensed_model(f),
    "DAT-001": lambda f: add_dataset(f, "extra.csv", "a,b\n1,2\n3,4\n", "--role", "train"),
    "DAT-002": lambda f: add_dataset(f, "dupes.csv", "a,b\n1,2\n1,2\n3,4\n", "--role", "train", "--source", "s",
                                     "--license", "l"),
    "DAT-003": lambda f: add_dataset(f, "synth.csv", "a,b\n1,2\n3,4\n", "--role", "train", "--synthetic"),
    "DAT-004": lambda f: add_dataset(f, "eval2.csv", "a,b\n1,2\n3,4\n", "--role", "eval"),
    "DAT-005": lambda f: add_dataset(f, "people.csv", "id,email\n" + "".join(f"{i},p{i}@mail.example\n" for i in range(9)),
                                     "--role", "train", "--contains-pii", "no"),
    "DAT-006": "bare",
    "DAT-007": lambda f: (add_dataset(f, "moving.csv", "a,b\n1,2\n3,4\n", "--role", "train"),
                          (f / "moving.csv").write_text("a,b\n1,2\n3,5\n")),
    "ETH-001": {"evidence_max_age_days": -1},
    "ETH-002": lambda f: (write_predictions(f / "unfair.csv", {"a": 0.6, "b": 0.2}),
                          in_folder(f, "bias", "tabular", "--data", "unfair.csv", "--y-true", "y_true", "--y-pred",
                                    "y_pred", "--sensitive", "group", "--bootstrap", "0",
                                    "--model-artifact", str(smollm2_gguf()))),
    "ETH-003": lambda f: _counterfactual(f, difference=True),
    "GOV-020": lambda f: sign_as(f, "reviewer", "review", "sign", "--recommendation", "reject", "--finding",
                                 "decisions flip on first names"),
    "GOV-021": lambda f: append(f, "model_change", model_id="credit-assistant", artifact_sha256="sha256:" + "2" * 64),
    "GOV-022": lambda f: _signed_directly(f, "approver", "exemption", {"control": "GOV-005", "why": "moved",
                                                                       "until": str(TODAY - dt.timedelta(days=1))}),
    "GOV-023": lambda f: _revoke(f, record=_newest(f, "impact-assessment")),
    "GOV-024": lambda f: sign_as(f, "overseer", "attest", "contingency-test", "--statement", "fallback did not start",
                                 "--outcome", "failed"),
    "GOV-025": lambda f: edit_config(f, "people", board_report_max_age_days=-1),
    "GOV-026": lambda f: (sign_as(f, "approver", "attest", "decommission", "--statement", "retired 2026-12"),
                          _decisions(f, 1)),
    "GOV-027": lambda f: edit_config(f, "people", training_max_age_days=1),
    "GOV-028": lambda f: edit_config(f, "model", limitations=["English only", "no tables"]),
    "GOV-029": lambda f: _revoke(f, record=_newest(f, "approval")),
    "GOV-030": lambda f: passing_probe_run(f, overrides={"direct_injection": {
        "status": "fail", "n": 30, "succeeded": 18, "interval": [0.42, 0.75], "threshold": 0.1}}),
    "GOV-031": lambda f: passing_probe_run(f, overrides={"confabulation": {
        "status": "inconclusive", "n": 30, "succeeded": 6, "interval": [0.10, 0.37], "threshold": 0.2}}),
    "GOV-033": lambda f: passing_probe_run(f, parity={"holds": False, "tolerance": 0.1, "apart": ["over_refusal"],
                                                      "categories": {"over_refusal": {"device": 0.4, "reference": 0.05,
                                                                                      "gap": 0.35, "p_value": 0.001}}}),
    "GOV-034": lambda f: passing_probe_run(f),  # a newer evaluation than the model card states
    "GOV-032": lambda f: edit_config(f, "policy", probes={**dict(load_settings(f / "govkit.toml").policy.probes),
                                                          "direct_injection": 0.5}),
    "GOV-019": lambda f: (write_predictions(f / "coinflip.csv", {"a": 0.4, "b": 0.4}),
                          in_folder(f, "bias", "tabular", "--data", "coinflip.csv", "--y-true", "y_true", "--y-pred",
                                    "y_pred", "--sensitive", "group", "--bootstrap", "0",
                                    "--model-artifact", str(smollm2_gguf()))),
    "ETH-004": "bare",
    "ETH-005": lambda f: [append(f, "override", target_record_id="X", reviewer_id="r", human_decision="overridden")
                          for _ in range(30)],  # of 118 decisions: 25%
    "ETH-006": lambda f: edit_config(f, "policy", redaction="full"),
    "ETH-007": lambda f: _decisions(f, 30, disclosure_shown=False),
    "ETH-008": lambda f: append(f, "inference", prompt="old text", response="old", ts_start="2025-01-01T00:00:00Z"),
    "EXP-001": {"evidence_max_age_days": -1},
    "EXP-002": lambda f: append(f, "explanation", details={"kind": "text", "additive": False}, **_model_fields()),
    "EXP-003": lambda f: append(f, "explanation", details={"kind": "text", "fidelity": {
        "k": 3, "top_k_drop": 0.0, "random_k_drop": 9.0}}, **_model_fields()),
    "EXP-004": lambda f: append(f, "explanation", details={"kind": "coverage", "eligible": 10, "explained": 1,
                                                          "dropped": 9, "failed": 0}),
    "EXP-005": lambda f: append(f, "explanation", target_record_id="01ZZZZZZZZZZZZZZZZZZZZZZZZ",
                                details={"kind": "text"}),
}


def _breach_of_the_last_day(folder: Path) -> None:
    """The same judged days, under a plan with a latency SLO the calls exceed: monitor run opens a breach."""
    edit_config(folder, "monitoring", latency_p95_ms=100)
    assert in_folder(folder, "monitor", "run").exit_code == 1


def _decisions(folder: Path, count: int, **overrides) -> None:
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        decisions(log, count, **overrides)


def _model_fields() -> dict:
    """The fields that tie evidence to the deployed model (SmolLM2's GGUF)."""
    return {"artifact_sha256": fingerprint_artifact(smollm2_gguf()).sha256}


def _counterfactual(folder: Path, *, difference: bool) -> None:
    from govkit.fairness.evidence import record_bias_run

    settings = load_settings(folder / "govkit.toml")
    with AuditLog.open(settings=settings) as log:
        record_bias_run(log, settings, kind="counterfactual", out=None, artifacts={},
                        fields=fingerprint_artifact(smollm2_gguf()).record_fields(), result={
            "kind": "counterfactual", "passed": not difference, "attributes": {"name": {"pairs": [
                {"groups": ["female", "male"], "flip_rate": 0.4, "difference_shown": difference,
                 "status": "fail" if difference else "inconclusive"}]}}})


def _unlicensed_model(folder: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / "head.safetensors"))
    assert in_folder(folder, "lineage", "model", "add", "head.safetensors").exit_code == 0


def test_there_are_at_least_30_documented_checks() -> None:
    registry = load_registry(())
    assert len(registry.specs) >= 30
    assert set(BREAK) == set(registry.specs), "every built-in check needs a failing fixture"
    crosswalk_ids = {row["crosswalk_id"] for row in json.loads(
        (Path(__file__).parent.parent / "govkit" / "checks" / "crosswalk.json").read_text())["rows"]}
    for spec in registry.specs.values():
        assert spec.principle in ("Explainability", "Data", "Governance", "Ethics")
        assert spec.severity and spec.references and spec.title
        for section in SECTIONS:
            assert spec.section(section), f"{spec.id}: docstring lacks '{section}:'"
        assert spec.crosswalk is None or spec.crosswalk in crosswalk_ids, spec.id


def test_every_check_passes_on_the_good_project(good: Path) -> None:
    registry = load_registry(())
    context = Context(load_settings(good / "govkit.toml"))
    try:
        results = run_checks(registry.select(), context)
    finally:
        context.close()
    failing = {r.spec.id: (r.status.value, r.message) for r in results if r.status is not Status.PASS}
    assert not failing


@pytest.mark.parametrize("check_id", sorted(BREAK))
def test_every_check_fails_on_its_broken_fixture(copy: Path, tmp_path: Path, check_id: str) -> None:
    breaker = BREAK[check_id]
    policy = None
    folder = copy
    if breaker == "bare":
        folder = tmp_path / "bare"
        folder.mkdir()
        in_folder(folder, "init", "--yes")
    elif isinstance(breaker, dict):
        policy = breaker
    elif isinstance(breaker, tuple):
        breaker[0](copy)
        policy = breaker[1]
    else:
        breaker(copy)
    result = run_one(folder, check_id, policy)
    assert result.status in (Status.FAIL, Status.WARN, Status.NO_EVIDENCE), (check_id, result.status, result.message)
    tier = load_settings(folder / "govkit.toml").model.risk_rating
    blocks = result.status is Status.FAIL or (result.status is Status.NO_EVIDENCE and result.spec.blocking(tier))
    assert result.blocking == blocks


def test_cli_exit_codes_and_formats(copy: Path, tmp_path: Path) -> None:
    import jsonschema
    from junitparser import JUnitXml

    passing = in_folder(copy, "check", "--format", "json")
    assert passing.exit_code == 0, passing.output
    report = json.loads(passing.stdout)
    assert report["summary"]["passed"] and report["summary"]["PASS"] == report["summary"]["checks"]
    _dual_role_review(copy)  # a blocking finding: the review's key is also a developer's
    sarif_path, junit_path = tmp_path / "govkit.sarif", tmp_path / "govkit.xml"
    assert in_folder(copy, "check", "--format", "sarif", "-o", str(sarif_path)).exit_code == 1
    assert in_folder(copy, "check", "--format", "junit", "-o", str(junit_path), "--exit-zero").exit_code == 0
    assert in_folder(copy, "check", "--select", "nope").exit_code == 2
    sarif = json.loads(sarif_path.read_text())
    jsonschema.validate(sarif, json.loads((DATA / "sarif-schema-2.1.0.json").read_text()))
    failing = [r for r in sarif["runs"][0]["results"] if r["kind"] == "fail"]
    assert [r["ruleId"] for r in failing] == ["GOV-007"] and failing[0]["level"] == "error"
    rule = sarif["runs"][0]["tool"]["driver"]["rules"][failing[0]["ruleIndex"]]
    assert rule["id"] == "GOV-007" and "OSFI E-23" in rule["properties"]["references"]
    assert "How to fix" in rule["help"]["text"]
    summary = subprocess.run([sys.executable, "-m", "sarif", "summary", str(sarif_path)], capture_output=True,
                             text=True, check=True).stdout  # Microsoft's sarif-tools reads it
    assert "error: 1" in summary
    xml = JUnitXml.fromfile(str(junit_path))
    cases = {case.name.split()[0]: case for suite in xml for case in suite}
    assert len(cases) == len(report["results"])
    assert cases["GOV-007"].result and cases["GOV-007"].result[0].message.startswith("review by Dee Dual (key ed25519:")
    assert cases["GOV-007"].result[0].message.endswith("who is also the developer")
    with AuditLog.open(settings=load_settings(copy / "govkit.toml")) as log:
        runs = list(log.query(event_type="check_run"))
    assert runs[-1].details["results"]["GOV-007"]["status"] == "FAIL" and runs[-1].mlflow_run_id


def test_select_ignore_list_and_explain(copy: Path) -> None:
    listed = in_folder(copy, "check", "--list", "--select", "Ethics", "--ignore", "ETH-008").output.splitlines()
    assert [line.split()[0] for line in listed] == [f"ETH-00{i}" for i in range(1, 8)]
    explained = in_folder(copy, "check", "--explain", "ETH-004").output
    assert "Why it matters:" in explained and "Crosswalk #35" in explained and "Art. 14(4)(d)-(e)" in explained


USER_CHECKS = '''
from govkit.checks import Result, check

POLICY = {"override_rate_max": 0.005}

@check(id="GOV-901", title="Device name set", severity="warning", references={"Internal": "SEC-7"})
def device_named(ctx):
    """What it checks: the audit device id is set.
    Why it matters: records must say which device wrote them.
    How to fix: set [audit] device_id."""
    return Result(bool(ctx.settings.audit.device_id), "device id set", {})

@check(id="GOV-902", title="A check that crashes", severity="blocking", references={"Internal": "X"})
def crashes(ctx):
    """What it checks: nothing. Why it matters: it tests the runner. How to fix: n/a."""
    raise RuntimeError("boom")
'''


def test_user_checks_run_override_policy_and_cannot_reuse_ids(copy: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "site.py").write_text(USER_CHECKS)
    result = in_folder(copy, "check", "--checks-dir", str(folder), "--format", "json")
    # The crash is an ERROR result, not a crashed run; a blocking control that could not be judged blocks.
    assert result.exit_code == 1, result.output
    results = {r["id"]: r for r in json.loads(result.stdout)["results"]}
    assert results["GOV-901"]["status"] == "PASS"
    assert results["GOV-902"]["status"] == "ERROR" and results["GOV-902"]["message"] == "RuntimeError: boom"
    assert results["GOV-902"]["blocking"] and [r for r in results.values() if r["blocking"]] == [results["GOV-902"]]
    assert results["ETH-005"]["status"] == "WARN"  # 1 override in 118 decisions, over the user's 0.5%
    (folder / "site.py").write_text(USER_CHECKS.replace("GOV-901", "GOV-001"))
    clash = in_folder(copy, "check", "--checks-dir", str(folder))
    assert clash.exit_code == 2 and "GOV-001 is already used by a built-in check" in clash.output
    registry = Registry()
    load(registry, folder, builtin=False)
    with pytest.raises(Exception, match="already used by another check"):
        load(registry, folder, builtin=False)


@pytest.mark.slow
def test_an_installed_wheel_runs_the_builtin_checks_from_any_folder(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(root)],
                   check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("govkit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import govkit, govkit._resources as r; "
                            "print(govkit.__file__); print(r.builtin_dir('checks'))"],
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(venv)) and where[1].endswith("govkit/_builtin/checks")
    listed = subprocess.run([str(venv / "bin" / "govkit"), "check", "--list"], cwd=elsewhere, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert len(listed) == len(BREAK)


def test_a_failing_attribute_is_not_cleared_by_a_later_run_on_another_attribute_or_other_data(copy: Path) -> None:
    """Today's break: ETH-002 read only the newest run, so a later passing run on region (on other
    data) cleared a run that failed on group."""
    write_predictions(copy / "unfair.csv", {"a": 0.6, "b": 0.2})
    lines = ["applicant,region,y_true,y_pred"] + [f"r{i},{region},{i % 2},{int(i < 80)}"
                                                  for region in ("north", "south") for i in range(200)]
    (copy / "regions.csv").write_text("\n".join(lines) + "\n")
    artifact = str(smollm2_gguf())
    common = ["--y-true", "y_true", "--y-pred", "y_pred", "--bootstrap", "0", "--model-artifact", artifact]
    assert in_folder(copy, "bias", "tabular", "--data", "unfair.csv", "--sensitive", "group", *common).exit_code == 1
    assert in_folder(copy, "bias", "tabular", "--data", "regions.csv", "--sensitive", "region", *common).exit_code == 0
    result = run_one(copy, "ETH-002", {"evidence_max_age_days": 90})
    assert result.status in (Status.FAIL, Status.WARN) and "group.demographic_parity_difference" in result.message


def test_evidence_about_another_model_is_not_evidence(copy: Path, tmp_path: Path) -> None:
    """Today's break: EXP-001 passed on explanations of an unrelated scikit-learn model."""
    other = tmp_path / "other"
    other.mkdir()
    in_folder(other, "init", "--yes")
    with AuditLog.open(settings=load_settings(other / "govkit.toml")) as log:
        for _ in range(2):
            log.append("explanation", purpose="explanation", artifact_sha256="sha256:" + "ab" * 32,
                       explanation_method="shap.TreeExplainer", details={"kind": "tabular", "additive": True})
        log.append("inference", artifact_sha256="sha256:" + "cd" * 32, model_id="m", status="ok")
    result = run_one(other, "EXP-001")
    assert result.status is Status.NO_EVIDENCE
    assert "2 explanation(s), 0 about the reviewed artifact sha256:cdcdcd" in result.message
    assert "left out: 2 about sha256:abababab" in result.message


def test_messages_say_exactly_what_is_missing(copy: Path) -> None:
    add_dataset(copy, "extra.csv", "a,b\n1,2\n3,4\n", "--role", "train", "--source", "a survey")
    result = run_one(copy, "DAT-001")
    assert "dataset/extra.csv@v1: no licence (--license) recorded" in result.message
    # A declaration of "unknown" does not hide a column of personal data either.
    add_dataset(copy, "people.csv", "id,email\n" + "".join(f"{i},p{i}@mail.example\n" for i in range(9)),
                "--role", "train")
    flagged = run_one(copy, "DAT-005")
    assert flagged.status is not Status.PASS and "people.csv@v1:email (declared unknown)" in flagged.message


def test_every_tool_numbers_checkpoints_by_the_head_they_sign(copy: Path) -> None:
    append(copy, "feedback", details={"score": 1})
    signed = in_folder(copy, "audit", "checkpoint").output
    seq = int(signed.split("Signed seq ")[1].split()[0])
    stats = json.loads(in_folder(copy, "audit", "stats", "--json").stdout)
    result = run_one(copy, "GOV-012")
    assert stats["last_checkpoint_seq"] == seq and f"signs seq {seq} of {seq + 1}" in result.message
    assert result.status is Status.PASS


@pytest.mark.parametrize("tier, blocks", [("high", True), ("critical", True), ("medium", False), ("low", False)])
def test_a_breach_the_model_shows_blocks_by_its_risk_tier(copy: Path, tier: str, blocks: bool) -> None:
    """Fairness and counterfactual breaches were warnings by default, so a high-tier credit model
    whose decisions flip on a first name passed the gate once its paperwork was typed in."""
    edit_config(copy, "model", risk_rating=tier)
    _counterfactual(copy, difference=True)
    result = run_one(copy, "ETH-003")
    assert result.blocking is blocks and result.status.value == ("FAIL" if blocks else "WARN"), result.message


def test_not_blocking_a_high_tier_model_takes_a_chained_decision_that_the_board_report_names(copy: Path) -> None:
    edit_config(copy, "model", risk_rating="high")
    _counterfactual(copy, difference=True)
    document = tomlkit.parse((copy / "govkit.toml").read_text())
    document["policy"]["fairness"]["blocking"] = False  # as every govkit.toml before said: a warning
    (copy / "govkit.toml").write_text(tomlkit.dumps(document))
    undecided = run_one(copy, "ETH-003")
    assert undecided.blocking and "is not a chained decision" in undecided.message
    decided = in_folder(copy, "policy", "decide", "policy.fairness.blocking", "never", "--by", "J. Roe, CRO",
                        "--reason", "a pilot with every decision reviewed")
    assert decided.exit_code == 0, decided.output
    result = run_one(copy, "ETH-003")
    assert not result.blocking and result.status.value == "WARN"
    assert "set not to block, by J. Roe, CRO on" in result.message and "a pilot with every decision reviewed" in result.message
    assert in_folder(copy, "check", "--exit-zero").exit_code == 0
    board = in_folder(copy, "report", "board", "--period", str(TODAY.year), "--format", "json", "-o", "b.json",
                      "--no-record")
    assert board.exit_code == 0, board.output
    alerts = json.loads((copy / "b.json").read_text())["figures"]["alerts"]
    assert any(a.startswith("ETH-003: policy.fairness.blocking is set not to block, by J. Roe, CRO") for a in alerts)


def test_a_long_finding_is_chained_whole_or_says_where_the_rest_is(copy: Path, tmp_path: Path) -> None:
    """The gate chained message[:300]: a 1,036-character ETH-002 message lost its foreign-worker
    and intersection items and ended mid-word."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "long.py").write_text(
        'from govkit.checks import Result, check\n\n'
        '@check(id="GOV-905", title="A long finding", severity="warning", references={"Internal": "X"})\n'
        'def long(ctx):\n'
        '    """What it checks: x.\n    Why it matters: x.\n    How to fix: x."""\n'
        '    items = [f"attribute {i}: gap {i / 100:.2f} over the threshold" for i in range(150)]\n'
        '    return Result(False, "failing: " + "; ".join(items), {"items": items})\n')
    assert in_folder(copy, "check", "--exit-zero", "--checks-dir", str(folder)).exit_code == 0
    with AuditLog.open(settings=load_settings(copy / "govkit.toml")) as log:
        [gate] = list(log.query(event_type="check_run", newest_first=True, limit=1))
    chained = gate.details["results"]["GOV-905"]
    message = chained["message"]  # 6,600 characters: cut at 4,000, saying so and where the whole text is
    assert "attribute 80: gap 0.80" in message and "attribute 149" not in message
    assert message.endswith("more characters, not chained; the whole text is in MLflow run "
                            f"{gate.mlflow_run_id}, check_results.json]")
    assert chained["items"][:2] == ["attribute 0: gap 0.00 over the threshold", "attribute 1: gap 0.01 over the threshold"]
    assert chained["items"][-1].startswith("... 50 more items, in MLflow run ")
