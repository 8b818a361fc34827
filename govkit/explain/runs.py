"""The explanation workflows, whole: explain, check, and record the explanation as evidence (a
chained `explanation` record and an MLflow run). `govkit explain ...` only parses options, calls
one of these and renders the `ExplanationRun` it returns.

    from govkit import AuditLog, load_settings
    from govkit.explain.runs import explain_decision

    settings = load_settings()
    with AuditLog.open(settings=settings) as log:
        run = explain_decision(log, settings, record_id="01J...", choices="approve,deny", positive="approve",
                               endpoint="http://127.0.0.1:8080/v1")
    print(run.result["attributions"][:3])
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._lazy import require
from ..audit import AuditLog, AuditRecord
from ..config import Settings
from ..digests import sha256_digest, sha256_file
from ..errors import InputError
from ..evidence import evidence_run
from ..inference.decider import Decider, parse_choices, split_chat_prompt
from ..inference.fingerprint import artifact_fields
from ..tracking import Tracker

__all__ = ["ExplanationRun", "explain_decision", "explain_tabular_model", "render_html"]


@dataclass(frozen=True)
class ExplanationRun:
    """A recorded explanation: the record and run it is, and the whole result."""

    kind: str  # text or tabular
    record_id: str
    mlflow_run_id: str | None
    result: dict[str, Any] = field(repr=False)  # what `--format json` prints
    html: str | None = field(default=None, repr=False)  # text: the explanation as a page

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.result)


def explain_decision(log: AuditLog, settings: Settings | None, *, choices: str | Sequence[str], positive: str,
                     prompt: str | None = None, record_id: str | None = None, endpoint: str | None = None,
                     model_path: Path | None = None, model_artifact: Path | None = None, system: str | None = None,
                     segments: str = "word", max_evals: int = 200, fidelity_k: int = 3,
                     noise_probes: int = 2) -> ExplanationRun:
    """Attributions of a prompt's words or sentences to the model's log-odds of `positive` (shap
    Partition explainer): of `prompt`, or of the stored prompt of inference record `record_id`
    (the explanation is then chained to that record and its data subject)."""
    from .text import Scorer, explain_text, fidelity

    options = parse_choices(choices, positive)
    if (prompt is None) == (record_id is None):
        raise InputError("give a prompt or an inference record id (one of them)", parameter=("prompt", "record_id"))
    target = None
    if record_id is not None:
        target = log.get(record_id)
        if target is None or target.event_type != "inference":
            raise InputError(f"no inference record '{record_id}' in {log.path}", parameter="record_id")
        stored = log.content(target).get("prompt")
        if not stored:
            raise InputError("its prompt text is not stored (redaction policy 'digest-only', or purged); give the "
                             "prompt instead", parameter="record_id", value=record_id)
        stored_system, prompt = split_chat_prompt(stored) if target.endpoint == "/v1/chat/completions" \
            else (None, stored)
        system = system or stored_system
    assert prompt is not None
    decider = Decider(log, options, endpoint=endpoint, model_path=model_path, system=system,
                      model_artifact=model_artifact, purpose="explanation",
                      model_id=settings.model.id if settings else None,
                      subject_ref=target.subject_ref if target is not None else None)
    scorer = Scorer(decider.decide, positive)
    result = explain_text(scorer, prompt, choices=options, segments=segments, max_evals=max_evals,
                          noise_probes=noise_probes)
    checked = fidelity(scorer, result, k=fidelity_k) if fidelity_k else None
    data = {**result.to_dict(), "fidelity": checked, "target_record_id": record_id,
            "other_evaluations": scorer.calls - result.evaluations}  # noise probes and fidelity
    html = render_html(data, record_id)
    record = _record_text(log, settings, data, prompt, target, model_artifact or model_path)
    data["record_id"], data["mlflow_run_id"] = record.record_id, record.mlflow_run_id
    return ExplanationRun("text", record.record_id, record.mlflow_run_id, data, html)


def explain_tabular_model(log: AuditLog, settings: Settings | None, model_path: Path, data_path: Path, *,
                          rows: Sequence[int] | None = None) -> ExplanationRun:
    """Feature attributions for a classic model's decisions (shap's exact explainer where one
    exists): of the given rows (1-based), or of every row with global importance over all."""
    from ..lineage.tables import ReadOptions, detect_format, read_table
    from .tabular import explain_rows, load_model

    model = load_model(model_path)
    frame = read_table(data_path, ReadOptions(format=detect_format(data_path)))
    try:
        result = explain_rows(model, frame, None if rows is None else [row - 1 for row in rows])
    except InputError as exc:
        raise InputError(exc.message, parameter=exc.parameter, value=exc.value, file=data_path) from None
    result = {"model": {"path": str(model_path.resolve()), "sha256": sha256_file(model_path)[0], "kind": model.kind},
              "data": {"path": str(data_path.resolve()), "sha256": sha256_file(data_path)[0]}, **result}
    if rows is not None and len(rows) == 1:
        result.update({k: result["rows"][0][k] for k in ("value", "base_value", "attributions")})
    tracker = Tracker.from_settings(settings, log.path)
    with evidence_run(log, tracker, "explain: tabular", {"govkit.event": "explanation"}) as evidence:
        evidence.run.log_text(json.dumps(result, indent=2, sort_keys=True), "explanation.json")
        for item in result["global_importance"][:50]:
            evidence.run.log_metrics({f"importance.{_metric_key(item['feature'])}": item["mean_abs"]})
        record = evidence.append("explanation", explanation_method=result["method"], purpose="explanation",
                                 artifact_sha256=result["model"]["sha256"],
                                 model_id=settings.model.id if settings else None, details={
                                     "kind": "tabular", "model": result["model"], "data": result["data"],
                                     "rows": [r["row"] for r in result["rows"]][:1000],
                                     "global_importance": result["global_importance"][:50]})
    result["record_id"] = record.record_id
    return ExplanationRun("tabular", record.record_id, record.mlflow_run_id, result)


def render_html(data: dict[str, Any], record_id: str | None) -> str:
    """A text explanation as a self-contained page (templates/explanation.html.j2)."""
    jinja2 = require("jinja2", "bias")

    from .._resources import builtin_dir
    from .._version import __version__

    scale = max([abs(a["value"]) for a in data["attributions"]] + [1e-12])

    def colour(value: float, scale: float) -> str:
        alpha = min(1.0, abs(value) / scale) * 0.6
        return f"rgba(200, 30, 30, {alpha:.3f})" if value >= 0 else f"rgba(30, 90, 200, {alpha:.3f})"

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(builtin_dir("templates")),
                                     autoescape=True, keep_trailing_newline=True)
    environment.filters["colour"] = colour
    rest = [c for c in data["choices"] if c != data["positive"]]
    others = ", ".join(f"“{c}”" for c in rest)
    # f(x) is the log-odds of the positive choice against the others: above 0 the model chose it.
    chose_positive = data["value"] > 0
    decision = data["positive"] if chose_positive else (rest[0] if len(rest) == 1 else f"not {data['positive']}")
    return environment.get_template("explanation.html.j2").render(
        explanation=data, segments=merged_segments(data["attributions"]), record_id=record_id, scale=scale,
        others=others, fidelity=data.get("fidelity"), version=__version__, decision=decision,
        chose_positive=chose_positive)


def merged_segments(attributions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neighbouring segments with one and the same attribution shown as one: shap's Partition
    explainer gives a whole group one value, and splitting it would show a precision per word
    that the explanation does not have."""
    merged: list[dict[str, Any]] = []
    for item in attributions:
        if merged and merged[-1]["value"] == item["value"] and item["value"] != 0:
            merged[-1] = {"segment": merged[-1]["segment"] + item["segment"], "value": item["value"],
                          "parts": merged[-1]["parts"] + 1}
        else:
            merged.append({"segment": item["segment"], "value": item["value"], "parts": 1})
    return merged


