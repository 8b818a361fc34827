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


@check(id="GOV-033", title="Same behaviour on the device as in the reference run", severity="warning",
       references={"OSFI E-23": "P3.5", "ISO/IEC 42001": "A.6.2.5"}, crosswalk="prod_parity_test")
def prod_parity_test(ctx: Context):
    """What it checks: the newest probe run about the reviewed model was compared with a reference
    run of the same file and probe set (govkit probe run --reference FILE), and no category's rate
    differs by more than [policy] probe_parity_tolerance, nor significantly (Fisher's exact test).
    Why it matters: E-23 asks that a model work in production as it did in development.
    How to fix: run the same probes on the device with --reference the reference run's JSON; find
    what differs (runtime build, quantization, sampling, system prompt) where parity does not hold."""
    run = _newest_run(ctx)
    parity = (run.details or {}).get("parity")
    if not parity:
        raise NoEvidence("the newest probe run was not compared with a reference run: govkit probe run --reference FILE")
    rows = parity.get("categories") or {}
    apart = [f"{name}: device {rows[name]['device']:.0%}, reference {rows[name]['reference']:.0%} "
             f"(p = {rows[name]['p_value']:.3g})" for name in parity.get("apart") or [] if name in rows]
    return Result(bool(parity.get("holds")), "; ".join(apart) if apart else
                  f"{len(rows)} categories within {parity.get('tolerance'):.0%} of the reference run", {"items": apart})


@check(id="GOV-034", title="Measured figures declared to users", severity="warning",
       references={"EU AI Act": "Art. 13(3)(b), 15(3)"}, crosswalk="accuracy_declared")
def accuracy_declared(ctx: Context):
    """What it checks: a model card was rendered (govkit report model-card) after the newest
    evaluation of the reviewed model (a probe run, or a bias run with known outcomes), so that its
    instructions for use state the figures measured last.
    Why it matters: the AI Act asks that accuracy and its metrics be declared in the instructions for use.
    How to fix: govkit report model-card after each evaluation, and publish it with the model."""
    evaluations = [r for r in ctx.records("probe_run")] + [r for r in ctx.records("bias_run")
                                                           if (r.details or {}).get("quality")]
    evaluations, found = ctx.about_reviewed_model(evaluations)
    if not evaluations:
        raise NoEvidence(f"no evaluation of the reviewed model to declare ({found})")
    newest = max(evaluations, key=lambda r: r.seq)
    cards = [r for r in ctx.records("report") if (r.details or {}).get("kind") == "model-card" and r.seq > newest.seq]
    return Result(bool(cards), f"model card {cards[-1].record_id} states the figures of {newest.event_type} "
                               f"{newest.record_id}" if cards else
                  f"no model card since the newest evaluation ({newest.event_type} {newest.record_id}, "
                  f"{newest.ts_start[:10]}): govkit report model-card", {})
