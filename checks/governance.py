"""Governance checks (GOV): inventory, rating, roles, review, approval, logging, integrity, change."""

from __future__ import annotations

from govkit.checks import Context, NoEvidence, Result, Skip, check
from govkit.inventory import EXTENDED_FIELDS, MINIMUM_FIELDS
from govkit.timestamps import parse_date


def _empty(inventory, names):
    return [n for n in names if not (getattr(inventory, n).strip() if isinstance(getattr(inventory, n), str)
                                     else getattr(inventory, n))]


@check(id="GOV-001", title="Inventory record has the minimum fields", severity="blocking",
       references={"OSFI E-23": "P2.1, Appendix 1", "NIST AI RMF": "GOVERN 1.6", "ISO/IEC 42001": "A.4.2"},
       crosswalk="inventory_min_fields")
def inventory_min_fields(ctx: Context):
    """What it checks: the [model] record in govkit.toml has an id, name, description, risk rating,
    owner, developer and origin.
    Why it matters: E-23 Appendix 1 requires these for every model in the inventory, whatever its risk.
    How to fix: fill the missing keys in [model] of govkit.toml (govkit inventory show lists them)."""
    missing = _empty(ctx.settings.model, MINIMUM_FIELDS)
    if ctx.settings.model.risk_rating == "unrated":
        missing.append("risk_rating")
    return Result(not missing, f"missing: {', '.join(missing)}" if missing else "all minimum fields present",
                  {"missing": missing})


@check(id="GOV-002", title="Inventory record has the extended fields for its tier", severity="blocking (tier)",
       references={"OSFI E-23": "Appendix 1"}, crosswalk="inventory_extended_fields")
def inventory_extended_fields(ctx: Context):
    """What it checks: version, deployment date, reviewer, approver, dependencies, data sources, approved
    uses, limitations, review dates and monitoring status are filled for any model not rated negligible.
    Why it matters: E-23 asks for these extra fields for every non-negligible-risk model.
    How to fix: fill the listed keys in [model] of govkit.toml."""
    if ctx.tier == "negligible":
        raise Skip("the model is rated negligible")
    missing = _empty(ctx.settings.model, EXTENDED_FIELDS)
    return Result(not missing, f"missing: {', '.join(missing)}" if missing else "all extended fields present",
                  {"missing": missing, "tier": ctx.tier})


@check(id="GOV-003", title="Risk rating assigned through the worksheet", severity="blocking",
       references={"OSFI E-23": "P2.2"}, crosswalk="risk_rating_assigned")
def risk_rating_assigned(ctx: Context):
    """What it checks: the model has a tier, and the audit log holds the rating worksheet that produced it.
    Why it matters: E-23 P2.2 asks for a rating from clear quantitative and qualitative criteria, with
    the reasoning kept.
    How to fix: run govkit inventory rate."""
    record = ctx.latest("risk_rating")
    if ctx.tier == "unrated" or record is None:
        raise NoEvidence("no risk rating recorded; run govkit inventory rate")
    agrees = record.risk_rating == ctx.tier
    return Result(agrees, f"rated {record.risk_rating} by record {record.record_id}" if agrees else
                  f"govkit.toml says {ctx.tier} but the last worksheet gave {record.risk_rating}",
                  {"record_id": record.record_id, "tier": ctx.tier, "score": record.details.get("score")})


@check(id="GOV-004", title="Rating re-assessed after a model change", severity="warning",
       references={"OSFI E-23": "P2.2 (trigger events)"}, crosswalk="risk_rating_trigger_review")
def risk_rating_trigger_review(ctx: Context):
    """What it checks: no model change (a new artifact seen by the proxy, or a new model version in the
    lineage) happened after the last risk rating.
    Why it matters: E-23 asks to re-rate on a material change in the model, its data or infrastructure.
    How to fix: review the change and run govkit inventory rate again."""
    rating = ctx.latest("risk_rating")
    if rating is None:
        raise NoEvidence("no rating yet (GOV-003)")
    later = [r.record_id for r in ctx.records("model_change") if r.seq > rating.seq]
    later += [r.record_id for r in ctx.records("lineage")
              if r.seq > rating.seq and (r.details.get("entity") or {}).get("previous_version")]
    return Result(not later, f"{len(later)} change(s) since the rating" if later else "no change since the rating",
                  {"changes": later[:20], "rating_record": rating.record_id})


