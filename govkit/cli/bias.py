"""`govkit bias ...`: fairness evidence for tabular predictions, LLM decisions and counterfactual prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ._common import db_option, echo_json, open_log, settings_for
from ._root import cli

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True)
out_option = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                          help="Write the JSON result here (what the checks and the board report read).")
limit_option = click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows (a quick look).")
sample_option = click.option("--sample", type=click.IntRange(min=1), help="A random sample of N rows.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample and the bootstrap.")


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
@format_option
@out_option
@limit_option
@sample_option
@seed_option
@db_option
@click.pass_context
def tabular(ctx: click.Context, data_path: Path, y_true: str, y_pred: str | None, sensitive: str, score: str | None,
            threshold: float, positive_label: str | None, reference: str | None, bootstrap: int, fmt: str,
            out: Path | None, limit: int | None, sample: int | None, seed: int, db: Path | None) -> None:
    """Group metrics for a table of predictions, each attribute alone and together.

    Per group: count, selection rate, TPR, FPR, FNR, precision, accuracy (Wilson intervals). Between
    groups: demographic parity difference and ratio, equalized odds difference, disparate impact
    ratio against the reference group (bootstrap intervals). Thresholds come from
    [policy.fairness] in govkit.toml. Exit 1 when a metric fails its threshold.

    Example: govkit bias tabular --data preds.csv --y-true default --y-pred approved --sensitive sex,age_band
    """
    from .. import schemas
    from ..config import FairnessPolicy
    from ..fairness.evidence import record_bias_run
    from ..fairness.tabular import analyze
    from ..inference.fingerprint import sha256_file
    from ..lineage.tables import ReadOptions, detect_format, read_table

    if not y_pred and not score:
        raise click.UsageError("give --y-pred, or --score (with --threshold)")
    if y_pred and score:
        raise click.UsageError("give --y-pred or --score, not both")
    columns = [c.strip() for c in sensitive.split(",") if c.strip()]
    settings = settings_for(ctx, required=db is None)
    policy = settings.policy.fairness if settings else FairnessPolicy()
    digest, _ = sha256_file(data_path)
    frame = read_table(data_path, ReadOptions(format=detect_format(data_path)))
    frame = _subset(frame, limit, sample, seed)
    if positive_label is not None:
        frame = _map_label(frame, [y_true] + ([y_pred] if y_pred else []), positive_label, data_path)
    schema = schemas.predictions(y_true=y_true, y_pred=y_pred or y_true, sensitive=columns, score=score)
    frame = schemas.validate(frame, schema, source=str(data_path))
    if score:
        y_pred = "__govkit_decision__"
        frame[y_pred] = (frame[score] >= threshold).astype(int)
    try:
        result = analyze(frame, y_true=y_true, y_pred=y_pred, sensitive=columns, policy=policy,
                         reference=reference, bootstrap=bootstrap, seed=seed)
    except InputError as exc:
        raise InputError(f"{data_path}: {exc}") from None
    result = {"kind": "tabular", "data": {"path": str(data_path.resolve()), "name": data_path.name, "sha256": digest},
              "decision": {"column": y_pred} if not score else {"score": score, "threshold": threshold},
              **result}
    with open_log(ctx, db) as log:
        record_bias_run(log, settings, kind="tabular", result=result, out=out,
                        artifacts={"by_group.csv": by_group_csv(result)})
    _show(result, fmt)
    if not result["passed"]:
        ctx.exit(1)


def _subset(frame: Any, limit: int | None, sample: int | None, seed: int) -> Any:
    if sample is not None and sample < len(frame):
        frame = frame.sample(sample, random_state=seed).sort_index()
    if limit is not None:
        frame = frame.head(limit)
    return frame


def _map_label(frame: Any, columns: list[str], positive: str, path: Path) -> Any:
    frame = frame.copy()
    for column in columns:
        if column not in frame.columns:
            continue  # the schema check reports it with every other problem
        values = frame[column].dropna().astype(str).str.strip()
        distinct = sorted(values.unique().tolist())
        if set(distinct) <= {"0", "1"} and positive not in distinct:
            continue  # already 0/1
        if positive not in distinct or len(distinct) > 2:
            raise InputError(f"{path}: column '{column}' is not binary with positive label '{positive}' "
                             f"(values: {', '.join(distinct[:6])}{' ...' if len(distinct) > 6 else ''})")
        frame[column] = frame[column].where(frame[column].isna(), (values == positive).astype(int))
    return frame


def by_group_csv(result: dict[str, Any]) -> str:
    import csv
    import io

    from ..fairness.tabular import GROUP_METRICS

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["view", "group", *GROUP_METRICS, "disparate_impact_ratio", "small"])
    for view, data in result["views"].items():
        for row in data["by_group"]:
            writer.writerow([view, row["group"], *(_cell(row.get(m)) for m in GROUP_METRICS),
                             _cell(row.get("disparate_impact_ratio")), row["small"]])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.6f}" if isinstance(value, float) else str(value)


def _show(result: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        echo_json(result)
        return

    def pct(value: Any) -> str:
        return "   -  " if value is None else f"{value:6.1%}"

    for view, data in result["views"].items():
        click.secho(f"\n{view}  (reference for the impact ratio: {data['reference']})", bold=True)
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
            click.echo(f"  {name:<31} {value}{interval}  (policy {bound} {metric['threshold']})  "
                       + click.style(status, fg=colour) + (f"  {metric['reason']}" if "reason" in metric else ""))
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}")
    verdict = "no metric fails its threshold" if result["passed"] else "at least one metric fails its threshold"
    click.echo(f"\n{result['rows']} rows; {verdict}. Record {result['record_id']}.")
