"""Governance checks that read signatures, not strings: a review, an approval, an exemption, an
impact assessment, a contingency test, a board acknowledgement or a decommission notice counts
only as a valid attestation from a roster key in the right role, over the model file now under
review (govkit people, govkit review sign, govkit approve, govkit attest). govkit.toml's names
describe the inventory; they are never the proof."""

from __future__ import annotations

from govkit.checks import Context, NoEvidence, Result, Skip, check
from govkit.timestamps import parse_date, parse_ts

_NO_ROSTER = ("no roster: the model owner makes a key (govkit keygen --person NAME) and runs govkit people init, "
              "then adds each person with govkit people add")


def _attestations(ctx: Context):
    found = ctx.attestations
    if not found.roster.owner_key:
        raise NoEvidence(_NO_ROSTER)
    return found


def _about_model(ctx: Context, kind: str):
    """The valid statements of `kind` over the model now under review, newest last, and a phrase
    for what else was found (statements over another file, statements that do not hold)."""
    found = _attestations(ctx)
    wanted = ctx.reviewed_artifacts
    about = found.about(kind, wanted)
    other = len(found.of_kind(kind)) - len(about)
    broken = [bad for bad in found.invalid if bad["kind"] == kind]
    notes = ([f"{other} over another model file"] if other else []) + [
        f"seq {bad['seq']} does not hold: {bad['why']}" for bad in broken[:3]]
    return about, "; ".join(notes)


def _age_days(ctx: Context, ts: str) -> float:
    return (ctx.now - parse_ts(ts)).total_seconds() / 86400


def _newest_review(ctx: Context):
    reviews, notes = _about_model(ctx, "review")
    if not reviews:
        raise NoEvidence("no valid review signed by a roster reviewer over the model now under review"
                         + (f" ({notes})" if notes else "") + ": govkit review sign --key YOUR.key")
    return reviews[-1], notes


@check(id="GOV-007", title="Reviewer independent of developer and owner", severity="blocking",
       references={"OSFI E-23": "P3.1, P3.4"}, crosswalk="reviewer_independence")
def reviewer_independence(ctx: Context):
    """What it checks: the newest valid review of the model now under review was signed by a
    roster key with the reviewer role that is not also a developer's or the owner's key
    (separation of duties on keys, not names).
    Why it matters: E-23 requires review independent of development; a name in a file proves nothing.
    How to fix: the model owner adds an independent reviewer with their own key (govkit people add
    NAME --role reviewer), who signs the review (govkit review sign)."""
    review, _ = _newest_review(ctx)
    clash = sorted(set(review.person.roles) & {"developer", "owner"})
    return Result(not clash, f"review by {review.person.name} (key {review.person.key_id}), who is also the "
                             f"{' and '.join(clash)}" if clash else
                  f"review by {review.person.name} (key {review.person.key_id}), reviewer only",
                  {"review": review.record.record_id, "key_id": review.person.key_id})


@check(id="GOV-008", title="Approval recorded", severity="blocking",
       references={"OSFI E-23": "Model approval", "NIST AI RMF": "MANAGE 1.1"}, crosswalk="approval_recorded")
def approval_recorded(ctx: Context):
    """What it checks: a valid approval signed by a roster approver over the model now under
    review, after a valid review of it, while the newest review does not recommend rejection,
    affirming the current risk tier, not expired, by a key that is neither a developer's nor a
    reviewer's of that model.
    Why it matters: E-23 expects approval before production use, affirming the rating and the
    residual risk; a model swapped after approval is not approved.
    How to fix: the approver signs with govkit approve --residual-risk TEXT --valid-until DATE --key KEY."""
    approvals, notes = _about_model(ctx, "approval")
    if not approvals:
        raise NoEvidence("no valid approval over the model now under review" + (f" ({notes})" if notes else "")
                         + ": govkit approve --key APPROVER.key")
    approval = approvals[-1]
    predicate = approval.predicate
    problems = []
    reviews, _ = _about_model(ctx, "review")
    before = [r for r in reviews if r.record.seq < approval.record.seq]
    if not before:
        problems.append("no valid review precedes it")
    if reviews and reviews[-1].predicate.get("recommendation") == "reject":
        problems.append(f"the newest review (seq {reviews[-1].record.seq}) recommends rejection")
    if any(r.person.key_id == approval.person.key_id for r in reviews):
        problems.append("the approver's key also signed a review")
    if "developer" in approval.person.roles:
        problems.append("the approver's key is a developer's")
    if predicate.get("tier") != ctx.tier:
        problems.append(f"it affirms tier {predicate.get('tier')}, the model is now rated {ctx.tier}")
    until = str(predicate.get("valid_until") or "")
    if not approval.current_on(ctx.now.date()):
        problems.append(f"it expired on {until or '(no date)'}")
    said = (f"approval by {approval.person.name} on {approval.record.ts_start[:10]} (tier {predicate.get('tier')}, "
            f"residual risk: {predicate.get('residual_risk')}, valid until {until})")
    return Result(not problems, said + (": " + "; ".join(problems) if problems else ""),
                  {"approval": approval.record.record_id, "items": problems})


