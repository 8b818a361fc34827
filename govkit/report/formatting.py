"""Numbers as people read them, for every template: rates as percentages with the digits that
matter, intervals as "68% (61–74%)", milliseconds without thousandths, metric names in words.
Reports show these; their JSON twins and manifests keep full precision."""

from __future__ import annotations

from typing import Any

__all__ = ["METRIC_WORDS", "count", "interval", "metric_value", "metric_words", "milliseconds", "percent",
           "rate_with_interval"]

METRIC_WORDS = {
    "selection_rate": "share given the favourable decision",
    "demographic_parity_difference": "largest gap in favourable-decision rates between groups",
    "demographic_parity_ratio": "lowest ratio of favourable-decision rates between groups",
    "disparate_impact_ratio": "lowest group's favourable-decision rate against the reference group's",
    "equalized_odds_difference": "largest gap in true or false positive rates between groups",
    "true_positive_rate": "recall (of those with the favourable outcome, how many got it)",
    "false_positive_rate": "false positive rate (of those without it, how many got it all the same)",
    "false_negative_rate": "false negative rate (of those with it, how many were refused it)",
    "precision": "precision (of those who got it, how many had the favourable outcome)",
    "accuracy": "accuracy (decisions that match the outcome)",
    "flip_rate": "share of decisions that change when only the attribute changes",
    "error_rate": "error rate", "override_rate": "human override rate", "refusal_rate": "refusal rate",
    "explanation_coverage": "explanation coverage", "inference": "model calls",
}
_RATIOS = {"demographic_parity_ratio", "disparate_impact_ratio"}  # shown as ratios, not percentages


def percent(value: Any) -> str:
    """0.5714 -> "57%", 0.0331 -> "3.3%", 0.00262 -> "0.26%"; None -> "n/a"."""
    if value is None:
        return "n/a"
    shown = abs(value) * 100
    if shown == 0 or shown >= 9.95:
        text = f"{value * 100:.0f}%"
    elif shown >= 0.995:
        text = f"{value * 100:.1f}%"
    else:
        text = f"{value * 100:.2g}%"
    return text.replace("-", "\u2212")


def interval(bounds: Any) -> str:
    """[0.61, 0.74] -> "61–74%"; None -> ""."""
    if not bounds or bounds[0] is None or bounds[1] is None:
        return ""
    low, high = percent(bounds[0]), percent(bounds[1])
    return f"{low.removesuffix('%')}\u2013{high}"


def rate_with_interval(measure: Any) -> str:
    """{"value": .68, "interval": [.61, .74], "of": 200} -> "68% (61–74%, of 200)"."""
    if not isinstance(measure, dict) or measure.get("value") is None:
        return "not measurable (no case)"
    shown = percent(measure["value"])
    bounds = interval(measure.get("interval"))
    if bounds:
        shown += f" ({bounds}" + (f", of {measure['of']:,})" if measure.get("of") is not None else ")")
    return shown


def milliseconds(value: Any) -> str:
    """322.504 -> "323 ms", 2583.189 -> "2,583 ms", 0.42 -> "0.4 ms"; None -> "n/a"."""
    if value is None:
        return "n/a"
    return f"{value:,.1f} ms" if value < 10 else f"{value:,.0f} ms"


def count(value: Any) -> str:
    return "n/a" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def metric_words(name: str) -> str:
    """A metric's name as a reader says it (the name itself where govkit has no words for it)."""
    return METRIC_WORDS.get(name, name.replace("_", " "))


def metric_value(name: str, value: Any) -> str:
    """A metric's value in the form its name implies: a ratio as 0.98, a rate or gap as a percentage."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if name in _RATIOS else percent(value)
