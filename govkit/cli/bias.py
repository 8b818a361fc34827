"""`govkit bias ...`: fairness evidence for tabular predictions, LLM decisions and counterfactual prompts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import click

from ..errors import GovkitError, InputError
from ._common import db_option, echo_json, open_log, output_option, settings_for
from ._root import cli

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                             show_default=True)
out_option = output_option("Write the JSON result here (what the checks and the board report read).", dest="out")
limit_option = click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows (a quick look).")
sample_option = click.option("--sample", type=click.IntRange(min=1), help="A random sample of N rows.")
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
    from .. import schemas
    from ..fairness.evidence import record_bias_run
    from ..fairness.tabular import analyze

    if not y_pred and not score:
        raise click.UsageError("give --y-pred, or --score (with --threshold)")
    if y_pred and score:
        raise click.UsageError("give --y-pred or --score, not both")
    columns = [c.strip() for c in sensitive.split(",") if c.strip()]
    settings, policy, data, frame = _cases(ctx, data_path, db, limit, sample, seed)
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
    result = {"kind": "tabular", "data": data,
              "decision": {"column": y_pred} if not score else {"score": score, "threshold": threshold},
              **result}
    with open_log(ctx, db) as log:
        record_bias_run(log, settings, kind="tabular", result=result, out=out,
                        artifacts={"by_group.csv": by_group_csv(result)}, fields=_identity_fields(log, model_artifact))
    _show(result, fmt)
    if not result["passed"]:
        ctx.exit(1)


def _cases(ctx: click.Context, data_path: Path, db: Path | None, limit: int | None, sample: int | None,
           seed: int) -> tuple[Any, Any, dict[str, str], Any]:
    """(settings, fairness policy, the data file's identity, its rows after --limit / --sample)."""
    from ..config import FairnessPolicy
    from ..inference.fingerprint import sha256_file
    from ..lineage.tables import ReadOptions, detect_format, read_table

    settings = settings_for(ctx, required=db is None)
    policy = settings.policy.fairness if settings else FairnessPolicy()
    digest, _ = sha256_file(data_path)
    frame = _subset(read_table(data_path, ReadOptions(format=detect_format(data_path))), limit, sample, seed)
    return settings, policy, {"path": str(data_path.resolve()), "name": data_path.name, "sha256": digest}, frame


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


model_options = [
    click.option("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1 (llama.cpp, "
                                    "Ollama, vLLM, govkit proxy)."),
    click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Or a GGUF file run in-process with llama-cpp-python."),
    click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="The model file the endpoint serves, to tie the evidence to its sha256."),
    click.option("--method", type=click.Choice(["logprob", "generate"]), default="logprob", show_default=True,
                 help="logprob: score each choice by its log-probability; generate: temperature 0, strict parsing."),
    click.option("--system", help="A system message sent before every prompt."),
    click.option("--prompt-template", type=click.Path(path_type=Path), required=True,
                 help="Jinja template rendered per row; it may use any column."),
    click.option("--choices", required=True, help="The allowed answers, comma-separated, e.g. approve,deny."),
    click.option("--positive", required=True, help="The choice that is the favourable outcome."),
]


def _model_options(function: Any) -> Any:
    for option in reversed(model_options):
        function = option(function)
    return function


def _choices(choices: str, positive: str) -> list[str]:
    items = [c.strip() for c in choices.split(",") if c.strip()]
    if len(items) < 2 or len(set(c.lower() for c in items)) != len(items):
        raise InputError(f"--choices: expected two or more distinct answers, got '{choices}'")
    if positive not in items:
        raise InputError(f"--positive: '{positive}' is not one of the choices {', '.join(items)}")
    firsts = [c.split()[0].lower() for c in items]
    shared = sorted({f for f in firsts if firsts.count(f) > 1})
    if shared:
        raise InputError(f"--choices: {', '.join(shared)} begins more than one choice; the model's first answer "
                         "token must tell the choices apart (e.g. approve,deny)")
    return items


def _decider(log: Any, settings: Any, *, choices: list[str], method: str, endpoint: str | None,
             model_path: Path | None, model_artifact: Path | None, system: str | None) -> Any:
    from ..fairness.llm import Decider

    return Decider(log, choices, method=method, endpoint=endpoint, model_path=model_path, system=system,
                   model_artifact=model_artifact, model_id=settings.model.id if settings else None)


def _decide_all(decider: Any, prompts: list[str], label: str) -> list[Any]:
    decisions = []
    with click.progressbar(prompts, label=label, file=click.get_text_stream("stderr")) as bar:
        for prompt in bar:
            decisions.append(decider.decide(prompt))
    return decisions


def _identity_fields(log: Any, artifact: Path | None) -> dict[str, Any]:
    if artifact is None:
        return {}
    from ..inference.fingerprint import fingerprint_artifact

    return fingerprint_artifact(artifact, cache_file=log.path.with_name("artifacts.json")).record_fields()