def _record_text(log: AuditLog, settings: Settings | None, data: dict[str, Any], prompt: str,
                 target: AuditRecord | None, artifact: Path | None) -> AuditRecord:
    tracker = Tracker.from_settings(settings, log.path)
    with evidence_run(log, tracker, "explain: text", {"govkit.event": "explanation", "govkit.explained_record":
                                                      target.record_id if target else ""}) as evidence:
        run = evidence.run
        run.log_metrics({"value": data["value"], "base_value": data["base_value"], "evaluations": data["evaluations"],
                         "additivity_error": data["additivity_error"], "noise": data["noise"],
                         **({"fidelity_top_k_drop": data["fidelity"]["top_k_drop"],
                             "fidelity_random_k_drop": data["fidelity"]["random_k_drop"]} if data["fidelity"] else {})})
        # What goes to MLflow holds the prompt's words: redacted first, as the log's own content is.
        shown = {**data, "attributions": [{**a, "segment": log.redact(a["segment"])} for a in data["attributions"]]}
        run.log_text(json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False), "explanation.json")
        run.log_text(render_html(shown, data.get("target_record_id")), "explanation.html")
        details = {key: data[key] for key in ("value", "base_value", "evaluations", "max_evals", "segments",
                                              "additivity_error", "additive", "noise", "fidelity", "positive", "choices")}
        # the chain keeps numbers and digests; segment text sits with the content, redacted per policy
        details["attributions"] = [{"segment_sha256": sha256_digest(a["segment"]), "value": a["value"]}
                                   for a in data["attributions"]]
        return evidence.append("explanation", prompt=prompt, response=json.dumps(data["attributions"], ensure_ascii=False),
                               target_record_id=target.record_id if target else None,
                               subject_ref=target.subject_ref if target is not None else None,
                               explanation_method="shap.PartitionExplainer", purpose="explanation",
                               explanation_ref=f"mlflow-run:{run.id}/explanation.json" if run.id else None,
                               model_id=settings.model.id if settings else None,
                               **artifact_fields(artifact, cache_file=log.path.with_name("artifacts.json")),
                               details=details)


def _metric_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", name)[:200]
