"""Page one of the board report, in words a board member reads in a minute: what the model is
for and who uses it, its risk tier, the overall status and the reasons that drive it (the
model's own findings first, then the paperwork), what changed since the last report, and the
decisions the board is asked to make, each a full sentence naming the risk. Check IDs and
hashes stay out of it: they are where an auditor looks, in the sections and the appendix."""

from __future__ import annotations

from typing import Any

from .formatting import interval, metric_words, percent

__all__ = ["MODEL_CHECKS", "page_one"]

# The checks whose findings are about the model itself, in the order page one names them.
MODEL_CHECKS = ("ETH-003", "GOV-019", "ETH-002")
_NOT_PASSED = ("FAIL", "WARN", "ERROR", "NO EVIDENCE")
SHOWN_REASONS = 3


def page_one(snapshot: dict[str, Any], controls: list[dict[str, Any]], overall: dict[str, str],
             changes: dict[str, Any] | None) -> dict[str, Any]:
    inventory = snapshot["inventory"]
    name = snapshot["model"]["name"] or snapshot["model"]["id"]
    by_id = {c["id"]: c for c in controls}
    model_reasons = [reason for check_id in MODEL_CHECKS if check_id in by_id
                     and by_id[check_id]["status"] in _NOT_PASSED
                     for reason in _model_reasons(check_id, by_id[check_id], snapshot)]
    process = [c for c in controls if c["id"] not in MODEL_CHECKS and c["status"] in _NOT_PASSED
               and (c["blocking"] or c["status"] != "NO EVIDENCE" or overall["colour"] != "green")]
    reasons = []
    if not snapshot["verify"]["ok"]:
        reasons.append("The audit log does not verify, so none of its evidence can be relied on.")
    synthetic = snapshot["kpis"].get("synthetic")
    if synthetic:
        reasons.append(f"{synthetic:,} of the period's model calls are synthetic (scripted answers, no model ran): "
                       "the monitoring figures describe a demonstration, not a model in use.")
    # The model's own failures first, then the paperwork that blocks, then what is not established
    # about the model (one sentence for all of it), then warnings.
    reasons += [r["text"] for r in model_reasons if r["short"]]
    reviews = [a for a in (snapshot.get("attestations") or {}).get("valid") or [] if a["kind"] == "review"]
    rejected = reviews[-1] if reviews and reviews[-1]["predicate"].get("recommendation") == "reject" else None
    if rejected:
        findings = "; ".join(rejected["predicate"].get("findings") or []) or "no finding stated"
        reasons.append(f"The independent review by {rejected['signer']} ({rejected['ts'][:10]}, signed) recommends "
                       f"rejecting the model: {findings}.")
    blocking = [c for c in process if c["blocking"]]
    if blocking:
        reasons.append(_process_reason(process, blocking))
    unknown = [r for r in model_reasons if not r["short"]]
    if unknown:
        reasons.append("What the model itself does is not established: " + "; ".join(
            r["what"] for r in unknown) + " (no conclusive test about the deployed model is on record).")
    if process and not blocking:
        reasons.append(_process_reason(process, blocking))
    if not reasons:
        reasons.append("Every control passed on verified evidence.")
    return {
        "name": name,
        "purpose": inventory.get("description") or "",
        "uses": list(inventory.get("approved_uses") or []),
        "owner": inventory.get("owner") or "",
        "tier": inventory.get("risk_rating") or "unrated",
        "period": _period_words(snapshot["period"]),
        "as_of": snapshot["as_of"][:10],
        "status": overall,
        "reasons": reasons[:SHOWN_REASONS],
        "more_reasons": max(0, len(reasons) - SHOWN_REASONS),
        "changes": _change_words(changes),
        "decisions": _with_rejection(_decisions(name, inventory, overall, model_reasons, process, controls),
                                     rejected, len([r for r in model_reasons if r["short"]][:2])),
    }