@check(id="GOV-005", title="Periodic review not overdue", severity="blocking (tier)",
       references={"OSFI E-23": "P3.4"}, crosswalk="review_overdue")
def review_overdue(ctx: Context):
    """What it checks: next_review in the inventory record is a date that has not passed.
    Why it matters: E-23 P3.4 expects scheduled periodic reviews; an overdue one is a finding.
    How to fix: hold the review, then set last_review and next_review."""
    text = ctx.settings.model.next_review
    if not text:
        return Result(False, "no next_review date", {})
    try:
        due = parse_date(text)
    except ValueError:
        return Result(False, f"next_review '{text}' is not a date", {})
    today = ctx.now.date()
    return Result(due >= today, f"next review {due}" + (" (overdue)" if due < today else ""),
                  {"next_review": str(due), "today": str(today)})


@check(id="GOV-006", title="Owner, developer, reviewer and approver named", severity="blocking",
       references={"OSFI E-23": "A.4, P3.1", "EU AI Act": "Art. 17(1)(m)", "NIST AI RMF": "GOVERN 2.1",
                   "ISO/IEC 42001": "A.3.2"}, crosswalk="roles_assigned")
def roles_assigned(ctx: Context):
    """What it checks: the owner, developer, reviewer and approver fields are filled.
    Why it matters: E-23 assigns distinct responsibilities to each role; an unnamed role is nobody's job.
    How to fix: name each role in [model] of govkit.toml."""
    missing = _empty(ctx.settings.model, ("owner", "developer", "reviewer", "approver"))
    return Result(not missing, f"unnamed: {', '.join(missing)}" if missing else "all roles named", {"missing": missing})


@check(id="GOV-009", title="Automatic logging on while the model is in use", severity="blocking",
       references={"EU AI Act": "Art. 12(1)", "ISO/IEC 42001": "A.6.2.8"}, crosswalk="auto_logging_enabled")
def auto_logging_enabled(ctx: Context):
    """What it checks: the audit log exists, holds inference records, and the newest is recent.
    Why it matters: the AI Act requires automatic recording of events over the system's lifetime.
    How to fix: route the model's traffic through govkit proxy or the wrappers."""
    if ctx.log is None:
        raise NoEvidence(f"no audit log at {ctx.settings.audit.db}")
    if not ctx.decisions:
        raise NoEvidence("the audit log holds no inference record")
    age = min(ctx.age_days(r) for r in ctx.decisions)
    quiet = ctx.policy["logging_quiet_days"]
    return Result(age <= quiet, f"{len(ctx.decisions)} inference records; newest {age:.1f} days old",
                  {"inference_records": len(ctx.decisions), "newest_age_days": round(age, 2)})


@check(id="GOV-010", title="Audit log verifies", severity="blocking",
       references={"EU AI Act": "Art. 12(1) (traceability)", "OSFI E-23": "robust controls"},
       crosswalk="log_integrity_chain")
def log_integrity_chain(ctx: Context):
    """What it checks: govkit audit verify passes against the device's public key in govkit.toml: hash
    chain, store identity, signed checkpoints, stored content.
    Why it matters: logs are evidence only if nobody could have altered them unnoticed, and a log
    checked only against its own claims is self-consistent, no more.
    How to fix: find the first bad seq with govkit audit verify; restore from the off-device copy;
    keep [audit] public_key and store_id in govkit.toml (govkit init writes them)."""
    if ctx.verified is None:
        raise NoEvidence("no audit log")
    result = ctx.verified
    evidence = {"records": result.records, "checkpoints": result.checkpoints, "store_id": result.store_id,
                "trusted_key": result.trusted_key}
    if not result.ok:
        return Result(False, f"fails at seq {result.first_bad_seq}: {sorted(result.problems)[0].reason}", evidence)
    if not result.trusted:
        return Result(False, f"{result.records} records are {result.scope}", evidence)
    return Result(True, f"{result.records} records verify, {result.scope}", evidence)


