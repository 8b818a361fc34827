"""A window against its reference, signal by signal, by the plan's named thresholds: which signals
breach, and why, in words a reader can check against the figures beside them."""

from __future__ import annotations

from typing import Any

from ..config import MonitoringPlan
from . import stats
from .sketch import Sketch

__all__ = ["RATES", "judge_window"]

# rate -> (hits, out of, the directions that breach: an error rate that falls is no breach)
RATES = {"error_rate": ("errors", "calls", ("up",)), "truncation_rate": ("truncated", "calls", ("up",)),
         "refusal_rate": ("refusals", "refusal_known", ("up", "down")),
         "redaction_rate": ("redacted", "calls", ("up", "down"))}
DISTRIBUTIONS = {"input_tokens": True, "output_tokens": True, "finish_reason": False, "decision": False}


def judge_window(reference: Sketch, current: Sketch, plan: MonitoringPlan, *, reference_windows: int) -> dict[str, Any]:
    """{status, signals, breaches}: "not judged" below plan.min_calls calls, else "breach" or "ok"."""
    signals: dict[str, Any] = {"volume": {"calls": current.calls, "reference_per_window":
                                          round(reference.calls / reference_windows, 3) if reference_windows else None}}
    if current.calls < plan.min_calls:
        return {"status": "not judged", "signals": signals, "breaches": [],
                "reason": f"{current.calls} production calls, fewer than min_calls = {plan.min_calls}"}
    breaches: list[dict[str, Any]] = []
    signals["latency_ms"] = _latency(reference, current, plan, breaches)
    for name, (hits, whole, directions) in RATES.items():
        signals[name] = _rate(name, reference, current, hits, whole, directions, plan, breaches)
    for name, numeric in DISTRIBUTIONS.items():
        found = _distribution(name, reference.counts(name), current.counts(name), numeric, plan, breaches)
        if found is not None:
            signals[name] = found
    groups = _groups(reference, current, plan, breaches)
    if groups:
        signals["decision_by_group"] = groups
    signals["model"] = _models(reference, current, breaches)
    return {"status": "breach" if breaches else "ok", "signals": signals, "breaches": breaches}