def _model_reasons(check_id: str, control: dict[str, Any], snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Plain sentences from the evidence behind a model finding (the newest runs of each kind)."""
    runs = snapshot["fairness"]
    failed = control["status"] in ("FAIL", "WARN", "ERROR")
    if check_id == "ETH-003":
        pairs = [(run, pair) for run in runs if run["kind"] == "counterfactual" for pair in run.get("pairs") or []]
        bad = [(run, p) for run, p in pairs if p.get("status") in ("fail", "difference")] if failed else []
        if bad:
            return [{"check": check_id, "short": _flip_short(p), "text": _flip_sentence(run, p)} for run, p in bad[:2]]
        if failed:
            return [{"check": check_id, "short": "its decisions change when only a protected attribute changes",
                     "text": "Its decisions change when only a protected attribute in the request changes "
                             "(counterfactual test)."}]
        return [{"check": check_id, "short": "", "what": "whether its decisions change with a protected attribute"}]
    if check_id == "GOV-019":
        judged = [run for run in runs if run.get("quality")]
        if failed and judged:
            return [{"check": check_id, "short": _quality_short(run["quality"]), "text": _quality_sentence(run)}
                    for run in judged if run["quality"]["status"] != "pass"][:1]
        return [{"check": check_id, "short": "", "what": "whether it decides better than a rule that needs no model"}]
    if check_id == "ETH-002":
        found = [(run, view, metric, m) for run in runs if run["kind"] != "counterfactual"
                 for view, metrics in (run.get("metrics") or {}).items() for metric, m in metrics.items()
                 if m.get("status") == "fail"]
        if failed and found:
            run, view, metric, m = found[0]
            more = f" ({len(found) - 1} more such gap(s) in section 6)" if len(found) > 1 else ""
            value = f"{m['value']:.2f}" if "ratio" in metric else percent(m["value"])
            return [{"check": check_id, "short": f"its decisions differ by {view}",
                     "text": f"Its decisions differ by {view} beyond the policy's limit: the "
                             f"{metric_words(metric)} is {value} on {run['data']['name']}{more}."}]
        return [{"check": check_id, "short": "", "what": "whether its decisions are fair across groups"}]
    return []


def _flip_sentence(run: dict[str, Any], pair: dict[str, Any]) -> str:
    a, b = pair.get("groups") or ("one group", "another")
    low = (pair.get("flip_interval") or [None])[0]
    bound = f", at least {percent(low)} at 95% confidence" if low is not None else ""
    limit = f"; the policy allows {percent(pair['max_flip_rate'])}" if pair.get("max_flip_rate") is not None else ""
    return (f"Its decision changes when only the applicant's {pair['attribute']} changes from {a} to {b}: in "
            f"{pair['flips']} of {pair['rows']} tested pairs ({percent(pair['flip_rate'])}{bound}{limit}).")


def _flip_short(pair: dict[str, Any]) -> str:
    return (f"its decisions change with the applicant's {pair['attribute']} in {percent(pair['flip_rate'])} "
            f"of tested pairs")


def _quality_sentence(run: dict[str, Any]) -> str:
    quality = run["quality"]
    accuracy, baseline, fpr = quality["accuracy"], quality["baseline"], quality["false_positive_rate"]
    granted = (f" It gives the favourable decision to {round(fpr['value'] * fpr['of'])} of the {fpr['of']} cases "
               f"whose outcome was unfavourable." if fpr.get("value") is not None and fpr.get("of") else "")
    verdict = "no better than" if quality["status"] == "fail" else "not clearly better than"
    return (f"It decides {verdict} a rule that needs no model: on {run['data']['name']} its decisions match the "
            f"outcome in {percent(accuracy['value'])} ({interval(accuracy['interval'])}), against "
            f"{percent(baseline['accuracy'])} for {baseline['name']}.{granted}")


def _quality_short(quality: dict[str, Any]) -> str:
    verdict = "it decides no better than" if quality["status"] == "fail" else "it is not shown to decide better than"
    return (f"{verdict} {quality['baseline']['name']} ({percent(quality['accuracy']['value'])} "
            f"against {percent(quality['baseline']['accuracy'])} matching the outcome)")


def _process_reason(process: list[dict[str, Any]], blocking: list[dict[str, Any]]) -> str:
    titles = [c["title"][:1].lower() + c["title"][1:] for c in (blocking or process)]
    shown = ", ".join(titles[:4]) + (f", and {len(titles) - 4} more" if len(titles) > 4 else "")
    what = (f"{len(blocking)} governance control(s) that block deployment fail or lack evidence" if blocking else
            f"{len(process)} warning-level control(s) fail or lack evidence")
    return f"Beside the model itself, {what}: {shown}."


def _decisions(name: str, inventory: dict[str, Any], overall: dict[str, str], model_reasons: list[dict[str, Any]],
               process: list[dict[str, Any]], controls: list[dict[str, Any]]) -> list[str]:
    owner = inventory.get("owner") or "the model owner"
    use = _use_words(inventory)
    decisions = []
    for reason in [r for r in model_reasons if r["short"]][:2]:
        decisions.append(f"Decide whether the model may keep {use} while {reason['short']}, or must stop until a "
                         f"corrected model passes the same test.")
    for control in controls:
        note = control.get("blocking_note")
        if note and control["status"] not in ("PASS", "SKIP") and " is set not to block, by " in note:
            decisions.append(f"Confirm or revoke the policy decision that lets this finding pass: {note}.")
    blocking = [c for c in process if c["blocking"]]
    if blocking:
        missing = [c for c in blocking if c["status"] == "NO EVIDENCE"]
        decisions.append(f"Direct {owner} to close the {len(blocking)} governance gap(s) that block deployment "
                         f"({', '.join(c['title'][:1].lower() + c['title'][1:] for c in blocking[:3])}"
                         f"{', ...' if len(blocking) > 3 else ''}) by a date the board sets"
                         + (f"; {len(missing)} of them have no evidence at all" if missing else "") + ".")
    elif process:
        decisions.append(f"Note the {len(process)} warning-level finding(s) and the dates {owner} has set to "
                         f"resolve them (section 4).")
    if not decisions:
        decisions.append(f"Note that {name} is within risk appetite on verified evidence; no decision is asked "
                         "this period." if overall["colour"] == "green" else
                         f"Decide whether {name} may keep operating: {overall['statement']}")
    return decisions


def _with_rejection(decisions: list[str], rejected: dict[str, Any] | None, after: int) -> list[str]:
    """The decision on a signed rejection, after those on the model's own findings."""
    if not rejected:
        return decisions
    said = (f"Decide whether to accept the independent reviewer's signed recommendation to reject the model "
            f"({rejected['signer']}, {rejected['ts'][:10]}).")
    return [*decisions[:after], said, *decisions[after:]]


def _use_words(inventory: dict[str, Any]) -> str:
    uses = list(inventory.get("approved_uses") or [])
    if uses:
        first = uses[0].rstrip(".")
        return f"being used for {first[:1].lower() + first[1:]}"
    return "operating"


def _period_words(period: dict[str, Any]) -> str:
    import datetime as dt

    start = dt.date.fromisoformat(period["start"][:10])
    last = dt.date.fromisoformat(period["end"][:10]) - dt.timedelta(days=1)
    return f"{start.day} {start:%B %Y} to {last.day} {last:%B %Y}"


def _change_words(changes: dict[str, Any] | None) -> list[str]:
    if not changes:
        return []
    said = []
    if changes.get("new_findings"):
        said.append(f"{len(changes['new_findings'])} new finding(s)")
    if changes.get("closed_findings"):
        said.append(f"{len(changes['closed_findings'])} finding(s) closed")
    if changes.get("rating"):
        said.append(f"risk tier {changes['rating']['before']} to {changes['rating']['now']}")
    if changes.get("artifacts"):
        said.append("a different model file answered")
    for key, delta in (changes.get("kpis") or {}).items():
        before, now = delta["before"], delta["now"]
        direction = "up" if now > before else "down"
        shown = (lambda v: f"{v:,}") if key == "inference" else percent
        said.append(f"{metric_words(key)} {direction} from {shown(before)} to {shown(now)}")
    return said or ["no change in findings, tier, model file or KPIs"]