def _rows(frame: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts for Jinja, with missing values as None."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return records


@bias.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Cases to decide: CSV, Parquet or JSONL.")
@click.option("--sensitive", required=True, help="Sensitive column(s), comma-separated.")
@click.option("--label", help="Column with the correct choice (or 0/1), for the error-rate metrics.")
@_model_options
@click.option("--decisions-out", type=click.Path(dir_okay=False, path_type=Path),
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
    from .. import schemas
    from ..fairness.evidence import record_bias_run
    from ..fairness.llm import load_template, prompt_digest
    from ..fairness.tabular import analyze

    options = _choices(choices, positive)
    columns = [c.strip() for c in sensitive.split(",") if c.strip()]
    settings, policy, data, frame = _cases(ctx, data_path, db, limit, sample, seed)
    template = load_template(prompt_template, frame.columns)
    schemas.validate(frame, schemas.evaluation_dataset(sensitive=columns, label=label), source=str(data_path))
    truth = None
    if label:
        truth = _label_truth(frame[label], options, positive, data_path, label)
    prompts = [template.render(**row) for row in _rows(frame)]
    with open_log(ctx, db) as log:
        decider = _decider(log, settings, choices=options, method=method, endpoint=endpoint,
                           model_path=model_path, model_artifact=model_artifact, system=system)
        decisions = _decide_all(decider, prompts, f"deciding {len(prompts)} rows")
        table = frame[columns].copy()
        table.insert(0, "row", frame.index + 1)
        table["prompt_sha256"] = [prompt_digest(p) for p in prompts]
        for choice in options:
            table[f"score_{choice}"] = [d.scores.get(choice) for d in decisions]
        table["decision"] = [d.choice for d in decisions]
        table["record_id"] = [d.record_id for d in decisions]
        if truth is not None:
            table["label"] = truth
        decisions_csv = table.to_csv(index=False, lineterminator="\n")
        if decisions_out is not None:
            decisions_out.write_text(decisions_csv, encoding="utf-8")
        parsed = table[table.decision.notna()].copy()
        parsed["y_pred"] = (parsed.decision == positive).astype(int)
        unparseable = _unparseable(table, columns)
        if parsed.empty:
            raise GovkitError(f"none of the {len(table)} answers named one of the choices {', '.join(options)}; "
                              "check the template and --choices")
        try:
            result = analyze(parsed, y_true="label" if truth is not None else None, y_pred="y_pred",
                             sensitive=columns, policy=policy, bootstrap=bootstrap, seed=seed)
        except InputError as exc:
            raise InputError(f"{data_path}: {exc}") from None
        result["warnings"] += unparseable["warnings"]
        result = {"kind": "llm", "data": data,
                  "model": {"endpoint": endpoint, "path": str(model_path) if model_path else None,
                            "artifact": str(model_artifact or model_path or "") or None, "method": method},
                  "prompt_template_sha256": "sha256:" + hashlib.sha256(prompt_template.read_bytes()).hexdigest(),
                  "choices": options, "positive": positive, "decided": len(table),
                  "unparseable": unparseable["counts"], **result}
        record_bias_run(log, settings, kind="llm", result=result, out=out,
                        artifacts={"by_group.csv": by_group_csv(result), "decisions.csv": decisions_csv},
                        fields=_identity_fields(log, model_artifact or model_path))
    _show(result, fmt)
    if fmt == "table":
        click.echo(f"{sum(unparseable['counts'].values())} of {len(table)} answers were unparseable.")
    if not result["passed"]:
        ctx.exit(1)


def _label_truth(series: Any, options: list[str], positive: str, path: Path, label: str) -> list[int]:
    values = series.astype(str).str.strip()
    allowed = {*options, "0", "1", "True", "False"}
    bad = sorted(set(values) - allowed)
    if bad:
        raise InputError(f"{path}: column '{label}' holds {', '.join(bad[:5])}; expected one of the choices "
                         f"({', '.join(options)}) or 0/1")
    return [1 if v in (positive, "1", "True") else 0 for v in values]


def _unparseable(table: Any, columns: list[str]) -> dict[str, Any]:
    missing = table[table.decision.isna()]
    counts: dict[str, int] = {}
    for name in columns:
        for group, n in missing.groupby(name, dropna=False).size().items():
            counts[f"{name}={group}"] = int(n)
    warnings = [f"{group}: {n} answer(s) named no choice and are left out of the metrics"
                for group, n in counts.items()]
    return {"counts": counts, "warnings": warnings}


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
@click.option("--decisions-out", type=click.Path(dir_okay=False, path_type=Path),
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
    from ..fairness.counterfactual import analyze_pairs, load_lexicon
    from ..fairness.tabular import verdict
    from ..fairness.evidence import record_bias_run
    from ..fairness.llm import load_template

    options = _choices(choices, positive)
    settings, policy, data, frame = _cases(ctx, data_path, db, limit, sample, seed)
    chosen = [load_lexicon(name, list(lexicons)) for name in attributes]
    wanted = [g.strip() for g in groups.split(",")] if groups else None
    group_lists = {}
    for lexicon in chosen:
        names = [g for g in lexicon.groups if wanted is None or g in wanted]
        if len(names) < 2:
            raise InputError(f"--groups: fewer than two of {', '.join(wanted or [])} are groups of "
                             f"'{lexicon.attribute}' ({', '.join(lexicon.groups)})")
        group_lists[lexicon.attribute] = names
    template = load_template(prompt_template, frame.columns, extra=[lex.variable for lex in chosen])
    variants = []
    for i, row in enumerate(_rows(frame)):
        for lexicon in chosen:
            base = dict(row)
            for other in chosen:  # variables of the attributes not varied here: the data's, else the first group's
                base.setdefault(other.variable, other.value(next(iter(other.groups)), i))
            for group in group_lists[lexicon.attribute]:
                value = lexicon.value(group, i)
                prompt = template.render(**{**base, lexicon.variable: value})
                variants.append({"row": int(frame.index[i]) + 1, "attribute": lexicon.attribute, "group": group,
                                 "value": value, "prompt": prompt})
    with open_log(ctx, db) as log:
        decider = _decider(log, settings, choices=options, method=method, endpoint=endpoint,
                           model_path=model_path, model_artifact=model_artifact, system=system)
        decisions = _decide_all(decider, [v["prompt"] for v in variants], f"deciding {len(variants)} variants")
        for variant, decision in zip(variants, decisions):
            variant.update(decision=decision.choice, p_positive=decision.positive_probability(positive),
                           scores=decision.scores, record_id=decision.record_id)
        analyses = {lex.attribute: analyze_pairs([v for v in variants if v["attribute"] == lex.attribute], lex,
                                                 group_lists[lex.attribute], positive, confidence=policy.confidence,
                                                 seed=seed, max_flip_rate=policy.max_flip_rate,
                                                 min_rows=policy.min_group_size) for lex in chosen}
        status = verdict(a["status"] for a in analyses.values())
        unparseable: dict[str, int] = {}
        for v in variants:
            if v["decision"] is None:
                key = f"{v['attribute']}={v['group']}"
                unparseable[key] = unparseable.get(key, 0) + 1
        result = {"kind": "counterfactual", "data": data,
                  "model": {"endpoint": endpoint, "path": str(model_path) if model_path else None, "method": method},
                  "prompt_template_sha256": "sha256:" + hashlib.sha256(prompt_template.read_bytes()).hexdigest(),
                  "choices": options, "positive": positive, "rows": int(len(frame)), "decided": len(variants),
                  "confidence": policy.confidence, "seed": seed, "attributes": analyses, "unparseable": unparseable,
                  "status": status, "passed": status == "pass",
                  "to_conclude": [f"{attr}: {' vs '.join(p['groups'])}: {p['to_conclude']}"
                                  for attr, a in analyses.items() for p in a["pairs"] if p["status"] == "inconclusive"],
                  "summary": [p["statement"] for a in analyses.values() for p in a["pairs"]],
                  "warnings": [f"{k}: {n} answer(s) named no choice and are left out" for k, n in unparseable.items()]}
        decisions_csv = _variants_csv(variants, options)
        if decisions_out is not None:
            decisions_out.write_text(decisions_csv, encoding="utf-8")
        record_bias_run(log, settings, kind="counterfactual", result=result, out=out,
                        artifacts={"decisions.csv": decisions_csv},
                        fields=_identity_fields(log, model_artifact or model_path))
    if fmt == "json":
        echo_json(result)
    else:
        for attribute, analysis in analyses.items():
            rates = ", ".join(f"{g} {r:.0%}" if r is not None else f"{g} -" for g, r in analysis["positive_rate"].items())
            click.secho(f"\n{attribute}: '{positive}' rate by group: {rates}", bold=True)
            for pair in analysis["pairs"]:
                click.echo("  " + pair["statement"])
        for warning in result["warnings"]:
            click.echo(f"warning: {warning}")
        click.echo(f"\n{len(variants)} prompts for {len(frame)} rows; {result['status'].upper()}. "
                   f"Record {result['record_id']}.")
    if not result["passed"]:
        ctx.exit(1)


def _variants_csv(variants: list[dict[str, Any]], options: list[str]) -> str:
    import csv
    import io

    from ..fairness.llm import prompt_digest

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "attribute", "group", "value", "prompt_sha256", *(f"score_{c}" for c in options),
                     "p_positive", "decision", "record_id"])
    for v in variants:
        value = json.dumps(v["value"], sort_keys=True) if isinstance(v["value"], dict) else v["value"]
        writer.writerow([v["row"], v["attribute"], v["group"], value, prompt_digest(v["prompt"]),
                         *("" if v["scores"].get(c) is None else repr(v["scores"][c]) for c in options),
                         "" if v["p_positive"] is None else repr(v["p_positive"]), v["decision"] or "",
                         v["record_id"] or ""])
    return buffer.getvalue()
