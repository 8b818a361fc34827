"""The bias workflows, whole: read the cases, decide (for an LLM), analyse, and record the run as
evidence (a chained `bias_run` record and an MLflow run). `govkit bias ...` only parses options,
calls one of these and renders the `BiasRun` it returns.

    from govkit import AuditLog, load_settings
    from govkit.fairness.runs import bias_tabular

    settings = load_settings()
    with AuditLog.open(settings=settings) as log:
        run = bias_tabular(log, settings, "preds.csv", y_true="default", y_pred="approved", sensitive=["sex"])
    print(run.status, run.record_id)
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit import AuditLog
from ..config import FairnessPolicy, Settings
from ..digests import sha256_digest, sha256_file
from ..errors import GovkitError, InputError
from ..inference.decider import Decider, Decision, parse_choices
from ..inference.fingerprint import artifact_fields
from ..outputs import write_output
from .evidence import record_bias_run

__all__ = ["BiasRun", "Progress", "bias_counterfactual", "bias_llm", "bias_tabular", "by_group_csv"]

# progress(items, label) -> the same items, shown as they are consumed (the CLI's progress bar)
Progress = Callable[[Sequence[str], str], Iterable[str]]


@dataclass(frozen=True)
class BiasRun:
    """A recorded bias run: its verdict, the records it cites, and the whole result."""

    kind: str  # tabular, llm or counterfactual
    status: str  # pass, fail or inconclusive
    record_id: str
    mlflow_run_id: str | None
    result: dict[str, Any] = field(repr=False)  # what `--format json` prints and the checks read
    decisions_csv: str | None = field(default=None, repr=False)  # llm and counterfactual: every decision

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.result)


def bias_tabular(log: AuditLog, settings: Settings | None, data: str | Path, *, y_true: str,
                 sensitive: str | Sequence[str], y_pred: str | None = None, score: str | None = None,
                 threshold: float = 0.5, positive_label: str | None = None, reference: str | None = None,
                 bootstrap: int = 2000, model_artifact: Path | None = None, limit: int | None = None,
                 sample: int | None = None, seed: int = 0, out: Path | None = None) -> BiasRun:
    """Group metrics for a table of predictions (`y_pred`, or `score` >= `threshold`), each
    sensitive attribute alone and together, judged against [policy.fairness]."""
    from .. import schemas
    from .tabular import analyze

    if (y_pred is None) == (score is None):
        raise InputError("give a decision column or a score column (one of them)", parameter=("y_pred", "score"))
    data_path, columns = Path(data), _columns(sensitive)
    _distinct_columns({"y_true": y_true, "y_pred": y_pred, "score": score}, columns)
    policy, identity, frame = _cases(settings, data_path, limit, sample, seed)
    if positive_label is not None:
        frame = _map_label(frame, [y_true] + ([y_pred] if y_pred else []), positive_label, data_path)
    schema = schemas.predictions(y_true=y_true, y_pred=y_pred or y_true, sensitive=columns, score=score)
    frame = schemas.validate(frame, schema, source=str(data_path))
    decision = y_pred or "__govkit_decision__"
    if score:
        frame[decision] = (frame[score] >= threshold).astype(int)
    try:
        result = analyze(frame, y_true=y_true, y_pred=decision, sensitive=columns, policy=policy,
                         reference=reference, bootstrap=bootstrap, seed=seed, min_lift=_min_lift(settings))
    except InputError as exc:
        raise _in_file(exc, data_path) from None
    result = {"kind": "tabular", "data": identity,
              "decision": {"column": decision} if not score else {"score": score, "threshold": threshold}, **result}
    record_bias_run(log, settings, kind="tabular", result=result, out=out,
                    artifacts={"by_group.csv": by_group_csv(result)}, fields=_identity_fields(log, model_artifact))
    return _run(result)


def _min_lift(settings: Settings | None) -> float:
    from ..config import QualityPolicy

    return (settings.policy.quality if settings else QualityPolicy()).min_lift


def _distinct_columns(roles: dict[str, str | None], sensitive: Sequence[str]) -> None:
    """The outcome, the decision and the groups are different columns: a model judged against
    its own decisions, or grouped by its outcome, measures nothing."""
    named = [(role, column) for role, column in roles.items() if column]
    named += [("sensitive", column) for column in sensitive]
    for index, (role, column) in enumerate(named):
        for other, again in named[:index]:
            if column == again:
                both = (other, role) if other != role else (role,)
                raise InputError(f"the column '{column}' is given twice; the outcome, the decision and the "
                                 f"groups must be different columns", parameter=both)


def bias_llm(log: AuditLog, settings: Settings | None, data: str | Path, *, sensitive: str | Sequence[str],
             prompt_template: Path, choices: str | Sequence[str], positive: str, endpoint: str | None = None,
             model_path: Path | None = None, model_artifact: Path | None = None, method: str = "logprob",
             system: str | None = None, label: str | None = None, bootstrap: int = 2000, limit: int | None = None,
             sample: int | None = None, seed: int = 0, out: Path | None = None,
             decisions_out: Path | None = None, progress: Progress | None = None) -> BiasRun:
    """Group fairness of a language model's decisions: one prompt per row (the Jinja template),
    each decided through the audited path, then the same analysis as `bias_tabular`."""
    from .. import schemas
    from .llm import load_template, prompt_digest
    from .tabular import analyze

    options = parse_choices(choices, positive)
    data_path, columns = Path(data), _columns(sensitive)
    _distinct_columns({"label": label}, columns)
    policy, identity, frame = _cases(settings, data_path, limit, sample, seed)
    template = load_template(prompt_template, frame.columns)
    schemas.validate(frame, schemas.evaluation_dataset(sensitive=columns, label=label), source=str(data_path))
    truth = _label_truth(frame[label], options, positive, data_path, label) if label else None
    prompts = [template.render(**row) for row in _rows(frame)]
    decider = _decider(log, settings, options, method=method, endpoint=endpoint, model_path=model_path,
                       model_artifact=model_artifact, system=system)
    decisions = _decide_all(decider, prompts, f"deciding {len(prompts)} rows", progress)
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
        write_output(decisions_out, decisions_csv)
    parsed = table[table.decision.notna()].copy()
    parsed["y_pred"] = (parsed.decision == positive).astype(int)
    unparseable = _unparseable(table, columns)
    if parsed.empty:
        raise GovkitError(f"none of the {len(table)} answers named one of the choices {', '.join(options)}; "
                          "check the template and the choices")
    try:
        result = analyze(parsed, y_true="label" if truth is not None else None, y_pred="y_pred",
                         sensitive=columns, policy=policy, bootstrap=bootstrap, seed=seed, min_lift=_min_lift(settings))
    except InputError as exc:
        raise _in_file(exc, data_path) from None
    result["warnings"] += unparseable["warnings"]
    result = {"kind": "llm", "data": identity,
              "model": {"endpoint": endpoint, "path": str(model_path) if model_path else None,
                        "artifact": str(model_artifact or model_path or "") or None, "method": method},
              "prompt_template_sha256": sha256_digest(prompt_template.read_bytes()),
              "choices": options, "positive": positive, "decided": len(table),
              "unparseable": unparseable["counts"], **result}
    record_bias_run(log, settings, kind="llm", result=result, out=out,
                    artifacts={"by_group.csv": by_group_csv(result), "decisions.csv": decisions_csv},
                    fields=_identity_fields(log, model_artifact or model_path))
    return _run(result, decisions_csv)


def bias_counterfactual(log: AuditLog, settings: Settings | None, data: str | Path, *,
                        attributes: Sequence[str], prompt_template: Path, choices: str | Sequence[str],
                        positive: str, lexicons: Sequence[Path] = (), groups: Sequence[str] | None = None,
                        endpoint: str | None = None, model_path: Path | None = None,
                        model_artifact: Path | None = None, method: str = "logprob", system: str | None = None,
                        limit: int | None = None, sample: int | None = None, seed: int = 0, out: Path | None = None,
                        decisions_out: Path | None = None, progress: Progress | None = None) -> BiasRun:
    """Prompts that differ only in a demographic attribute (a lexicon's values): flip rates and
    paired tests per pair of groups, Holm-adjusted at the policy's confidence."""
    from .counterfactual import analyze_pairs, load_lexicon
    from .llm import load_template
    from .tabular import verdict

    options = parse_choices(choices, positive)
    data_path = Path(data)
    policy, identity, frame = _cases(settings, data_path, limit, sample, seed)
    chosen = [load_lexicon(name, list(lexicons)) for name in attributes]
    wanted = list(groups) if groups else None
    group_lists = {}
    for lexicon in chosen:
        names = [g for g in lexicon.groups if wanted is None or g in wanted]
        if len(names) < 2:
            raise InputError(f"fewer than two of {', '.join(wanted or [])} are groups of "
                             f"'{lexicon.attribute}' ({', '.join(lexicon.groups)})", parameter="groups")
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
    decider = _decider(log, settings, options, method=method, endpoint=endpoint, model_path=model_path,
                       model_artifact=model_artifact, system=system)
    decisions = _decide_all(decider, [v["prompt"] for v in variants], f"deciding {len(variants)} variants", progress)
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
    result = {"kind": "counterfactual", "data": identity,
              "model": {"endpoint": endpoint, "path": str(model_path) if model_path else None, "method": method},
              "prompt_template_sha256": sha256_digest(prompt_template.read_bytes()),
              "choices": options, "positive": positive, "rows": int(len(frame)), "decided": len(variants),
              "confidence": policy.confidence, "seed": seed, "attributes": analyses, "unparseable": unparseable,
              "status": status, "passed": status == "pass",
              "to_conclude": [f"{attr}: {' vs '.join(p['groups'])}: {p['to_conclude']}"
                              for attr, a in analyses.items() for p in a["pairs"] if p["status"] == "inconclusive"],
              "summary": [p["statement"] for a in analyses.values() for p in a["pairs"]],
              "warnings": [f"{k}: {n} answer(s) named no choice and are left out" for k, n in unparseable.items()]}
    decisions_csv = _variants_csv(variants, options)
    if decisions_out is not None:
        write_output(decisions_out, decisions_csv)
    record_bias_run(log, settings, kind="counterfactual", result=result, out=out,
                    artifacts={"decisions.csv": decisions_csv}, fields=_identity_fields(log, model_artifact or model_path))
    return _run(result, decisions_csv)


def by_group_csv(result: dict[str, Any]) -> str:
    """Every view's per-group metrics as CSV (the MLflow artifact by_group.csv)."""
    from .tabular import GROUP_METRICS

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["view", "group", *GROUP_METRICS, "disparate_impact_ratio", "small"])
    for view, data in result["views"].items():
        for row in data["by_group"]:
            writer.writerow([view, row["group"], *(_cell(row.get(m)) for m in GROUP_METRICS),
                             _cell(row.get("disparate_impact_ratio")), row["small"]])
    return buffer.getvalue()


