"""Ethics checks (ETH): fairness evidence, human oversight, privacy, disclosure."""

from __future__ import annotations

from typing import Any

from govkit.audit import AuditRecord, Redactor
from govkit.checks import Context, NoEvidence, Result, check


def _bias_runs(ctx: Context, kinds: tuple[str, ...]) -> tuple[list[AuditRecord], str]:
    """Bias runs about the model under review (its artifact's sha256), and what was found."""
    runs = [r for r in ctx.records("bias_run") if (r.details or {}).get("kind") in kinds]
    kept, phrase = ctx.about_reviewed_model(runs)
    return kept, f"{len(runs)} bias run(s), {phrase}"


def _standing(ctx: Context, runs: list[AuditRecord]) -> dict[Any, Any]:
    """For each (model artifact, dataset, attribute) the newest run's metrics stand, within the
    evidence window: a later run on other data or another attribute clears nothing."""
    limit = ctx.policy["evidence_max_age_days"]
    standing = {}
    for record in runs:
        if ctx.age_days(record) > limit:
            continue
        data = (record.details.get("data") or {}).get("sha256") or (record.details.get("data") or {}).get("name")
        for view, metrics in (record.details.get("metrics") or {}).items():
            standing[(ctx.artifact_of(record), data, view)] = (record, metrics)
    return standing


@check(id="ETH-001", title="Fairness evaluated recently", severity="blocking",
       references={"NIST AI RMF": "MEASURE 2.11", "EU AI Act": "Art. 13(3)(b)(v), Annex IV 2(g)", "OSFI E-23": "D.2"},
       crosswalk="fairness_eval_documented")
def fairness_eval_documented(ctx: Context):
    """What it checks: a bias run (tabular or LLM) about the model under review (its artifact's sha256)
    is on record and younger than evidence_max_age_days.
    Why it matters: fairness is the first thing a board and a regulator ask about; stale evidence, or
    evidence about another model, is none.
    How to fix: run govkit bias tabular or govkit bias llm with --model-artifact on the current evaluation data."""
    runs, found = _bias_runs(ctx, ("tabular", "llm"))
    if not runs:
        raise NoEvidence(f"no bias run about the reviewed model ({found}): govkit bias ... --model-artifact FILE")
    age = ctx.age_days(runs[-1])
    limit = ctx.policy["evidence_max_age_days"]
    return Result(age <= limit, f"latest bias run {age:.0f} days old (limit {limit}); {found}",
                  {"record_id": runs[-1].record_id, "age_days": round(age, 2)})


@check(id="ETH-002", title="Fairness within the policy's thresholds", severity="blocking (high tier)",
       references={"Institutional policy": "[policy.fairness]", "UGESP": "29 CFR 1607.4(D)"},
       crosswalk="fairness_threshold_breach")
def fairness_threshold_breach(ctx: Context):
    """What it checks: for every (model artifact, dataset, sensitive attribute) judged in the evidence
    window, the newest bias run's metrics meet their thresholds; one failing attribute fails it, and
    an inconclusive one is not a pass.
    Why it matters: a breach is about the model itself. For a high or critical model it blocks by
    default; [policy.fairness] blocking = "never" holds for one only as a chained decision naming who
    and why (govkit policy decide), and the board report says so.
    How to fix: investigate the failing groups (govkit bias ... --format json), mitigate, re-run."""
    runs, found = _bias_runs(ctx, ("tabular", "llm"))
    standing = _standing(ctx, runs)
    if not standing:
        raise NoEvidence(f"no bias run about the reviewed model in the evidence window ({found})")
    failed, unsettled = [], []
    for (_, _data, view), (record, metrics) in sorted(standing.items(), key=lambda item: str(item[0])):
        for name, metric in metrics.items():
            where = f"{view}.{name} (run {record.record_id})"
            if metric["status"] == "fail":
                failed.append(where)
            elif metric["status"] != "pass":
                unsettled.append(where)
    message = (f"failing: {', '.join(failed)}" if failed else
               f"inconclusive (not a pass): {', '.join(unsettled)}" if unsettled else
               f"every metric within thresholds over {len(standing)} attribute(s)")
    blocks, note = ctx.model_finding_blocks("policy.fairness.blocking", ctx.settings.policy.fairness.blocking)
    return Result(not failed and not unsettled, f"{message}; {found}" + (f"; {note}" if note else ""),
                  {"runs": sorted({r.record_id for r, _ in standing.values()}), "failed": failed,
                   "inconclusive": unsettled, "items": [*failed, *unsettled], "blocking_note": note},
                  blocking=blocks)


@check(id="ETH-003", title="Counterfactual prompts show no difference", severity="blocking (high tier)",
       references={"NIST AI 600-1": "Harmful Bias or Homogenization", "NIST AI RMF": "MEASURE 2.11"},
       crosswalk="fairness_eval_documented")