@check(id="GOV-020", title="Independent review done, with findings and a recommendation", severity="blocking",
       references={"OSFI E-23": "P3.4", "SR 11-7": "validation report", "NIST AI RMF": "MEASURE 1.3",
                   "ISO/IEC 42001": "A.6.2.4"}, crosswalk="independent_review_done")
def independent_review_done(ctx: Context):
    """What it checks: the newest valid review of the model now under review records findings and
    recommends approval (with or without conditions), and is not older than [people]
    review_max_age_days; a recommendation to reject fails, with its findings.
    Why it matters: E-23 ends a review "with a report and recommendation to the approver".
    How to fix: the reviewer signs a review with govkit review sign --recommendation ... --finding ...."""
    review, notes = _newest_review(ctx)
    predicate = review.predicate
    age = _age_days(ctx, review.record.ts_start)
    limit = ctx.settings.people.review_max_age_days
    findings = [str(f) for f in predicate.get("findings") or []]
    recommendation = predicate.get("recommendation")
    problems = []
    if recommendation == "reject":
        problems.append("the review recommends rejection")
    if age > limit:
        problems.append(f"it is {age:.0f} days old (policy: {limit})")
    if not findings:
        problems.append("it records no finding")
    said = f"review by {review.person.name} on {review.record.ts_start[:10]} recommends {recommendation}"
    return Result(not problems, said + (": " + "; ".join(problems) if problems else "")
                  + (f"; findings: {'; '.join(findings)}" if findings else ""),
                  {"review": review.record.record_id, "items": [*problems, *findings], "notes": notes})


@check(id="GOV-021", title="Re-review after a modification, data change or breach", severity="warning",
       references={"OSFI E-23": "P3.4"}, crosswalk="review_trigger_pending")
def review_trigger_pending(ctx: Context):
    """What it checks: nothing that calls for a new review happened after the newest valid review:
    a model change, a dataset or model registered in the lineage, an incident opened, or a gate run
    in which the model's own findings (fairness, counterfactual, decision quality) fail.
    Why it matters: E-23 asks for review after a modification, a data change or a breach.
    How to fix: have the reviewer review again (govkit review sign) once the change is understood."""
    review, _ = _newest_review(ctx)
    after = review.record.seq
    triggers = [f"model change (seq {r.seq})" for r in ctx.records("model_change") if r.seq > after]
    triggers += [f"lineage {(r.details or {}).get('action')} of {((r.details or {}).get('entity') or {}).get('id')} "
                 f"(seq {r.seq})" for r in ctx.records("lineage") if r.seq > after
                 and (r.details or {}).get("action") in ("dataset_add", "model_add")]
    triggers += [f"incident (seq {r.seq})" for r in ctx.records("incident") if r.seq > after
                 and (r.details or {}).get("action") != "resolved"]
    for run in ctx.records("check_run"):
        if run.seq > after:
            failed = [cid for cid in ("ETH-002", "ETH-003", "GOV-019")
                      if (((run.details or {}).get("results") or {}).get(cid) or {}).get("status") in ("FAIL", "WARN")]
            if failed:
                triggers.append(f"breach of {', '.join(failed)} in the gate run of seq {run.seq}")
                break
    return Result(not triggers, f"since the review of {review.record.ts_start[:10]}: {'; '.join(triggers[:10])}: "
                                "re-review the model" if triggers else
                  f"nothing calls for a new review since {review.record.ts_start[:10]}", {"items": triggers})


@check(id="GOV-022", title="Exemptions approved and tracked", severity="warning",
       references={"OSFI E-23": "P2.2"}, crosswalk="exemption_tracked")
def exemption_tracked(ctx: Context):
    """What it checks: every exemption in the chain holds (signed by a roster approver) and has not
    expired; an exemption past its date, or one that does not hold, fails.
    Why it matters: E-23 expects exemptions approved and tracked, not standing forever.
    How to fix: renew the exemption (govkit exemption add ... --until DATE) or close the gap it covered."""
    found = _attestations(ctx)
    exemptions = found.of_kind("exemption")
    broken = [f"seq {bad['seq']} does not hold: {bad['why']}" for bad in found.invalid if bad["kind"] == "exemption"]
    expired = [f"{a.predicate.get('control')} expired on {a.predicate.get('until')}" for a in exemptions
               if parse_date(str(a.predicate.get("until"))) < ctx.now.date()]
    standing = [f"{a.predicate.get('control')} until {a.predicate.get('until')} (by {a.person.name})"
                for a in exemptions if parse_date(str(a.predicate.get("until"))) >= ctx.now.date()]
    problems = expired + broken
    return Result(not problems, "; ".join(problems) if problems else
                  (f"in force: {'; '.join(standing)}" if standing else "no exemption in force"),
                  {"items": problems or standing})