def _latency(reference: Sketch, current: Sketch, plan: MonitoringPlan, breaches: list[dict[str, Any]]) -> dict[str, Any]:
    ref, cur = reference.counts("latency_ms"), current.counts("latency_ms")
    out: dict[str, Any] = {q: stats.quantile(cur, p) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
    out["reference_p95"] = stats.quantile(ref, 0.95)
    for name, limit in (("p95", plan.latency_p95_ms), ("p99", plan.latency_p99_ms)):
        if limit and out[name] is not None and out[name] > limit:
            breaches.append({"signal": f"latency_{name}", "why": f"latency {name} {out[name]:g} ms is over the "
                             f"SLO of {limit:g} ms", "value": out[name], "threshold": limit})
    if ref and cur:  # shown, never a breach by itself: the SLO is the latency threshold
        out["drift"] = stats.drift(ref, cur, numeric=True, p_value=plan.p_value, wasserstein=plan.wasserstein,
                                   jensen_shannon_limit=plan.jensen_shannon)
    return out


def _rate(name: str, reference: Sketch, current: Sketch, hits: str, whole: str, directions: tuple[str, ...],
          plan: MonitoringPlan, breaches: list[dict[str, Any]]) -> dict[str, Any]:
    h_ref, n_ref = getattr(reference, hits), getattr(reference, whole)
    h_cur, n_cur = getattr(current, hits), getattr(current, whole)
    if not n_cur or not n_ref:
        return {"rate": h_cur / n_cur if n_cur else None, "reference": h_ref / n_ref if n_ref else None,
                "n": n_cur, "note": "not measured: the records do not say" if not n_cur else "no reference"}
    rate, before = h_cur / n_cur, h_ref / n_ref
    p_value = stats.two_proportion_p_value(h_ref, n_ref, h_cur, n_cur)
    direction = "up" if rate > before else "down"
    breached = (p_value < plan.p_value and abs(rate - before) >= plan.min_rate_change and direction in directions)
    if breached:
        breaches.append({"signal": name, "why": f"{name.replace('_', ' ')} {rate:.1%} against {before:.1%} in the "
                         f"reference (p = {p_value:.2g}, two-proportion z-test)", "value": rate, "reference": before})
    return {"rate": rate, "reference": before, "n": n_cur, "p_value": p_value, "breach": breached}


def _distribution(name: str, ref: dict[Any, int], cur: dict[Any, int], numeric: bool, plan: MonitoringPlan,
                  breaches: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not ref or not cur:
        return None if not ref and not cur else {"note": "not in the reference" if not ref else "not in this window"}
    found = stats.drift(ref, cur, numeric=numeric, p_value=plan.p_value, wasserstein=plan.wasserstein,
                        jensen_shannon_limit=plan.jensen_shannon)
    value = stats.psi(ref, cur, numeric=numeric)
    found.update(psi=value, psi_band=stats.psi_band(value, plan.psi_moderate, plan.psi_significant))
    if not numeric:
        found["shares"] = {str(k): n / sum(cur.values()) for k, n in sorted(cur.items(), key=lambda kv: str(kv[0]))}
    # A breach takes Evidently's test and a PSI of at least the moderate band to agree (either alone
    # flags sampling noise in small windows), or a PSI in the significant band by itself.
    reasons = []
    shown = found.get("p_value", found.get("distance"))
    if found["drifted"] and found["psi_band"] != "none":
        reasons.append(f"{found['test']} {'p' if 'p_value' in found else 'distance'} = {shown:.3g} and "
                       f"PSI {value:.3f}")
    elif found["psi_band"] == "significant":
        reasons.append(f"PSI {value:.3f} over {plan.psi_significant:g}")
    found["breach"] = bool(reasons)
    if reasons:
        breaches.append({"signal": name, "why": f"{name.replace('_', ' ')} drifted: " + "; ".join(reasons),
                         "psi": value})
    return found


def _groups(reference: Sketch, current: Sketch, plan: MonitoringPlan, breaches: list[dict[str, Any]]) -> dict[str, Any]:
    """The favourable-decision rate of each group value against the same group's in the reference."""
    if not plan.positive:
        return {}
    out: dict[str, Any] = {}
    for attribute, values in sorted(current.groups.items()):
        rows = {}
        for value, decisions in sorted(values.items()):
            n = sum(decisions.values())
            hits = decisions.get(plan.positive, 0)
            before = (reference.groups.get(attribute) or {}).get(value) or {}
            n_ref, h_ref = sum(before.values()), before.get(plan.positive, 0)
            row: dict[str, Any] = {"n": n, "rate": hits / n if n else None,
                                   "reference": h_ref / n_ref if n_ref else None}
            if n >= plan.min_calls and n_ref >= plan.min_calls:
                row["p_value"] = stats.two_proportion_p_value(h_ref, n_ref, hits, n)
                row["breach"] = (row["p_value"] < plan.p_value
                                 and abs(row["rate"] - row["reference"]) >= plan.min_rate_change)
                if row["breach"]:
                    breaches.append({"signal": f"decision_rate[{attribute}={value}]",
                                     "why": f"'{plan.positive}' for {attribute} = {value}: {row['rate']:.1%} against "
                                            f"{row['reference']:.1%} in the reference (p = {row['p_value']:.2g})"})
            else:
                row["note"] = f"fewer than {plan.min_calls} calls here or in the reference: not judged"
            rows[value] = row
        out[attribute] = rows
    return out


def _models(reference: Sketch, current: Sketch, breaches: list[dict[str, Any]]) -> dict[str, Any]:
    known = set(reference.counts("model"))
    new = sorted(set(current.counts("model")) - known)
    if new:
        breaches.append({"signal": "model", "why": f"{len(new)} model identit{'y' if len(new) == 1 else 'ies'} "
                         "answered that the reference never saw (file, version, runtime or quantization changed)",
                         "identities": new})
    return {"identities": sorted(current.counts("model")), "new": new}
