"""Ongoing monitoring checks: what govkit monitor run found in the production calls."""

from __future__ import annotations

from govkit.checks import Context, NoEvidence, Result, check


@check(id="GOV-035", title="No drift or performance breach left unanswered", severity="warning",
       references={"OSFI E-23": "P3.6, P3.4", "EU AI Act": "Art. 72", "NIST AI RMF": "MEASURE 2.4, MANAGE 4.1"},
       crosswalk="drift_threshold_breach")
def drift_threshold_breach(ctx: Context):
    """What it checks: govkit monitor run has judged a window of production calls within two
    windows and a day of now, and no breach it opened is still unresolved (an overdue one is named
    as such).
    Why it matters: E-23 P3.6 expects drift and performance thresholds with escalation; a breach
    nobody answers is a control that did not work.
    How to fix: cron govkit monitor run; answer each breach (govkit monitor status) and resolve its
    incident with what was done (govkit audit incident resolve ID --note ...)."""
    import datetime as dt

    from govkit.monitoring.run import breach_details, breaches_open
    from govkit.monitoring.sketch import STEP
    from govkit.timestamps import parse_ts

    if ctx.log is None:
        raise NoEvidence("no audit log")
    windows = ctx.records("monitor_window")
    if not windows:
        raise NoEvidence("no monitored window: govkit monitor run (cron it)")
    step_days = STEP[ctx.settings.monitoring_plan().window] / dt.timedelta(days=1)
    newest = windows[-1]
    stale = ctx.age_days(newest) > 2 * step_days + 1
    still = breaches_open(ctx.records("incident"))
    items, overdue = [], []
    for record in still:
        d = breach_details(record)
        late = bool(d["due"]) and parse_ts(d["due"]) < ctx.now
        if late:
            overdue.append(record.record_id)
        items.append(f"{d['why']} (window {d['window']}, {d['owner']} by {d['due']}" + (", OVERDUE)" if late else ")"))
    if stale:
        items.append(f"the newest monitored window was chained {ctx.age_days(newest):.1f} days ago: monitoring stopped")
    return Result(not items, "; ".join(items) if items else
                  f"{len(windows)} windows monitored, no open breach (newest {newest.details['window']['start']})",
                  {"open_breaches": [r.record_id for r in still][:20], "overdue": overdue,
                   "newest_window": newest.record_id})
