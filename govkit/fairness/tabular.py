"""Group fairness of binary decisions: fairlearn's metrics, fed a compressed table.

fairlearn's MetricFrame is slow on large inputs because it calls `np.stack` on every column it
hands a metric, which walks a 1-D array element by element (16 M `asanyarray` calls for four
metrics over 1 M rows). The metrics only depend on how many rows share each (groups, y_true,
y_pred) combination, so govkit hands fairlearn that table of combinations with their counts as
`sample_weight`: at most 4 rows per group instead of a million, and exactly the same numbers
from fairlearn's own functions (benchmarks/bench_bias.py compares them).

Intervals: Wilson score intervals for every per-group rate; percentile bootstrap intervals for
the between-group metrics, resampling each group's confusion counts (multinomial, stratified by
group, a fixed seed so a report renders the same twice).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .._lazy import require
from ..config import FairnessPolicy
from ..errors import InputError

__all__ = ["GROUP_METRICS", "analyze", "compress", "verdict", "wilson"]

# fairlearn / scikit-learn names, in report order
GROUP_METRICS = ("count", "selection_rate", "true_positive_rate", "false_positive_rate",
                 "false_negative_rate", "precision", "accuracy")
# rate -> (numerator cells, denominator cells) over the confusion cells tn, fp, fn, tp
_RATES = {
    "selection_rate": ((1, 3), (0, 1, 2, 3)),
    "true_positive_rate": ((3,), (2, 3)),
    "false_positive_rate": ((1,), (0, 1)),
    "false_negative_rate": ((2,), (2, 3)),
    "precision": ((3,), (1, 3)),
    "accuracy": ((0, 3), (0, 1, 2, 3)),
}
# metric -> direction of the policy threshold
BETWEEN_GROUPS = {"demographic_parity_difference": "max", "demographic_parity_ratio": "min",
                  "equalized_odds_difference": "max", "disparate_impact_ratio": "min"}
WEIGHT = "__govkit_rows__"


@dataclass(frozen=True)
class _Groups:
    labels: list[str]  # "sex=Female" or "sex=Female, race=Black"
    cells: Any  # int array (groups, 4): tn, fp, fn, tp
    of_row: Any  # int array: the group of each row of the view


def compress(frame: Any, *, y_true: str, y_pred: str, sensitive: list[str]) -> Any:
    """One row per (sensitive..., y_true, y_pred) combination with its row count."""
    return (frame.groupby([*sensitive, y_true, y_pred], observed=True, dropna=False, sort=True)
            .size().rename(WEIGHT).reset_index())


def wilson(successes: int, trials: int, confidence: float) -> list[float] | None:
    """The Wilson score interval of a proportion (scipy's), or None with no trials."""
    if trials == 0:
        return None
    binomtest = require("scipy.stats", "bias").binomtest
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return [max(0.0, float(interval.low)), min(1.0, float(interval.high))]


def decision_quality(cells: Any, *, y_true: str, y_pred: str, confidence: float, min_lift: float) -> dict[str, Any]:
    """How well the decisions match the outcomes, over every row: accuracy, TPR, FPR, FNR and
    precision with Wilson intervals, against the baseline that needs no model, the majority
    decision (everyone gets the outcome most of them had). It passes when the lower end of the
    accuracy's interval clears the baseline by `min_lift`, fails when its upper end does not reach
    that, and is inconclusive in between: not a pass."""
    weight = cells[WEIGHT]
    truth, decided = cells[y_true] == 1, cells[y_pred] == 1
    tp, fp = int(weight[truth & decided].sum()), int(weight[~truth & decided].sum())
    fn, tn = int(weight[truth & ~decided].sum()), int(weight[~truth & ~decided].sum())
    n = tp + fp + fn + tn

    def rate(part: int, whole: int) -> dict[str, Any]:
        return {"value": round(part / whole, 6) if whole else None, "interval": wilson(part, whole, confidence),
                "of": whole}

    positives = tp + fn
    majority = 1 if positives * 2 >= n else 0
    baseline = (positives if majority else n - positives) / n if n else None
    accuracy = rate(tp + tn, n)
    target = None if baseline is None else baseline + min_lift
    low, high = (accuracy["interval"] or [None, None])
    status = ("inconclusive" if target is None or low is None else
              "pass" if low > target else "fail" if high < target else "inconclusive")
    return {"rows": n, "accuracy": accuracy, "true_positive_rate": rate(tp, positives),
            "false_positive_rate": rate(fp, fp + tn), "false_negative_rate": rate(fn, positives),
            "precision": rate(tp, tp + fp),
            "baseline": {"decision": majority, "accuracy": None if baseline is None else round(baseline, 6),
                         "name": "the favourable decision for everyone" if majority else
                                 "the unfavourable decision for everyone"},
            "lift": None if baseline is None or accuracy["value"] is None else round(accuracy["value"] - baseline, 6),
            "min_lift": min_lift, "confidence": confidence, "status": status}


def analyze(frame: Any, *, y_true: str | None, y_pred: str, sensitive: list[str], policy: FairnessPolicy,
            reference: str | None = None, bootstrap: int = 2000, seed: int = 0,
            min_lift: float | None = None) -> dict[str, Any]:
    """Per-group metrics and between-group metrics, each attribute alone and (for several) together.

    Without `y_true` (decisions with no known outcome) only the selection-rate metrics are given.
    """
    np = require("numpy", "bias")
    truth = y_true is not None
    truth_column = y_true if y_true is not None else "__govkit_no_truth__"
    if not truth:
        frame = frame.assign(**{truth_column: frame[y_pred]})
    frame = _binary(frame, truth_column, y_pred)
    cells = compress(frame, y_true=truth_column, y_pred=y_pred, sensitive=sensitive)
    _check_groups(cells, sensitive)
    views = [[name] for name in sensitive] + ([list(sensitive)] if len(sensitive) > 1 else [])
    results = {}
    rng = np.random.default_rng(seed)
    for attrs in views:
        key = " x ".join(attrs)
        results[key] = _analyze_view(cells, attrs, truth_column, y_pred, policy, reference if len(attrs) == 1 else None,
                                     bootstrap, rng)
    if not truth:
        for view in results.values():
            _drop_truth_metrics(view)
    status = verdict(m["status"] for view in results.values() for m in view["metrics"].values())
    for view in results.values():
        view["status"] = verdict(m["status"] for m in view["metrics"].values())
    to_conclude = sorted({f"{key}.{name}: {m.get('to_conclude') or m.get('reason') or m['with_small_groups']['reason']}"
                          for key, view in results.items() for name, m in view["metrics"].items()
                          if m["status"] == "inconclusive" or "with_small_groups" in m})
    quality = (decision_quality(cells, y_true=truth_column, y_pred=y_pred, confidence=policy.confidence,
                                min_lift=min_lift) if truth and min_lift is not None else None)
    return {"status": status, "to_conclude": to_conclude, "rows": int(len(frame)), "y_true": y_true if truth else None,
            **({"quality": quality} if quality is not None else {}),
            "y_pred": y_pred, "sensitive": list(sensitive),
            "confidence": policy.confidence, "min_group_size": policy.min_group_size, "bootstrap": bootstrap,
            "seed": seed, "views": results, "passed": status == "pass",
            "warnings": [w for view in results.values() for w in view["warnings"]]}


def verdict(statuses: Any) -> str:
    """Three states: fail if any judged metric fails; else inconclusive if any could not be
    judged; pass only when every one passed (an empty set of metrics is not a pass)."""
    seen = set(statuses)
    if "fail" in seen:
        return "fail"
    if "inconclusive" in seen or not seen:
        return "inconclusive"
    return "pass"


TRUTH_METRICS = ("true_positive_rate", "false_positive_rate", "false_negative_rate", "precision", "accuracy")


def _drop_truth_metrics(view: dict[str, Any]) -> None:
    for row in view["by_group"]:
        for name in TRUTH_METRICS:
            row[name] = None
            row["intervals"][name] = None
    del view["metrics"]["equalized_odds_difference"]


def _binary(frame: Any, y_true: str, y_pred: str) -> Any:
    for column in (y_true, y_pred):
        values = set(frame[column].dropna().unique().tolist())
        if not values <= {0, 1}:
            shown = ", ".join(sorted(map(repr, values))[:5])
            raise InputError(f"column '{column}' is not binary (values {shown}); expected 0/1 "
                             "(use --positive-label to map a label)")
    out = frame.copy()
    out[y_true] = out[y_true].astype(int)
    out[y_pred] = out[y_pred].astype(int)
    return out


def _check_groups(cells: Any, sensitive: list[str]) -> None:
    for name in sensitive:
        sizes = cells.groupby(name, observed=True, dropna=False)[WEIGHT].sum()
        lonely = [str(group) for group, size in sizes.items() if size < 2]
        if lonely:
            raise InputError(f"column '{name}': group(s) {', '.join(lonely)} have a single row; "
                             "nothing can be said about a group of one (merge or drop it)")


def _analyze_view(cells: Any, attrs: list[str], y_true: str, y_pred: str, policy: FairnessPolicy,
                  reference: str | None, bootstrap: int, rng: Any) -> dict[str, Any]:
    np = require("numpy", "bias")
    fm = require("fairlearn.metrics", "bias")
    skm = require("sklearn.metrics", "bias")
    view = cells.groupby([*attrs, y_true, y_pred], observed=True, dropna=False, sort=True)[WEIGHT].sum().reset_index()
    weights = view[WEIGHT].to_numpy()
    functions = {"selection_rate": fm.selection_rate, "true_positive_rate": fm.true_positive_rate,
                 "false_positive_rate": fm.false_positive_rate, "false_negative_rate": fm.false_negative_rate,
                 "precision": functools.partial(skm.precision_score, zero_division=np.nan),
                 "accuracy": skm.accuracy_score}
    features = view[attrs] if len(attrs) > 1 else view[attrs[0]]
    frame = fm.MetricFrame(metrics=functions, y_true=view[y_true], y_pred=view[y_pred], sensitive_features=features,
                           sample_params={name: {"sample_weight": weights} for name in functions})
    by_group = frame.by_group
    if len(attrs) > 1:  # fairlearn lists every combination of the values, the empty ones too: keep the data's
        observed = set(view[attrs].itertuples(index=False, name=None))
        by_group = by_group[[key in observed for key in by_group.index]]
    groups = _confusion(view, attrs, y_true, y_pred)
    labels = [_label(attrs, index) for index in by_group.index]
    if labels != groups.labels:  # both sorted the same way; a mismatch would be a bug, not bad input
        raise AssertionError(f"group order differs: {labels} vs {groups.labels}")
    rows, warnings = [], []
    for i, label in enumerate(labels):
        counts = groups.cells[i]
        n = int(counts.sum())
        row: dict[str, Any] = {"group": label, "count": n}
        intervals = {}
        for name in GROUP_METRICS[1:]:
            value = by_group.iloc[i][name]
            row[name] = None if value != value else float(value)
            num, den = _RATES[name]
            intervals[name] = wilson(int(counts[list(num)].sum()), int(counts[list(den)].sum()), policy.confidence)
        row["intervals"] = intervals
        row["small"] = n < policy.min_group_size
        if row["small"]:
            warnings.append(f"{label}: only {n} rows (fewer than {policy.min_group_size}); too small to judge")
        rows.append(row)
    # Each gap is judged among the groups large enough to judge (min_group_size): a breach between
    # them stands whatever smaller groups exist, and a comparison that needs a small group is
    # reported beside it as inconclusive, with the rows that would settle it.
    adequate = [i for i, row in enumerate(rows) if not row["small"]]
    small = [{"group": rows[i]["group"], "count": rows[i]["count"], "needs": policy.min_group_size - rows[i]["count"]}
             for i in range(len(rows)) if rows[i]["small"]]
    rates = np.array([r["selection_rate"] for r in rows], dtype=float)
    if len(adequate) < 2:
        for row in rows:
            row["disparate_impact_ratio"] = None
        reason = (f"nothing to compare: {len(adequate)} group(s) of at least {policy.min_group_size} rows"
                  + (f" ({rows[adequate[0]]['group']})" if adequate else ""))
        metrics = {name: _inconclusive(name, getattr(policy, name), reason, small) for name in BETWEEN_GROUPS}
        return {"attributes": attrs, "reference": None, "by_group": rows, "metrics": metrics,
                "warnings": warnings, "judged_groups": [rows[i]["group"] for i in adequate]}
    values = _between(fm, view[np.isin(groups.of_row, adequate)], attrs, y_true, y_pred)
    ref_index = _reference_index(labels, rates, reference, attrs, among=adequate)
    ratios = rates / rates[ref_index] if rates[ref_index] > 0 else np.full(len(rates), np.nan)
    others = [i for i in adequate if i != ref_index]
    values["disparate_impact_ratio"] = _nanmin(ratios[others])
    for i, row in enumerate(rows):
        row["disparate_impact_ratio"] = None if ratios[i] != ratios[i] else float(ratios[i])
    intervals = _bootstrap(groups.cells[adequate], adequate.index(ref_index), bootstrap, policy.confidence, rng)
    judged_rows = [rows[i] for i in adequate]
    drivers = _drivers(judged_rows, rates[adequate], adequate.index(ref_index))
    metrics = {name: _judge(name, float(value), intervals[name], getattr(policy, name), judged_rows, drivers[name])
               for name, value in values.items()}
    if small:
        with_small = _between(fm, view, attrs, y_true, y_pred)
        with_small["disparate_impact_ratio"] = _nanmin(np.delete(ratios, ref_index))
        for name, metric in metrics.items():
            value = with_small[name]
            metric["small_groups"] = small
            metric["with_small_groups"] = {
                "value": None if value != value else float(value), "status": "inconclusive",
                "reason": f"comparisons with {', '.join(g['group'] for g in small)} need more rows: "
                          + ", ".join(f"{g['group']} {g['needs']} more" for g in small)}
    return {"attributes": attrs, "reference": labels[ref_index], "by_group": rows, "metrics": metrics,
            "warnings": warnings, "judged_groups": [rows[i]["group"] for i in adequate]}


def _nanmin(values: Any, axis: int | None = None) -> Any:
    """np.nanmin, NaN where every value is NaN (no selection in the reference group), without numpy's warning."""
    np = require("numpy", "bias")
    values = np.asarray(values, dtype=float)
    if axis is None:
        return float(np.nanmin(values)) if values.size and not np.isnan(values).all() else float("nan")
    empty = np.isnan(values).all(axis=axis)
    return np.where(empty, np.nan, np.nanmin(np.where(np.isnan(values), np.inf, values), axis=axis))


def _between(fm: Any, view: Any, attrs: list[str], y_true: str, y_pred: str) -> dict[str, float]:
    """fairlearn's between-group metrics over the groups in `view` (one row per cell, weighted)."""
    features = view[attrs] if len(attrs) > 1 else view[attrs[0]]
    kwargs = dict(sensitive_features=features, sample_weight=view[WEIGHT].to_numpy())
    return {
        "demographic_parity_difference": fm.demographic_parity_difference(view[y_true], view[y_pred], **kwargs),
        "demographic_parity_ratio": fm.demographic_parity_ratio(view[y_true], view[y_pred], **kwargs),
        "equalized_odds_difference": fm.equalized_odds_difference(view[y_true], view[y_pred], **kwargs),
    }


def _inconclusive(name: str, threshold: float, reason: str, small: list[dict[str, Any]]) -> dict[str, Any]:
    return {"value": None, "interval": None, "threshold": threshold, "direction": BETWEEN_GROUPS[name],
            "status": "inconclusive", "reason": reason, "small_groups": small,
            "to_conclude": _to_conclude(small) or "rows of at least two groups"}


def _to_conclude(small: list[dict[str, Any]]) -> str:
    return ", ".join(f"{g['needs']} more rows of {g['group']}" for g in small)


def _confusion(view: Any, attrs: list[str], y_true: str, y_pred: str) -> _Groups:
    np = require("numpy", "bias")
    cell = view[y_true].to_numpy() * 2 + view[y_pred].to_numpy()  # tn=0, fp=1, fn=2, tp=3
    keys = view[attrs].apply(tuple, axis=1) if len(attrs) > 1 else view[attrs[0]]
    order: dict[Any, int] = {}
    for key in keys:
        order.setdefault(key, len(order))
    of_row = np.array([order[k] for k in keys], dtype=np.int64)
    counts = np.zeros((len(order), 4), dtype=np.int64)
    np.add.at(counts, (of_row, cell), view[WEIGHT].to_numpy())
    return _Groups([_label(attrs, key) for key in order], counts, of_row)


def _label(attrs: list[str], key: Any) -> str:
    values = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{a}={v}" for a, v in zip(attrs, values))


def _reference_index(labels: list[str], rates: Any, reference: str | None, attrs: list[str],
                     among: list[int]) -> int:
    """The reference group, among the groups large enough to judge."""
    np = require("numpy", "bias")
    if reference is None:  # UGESP: against the group with the highest selection rate
        return among[int(np.nanargmax(rates[among]))]
    wanted = reference if "=" in reference else f"{attrs[0]}={reference}"
    if wanted not in labels:
        raise InputError(f"no group '{reference}' in column '{attrs[0]}'; groups: "
                         f"{', '.join(label.split('=', 1)[1] for label in labels)}", parameter="reference")
    if labels.index(wanted) not in among:
        raise InputError(f"group '{reference}' is smaller than min_group_size; choose a group "
                         f"large enough to judge against", parameter="reference")
    return labels.index(wanted)


def _bootstrap(cells: Any, ref_index: int, replicates: int, confidence: float, rng: Any) -> dict[str, list[float] | None]:
    """Percentile intervals of the between-group metrics, resampling each group's confusion counts."""
    np = require("numpy", "bias")
    if replicates <= 0:
        return {name: None for name in BETWEEN_GROUPS}
    sizes = cells.sum(axis=1)
    draws = np.stack([rng.multinomial(n, row / n, size=replicates) for n, row in zip(sizes, cells)], axis=1)
    tn, fp, fn, tp = (draws[..., k].astype(float) for k in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        selection = (fp + tp) / (tn + fp + fn + tp)
        tpr = tp / (tp + fn)
        fpr = fp / (fp + tn)
        ratio_to_ref = selection / selection[:, [ref_index]]
        others = np.delete(ratio_to_ref, ref_index, axis=1)
        stats = {
            "demographic_parity_difference": np.nanmax(selection, 1) - np.nanmin(selection, 1),
            "demographic_parity_ratio": np.nanmin(selection, 1) / np.nanmax(selection, 1),
            "equalized_odds_difference": np.fmax(np.nanmax(tpr, 1) - np.nanmin(tpr, 1),
                                                 np.nanmax(fpr, 1) - np.nanmin(fpr, 1)),
            "disparate_impact_ratio": _nanmin(others, axis=1) if others.shape[1] else np.full(replicates, np.nan),
        }
    tail = (1 - confidence) / 2 * 100
    out: dict[str, list[float] | None] = {}
    for name, sample in stats.items():
        sample = sample[np.isfinite(sample)]
        out[name] = [float(np.percentile(sample, tail)), float(np.percentile(sample, 100 - tail))] if len(sample) else None
    return out


def _drivers(rows: list[dict[str, Any]], rates: Any, ref_index: int) -> dict[str, set[int]]:
    """For each between-group metric, the groups whose rates set its value."""
    np = require("numpy", "bias")

    def extremes(name: str) -> tuple[set[int], float]:
        values = np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=float)
        if np.isnan(values).all():
            return set(), 0.0
        return {int(np.nanargmax(values)), int(np.nanargmin(values))}, float(np.nanmax(values) - np.nanmin(values))

    selection = extremes("selection_rate")[0]
    tpr, tpr_gap = extremes("true_positive_rate")
    fpr, fpr_gap = extremes("false_positive_rate")
    lowest = {int(np.nanargmin(np.where(np.arange(len(rates)) == ref_index, np.nan, rates)))} if len(rates) > 1 else set()
    return {"demographic_parity_difference": selection, "demographic_parity_ratio": selection,
            "equalized_odds_difference": tpr if tpr_gap >= fpr_gap else fpr,
            "disparate_impact_ratio": {ref_index} | lowest}


def _judge(name: str, value: float, interval: list[float] | None, threshold: float, rows: list[dict[str, Any]],
           drivers: set[int]) -> dict[str, Any]:
    direction = BETWEEN_GROUPS[name]
    out: dict[str, Any] = {"value": None if value != value else value, "interval": interval,
                           "threshold": threshold, "direction": direction}
    if value != value:
        out.update(status="inconclusive", reason="undefined: a rate it needs is 0/0 (a group with no rows for that "
                                                 "rate, or no group selected at all)")
        return out
    breach = value > threshold if direction == "max" else value < threshold
    out["status"] = "fail" if breach else "pass"
    if breach:
        high_low = sorted(drivers)
        out["between"] = [rows[i]["group"] for i in high_low]
    return out
