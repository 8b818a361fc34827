"""The EDGE scorecard: one colour per principle from the gate's recorded results, and the overall
statement of risk-appetite status. The rule is data (RULE), printed under the scorecard."""

from __future__ import annotations

from typing import Any

__all__ = ["PRINCIPLES", "RULE", "fleet_gaps", "overall", "scorecard"]

PRINCIPLES = {"EXP": "Explainability", "DAT": "Data", "GOV": "Governance", "ETH": "Ethics"}

RULE = ("Red: a blocking control failed or errored, or the audit log does not verify. No evidence: a "
        "blocking control has no evidence, or the gate has not been run (never shown as green). Amber: a "
        "warning-level control failed or has no evidence, or a model call of the period is synthetic (no "
        "model ran). Green: every control passed or does not apply. "
        "With a fleet section, red also when a device's log is forked, rolled back or altered or an unknown "
        "device shipped evidence, and amber at best while the fleet's evidence is incomplete (a device not "
        "synced, a gap, a late acknowledgement, a model with no experiment on the central store, no witness key "
        "or no device registry).")


def scorecard(gate: dict[str, Any] | None, verify: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{principle: {"colour": red|no-evidence|amber|green, "why": [...], "checks": [...]}}."""
    cards: dict[str, dict[str, Any]] = {}
    for prefix, name in PRINCIPLES.items():
        if gate is None:
            cards[name] = {"colour": "no-evidence", "why": ["the pre-deployment gate has not been run"], "checks": []}
            continue
        results = {cid: r for cid, r in sorted(gate["results"].items()) if cid.startswith(prefix + "-")}
        blocking_bad = [cid for cid, r in results.items() if r["blocking"] and r["status"] in ("FAIL", "ERROR")]
        blocking_missing = [cid for cid, r in results.items() if r["blocking"] and r["status"] == "NO EVIDENCE"]
        soft = [cid for cid, r in results.items() if not r["blocking"] and r["status"] in ("WARN", "NO EVIDENCE", "ERROR")]
        why = []
        if prefix == "GOV" and not verify["ok"]:
            why.append("the audit log does not verify")
        if blocking_bad:
            why.append("blocking control(s) failed: " + ", ".join(blocking_bad))
        if blocking_missing:
            why.append("no evidence for blocking control(s): " + ", ".join(blocking_missing))
        if soft:
            why.append("warning-level finding(s): " + ", ".join(soft))
        if not results:
            why.append("no control of this principle was run")
        colour = ("red" if blocking_bad or (prefix == "GOV" and not verify["ok"]) else
                  "no-evidence" if blocking_missing or not results else "amber" if soft else "green")
        cards[name] = {"colour": colour, "why": why or ["every control passed or does not apply"],
                       "checks": list(results)}
    return cards


def overall(cards: dict[str, dict[str, Any]], verify: dict[str, Any],
            fleet: dict[str, Any] | None = None, synthetic: int = 0) -> dict[str, str]:
    colours = {card["colour"] for card in cards.values()}
    if not verify["ok"]:
        return {"colour": "red", "statement": "Not within risk appetite: the audit log does not verify, so none "
                                              "of its evidence can be relied on until that is resolved."}
    if fleet is not None and not fleet["totals"]["integrity"]:
        return {"colour": "red", "statement": "Not within risk appetite: the fleet's central evidence shows a forked, "
                                              "rolled-back or altered device log, or an unknown device."}
    if "red" in colours:
        return {"colour": "red", "statement": "Not within risk appetite: at least one blocking control fails."}
    if "no-evidence" in colours:
        return {"colour": "no-evidence", "statement": "Risk-appetite status not established: the evidence for at "
                                                      "least one blocking control is missing."}
    if not verify["trusted"]:
        return {"colour": "amber", "statement": "Within risk appetite on the evidence, but the log was checked "
                                                "against its own claims only (no trusted device key)."}
    if synthetic:
        return {"colour": "amber", "statement": f"Within risk appetite on the evidence, but {synthetic} of the "
                                                "period's model calls are synthetic (no model ran): the monitoring "
                                                "evidence describes a demonstration, not a model in use."}
    gaps = fleet_gaps(fleet) if fleet is not None else []
    if gaps:
        return {"colour": "amber", "statement": "Within risk appetite on the evidence held, but the fleet's evidence "
                                                "is incomplete: " + "; ".join(gaps) + "."}
    if "amber" in colours:
        return {"colour": "amber", "statement": "Within risk appetite, with warning-level findings to address."}
    return {"colour": "green", "statement": "Within risk appetite: every control passed on verified evidence."}


def fleet_gaps(fleet: dict[str, Any]) -> list[str]:
    """Why a fleet's evidence is incomplete, in short words (empty: it is complete)."""
    totals = fleet["totals"]
    gaps = []
    if not fleet["devices"]:
        gaps.append("no device has synced")
    if fleet["experiments_missing"]:
        gaps.append("no experiment on the central store for " + ", ".join(fleet["experiments_missing"]))
    not_synced = len(totals["never_synced"]) + len(totals["silent"])
    if not_synced:
        gaps.append(f"{not_synced} device(s) not synced")
    if totals["findings"].get("gap"):
        gaps.append(f"{len(totals['findings']['gap'])} device(s) with a gap")
    if totals["late_acks"]:
        gaps.append(f"{totals['late_acks']} late acknowledgement(s)")
    if not fleet["witness_public_key"]:
        gaps.append("acknowledgements not verified (no witness key)")
    if fleet["registry"] is None:
        gaps.append("no device registry")
    return gaps
