"""`govkit explain ...`: shap attributions for an LLM decision (through its endpoint) or a tabular model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..outputs import write_output
from ._common import COUNT, choice_options, db_option, model_options, open_log, refuse_evidence, settings_for
from ._root import cli


@cli.group()
def explain() -> None:
    """Explanations (shap): which parts of a prompt, or which features, moved a decision."""


@explain.command()
@click.option("--prompt", help="The prompt to explain.")
@click.option("--record", "record_id", help="Or an audited inference record: its stored prompt is explained and "
                                           "the explanation is chained to it.")
@choice_options("The choice whose log-odds are explained.")
@model_options
@click.option("--segments", type=click.Choice(["word", "sentence"]), default="word", show_default=True)
@click.option("--max-evals", type=click.IntRange(min=4), default=200, show_default=True,
              help="shap's budget of model evaluations (it spends exactly this many, fewer after de-duplication).")
@click.option("--fidelity", "fidelity_k", type=click.IntRange(min=0), default=3, show_default=True,
              help="Compare deleting the top K segments with deleting K random ones (0: skip).")
@click.option("--noise-probes", type=click.IntRange(min=0), default=2, show_default=True,
              help="Re-score the prompt after unrelated prompts this many times to measure server noise.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), callback=refuse_evidence,
              help="File (default: stdout).")
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
    from ..explain.runs import explain_decision

    if (prompt is None) == (record_id is None):
        raise click.UsageError("give --prompt TEXT or --record ID (one of them)")
    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        run = explain_decision(log, settings, choices=choices, positive=positive, prompt=prompt, record_id=record_id,
                               endpoint=endpoint, model_path=model_path, model_artifact=model_artifact, system=system,
                               segments=segments, max_evals=max_evals, fidelity_k=fidelity_k,
                               noise_probes=noise_probes)
    data, checked = run.result, run.result["fidelity"]
    if fmt == "json":
        _emit(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", output)
    elif fmt == "html":
        _emit(run.html or "", output)
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


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        click.echo(f"Wrote {output}", err=True)


@explain.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
              help="A scikit-learn model (.joblib, .pkl) or an ONNX classifier.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Rows to explain (CSV, Parquet, JSONL), with the model's feature columns.")
@click.option("--row", type=COUNT, help="Explain this row (1-based).")
@click.option("--all", "all_rows", is_flag=True, help="Explain every row; global importance over all.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), callback=refuse_evidence,
              help="File (default: stdout).")
@db_option
@click.pass_context
def tabular(ctx: click.Context, model_path: Path, data_path: Path, row: int | None, all_rows: bool, fmt: str,
            output: Path | None, db: Path | None) -> None:
    """Feature attributions for a classic model's decisions: shap's exact explainer where one exists.

    Example: govkit explain tabular --model credit_gbm.joblib --data applicants.csv --row 17
    """
    from ..explain.runs import explain_tabular_model

    if (row is None) == (not all_rows):
        raise click.UsageError("give --row N or --all")
    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        run = explain_tabular_model(log, settings, model_path, data_path, rows=None if all_rows or row is None else [row])
    result = run.result
    if fmt == "json":
        _emit(json.dumps(result, indent=2, sort_keys=True) + "\n", output)
        return
    lines = [f"{result['method']} on {model_path.name} ({result['output']})"]
    for item in result["rows"][:20]:
        lines.append(f"row {item['row']}: f(x) = {item['value']:+.4f}, base {item['base_value']:+.4f}; top: "
                     + ", ".join(f"{a['feature']} {a['value']:+.3f}" for a in item["top"]))
    lines.append("global importance (mean |attribution|): " + ", ".join(
        f"{g['feature']} {g['mean_abs']:.3f}" for g in result["global_importance"][:10]))
    lines.append(f"Record {run.record_id}.")
    _emit("\n".join(lines) + "\n", output)