@check(id="GOV-011", title="Logs kept at least six months", severity="blocking",
       references={"EU AI Act": "Art. 19(1), 26(6)"}, crosswalk="log_retention_min_6m")
def log_retention_min_6m(ctx: Context):
    """What it checks: policy.retention_days is at least 183.
    Why it matters: providers and deployers must keep logs at least six months.
    How to fix: set retention_days = 183 or more in [policy]."""
    days = ctx.settings.policy.retention_days
    return Result(days >= 183, f"retention {days} days", {"retention_days": days})


@check(id="GOV-012", title="Recent signed checkpoint", severity="warning",
       references={"OSFI E-23": "robust controls", "ISO/IEC 42001": "A.6.2.8"})
def checkpoint_recent(ctx: Context):
    """What it checks: a signed checkpoint covers the head of the log, or is younger than the policy's
    checkpoint_max_age_hours.
    Why it matters: a signed head is what makes truncation of the log detectable.
    How to fix: run govkit audit checkpoint (or lower checkpoint_every / checkpoint_seconds)."""
    latest = ctx.latest("checkpoint")
    if latest is None:
        return Result(False, "no signed checkpoint", {})
    head = ctx.store.stats()["head_seq"]
    signed = latest.details["seq"]  # the head it signs, as `audit checkpoint`, stats and verify number it
    age_hours = ctx.age_days(latest) * 24
    fresh = age_hours <= ctx.policy["checkpoint_max_age_hours"] or latest.seq >= head
    return Result(fresh, f"newest checkpoint signs seq {signed} of {head}, {age_hours:.1f} h old",
                  {"checkpoint_seq": signed, "checkpoint_record_seq": latest.seq, "head_seq": head})


@check(id="GOV-013", title="Deployed artifact is a registered model", severity="blocking",
       references={"OSFI E-23": "P3.6 (version updates)", "NIST AI RMF": "MANAGE 3.2"},
       crosswalk="dependency_version_change")
def deployed_artifact_registered(ctx: Context):
    """What it checks: every model file that answered live traffic (artifact_sha256 in inference records)
    is a model registered in the lineage.
    Why it matters: an unregistered artifact is an unapproved version change.
    How to fix: govkit lineage model add the file, review it, and link it to the deployment."""
    if not ctx.deployed_artifacts:
        raise NoEvidence("no inference record names its model artifact: govkit proxy --model-artifact FILE")
    registered = {e["sha256"] for e in ctx.graph.entities.values() if e["kind"] == "model"}
    unknown = sorted(ctx.deployed_artifacts - registered)
    return Result(not unknown, f"{len(unknown)} unregistered artifact(s)" if unknown else
                  f"{len(ctx.deployed_artifacts)} artifact(s), all registered", {"unregistered": unknown})


@check(id="GOV-014", title="Inference records carry the required fields", severity="blocking",
       references={"EU AI Act": "Art. 12(2)(a)-(c)"}, crosswalk="log_schema_coverage")
def log_schema_coverage(ctx: Context):
    """What it checks: every live inference record has a model identity (model_id or artifact), times,
    latency and a status.
    Why it matters: logs must let a deployer spot risks and substantial modifications.
    How to fix: pass --model-artifact to govkit proxy; set [model] id in govkit.toml."""
    if not ctx.decisions:
        raise NoEvidence("no inference records")
    lacking = [r.record_id for r in ctx.decisions
               if not (r.model_id or r.artifact_sha256) or not r.ts_end or r.status is None or r.latency_ms is None]
    return Result(not lacking, f"{len(lacking)} of {len(ctx.decisions)} records lack fields" if lacking else
                  f"{len(ctx.decisions)} records complete", {"incomplete": lacking[:20]})