def _run(result: dict[str, Any], decisions_csv: str | None = None) -> BiasRun:
    return BiasRun(kind=result["kind"], status=result["status"], record_id=result["record_id"],
                   mlflow_run_id=result.get("mlflow_run_id"), result=result, decisions_csv=decisions_csv)


def _columns(sensitive: str | Sequence[str]) -> list[str]:
    items = sensitive.split(",") if isinstance(sensitive, str) else list(sensitive)
    columns = [c.strip() for c in items if c.strip()]
    if not columns:
        raise InputError("name at least one sensitive column", parameter="sensitive")
    return columns


def _in_file(exc: InputError, path: Path) -> InputError:
    """An analysis error about the data, located in the data file."""
    return InputError(exc.message, parameter=exc.parameter, value=exc.value, file=path, row=exc.row)


def _cases(settings: Settings | None, data_path: Path, limit: int | None, sample: int | None,
           seed: int) -> tuple[FairnessPolicy, dict[str, str], Any]:
    """(fairness policy, the data file's identity, its rows after `limit` / `sample`)."""
    from ..evidence import safe_path
    from ..lineage.tables import ReadOptions, detect_format, read_table

    policy = settings.policy.fairness if settings else FairnessPolicy()
    safe_path(data_path, parameter="data", patterns=settings.policy.patterns if settings else ())
    digest, _ = sha256_file(data_path)
    frame = read_table(data_path, ReadOptions(format=detect_format(data_path)))
    if sample is not None and sample < len(frame):
        frame = frame.sample(sample, random_state=seed).sort_index()
    if limit is not None:
        frame = frame.head(limit)
    return policy, {"path": str(data_path.resolve()), "name": data_path.name, "sha256": digest}, frame


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
            raise InputError(f"column '{column}' is not binary with positive label '{positive}' "
                             f"(values: {', '.join(distinct[:6])}{' ...' if len(distinct) > 6 else ''})", file=path)
        frame[column] = frame[column].where(frame[column].isna(), (values == positive).astype(int))
    return frame


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.6f}" if isinstance(value, float) else str(value)