def counterfactual_no_difference(ctx: Context):
    """What it checks: for every (model artifact, dataset, attribute), the newest counterfactual run
    about the model under review shows no difference and keeps flips within the policy (a flip rate
    whose lower bound exceeds the policy fails even when neither group is favoured).
    Why it matters: swapping only a name or pronoun should not change an LLM's decision. For a high or
    critical model a difference blocks by default, as under [policy.fairness] blocking.
    How to fix: govkit bias counterfactual; if it shows a difference, revise the prompt or the model."""
    runs, found = _bias_runs(ctx, ("counterfactual",))
    standing = _standing(ctx, runs)
    if not standing:
        raise NoEvidence(f"no counterfactual run about the reviewed model in the evidence window ({found})")
    pairs = [(f"{view}.{pair}", m["status"]) for (_, _, view), (_, items) in standing.items() for pair, m in items.items()]
    shown = [name for name, status in pairs if status in ("fail", "difference")]
    unsettled = [name for name, status in pairs if status not in ("pass", "fail", "difference")]
    message = (f"fails (a difference shown, or too many flips): {', '.join(shown)}" if shown else
               f"inconclusive (not a pass): {', '.join(unsettled)}" if unsettled or not pairs else
               "no difference, flips within the policy")
    blocks, note = ctx.model_finding_blocks("policy.fairness.blocking", ctx.settings.policy.fairness.blocking)
    return Result(not shown and not unsettled and bool(pairs), f"{message}; {found}" + (f"; {note}" if note else ""),
                  {"runs": sorted({r.record_id for r, _ in standing.values()}), "differences": shown,
                   "inconclusive": unsettled, "items": [*shown, *unsettled], "blocking_note": note}, blocking=blocks)


@check(id="ETH-004", title="Human override route in use", severity="blocking",
       references={"EU AI Act": "Art. 14(4)(d)-(e)", "NIST AI RMF": "MANAGE 2.4", "GDPR": "Art. 22(3)"},
       crosswalk="override_and_stop_available")
def override_route(ctx: Context):
    """What it checks: the log holds at least one human override (or review) of a logged decision.
    Why it matters: people must be able to disregard, override or stop the system, and the log should
    show that they do.
    How to fix: record reviews with govkit audit override (or the API) from the reviewing workflow."""
    overrides = ctx.records("override")
    return Result(bool(overrides), f"{len(overrides)} override record(s)" if overrides else "no override ever recorded",
                  {"overrides": len(overrides)})


@check(id="ETH-005", title="Override rate below the policy's limit", severity="warning",
       references={"OSFI E-23": "Model decommission (excessive overrides)"}, crosswalk="override_rate_high")
def override_rate(ctx: Context):
    """What it checks: overrides per live decision over the last override_window_days.
    Why it matters: E-23 names excessive overrides as a reason to reconsider or decommission a model.
    How to fix: find why reviewers disagree with the model; re-validate or retrain it."""
    window = ctx.policy["override_window_days"]
    decisions = [r for r in ctx.decisions if ctx.age_days(r) <= window]
    if not decisions:
        raise NoEvidence(f"no decision in {window} days")
    overrides = [r for r in ctx.records("override") if ctx.age_days(r) <= window and r.human_decision == "overridden"]
    rate = len(overrides) / len(decisions)
    limit = ctx.policy["override_rate_max"]
    return Result(rate <= limit, f"{len(overrides)} overrides / {len(decisions)} decisions = {rate:.1%} (limit {limit:.0%})",
                  {"rate": rate, "overrides": len(overrides), "decisions": len(decisions)})


@check(id="ETH-006", title="Personal data in logs minimised", severity="warning",
       references={"GDPR": "Art. 5(1)(c),(e)", "EU AI Act": "Art. 19(1)"}, crosswalk="log_pii_minimized")
def log_pii_minimized(ctx: Context):
    """What it checks: the redaction mode is not 'full', and the stored text of the newest 500 records
    contains nothing the recognizers would redact.
    Why it matters: logs kept for years must not become a store of customers' personal data.
    How to fix: set [policy] redaction = "redacted" or "digest-only"; purge what was stored in full."""
    mode = ctx.settings.policy.redaction
    if mode == "full":
        return Result(False, "redaction mode 'full' stores prompts and answers verbatim", {"mode": mode})
    redactor = Redactor(ctx.settings.policy.patterns)
    leaks = []
    for record in ctx.records("inference")[-500:]:
        for kind, text in ctx.store.content(record).items():
            if text and redactor.redact(text).counts:
                leaks.append(f"{record.record_id}:{kind}")
    return Result(not leaks, f"personal data in {len(leaks)} stored text(s)" if leaks else f"mode '{mode}', no leak found",
                  {"mode": mode, "leaks": leaks[:20]})


@check(id="ETH-007", title="Users told they are talking to an AI", severity="warning",
       references={"EU AI Act": "Art. 50(1), 26(11)"}, crosswalk="ai_disclosure_shown")
def ai_disclosure_shown(ctx: Context):
    """What it checks: the share of live inference records marked disclosure_shown is at least
    disclosure_share_min.
    Why it matters: people interacting with an AI system must be told so.
    How to fix: have the application send the disclosure flag with each session (X-Govkit-Disclosure or the API)."""
    if not ctx.decisions:
        raise NoEvidence("no inference records")
    shown = sum(1 for r in ctx.decisions if r.disclosure_shown)
    share = shown / len(ctx.decisions)
    limit = ctx.policy["disclosure_share_min"]
    return Result(share >= limit, f"{share:.0%} of decisions disclosed (policy {limit:.0%})", {"share": share})


@check(id="ETH-008", title="Retention purges run", severity="warning",
       references={"GDPR": "Art. 5(1)(e)", "EU AI Act": "Art. 19(1)"})
def retention_enforced(ctx: Context):
    """What it checks: no stored prompt or answer is older than the retention period (plus a week's grace).
    Why it matters: keeping personal text past its retention period breaks the storage-limitation principle.
    How to fix: schedule govkit audit purge --expired."""
    limit = ctx.settings.policy.retention_days + 7
    stale = [r.record_id for r in ctx.records("inference") if ctx.age_days(r) > limit and any(ctx.store.content(r).values())]
    return Result(not stale, f"{len(stale)} record(s) keep text past retention" if stale else "no text past retention",
                  {"stale": stale[:20]})