@check(id="GOV-023", title="Impact assessment referenced", severity="warning",
       references={"ISO/IEC 42001": "A.5.2-A.5.4", "EU AI Act": "Art. 27", "GDPR": "Art. 35"},
       crosswalk="impact_assessment_present")
def impact_assessment_present(ctx: Context):
    """What it checks: a valid impact-assessment attestation (an AI impact assessment, FRIA or DPIA
    reference) over the model now under review.
    Why it matters: the AI Act (Art. 27), GDPR (Art. 35) and ISO 42001 ask for assessed impacts.
    How to fix: govkit attest impact-assessment --statement TEXT --reference DOC --key KEY."""
    found, notes = _about_model(ctx, "impact-assessment")
    if not found:
        return Result(False, "no impact assessment referenced for the model now under review"
                      + (f" ({notes})" if notes else ""), {})
    newest = found[-1]
    return Result(True, f"{newest.predicate.get('statement')} (reference {newest.predicate.get('reference') or '-'}, "
                        f"by {newest.person.name}, {newest.record.ts_start[:10]})", {"record": newest.record.record_id})


@check(id="GOV-024", title="Contingency and fallback tested", severity="warning",
       references={"OSFI E-23": "P3.6", "EU AI Act": "Art. 15(4)"}, crosswalk="contingency_plan_present")
def contingency_plan_present(ctx: Context):
    """What it checks: the newest valid contingency-test attestation over the model now under
    review says the fallback was tested and passed, within [people] review_max_age_days.
    Why it matters: E-23 P3.6 asks for contingency; the AI Act for fail-safe plans.
    How to fix: test the fallback, then govkit attest contingency-test --outcome passed --statement TEXT."""
    found, notes = _about_model(ctx, "contingency-test")
    if not found:
        return Result(False, "no contingency test on record for the model now under review"
                      + (f" ({notes})" if notes else ""), {})
    newest = found[-1]
    age = _age_days(ctx, newest.record.ts_start)
    problems = ([f"the test of {newest.record.ts_start[:10]} failed"] if newest.predicate.get("outcome") != "passed"
                else []) + ([f"it is {age:.0f} days old"] if age > ctx.settings.people.review_max_age_days else [])
    return Result(not problems, "; ".join(problems) if problems else
                  f"fallback tested {newest.record.ts_start[:10]}: {newest.predicate.get('statement')}", {"items": problems})


@check(id="GOV-025", title="Board report current and acknowledged", severity="warning",
       references={"OSFI E-23": "P1.1-P1.2", "SR 11-7": "board reporting", "NIST AI RMF": "GOVERN 2.3"},
       crosswalk="board_report_current")
def board_report_current(ctx: Context):
    """What it checks: a board report was rendered within [people] board_report_max_age_days, and a
    roster board member acknowledged it (govkit attest board-ack) after it was rendered.
    Why it matters: E-23 has the board informed; a report nobody received informs no one.
    How to fix: render the board report (govkit report board) and have a board member sign the acknowledgement."""
    reports = [r for r in ctx.records("report") if (r.details or {}).get("kind") == "board"]
    if not reports:
        return Result(False, "no board report on record: govkit report board", {})
    newest = reports[-1]
    age = _age_days(ctx, newest.ts_start)
    limit = ctx.settings.people.board_report_max_age_days
    acks = [a for a in _attestations(ctx).of_kind("board-ack") if a.record.seq > newest.seq]
    problems = ([f"the newest is {age:.0f} days old (policy: {limit})"] if age > limit else []) + (
        [] if acks else ["no board member acknowledged it"])
    return Result(not problems, f"board report of {newest.ts_start[:10]}" + (": " + "; ".join(problems) if problems
                  else f", acknowledged by {acks[-1].person.name}"), {"items": problems})


@check(id="GOV-026", title="Decommissioned model no longer answers", severity="warning",
       references={"OSFI E-23": "Model decommission, P2.1", "NIST AI RMF": "GOVERN 1.7"}, crosswalk="decommission_record")
