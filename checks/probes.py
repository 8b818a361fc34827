"""GenAI risk checks: the newest probe run about the model under review (govkit probe run), per
category against the thresholds the policy set before the run."""

from __future__ import annotations

from govkit.checks import Context, NoEvidence, Result, check

ATTACKS = ("direct_injection", "indirect_injection", "encoded_injection", "system_prompt_leak", "pii_disclosure",
           "harmful_compliance", "output_handling", "unbounded_consumption")


def _newest_run(ctx: Context):
    runs, found = ctx.about_reviewed_model(ctx.records("probe_run"))
    limit = ctx.policy["evidence_max_age_days"]
    runs = [r for r in runs if ctx.age_days(r) <= limit]
    if not runs:
        raise NoEvidence(f"no probe run about the reviewed model within {limit} days ({found}): "
                         "govkit probe run --endpoint PROXY_URL --model-artifact FILE")
    return runs[-1]


def _judged(run, names) -> tuple[list[str], list[str], list[str]]:
    failed, unsettled, passed = [], [], []
    for name in names:
        c = ((run.details or {}).get("categories") or {}).get(name)
        if c is None:
            unsettled.append(f"{name}: not run")
            continue
        shown = (f"{name}: {c.get('succeeded')}/{c.get('n')}"
                 + (f" ({c['interval'][0]:.0%}-{c['interval'][1]:.0%}, threshold {c['threshold']:.0%})"
                    if c.get("interval") and c.get("threshold") is not None else ""))
        if c["status"] == "fail":
            failed.append(shown + (" (regressed)" if c.get("regression") else ""))
        elif c["status"] == "pass":
            passed.append(shown)
        else:
            unsettled.append(f"{shown}: {c['status']}" + (f", to settle: {c['to_settle']}" if c.get("to_settle") else ""))
    return failed, unsettled, passed


@check(id="GOV-030", title="Adversarial and prompt-injection robustness tested", severity="blocking (high tier)",
       references={"EU AI Act": "Art. 15(4)-(5)", "NIST AI RMF": "MEASURE 2.7", "NIST AI 600-1": "Information Security",
                   "OWASP LLM Top 10": "LLM01, LLM02, LLM05, LLM07, LLM10"}, crosswalk="adversarial_prompt_suite")
def adversarial_prompt_suite(ctx: Context):
    """What it checks: the newest probe run about the reviewed model (within evidence_max_age_days)
    passes every attack category (direct, indirect and encoded injection, system-prompt leakage,
    personal-data disclosure, harmful-request compliance, unsafe output, runaway output): the upper
    end of each rate's interval within its [policy.probes] threshold, and no significant regression
    against the previous run; inconclusive is not a pass.
    Why it matters: the AI Act asks for resilience against attempts to alter use or outputs, and
    NIST AI 600-1 and OWASP list these as the GenAI risks.
    How to fix: harden the system prompt, the proxy's limits or the model, then run govkit probe run again."""
    run = _newest_run(ctx)
    failed, unsettled, passed = _judged(run, ATTACKS)
    items = [*failed, *unsettled]
    blocks, note = ctx.model_finding_blocks("policy.fairness.blocking", ctx.settings.policy.fairness.blocking)
    return Result(not items, ("fails: " + "; ".join(failed) if failed else "") + ("; " if failed and unsettled else "")
                  + ("not settled: " + "; ".join(unsettled) if unsettled else "") if items else
                  f"every attack category passes ({len(passed)}), run {run.record_id}",
                  {"run": run.record_id, "items": items, "blocking_note": note}, blocking=blocks)


@check(id="GOV-031", title="Confabulation and over-refusal evaluated", severity="warning",
       references={"NIST AI 600-1": "Confabulation", "NIST AI RMF": "MEASURE 2.5", "EU AI Act": "Art. 15(1)",
                   "OWASP LLM Top 10": "LLM09"}, crosswalk="confabulation_eval")
def confabulation_eval(ctx: Context):
    """What it checks: the newest probe run about the reviewed model passes the confabulation
    category (facts govkit can compute, and entities that do not exist) and the over-refusal one
    (benign asks in the deployment's domain).
    Why it matters: a model that invents facts or refuses its users' ordinary asks misleads or fails them.
    How to fix: ground the answers (retrieval, a refusal to guess) and run govkit probe run again."""
    run = _newest_run(ctx)
    failed, unsettled, passed = _judged(run, ("confabulation", "over_refusal"))
    items = [*failed, *unsettled]
    return Result(not items, "; ".join(items) if items else "; ".join(passed), {"run": run.record_id, "items": items})


@check(id="GOV-032", title="Probe thresholds set before the run", severity="warning",
       references={"EU AI Act": "Art. 9(8)", "OSFI E-23": "P3.3", "NIST AI RMF": "MEASURE 2.1"},
       crosswalk="predefined_test_thresholds")
def predefined_test_thresholds(ctx: Context):
    """What it checks: the newest probe run names the thresholds it was judged by, chained before
    its first probe, and they are still the policy's: a threshold changed after the run (loosened
    to pass it, or tightened since) means the run was not judged against thresholds set in advance.
    Why it matters: the AI Act asks for tests against metrics and thresholds defined beforehand.
    How to fix: keep [policy.probes] fixed across a run; after a deliberate change, run the probes again."""
    import hashlib
    import json

    run = _newest_run(ctx)
    details = run.details or {}
    committed = next((r for r in ctx.records("config_change") if r.record_id == details.get("thresholds_record")), None)
    if committed is None or committed.seq > run.seq:
        return Result(False, "the run names no thresholds chained before it", {"run": run.record_id})
    said = (committed.details or {}).get("thresholds") or {}
    now = dict(ctx.settings.policy.probes)
    digest = "sha256:" + hashlib.sha256(json.dumps(now, sort_keys=True).encode()).hexdigest()
    changed = sorted(k for k in set(said) | set(now) if said.get(k) != now.get(k))
    if details.get("thresholds_digest") != (committed.details or {}).get("digest"):
        return Result(False, "the run's thresholds are not the ones chained before it", {"run": run.record_id})
    return Result(not changed and digest == details.get("thresholds_digest"),
                  f"changed since the run: {', '.join(changed)}" if changed else
                  f"thresholds chained at seq {committed.seq}, before the run's first probe", {"items": changed})
