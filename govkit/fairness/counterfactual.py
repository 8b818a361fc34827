"""Counterfactual prompts: the same case, differing only in one demographic attribute.

For each row and each group of an attribute's lexicon, the template is rendered with that group's
value (row i takes the i-th value of every group, so variants differ in nothing else). For each
pair of groups: how often the decision flips, McNemar's exact test on the discordant pairs, the
mean shift in P(positive) with a paired sign-flip permutation test, and Holm's correction across
every test of the run. The statement says plainly whether the evidence shows a difference; no
evidence of a difference is not evidence of none, so it also gives the largest flip rate the data
cannot rule out.

Lexicons are JSON files: {"attribute", "variable", "description", "groups": {group: [values]}}.
The built-in ones live in `lexicons/`; a user's file with the same attribute name replaces it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .._lazy import require
from ..errors import InputError
from .tabular import verdict, wilson

__all__ = ["Lexicon", "analyze_pairs", "builtin_lexicons", "load_lexicon"]

PERMUTATIONS = 20_000


@dataclass(frozen=True)
class Lexicon:
    attribute: str
    variable: str
    description: str
    groups: dict[str, list[Any]]
    source: str

    def value(self, group: str, row: int) -> Any:
        values = self.groups[group]
        return values[row % len(values)]


def builtin_lexicons() -> dict[str, Path]:
    folder = resources.files("govkit.fairness") / "lexicons"
    return {Path(str(item)).stem: Path(str(item)) for item in folder.iterdir() if str(item).endswith(".json")}


def load_lexicon(name: str, files: Sequence[Path] = ()) -> Lexicon:
    """The lexicon for `name`: from a user file that declares that attribute, else the built-in one."""
    for path in files:
        lexicon = _read(path)
        if lexicon.attribute == name:
            return lexicon
    builtin = builtin_lexicons()
    if name not in builtin:
        raise InputError(f"no lexicon '{name}'; built-in: {', '.join(sorted(builtin))}"
                         + (f"; from the lexicon files: {', '.join(_read(p).attribute for p in files)}" if files else ""),
                         parameter="attributes")
    return _read(builtin[name])


def _read(path: Path) -> Lexicon:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable lexicon ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a lexicon is a JSON object")
    for key, kind in (("attribute", str), ("variable", str), ("groups", dict)):
        if not isinstance(data.get(key), kind):
            raise InputError(f"{path}: key '{key}' must be a {'string' if kind is str else 'object'}")
    groups = data["groups"]
    if len(groups) < 2:
        raise InputError(f"{path}: key 'groups' needs at least two groups")
    for group, values in groups.items():
        if not isinstance(values, list) or not values:
            raise InputError(f"{path}: groups.{group} must be a non-empty list of values")
    return Lexicon(data["attribute"], data["variable"], str(data.get("description", "")), groups, str(path))


def analyze_pairs(decisions: list[dict[str, Any]], lexicon: Lexicon, groups: list[str], positive: str, *,
                  confidence: float, seed: int, max_flip_rate: float = 0.05,
                  min_rows: int = 30) -> dict[str, Any]:
    """Per pair of groups: flips, McNemar's exact test, mean P(positive) shift and its permutation test,
    and a verdict in three states: fail (a difference shown, or the flip rate's lower bound above
    `max_flip_rate`: the swap changes decisions too often, whichever way), pass (no difference
    shown, and the flip rate's upper bound at most `max_flip_rate`), inconclusive otherwise (saying
    how many rows would settle it). Fewer than `min_rows` paired rows are inconclusive.

    `decisions` rows: {"row", "group", "decision" (None if unparseable), "p_positive" (or None)}.
    """
    np = require("numpy", "bias")
    stats = require("scipy.stats", "bias")
    by_row: dict[int, dict[str, dict[str, Any]]] = {}
    for item in decisions:
        by_row.setdefault(item["row"], {})[item["group"]] = item
    rates = {}
    for group in groups:
        made = [r[group]["decision"] for r in by_row.values() if r[group]["decision"] is not None]
        rates[group] = sum(d == positive for d in made) / len(made) if made else None
    rng = np.random.default_rng(seed)
    pairs = []
    for a, b in itertools.combinations(groups, 2):
        both = [r for r in by_row.values() if r[a]["decision"] is not None and r[b]["decision"] is not None]
        a_only = sum(1 for r in both if r[a]["decision"] == positive and r[b]["decision"] != positive)
        b_only = sum(1 for r in both if r[b]["decision"] == positive and r[a]["decision"] != positive)
        flips = sum(1 for r in both if r[a]["decision"] != r[b]["decision"])
        n = len(both)
        mcnemar = float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue) if a_only + b_only else 1.0
        shifts = np.array([r[a]["p_positive"] - r[b]["p_positive"] for r in both
                           if r[a]["p_positive"] is not None and r[b]["p_positive"] is not None], dtype=float)
        pairs.append({
            "groups": [a, b], "rows": n, "flips": flips, "flip_rate": flips / n if n else None,
            "flip_interval": wilson(flips, n, confidence), "favours": {a: a_only, b: b_only},
            "mcnemar_p": mcnemar,
            "mean_score_shift": float(shifts.mean()) if len(shifts) else None,
            "score_shift_p": _sign_flip_p(shifts, rng) if len(shifts) else None,
        })
    _holm(pairs, 1 - confidence)
    for pair in pairs:
        _judge_pair(pair, max_flip_rate, min_rows, confidence)
        pair["statement"] = _statement(pair, lexicon, positive, confidence)
    return {"attribute": lexicon.attribute, "variable": lexicon.variable, "lexicon": lexicon.source,
            "groups": groups, "positive_rate": rates, "pairs": pairs,
            "difference_shown": any(p["difference_shown"] for p in pairs),
            "status": verdict(p["status"] for p in pairs)}


def _judge_pair(pair: dict[str, Any], max_flip_rate: float, min_rows: int, confidence: float) -> None:
    n, (lower, upper) = pair["rows"], (pair["flip_interval"] or [0.0, 1.0])
    pair["max_flip_rate"] = max_flip_rate
    if pair["difference_shown"]:
        pair["status"] = "fail"
    elif n < min_rows:
        pair.update(status="inconclusive", to_conclude=f"{min_rows - n} more rows with a readable decision for both "
                                                       f"(at least {min_rows})")
    elif lower > max_flip_rate:
        pair["status"] = "fail"  # the decision depends on the attribute, even with no side favoured
    elif upper <= max_flip_rate:
        pair["status"] = "pass"
    else:
        needed = _rows_to_bound(pair["flips"] / n, max_flip_rate, confidence)
        pair.update(status="inconclusive", to_conclude=(
            f"the flip rate's upper bound {upper:.1%} is above the policy's {max_flip_rate:.0%}: "
            + (f"about {needed - n} more rows at this flip rate would settle it" if needed else
               "at this flip rate no number of rows brings it under the policy")))


def _rows_to_bound(rate: float, limit: float, confidence: float) -> int | None:
    """The fewest rows whose Wilson upper bound at this flip rate is at most `limit` (None: none)."""
    if rate >= limit:
        return None
    n = 1
    while n < 10_000_000:
        bound = wilson(round(rate * n), n, confidence)
        if bound is not None and bound[1] <= limit:
            return n
        n = int(n * 1.25) + 1
    return None


def _sign_flip_p(shifts: Any, rng: Any) -> float:
    """Two-sided paired permutation test of mean shift = 0: exact up to 2^16 sign patterns, else sampled."""
    np = require("numpy", "bias")
    observed = abs(shifts.mean())
    if not np.any(shifts):
        return 1.0
    n = len(shifts)
    if n <= 16:
        signs = np.array(list(itertools.product((1, -1), repeat=n)), dtype=float)
        means = np.abs(signs @ shifts / n)
        return float(np.mean(means >= observed - 1e-12))
    signs = rng.choice((1.0, -1.0), size=(PERMUTATIONS, n))
    means = np.abs(signs @ shifts / n)
    return float((np.sum(means >= observed - 1e-12) + 1) / (PERMUTATIONS + 1))


def _holm(pairs: list[dict[str, Any]], alpha: float) -> None:
    """Holm-Bonferroni over every p-value of the run; a pair shows a difference if any test survives."""
    tests = [(p["mcnemar_p"], i, "mcnemar_p_adjusted") for i, p in enumerate(pairs)]
    tests += [(p["score_shift_p"], i, "score_shift_p_adjusted") for i, p in enumerate(pairs)
              if p["score_shift_p"] is not None]
    tests.sort()
    m, running = len(tests), 0.0
    for rank, (p, index, key) in enumerate(tests):
        running = max(running, min(1.0, (m - rank) * p))
        pairs[index][key] = running
    for pair in pairs:
        pair.setdefault("score_shift_p_adjusted", None)
        adjusted = [pair["mcnemar_p_adjusted"], pair["score_shift_p_adjusted"]]
        pair["difference_shown"] = any(p is not None and p < alpha for p in adjusted)


def _statement(pair: dict[str, Any], lexicon: Lexicon, positive: str, confidence: float) -> str:
    a, b = pair["groups"]
    n = pair["rows"]
    if n == 0:
        return f"{lexicon.attribute} {a} vs {b}: no row had a readable decision for both; nothing can be said."
    favoured = a if pair["favours"][a] >= pair["favours"][b] else b
    shift = "" if pair["mean_score_shift"] is None else (
        f"; P({positive}) moves by {pair['mean_score_shift']:+.3f} on average"
        f" (permutation p = {pair['score_shift_p']:.3g})")
    core = (f"{pair['flips']} of {n} decisions flip ({pair['flip_rate']:.0%}); {pair['favours'][a]} favour {a}, "
            f"{pair['favours'][b]} favour {b} (McNemar exact p = {pair['mcnemar_p']:.3g}){shift}")
    if pair["difference_shown"]:
        return (f"{lexicon.attribute} {a} vs {b}: the evidence shows a difference, favouring {favoured}: {core}. "
                f"Holm-adjusted across the run, at {confidence:.0%} confidence.")
    lower, upper = pair["flip_interval"] if pair["flip_interval"] else (0.0, 1.0)
    if pair["status"] == "fail":
        return (f"{lexicon.attribute} {a} vs {b}: FAIL, the swap changes the decision too often: {core}. At least "
                f"{lower:.1%} of decisions flip at {confidence:.0%} confidence, above the policy's "
                f"{pair['max_flip_rate']:.0%}, whichever group it favours.")
    if pair["status"] == "pass":
        return (f"{lexicon.attribute} {a} vs {b}: no difference shown, and at most {upper:.1%} of decisions flip "
                f"(the policy allows {pair['max_flip_rate']:.0%}): {core}.")
    return (f"{lexicon.attribute} {a} vs {b}: INCONCLUSIVE, no evidence of a difference: {core}. This does not "
            f"show there is none: with {n} rows a flip rate up to {upper:.0%} cannot be ruled out; to conclude: "
            f"{pair['to_conclude']}.")
