"""Explainability checks (EXP): explanations exist, are sound, faithful and cover the decisions."""

from __future__ import annotations

from govkit.checks import Context, NoEvidence, Result, Skip, check


def _decision_explanations(ctx: Context):
    """Explanations of decisions (of a prompt or a logged record) about the model under review (its
    artifact's sha256, or that of the decision explained); not coverage summaries."""
    return _explanations(ctx)[0]


def _explanations(ctx: Context):
    explained = [r for r in ctx.records("explanation") if (r.details or {}).get("kind") != "coverage"]
    kept, phrase = ctx.about_reviewed_model(explained)
    return kept, f"{len(explained)} explanation(s), {phrase}"


@check(id="EXP-001", title="Decisions are explained", severity="warning",
       references={"OSFI E-23": "P3.3-P3.5 (explanatory outputs)", "EU AI Act": "Art. 13(1), 86",
                   "NIST AI RMF": "MEASURE 2.9"}, crosswalk="explainability_evidence")
def explainability_evidence(ctx: Context):
    """What it checks: explanations are on record and the newest is younger than evidence_max_age_days.
    Why it matters: people affected by a decision have a right to its logic; reviewers need the evidence.
    How to fix: govkit explain text --record ID, or enable [explain] sampling in govkit proxy."""
    explained, found = _explanations(ctx)
    if not explained:
        raise NoEvidence(f"no explanation of the reviewed model ({found}): govkit explain text --model-artifact FILE")
    age = ctx.age_days(explained[-1])
    limit = ctx.policy["evidence_max_age_days"]
    return Result(age <= limit, f"newest {age:.0f} days old; {found}",
                  {"explanations": len(explained), "newest_age_days": round(age, 2)})


@check(id="EXP-002", title="Explanations are additive", severity="warning",
       references={"NIST AI RMF": "MEASURE 2.9", "OSFI E-23": "P3.4 (level of explainability)"})
def explanations_additive(ctx: Context):
    """What it checks: every text explanation's attributions sum to f(x) minus the base value (shap's
    additivity), within its stated tolerance.
    Why it matters: an explanation that does not add up does not explain the score it claims to.
    How to fix: re-run the explanation; report a persistent failure as a govkit bug."""
    explained = [r for r in _decision_explanations(ctx) if "additive" in (r.details or {})]
    if not explained:
        raise NoEvidence("no text explanation: govkit explain text")
    broken = [r.record_id for r in explained if not r.details["additive"]]
    return Result(not broken, f"not additive: {', '.join(broken)}" if broken else f"{len(explained)} additive",
                  {"broken": broken})


@check(id="EXP-003", title="Explanations are faithful", severity="warning",
       references={"NIST AI RMF": "MEASURE 2.9"})
def explanations_faithful(ctx: Context):
    """What it checks: averaged over the explanations with a fidelity test, deleting the top-k attributed
    segments moves the score more than deleting k random segments.
    Why it matters: attributions that predict nothing about the model are decoration, not explanation.
    How to fix: raise the evaluation budget (--max-evals / [explain] max_evals); check the server's noise."""
    pairs = [r.details["fidelity"] for r in _decision_explanations(ctx) if (r.details or {}).get("fidelity")]
    if not pairs:
        raise NoEvidence("no explanation with a fidelity test")
    top = sum(abs(p["top_k_drop"]) for p in pairs) / len(pairs)
    random = sum(abs(p["random_k_drop"]) for p in pairs) / len(pairs)
    return Result(top > random, f"top-k deletions move the score {top:.3f} on average, random ones {random:.3f}",
                  {"explanations": len(pairs), "mean_top_k_drop": top, "mean_random_k_drop": random})


@check(id="EXP-004", title="Sampled explanations cover the sample", severity="warning",
       references={"OSFI E-23": "P3.5", "NIST AI RMF": "MEASURE 2.9"})
def explanation_coverage(ctx: Context):
    """What it checks: in the proxy's newest coverage summary, explained / eligible reaches
    explanation_coverage_min.
    Why it matters: a sampling policy only means something if the sample actually gets explained.
    How to fix: raise [explain] max_queue, lower max_evals, or give the worker more idle time."""
    coverage = ctx.latest("explanation", kind="coverage")
    if coverage is None:
        raise Skip("the proxy has not sampled explanations")
    d = coverage.details
    if not d["eligible"]:
        raise Skip("no decision was eligible")
    share = d["explained"] / d["eligible"]
    limit = ctx.policy["explanation_coverage_min"]
    return Result(share >= limit, f"{d['explained']} of {d['eligible']} explained ({share:.0%}, policy {limit:.0%})",
                  {"record_id": coverage.record_id, **{k: d[k] for k in ("eligible", "explained", "dropped", "failed")}})


@check(id="EXP-005", title="Explanations point at logged decisions", severity="warning",
       references={"EU AI Act": "Art. 86", "GDPR": "Art. 15(1)(h)"})
def explanations_linked(ctx: Context):
    """What it checks: every explanation that names a target record names one that exists in the log.
    Why it matters: an explanation must be traceable to the decision it explains.
    How to fix: explain logged decisions with govkit explain text --record ID."""
    # Every explanation, whichever model it names: one pointing nowhere is about no model at all.
    targets = [r for r in ctx.records("explanation") if r.target_record_id and (r.details or {}).get("kind") != "coverage"]
    if not targets:
        raise NoEvidence("no explanation of a logged decision: govkit explain text --record ID")
    known = {r.record_id for r in ctx.records("inference")}
    dangling = [r.record_id for r in targets if r.target_record_id not in known]
    return Result(not dangling, f"dangling: {', '.join(dangling)}" if dangling else f"{len(targets)} linked",
                  {"dangling": dangling})
