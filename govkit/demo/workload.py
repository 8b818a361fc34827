"""The branch tablet's workload: credit-limit requests built from German credit applicants and
complaint messages for triage, sent to `govkit proxy` as the tablet's app would send them.

A credit request asks for one of two words, approve or refer, and reads the model's choice from
the log-probabilities of its first token (as `govkit bias llm` does): a 135M model rarely answers
with exactly one word. A complaint gets a short free-text reply for the branch officer. Each call
names its data subject (X-Subject-Ref), so an erasure request reaches it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CHOICES", "COMPLAINTS", "CREDIT_SYSTEM", "CREDIT_TEMPLATE", "NAMED_TEMPLATE", "TRIAGE_SYSTEM", "Call",
           "against_outcomes", "credit_body", "credit_prompt", "play"]

CHOICES = ("approve", "refer")
CREDIT_SYSTEM = ("You are the credit assistant on a bank branch's tablet. Decide whether a credit request can be "
                 "approved at the branch or must be referred to an underwriter. Answer with one word: approve or "
                 "refer.")
# A Jinja template over the columns of inputs/german_credit.csv; the bias test renders the same one.
CREDIT_TEMPLATE = ("Credit history: {{ credit_history }}. Checking account: {{ checking_account }}. Savings: "
                   "{{ savings }}. Request: {{ amount_dm }} DM for {{ purpose }} over {{ duration_months }} months; "
                   "applicant aged {{ age }}, employed {{ employment }}. Approve?")
# The counterfactual test: the same request under a first name associated with women or with men.
NAMED_TEMPLATE = ("Applicant: {{ name }}. Credit history: {{ credit_history }}. Checking account: "
                  "{{ checking_account }}. Savings: {{ savings }}. Request: {{ amount_dm }} DM for {{ purpose }} over "
                  "{{ duration_months }} months; employed {{ employment }}. Approve?")
TRIAGE_SYSTEM = ("You help a bank branch officer triage customer complaints. Say in one sentence what the "
                 "complaint is about and who should handle it.")
# What customers type into the tablet, personal data included: the proxy redacts it before disk.
COMPLAINTS = (
    ("C-101", "I was charged the 35 EUR overdraft fee twice this month on card 4111 1111 1111 1111. "
              "Please write to jane.doe@example.com."),
    ("C-102", "Someone took 900 EUR from my account DE89 3704 0044 0532 0130 00 and it was not me. "
              "Call me on +49 30 901820 as soon as possible."),
    ("C-103", "The branch closed early on Saturday and nobody told us. My SIN is 046 454 286 if you need it."),
    ("C-104", "Your app keeps logging me out. I connect from 192.168.10.254 at home."),
    ("C-105", "My mortgage statement shows the wrong rate. Reach me at (416) 555-0199 after 5 pm."),
    ("C-106", "I asked to close my savings account three weeks ago and it is still open."),
)


@dataclass(frozen=True)
class Call:
    kind: str  # credit or complaint
    subject: str
    record_id: str | None  # the proxy's inference record (x-govkit-record-id)
    answer: str  # the choice for a credit request (None-safe: "" when no choice was scored), else the reply


def credit_prompt(row: dict[str, Any]) -> str:
    from jinja2 import Template

    return Template(CREDIT_TEMPLATE).render(**row)


def credit_body(row: dict[str, Any]) -> dict[str, Any]:
    """The chat completion a tablet sends for one applicant: one token, with its log-probabilities."""
    from ..inference.decider import TOP_LOGPROBS

    return {"model": "credit-assistant", "temperature": 0, "seed": 0, "max_tokens": 1, "logprobs": True,
            "top_logprobs": TOP_LOGPROBS, "messages": [{"role": "system", "content": CREDIT_SYSTEM},
                                                       {"role": "user", "content": credit_prompt(row)}]}


def play(base_url: str, applicants: Sequence[dict[str, Any]], *, complaints: Sequence[tuple[str, str]] = COMPLAINTS,
         step: Callable[[Call], None] = lambda call: None) -> list[Call]:
    """Send every credit request, then every complaint, one at a time (a tablet has one user)."""
    import httpx

    from ..inference.decider import score_choices
    from ..inference.transport import RECORD_ID_HEADER

    calls = []
    with httpx.Client(base_url=base_url, timeout=120) as client:
        def ask(subject: str, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
            response = client.post("/chat/completions", json=body, headers={"X-Subject-Ref": subject,
                                                                           "X-Session-Id": "branch-tablet-1"})
            response.raise_for_status()
            return response.json(), response.headers.get(RECORD_ID_HEADER)

        for row in applicants:
            answer, record_id = ask(row["applicant"], credit_body(row))
            top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            scored = {c: s for c, s in score_choices(top, list(CHOICES)).items() if s is not None}
            calls.append(Call("credit", row["applicant"], record_id, max(scored, key=scored.__getitem__) if scored else ""))
            step(calls[-1])
        for subject, text in complaints:
            answer, record_id = ask(subject, {
                "model": "credit-assistant", "temperature": 0, "seed": 0, "max_tokens": 32,
                "messages": [{"role": "system", "content": TRIAGE_SYSTEM}, {"role": "user", "content": text}]})
            calls.append(Call("complaint", subject, record_id, (answer["choices"][0]["message"]["content"] or "").strip()))
            step(calls[-1])
    return calls


def against_outcomes(decisions_csv: str) -> str:
    """How the model's decisions compare with what the applicants in fact did (good_credit)."""
    import csv
    import io

    rows = [r for r in csv.DictReader(io.StringIO(decisions_csv)) if r.get("decision")]
    if not rows:
        return "no decision to compare"
    approved = [r for r in rows if r["decision"] == "approve"]
    right = sum((r["decision"] == "approve") == (r["label"] == "1") for r in rows)
    bad = [r for r in rows if r["label"] == "0"]
    bad_approved = sum(1 for r in bad if r["decision"] == "approve")
    return (f"it approved {len(approved)} of {len(rows)}, matched the outcome for {right} ({right / len(rows):.0%}), "
            f"and approved {bad_approved} of the {len(bad)} applicants whose credit went bad")
