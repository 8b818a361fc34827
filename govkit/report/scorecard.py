"""The EDGE scorecard: one colour per principle from the gate's recorded results, and the overall
statement of risk-appetite status. The rule is data (RULE), printed under the scorecard."""

from __future__ import annotations

from typing import Any

__all__ = ["PRINCIPLES", "RULE", "overall", "scorecard"]

PRINCIPLES = {"EXP": "Explainability", "DAT": "Data", "GOV": "Governance", "ETH": "Ethics"}

RULE = ("Red: a blocking control failed or errored, or the audit log does not verify. No evidence: a "
        "blocking control has no evidence, or the gate has not been run (never shown as green). Amber: a "
        "warning-level control failed or has no evidence. Green: every control passed or does not apply.")


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


def overall(cards: dict[str, dict[str, Any]], verify: dict[str, Any]) -> dict[str, str]:
    colours = {card["colour"] for card in cards.values()}
    if not verify["ok"]:
        return {"colour": "red", "statement": "Not within risk appetite: the audit log does not verify, so none "
                                              "of its evidence can be relied on until that is resolved."}
    if "red" in colours:
        return {"colour": "red", "statement": "Not within risk appetite: at least one blocking control fails."}
    if "no-evidence" in colours:
        return {"colour": "no-evidence", "statement": "Risk-appetite status not established: the evidence for at "
                                                      "least one blocking control is missing."}
    if not verify["trusted"]:
        return {"colour": "amber", "statement": "Within risk appetite on the evidence, but the log was checked "
                                                "against its own claims only (no trusted device key)."}
    if "amber" in colours:
        return {"colour": "amber", "statement": "Within risk appetite, with warning-level findings to address."}
    return {"colour": "green", "statement": "Within risk appetite: every control passed on verified evidence."}
