"""`govkit explain ...`: shap attributions for an LLM decision (through its endpoint) or a tabular model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ._common import db_option, open_log, settings_for
from ._root import cli


@cli.group()
def explain() -> None:
    """Explanations (shap): which parts of a prompt, or which features, moved a decision."""


@explain.command()
@click.option("--prompt", help="The prompt to explain.")
@click.option("--record", "record_id", help="Or an audited inference record: its stored prompt is explained and "
                                           "the explanation is chained to it.")
@click.option("--choices", required=True, help="The possible answers, comma-separated, e.g. approve,deny.")
@click.option("--positive", required=True, help="The choice whose log-odds are explained.")
@click.option("--endpoint", help="OpenAI-compatible base URL serving the model (with log-probabilities).")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Or a GGUF file run in-process.")
@click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model file the endpoint serves, to tie the evidence to its sha256.")
@click.option("--system", help="A system message sent before the prompt.")
@click.option("--segments", type=click.Choice(["word", "sentence"]), default="word", show_default=True)
@click.option("--max-evals", type=click.IntRange(min=4), default=200, show_default=True,
              help="shap's budget of model evaluations (it spends exactly this many, fewer after de-duplication).")
@click.option("--fidelity", "fidelity_k", type=click.IntRange(min=0), default=3, show_default=True,
              help="Compare deleting the top K segments with deleting K random ones (0: skip).")
@click.option("--noise-probes", type=click.IntRange(min=0), default=2, show_default=True,
              help="Re-score the prompt after unrelated prompts this many times to measure server noise.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@db_option
@click.pass_context
def text(ctx: click.Context, prompt: str | None, record_id: str | None, choices: str, positive: str,
         endpoint: str | None, model_path: Path | None, model_artifact: Path | None, system: str | None,
         segments: str, max_evals: int, fidelity_k: int, noise_probes: int, fmt: str, output: Path | None,
         db: Path | None) -> None:
    """Attributions of a prompt's words or sentences to the model's decision (shap Partition explainer).

    Example: govkit explain text --record 01J... --choices approve,deny --positive approve
             --endpoint http://127.0.0.1:8080/v1
    """
    from ..explain.text import Scorer, explain_text, fidelity
    from ..fairness.llm import Decider
    from .bias import _choices

    options = _choices(choices, positive)
    if (prompt is None) == (record_id is None):
        raise click.UsageError("give --prompt TEXT or --record ID (one of them)")
    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        target = None
        if record_id is not None:
            target = log.get(record_id)
            if target is None or target.event_type != "inference":
                raise InputError(f"--record: no inference record '{record_id}' in {log.path}")
            stored = log.content(target).get("prompt")
            if not stored:
                raise InputError(f"--record {record_id}: its prompt text is not stored (redaction policy "
                                 "'digest-only', or purged); pass --prompt instead")
            stored_system, prompt = split_chat_prompt(stored) if target.endpoint == "/v1/chat/completions" \
                else (None, stored)
            system = system or stored_system
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
    if fmt == "json":
        _emit(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", output)
    elif fmt == "html":
        _emit(html, output)
    else:
        lines = [f"f(x) = {data['value']:+.4f}  log-odds of '{positive}'   base value = {data['base_value']:+.4f}",
                 f"{data['evaluations']} model evaluations (budget {max_evals}); additivity error "
                 f"{data['additivity_error']:.1e} (tolerance {data['tolerance']:.1e}, "
                 f"{'holds' if data['additive'] else 'FAILS'})"]
        if data["noise"] is not None:
            lines.append(f"server noise on f(x): {data['noise']:.4f}")
        if checked:
            lines.append(f"fidelity: top {checked['k']} segments removed moves f(x) by {checked['top_k_drop']:+.3f}; "
                         f"{checked['k']} random segments by {checked['random_k_drop']:+.3f}")
        for item in data["attributions"]:
            lines.append(f"  {item['value']:+.4f}  {item['segment']!r}")
        lines.append(f"Record {data['record_id']}.")
        _emit("\n".join(lines) + "\n", output)


def split_chat_prompt(stored: str) -> tuple[str | None, str]:
    """(system message, last user message) of a chat prompt as the audit log stores it ("role: text" lines)."""
    import re

    starts = [m.start() for m in re.finditer(r"(?m)^user: ", stored)]
    if not starts:
        return None, stored
    user = stored[starts[-1] + len("user: "):]
    system = re.match(r"system: (.*?)(?=\n(?:user|assistant): |\Z)", stored, re.S)
    return (system.group(1) if system else None), user


def render_html(data: dict[str, Any], record_id: str | None) -> str:
    import jinja2

    from .. import __version__
    from .._resources import builtin_dir

    scale = max([abs(a["value"]) for a in data["attributions"]] + [1e-12])

    def colour(value: float, scale: float) -> str:
        alpha = min(1.0, abs(value) / scale) * 0.6
        return f"rgba(200, 30, 30, {alpha:.3f})" if value >= 0 else f"rgba(30, 90, 200, {alpha:.3f})"

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(builtin_dir("templates")),
                                     autoescape=True, keep_trailing_newline=True)
    environment.filters["colour"] = colour
    others = ", ".join(f"“{c}”" for c in data["choices"] if c != data["positive"])
    return environment.get_template("explanation.html.j2").render(
        explanation=data, record_id=record_id, scale=scale, others=others, fidelity=data.get("fidelity"),
        version=__version__)


def _record_text(log: Any, settings: Any, data: dict[str, Any], prompt: str, target: Any,
                 artifact: Path | None) -> Any:
    from ..tracking import Tracker
    from .bias import _identity_fields

    tracker = Tracker.from_settings(settings, log.path)
    with tracker.run("explain: text", {"govkit.event": "explanation", "govkit.explained_record":
                                       target.record_id if target else ""}) as run:
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
        details["attributions"] = [{"segment_sha256": "sha256:" + hashlib.sha256(a["segment"].encode()).hexdigest(),
                                    "value": a["value"]} for a in data["attributions"]]
        record = log.append("explanation", prompt=prompt, response=json.dumps(data["attributions"], ensure_ascii=False),
                            target_record_id=target.record_id if target else None, mlflow_run_id=run.id,
                            subject_ref=target.subject_ref if target is not None else None,
                            explanation_method="shap.PartitionExplainer", purpose="explanation",
                            explanation_ref=f"mlflow-run:{run.id}/explanation.json" if run.id else None,
                            model_id=settings.model.id if settings else None,
                            **_identity_fields(log, artifact), details=details)
        run.link(record)
    return record


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {output}", err=True)


@explain.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
              help="A scikit-learn model (.joblib, .pkl) or an ONNX classifier.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Rows to explain (CSV, Parquet, JSONL), with the model's feature columns.")
@click.option("--row", type=click.IntRange(min=1), help="Explain this row (1-based).")
@click.option("--all", "all_rows", is_flag=True, help="Explain every row; global importance over all.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@db_option
@click.pass_context
def tabular(ctx: click.Context, model_path: Path, data_path: Path, row: int | None, all_rows: bool, fmt: str,
            output: Path | None, db: Path | None) -> None:
    """Feature attributions for a classic model's decisions: shap's exact explainer where one exists.

    Example: govkit explain tabular --model credit_gbm.joblib --data applicants.csv --row 17
    """
    from ..explain.tabular import explain_rows, load_model
    from ..inference.fingerprint import sha256_file
    from ..lineage.tables import ReadOptions, detect_format, read_table
    from ..tracking import Tracker

    if (row is None) == (not all_rows):
        raise click.UsageError("give --row N or --all")
    settings = settings_for(ctx, required=db is None)
    model = load_model(model_path)
    frame = read_table(data_path, ReadOptions(format=detect_format(data_path)))
    try:
        result = explain_rows(model, frame, None if all_rows else [row - 1])
    except InputError as exc:
        raise InputError(f"{data_path}: {exc}") from None
    result = {"model": {"path": str(model_path.resolve()), "sha256": sha256_file(model_path)[0], "kind": model.kind},
              "data": {"path": str(data_path.resolve()), "sha256": sha256_file(data_path)[0]}, **result}
    if row is not None:
        result.update({k: result["rows"][0][k] for k in ("value", "base_value", "attributions")})
    with open_log(ctx, db) as log:
        tracker = Tracker.from_settings(settings, log.path)
        with tracker.run("explain: tabular", {"govkit.event": "explanation"}) as run:
            run.log_text(json.dumps(result, indent=2, sort_keys=True), "explanation.json")
            for item in result["global_importance"][:50]:
                run.log_metrics({f"importance.{_metric_key(item['feature'])}": item["mean_abs"]})
            record = log.append("explanation", mlflow_run_id=run.id, explanation_method=result["method"],
                                purpose="explanation", artifact_sha256=result["model"]["sha256"],
                                model_id=settings.model.id if settings else None, details={
                                    "kind": "tabular", "model": result["model"], "data": result["data"],
                                    "rows": [r["row"] for r in result["rows"]][:1000],
                                    "global_importance": result["global_importance"][:50]})
            run.link(record)
    result["record_id"] = record.record_id
    if fmt == "json":
        _emit(json.dumps(result, indent=2, sort_keys=True) + "\n", output)
        return
    lines = [f"{result['method']} on {model_path.name} ({result['output']})"]
    for item in result["rows"][:20]:
        lines.append(f"row {item['row']}: f(x) = {item['value']:+.4f}, base {item['base_value']:+.4f}; top: "
                     + ", ".join(f"{a['feature']} {a['value']:+.3f}" for a in item["top"]))
    lines.append("global importance (mean |attribution|): " + ", ".join(
        f"{g['feature']} {g['mean_abs']:.3f}" for g in result["global_importance"][:10]))
    lines.append(f"Record {record.record_id}.")
    _emit("\n".join(lines) + "\n", output)


def _metric_key(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", name)[:200]