@check(id="GOV-015", title="Monitoring plan in force", severity="blocking",
       references={"OSFI E-23": "P3.6", "EU AI Act": "Art. 72", "NIST AI RMF": "MEASURE 2.4, MANAGE 4.1",
                   "ISO/IEC 42001": "A.6.2.6"}, crosswalk="monitoring_plan_defined")
def monitoring_plan_defined(ctx: Context):
    """What it checks: the [monitoring] plan for the model's tier names who answers a breach
    (escalate_to, or the model's owner) and, for a high or critical model, the contingency; the
    typed monitoring_status is not 'breach' or 'red', and does not say green while a monitoring
    breach is open (govkit monitor run opens one).
    Why it matters: E-23 P3.6 expects monitoring standards, escalation and contingency per tier; a
    status typed into a form is not monitoring.
    How to fix: set [monitoring] escalate_to (and contingency), cron govkit monitor run, and
    answer each open breach (govkit monitor status)."""
    from govkit.monitoring.run import breaches_open

    plan = ctx.settings.monitoring_plan()
    problems = []
    if not (plan.escalate_to or ctx.settings.model.owner).strip():
        problems.append("nobody answers a breach ([monitoring] escalate_to, or [model] owner)")
    if ctx.settings.model.risk_rating in ("high", "critical") and not plan.contingency.strip():
        problems.append(f"no contingency for a {ctx.settings.model.risk_rating} model ([monitoring] contingency)")
    status = ctx.settings.model.monitoring_status.strip().lower()
    if status in ("red", "breach"):
        problems.append(f"monitoring status '{status}'")
    still = breaches_open(ctx.records("incident")) if ctx.log is not None else []
    if still and status in ("green", "ok", "amber", "yellow"):
        problems.append(f"the typed status says '{status}' while {len(still)} monitoring breach(es) are open")
    return Result(not problems, "; ".join(problems) if problems else
                  f"{plan.window} windows against {plan.reference}; breaches go to {plan.escalate_to or ctx.settings.model.owner}"
                  f" within {plan.escalate_hours:g} h", {"plan_digest": plan.digest(), "problems": problems,
                                                         "open_breaches": [r.record_id for r in still][:20]})


@check(id="GOV-016", title="No open incidents", severity="warning",
       references={"EU AI Act": "Art. 73", "ISO/IEC 42001": "A.8.4", "NIST AI RMF": "MANAGE 4.3"},
       crosswalk="pmm_and_incident_clock")
def incidents_reviewed(ctx: Context):
    """What it checks: every incident record has been resolved (a chained resolution names it).
    Why it matters: serious incidents have reporting deadlines; someone must look at each, and say so.
    How to fix: review the incidents (govkit audit incident list) and record the outcome
    (govkit audit incident resolve ID --note ...)."""
    from govkit.audit.incidents import open_incidents

    if ctx.log is None:
        raise NoEvidence("no audit log")
    still = open_incidents(ctx.records("incident"))
    return Result(not still, f"{len(still)} open incident(s), oldest {ctx.age_days(still[0]):.0f} days" if still
                  else "no open incident", {"incidents": [r.record_id for r in still][:20]})


@check(id="GOV-017", title="Evidence mirrored to MLflow", severity="warning",
       references={"OSFI E-23": "P1.2 (reporting)", "NIST AI RMF": "GOVERN 2.3"})
def evidence_tracked(ctx: Context):
    """What it checks: lineage, rating, bias and explanation events name their MLflow run.
    Why it matters: auditors read the trail in MLflow; an action missing there is invisible to them.
    How to fix: keep [tracking] enabled (or sync the device's runs to the central server)."""
    if not ctx.settings.tracking.enabled:
        return Result(False, "[tracking] is disabled", {})
    events = [r for t in ("lineage", "risk_rating", "bias_run") for r in ctx.records(t)]
    missing = [r.record_id for r in events if not r.mlflow_run_id]
    if not events:
        raise NoEvidence("no evidence-producing action yet")
    return Result(not missing, f"{len(missing)} of {len(events)} without an MLflow run" if missing else
                  f"{len(events)} actions mirrored", {"missing": missing[:20]})