def _decider(log: AuditLog, settings: Settings | None, choices: list[str], *, method: str, endpoint: str | None,
             model_path: Path | None, model_artifact: Path | None, system: str | None) -> Decider:
    return Decider(log, choices, method=method, endpoint=endpoint, model_path=model_path, system=system,
                   model_artifact=model_artifact, model_id=settings.model.id if settings else None)


def _decide_all(decider: Decider, prompts: list[str], label: str, progress: Progress | None) -> list[Decision]:
    return [decider.decide(prompt) for prompt in (progress(prompts, label) if progress else prompts)]


def _identity_fields(log: AuditLog, artifact: Path | None) -> dict[str, Any]:
    return artifact_fields(artifact, cache_file=log.path.with_name("artifacts.json"))


def _rows(frame: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts for Jinja, with missing values as None."""
    records: list[dict[str, Any]] = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return records


def _label_truth(series: Any, options: list[str], positive: str, path: Path, label: str) -> list[int]:
    values = series.astype(str).str.strip()
    allowed = {*options, "0", "1", "True", "False"}
    bad = sorted(set(values) - allowed)
    if bad:
        raise InputError(f"column '{label}' holds {', '.join(bad[:5])}; expected one of the choices "
                         f"({', '.join(options)}) or 0/1", file=path)
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


def _variants_csv(variants: list[dict[str, Any]], options: list[str]) -> str:
    from .llm import prompt_digest

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