def decommission_record(ctx: Context):
    """What it checks: no model file that a valid decommission notice covers answered live traffic
    after the notice.
    Why it matters: a decommissioned model still in use is an unmanaged model.
    How to fix: stop the model's server, or withdraw the notice (govkit attestations revoke --record ID)."""
    notices = _attestations(ctx).of_kind("decommission")
    if not notices:
        return Result(True, "no decommission notice on record: no decommissioned model can be in use", {})
    late = []
    for notice in notices:
        used = [r for r in ctx.decisions if r.seq > notice.record.seq and r.artifact_sha256 in notice.artifacts]
        if used:
            late.append(f"{len(used)} call(s) after the notice of {notice.record.ts_start[:10]} "
                        f"(first seq {used[0].seq})")
    return Result(not late, "; ".join(late) if late else f"{len(notices)} notice(s); no call since", {"items": late})


@check(id="GOV-027", title="Overseers on the roster with current training", severity="warning",
       references={"EU AI Act": "Art. 14(4)(b), 26(2)", "NIST AI RMF": "GOVERN 3.2"},
       crosswalk="oversight_assignee_competent")
def oversight_assignee_competent(ctx: Context):
    """What it checks: the roster names at least one person with the oversight role whose training
    date is within [people] training_max_age_days.
    Why it matters: the AI Act asks that overseers be competent, trained and aware of automation bias.
    How to fix: train the overseers; the owner records them with govkit people add NAME --role oversight --trained DATE."""
    roster = _attestations(ctx).roster
    overseers = roster.with_role("oversight")
    if not overseers:
        return Result(False, "no one on the roster has the oversight role", {})
    limit = ctx.settings.people.training_max_age_days
    current: list[str] = []
    stale: list[str] = []
    for person in overseers:
        try:
            days = (ctx.now.date() - parse_date(person.trained)).days if person.trained else None
        except ValueError:
            days = None
        (current if days is not None and days <= limit else stale).append(
            f"{person.name} (trained {person.trained or 'never recorded'})")
    return Result(bool(current), f"current: {', '.join(current)}" if current else
                  f"no overseer trained within {limit} days: {', '.join(stale)}", {"items": stale})


@check(id="GOV-028", title="Known limitations have a compensating control", severity="warning",
       references={"OSFI E-23": "Model approval", "NIST AI RMF": "MANAGE 1.4"}, crosswalk="limitations_mitigated")
def limitations_mitigated(ctx: Context):
    """What it checks: each limitation the inventory lists ([model] limitations) is in the chained
    register with its compensating control and owner (govkit limitation add).
    Why it matters: E-23's approval accepts limitations with their mitigants, not bare.
    How to fix: govkit limitation add TEXT --control TEXT --owner NAME for each."""
    from govkit.remediation import limitations

    register = {str(item["limitation"]).strip().lower() for item in limitations(ctx.records("limitation"))}
    listed = [str(item) for item in ctx.settings.model.limitations]
    bare = [item for item in listed if item.strip().lower() not in register]
    if not listed and not register:
        return Result(False, "no limitation recorded at all: state them ([model] limitations) with their controls", {})
    return Result(not bare, f"no compensating control: {', '.join(bare)}" if bare else
                  f"{len(register)} limitation(s), each with its control", {"items": bare})


TIER_REQUIREMENTS = {"critical": ("review", "approval", "impact-assessment", "contingency-test"),
                     "high": ("review", "approval", "impact-assessment", "contingency-test"),
                     "medium": ("review", "approval"), "low": ("review", "approval")}


@check(id="GOV-029", title="Governance intensity follows the tier", severity="warning",
       references={"OSFI E-23": "P2.3", "NIST AI RMF": "GOVERN 1.3"}, crosswalk="tier_policy_applied")
def tier_policy_applied(ctx: Context):
    """What it checks: the signed statements the model's tier requires are on record over the model
    now under review: a review and an approval from low up, and an impact assessment and a
    contingency test for high and critical models.
    Why it matters: E-23 scales governance with the tier; a high-tier model governed like a low one is not.
    How to fix: collect the missing statements (govkit review sign, approve, attest ...)."""
    if ctx.tier == "negligible":
        raise Skip("a negligible-tier model needs no signed statement beyond its exemption")
    if ctx.tier == "unrated":
        return Result(False, "the model has no risk tier, so what it requires is unknown: govkit inventory rate", {})
    found = _attestations(ctx)
    missing = [kind for kind in TIER_REQUIREMENTS[ctx.tier] if not found.about(kind, ctx.reviewed_artifacts)]
    return Result(not missing, f"a {ctx.tier}-tier model lacks: {', '.join(missing)}" if missing else
                  f"every statement a {ctx.tier}-tier model requires is on record", {"items": missing})