@check(id="GOV-018", title="Third-party model licence recorded", severity="warning",
       references={"OSFI E-23": "P3.4, B-10", "NIST AI RMF": "GOVERN 6.1, MANAGE 3.2", "EU AI Act": "Annex IV 2(a)",
                   "ISO/IEC 42001": "A.10.3"}, crosswalk="third_party_components_reviewed")
def third_party_licence(ctx: Context):
    """What it checks: each registered model artifact states a licence in its own metadata or lineage record.
    Why it matters: third-party weights come with terms that a reviewer must have seen.
    How to fix: register the model with govkit lineage model add; add the licence to its metadata."""
    models = [e for e in ctx.lineage.entities.values() if e["kind"] == "model"] if ctx.lineage else []
    if not models:
        raise NoEvidence("no model registered: govkit lineage model add FILE")
    unlicensed = [e["id"] for e in models if not e.get("metadata", {}).get("license")]
    return Result(not unlicensed, f"no licence: {', '.join(unlicensed)}" if unlicensed else
                  f"{len(models)} model(s) with a licence", {"unlicensed": unlicensed})


@check(id="GOV-019", title="Decisions beat the baseline that needs no model", severity="blocking (high tier)",
       references={"OSFI E-23": "P3.3 (model performance), P3.6", "SR 11-7": "outcomes analysis, benchmarking",
                   "EU AI Act": "Art. 15(1)", "NIST AI RMF": "MEASURE 2.5"}, crosswalk="decision_quality_baseline")
def decision_quality_baseline(ctx: Context):
    """What it checks: for every (model artifact, dataset) judged in the evidence window, the newest
    bias run with known outcomes (bias tabular --y-true, bias llm --label) shows the model's accuracy
    clearing the majority decision (everyone gets the outcome most of them had) by
    [policy.quality] min_lift, at the lower end of its interval; below it fails, in between it is
    inconclusive, which is not a pass.
    Why it matters: a model that decides no better than a rule needing no model adds risk and no value;
    E-23 asks for its performance, SR 11-7 for outcomes analysis against a benchmark. For a high or
    critical model this blocks by default ([policy.quality] blocking, as [policy.fairness] blocking).
    How to fix: evaluate on data with outcomes, then improve the model or its prompt until it beats the baseline."""
    runs = [r for r in ctx.records("bias_run") if (r.details or {}).get("quality")]
    runs, found = ctx.about_reviewed_model(runs)
    limit = ctx.policy["evidence_max_age_days"]
    standing = {}
    for record in runs:
        if ctx.age_days(record) <= limit:
            data = record.details.get("data") or {}
            standing[(ctx.artifact_of(record), data.get("sha256") or data.get("name"))] = record
    if not standing:
        raise NoEvidence(f"no evaluation with known outcomes about the reviewed model ({found}): govkit bias "
                         f"tabular --y-true COLUMN, or govkit bias llm --label COLUMN")
    items, statuses = [], []
    for record in standing.values():
        quality = record.details["quality"]
        accuracy, baseline = quality["accuracy"], quality["baseline"]
        low, high = accuracy["interval"] or [None, None]
        statuses.append(quality["status"])
        items.append(f"{(record.details.get('data') or {}).get('name')}: accuracy {accuracy['value']:.1%} "
                     f"({low:.1%} to {high:.1%}) against {baseline['accuracy']:.1%} for {baseline['name']} "
                     f"(lift {quality['lift']:+.1%}, needed {quality['min_lift']:+.1%}): {quality['status']}")
    blocks, note = ctx.model_finding_blocks("policy.quality.blocking", ctx.settings.policy.quality.blocking)
    passed = all(status == "pass" for status in statuses)
    return Result(passed, "; ".join(items) + (f"; {note}" if note else ""),
                  {"runs": sorted(r.record_id for r in standing.values()), "items": items, "blocking_note": note},
                  blocking=blocks)
