"""`govkit bias ...`: fairness evidence for tabular predictions, LLM decisions and counterfactual prompts."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from ._common import (
    COUNT,
    choice_options,
    db_option,
    echo_json,
    model_options,
    open_log,
    output_option,
    refuse_evidence,
    settings_for,
)
from ._root import cli

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True)
out_option = output_option("Write the JSON result here (what the checks and the board report read).", dest="out")
limit_option = click.option("--limit", type=COUNT, help="Only the first N rows (a quick look).")
sample_option = click.option("--sample", type=COUNT, help="A random sample of N rows.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample and the bootstrap.")


def _run_options(function: Any) -> Any:
    """--format, -o/--output, --limit, --sample, --seed and --db: the same on every bias command."""
    for option in reversed((format_option, out_option, limit_option, sample_option, seed_option, db_option)):
        function = option(function)
    return function


@cli.group()
def bias() -> None:
    """Fairness evidence (fairlearn): group metrics with intervals, judged against the policy's thresholds."""


@bias.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Predictions: CSV, Parquet or JSONL.")
@click.option("--y-true", required=True, help="Column with the true outcome (0/1, or see --positive-label).")
@click.option("--y-pred", help="Column with the decision (0/1); or give --score and --threshold.")
@click.option("--sensitive", required=True, help="Sensitive column(s), comma-separated; several are also "
                                                 "analysed together (intersectional).")
@click.option("--score", help="Column with a score in [0, 1]; the decision is score >= --threshold.")
@click.option("--threshold", type=float, default=0.5, show_default=True)
@click.option("--positive-label", help="The value of --y-true (and --y-pred) that means the positive outcome.")
@click.option("--reference", help="Reference group for the disparate impact ratio (default: the group "
                                  "with the highest selection rate, as in the four-fifths rule).")
@click.option("--bootstrap", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Bootstrap replicates for the between-group intervals (0: none).")
@click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model file that made the predictions: the evidence is tied to its sha256 (the gate counts "
                   "only evidence about the deployed model).")
@_run_options
@click.pass_context
def tabular(ctx: click.Context, data_path: Path, y_true: str, y_pred: str | None, sensitive: str, score: str | None,
            threshold: float, positive_label: str | None, reference: str | None, bootstrap: int,
            model_artifact: Path | None, fmt: str, out: Path | None, limit: int | None, sample: int | None, seed: int,
            db: Path | None) -> None:
    """Group metrics for a table of predictions, each attribute alone and together.

    Per group: count, selection rate, TPR, FPR, FNR, precision, accuracy (Wilson intervals). Between
    groups: demographic parity difference and ratio, equalized odds difference, disparate impact
    ratio against the reference group (bootstrap intervals). Thresholds come from
    [policy.fairness] in govkit.toml. Exit 1 when a metric fails its threshold.

    Example: govkit bias tabular --data preds.csv --y-true default --y-pred approved --sensitive sex,age_band
    """
    from ..fairness.runs import bias_tabular

    if not y_pred and not score:
        raise click.UsageError("give --y-pred, or --score (with --threshold)")
    if y_pred and score:
        raise click.UsageError("give --y-pred or --score, not both")
    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        run = bias_tabular(log, settings, data_path, y_true=y_true, y_pred=y_pred, sensitive=sensitive, score=score,
                           threshold=threshold, positive_label=positive_label, reference=reference,
                           bootstrap=bootstrap, model_artifact=model_artifact, limit=limit, sample=sample, seed=seed,
                           out=out)
    _show(run.result, fmt)
    if not run.passed:
        ctx.exit(1)


def _show(result: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        echo_json(result)
        return

    def pct(value: Any) -> str:
        return "   -  " if value is None else f"{value:6.1%}"

    for view, data in result["views"].items():
        click.secho(f"\n{view}  (reference for the impact ratio: {data['reference'] or 'none'}; judged among "
                    f"{', '.join(data['judged_groups']) or 'no group'})", bold=True)
        width = max(len(row["group"]) for row in data["by_group"])
        click.echo(f"  {'group':<{width}} {'count':>7} {'selected':>17} {'TPR':>7} {'FPR':>7} {'FNR':>7} "
                   f"{'prec.':>7} {'acc.':>7} {'impact':>7}")
        for row in data["by_group"]:
            ci = row["intervals"]["selection_rate"]
            interval = f"[{ci[0]:.1%},{ci[1]:.1%}]" if ci else ""
            click.echo(f"  {row['group']:<{width}} {row['count']:>7} {pct(row['selection_rate'])}{interval:>11} "
                       f"{pct(row['true_positive_rate'])} {pct(row['false_positive_rate'])} "
                       f"{pct(row['false_negative_rate'])} {pct(row['precision'])} {pct(row['accuracy'])} "
                       f"{'   -' if row['disparate_impact_ratio'] is None else format(row['disparate_impact_ratio'], '7.3f')}"
                       + ("  (small)" if row["small"] else ""))
        for name, metric in data["metrics"].items():
            value = "undefined" if metric["value"] is None else f"{metric['value']:.3f}"
            interval = f" [{metric['interval'][0]:.3f}, {metric['interval'][1]:.3f}]" if metric["interval"] else ""
            bound = "<=" if metric["direction"] == "max" else ">="
            status = metric["status"].upper()
            colour = {"PASS": "green", "FAIL": "red"}.get(status, "yellow")
            between = f"  between {' and '.join(metric['between'])}" if metric.get("between") else ""
            click.echo(f"  {name:<31} {value}{interval}  (policy {bound} {metric['threshold']})  "
                       + click.style(status, fg=colour) + between + (f"  {metric['reason']}" if "reason" in metric else ""))
            if "with_small_groups" in metric:
                click.echo("  " + " " * 31 + click.style(" INCONCLUSIVE", fg="yellow")
                           + f" with small groups: {metric['with_small_groups']['reason']}")
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}")
    verdict = {"pass": "PASS: every judged metric meets its threshold",
               "fail": "FAIL: at least one metric breaches its threshold",
               "inconclusive": "INCONCLUSIVE: no metric fails, but not every one could be judged"}[result["status"]]
    click.echo(f"\n{result['rows']} rows; {verdict}. Record {result['record_id']}.")
    if result["status"] == "inconclusive":
        click.echo("To conclude: " + "; ".join(result["to_conclude"]))


def _model_options(function: Any) -> Any:
    """The model to decide with (shared with `explain text`), --method, the template and the choices."""
    function = choice_options("The choice that is the favourable outcome.")(function)
    function = click.option("--prompt-template", type=click.Path(path_type=Path), required=True,
                            help="Jinja template rendered per row; it may use any column.")(function)
    function = click.option("--method", type=click.Choice(["logprob", "generate"]), default="logprob",
                            show_default=True, help="logprob: score each choice by its log-probability; generate: "
                                                    "temperature 0, strict parsing.")(function)
    return model_options(function)


def _progress(items: Sequence[str], label: str) -> Iterator[str]:
    with click.progressbar(items, label=label, file=sys.stderr) as bar:
        yield from bar


@bias.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Cases to decide: CSV, Parquet or JSONL.")
@click.option("--sensitive", required=True, help="Sensitive column(s), comma-separated.")
@click.option("--label", help="Column with the correct choice (or 0/1), for the error-rate metrics.")
@_model_options
@click.option("--decisions-out", type=click.Path(dir_okay=False, path_type=Path), callback=refuse_evidence,
              help="CSV of every decision: row, groups, prompt digest, choice scores, decision, audit record.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=2000, show_default=True)
@_run_options
@click.pass_context
def llm(ctx: click.Context, data_path: Path, sensitive: str, label: str | None, endpoint: str | None,
        model_path: Path | None, model_artifact: Path | None, method: str, system: str | None,
        prompt_template: Path, choices: str, positive: str, decisions_out: Path | None, bootstrap: int, fmt: str,
        out: Path | None, limit: int | None, sample: int | None, seed: int, db: Path | None) -> None:
    """Group fairness of a language model's decisions: one prompt per row, the same analysis as tabular.

    Example: govkit bias llm --data applicants.csv --prompt-template loan.j2 --choices approve,deny
             --positive approve --sensitive gender --endpoint http://127.0.0.1:8080/v1
    """
    from ..fairness.runs import bias_llm

    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        run = bias_llm(log, settings, data_path, sensitive=sensitive, prompt_template=prompt_template,
                       choices=choices, positive=positive, endpoint=endpoint, model_path=model_path,
                       model_artifact=model_artifact, method=method, system=system, label=label, bootstrap=bootstrap,
                       limit=limit, sample=sample, seed=seed, out=out, decisions_out=decisions_out,
                       progress=_progress)
    _show(run.result, fmt)
    if fmt == "table":
        click.echo(f"{sum(run.result['unparseable'].values())} of {run.result['decided']} answers were unparseable.")
    if not run.passed:
        ctx.exit(1)


@bias.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Cases: CSV, Parquet or JSONL; every column is available to the template.")
@click.option("--attribute", "attributes", multiple=True, required=True,
              help="Attribute to vary (a lexicon: name, name_origin, pronoun, age, origin, or one from "
                   "--lexicon); repeatable.")
@click.option("--lexicon", "lexicons", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A lexicon JSON file of your own; it replaces the built-in one of the same attribute.")
@click.option("--groups", help="Only these groups of the lexicon, comma-separated (at least two).")
@_model_options
@click.option("--decisions-out", type=click.Path(dir_okay=False, path_type=Path), callback=refuse_evidence,
              help="CSV of every variant: row, attribute, group, value, prompt digest, scores, decision, record.")
@_run_options
@click.pass_context
def counterfactual(ctx: click.Context, data_path: Path, attributes: tuple[str, ...], lexicons: tuple[Path, ...],
                   groups: str | None, endpoint: str | None, model_path: Path | None, model_artifact: Path | None,
                   method: str, system: str | None, prompt_template: Path, choices: str, positive: str,
                   decisions_out: Path | None, fmt: str, out: Path | None, limit: int | None, sample: int | None,
                   seed: int, db: Path | None) -> None:
    """Prompts that differ only in a demographic attribute: flip rates and paired tests per pair of groups.

    The template uses the lexicon's variable ({{ name }}, {{ pronoun.subject }}, {{ age }}, {{ origin }}).
    Exit 1 when the evidence shows a difference (McNemar exact or paired permutation test,
    Holm-adjusted, at the policy's confidence).

    Example: govkit bias counterfactual --data cases.csv --prompt-template loan.j2 --attribute name
             --choices approve,deny --positive approve --endpoint http://127.0.0.1:8080/v1
    """
    from ..fairness.runs import bias_counterfactual

    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db) as log:
        run = bias_counterfactual(log, settings, data_path, attributes=attributes, prompt_template=prompt_template,
                                  choices=choices, positive=positive, lexicons=lexicons,
                                  groups=[g.strip() for g in groups.split(",")] if groups else None,
                                  endpoint=endpoint, model_path=model_path, model_artifact=model_artifact,
                                  method=method, system=system, limit=limit, sample=sample, seed=seed, out=out,
                                  decisions_out=decisions_out, progress=_progress)
    result = run.result
    if fmt == "json":
        echo_json(result)
    else:
        for attribute, analysis in result["attributes"].items():
            rates = ", ".join(f"{g} {r:.0%}" if r is not None else f"{g} -" for g, r in analysis["positive_rate"].items())
            click.secho(f"\n{attribute}: '{positive}' rate by group: {rates}", bold=True)
            for pair in analysis["pairs"]:
                click.echo("  " + pair["statement"])
        for warning in result["warnings"]:
            click.echo(f"warning: {warning}")
        click.echo(f"\n{result['decided']} prompts for {result['rows']} rows; {result['status'].upper()}. "
                   f"Record {result['record_id']}.")
    if not result["passed"]:
        ctx.exit(1)
