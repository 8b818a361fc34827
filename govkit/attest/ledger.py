"""Attestations in the chain: what a person signed, over which subject, and whether it holds.

A signed statement's subject is the exact model artifact (each reviewed model file's sha256),
the evidence snapshot it was judged on (the chain's head: store, seq and hash) and the policy
digest. It is chained as an `attestation` record with its DSSE envelope, and mirrored to MLflow.
`Attestations` reads them back against the roster: a statement counts only when a current
roster key signed it, in a role allowed for its kind, and nobody revoked it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from ..digests import sha256_digest
from ..errors import InputError
from .envelope import PREDICATE_PREFIX, sign_statement, statement
from .roster import Person, Roster

__all__ = ["KINDS", "KIND_ROLES", "Attestation", "Attestations", "add_to_roster", "current_subject",
           "pin_owner_key", "policy_digest", "record_attestation"]

# kind -> the roles whose keys may sign it
KIND_ROLES: dict[str, tuple[str, ...]] = {
    "review": ("reviewer",), "approval": ("approver",), "exemption": ("approver",),
    "impact-assessment": ("owner", "reviewer", "approver"), "contingency-test": ("owner", "oversight", "developer"),
    "decommission": ("owner", "approver"), "board-ack": ("board",),
    "roster-entry": ("owner",), "revocation": ("owner",),
}
KINDS = tuple(KIND_ROLES)
RECOMMENDATIONS = ("approve", "approve-with-conditions", "reject")
# Free text in a statement: redacted before it is signed, as the chain cannot be purged.
FREE_TEXT = frozenset({"findings", "conditions", "residual_risk", "why", "statement", "reference", "reason"})


def _redacted(log: Any, value: Any) -> Any:
    if isinstance(value, str):
        return log.redact(value[:4000])
    if isinstance(value, list):
        return [_redacted(log, item) for item in value[:100]]
    return value


def policy_digest(settings: Any) -> str:
    """The digest of the policy a statement was judged under ([policy] as govkit.toml gives it)."""
    return sha256_digest(json.dumps(dataclasses.asdict(settings.policy), sort_keys=True, default=str))


def current_subject(log: Any, settings: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(in-toto subjects, evidence) for a statement made now: the reviewed model files, the
    evidence snapshot (the chain's head) and the policy."""
    from ..lineage import Lineage
    from ..lineage.reviewed import reviewed_artifacts
    from ..tracking import Tracker

    graph = Lineage(log, settings=settings, tracker=Tracker.disabled()).graph()
    live = [r for r in log.query(event_type="inference") if r.purpose not in ("evaluation", "explanation")]
    artifacts = sorted(reviewed_artifacts(graph, live))
    if not artifacts:
        raise InputError("no model under review: register the model file and link it to the deployment "
                         "(govkit lineage model add FILE; govkit lineage link MODEL deployment), or serve it "
                         "through govkit proxy --model-artifact FILE")
    stats = log.stats()
    head = (stats["head_seq"], stats["head_hash"])
    evidence = {"store_id": log.meta.get("store_id"), "head_seq": head[0], "head_hash": head[1],
                "policy_sha256": policy_digest(settings)}
    subjects = [{"name": f"model-artifact:{digest.removeprefix('sha256:')[:16]}",
                 "digest": {"sha256": digest.removeprefix("sha256:")}} for digest in artifacts]
    subjects.append({"name": "govkit-evidence-head", "digest": {"sha256": str(head[1]).removeprefix("sha256:")}})
    subjects.append({"name": "govkit-policy", "digest": {"sha256": evidence["policy_sha256"].removeprefix("sha256:")}})
    return subjects, evidence


def record_attestation(log: Any, settings: Any, kind: str, predicate: dict[str, Any], private_key: Any, *,
                       subjects: list[dict[str, Any]] | None = None, evidence: dict[str, Any] | None = None) -> Any:
    """Sign a statement of `kind` over the current subject (or the given one) and chain it."""
    from ..evidence import evidence_run
    from ..tracking import Tracker

    if kind not in KIND_ROLES:
        raise InputError(f"expected one of {', '.join(KINDS)}", parameter="kind", value=kind)
    if subjects is None:
        subjects, evidence = current_subject(log, settings)
    predicate = {key: _redacted(log, value) if key in FREE_TEXT else value for key, value in predicate.items()}
    body = statement(kind, subjects, {**predicate, **({"evidence": evidence} if evidence else {})})
    envelope = sign_statement(body, private_key)
    tracker = Tracker.from_settings(settings, log.path)
    with evidence_run(log, tracker, f"attestation: {kind}", {"govkit.event": "attestation",
                                                           "govkit.attestation": kind}) as run:
        run.run.log_dict(envelope, "attestation.dsse.json")
        run.run.log_dict(body, "statement.json")
        return run.append("attestation", model_id=settings.model.id, details={
            "kind": kind, "key_id": envelope["signatures"][0]["keyid"], "envelope": envelope})


def add_to_roster(log: Any, settings: Any, owner_key: Any, *, name: str, roles: list[str], public_key: str,
                  trained: str = "") -> Any:
    """Chain a roster entry for a person's public key, signed with the model owner's private key."""
    import base64
    import hashlib

    subject = [{"name": "person-key", "digest": {"sha256": hashlib.sha256(base64.b64decode(public_key)).hexdigest()}}]
    return record_attestation(log, settings, "roster-entry", {"name": name, "roles": sorted(set(roles)),
                                                              "public_key": public_key, "trained": trained},
                              owner_key, subjects=subject)


def pin_owner_key(config: Any, public_key: str) -> None:
    """Write the roster's anchor, [people] owner_public_key, into govkit.toml (comments kept)."""
    import tomlkit

    document = tomlkit.parse(config.read_text(encoding="utf-8"))
    document.setdefault("people", tomlkit.table())["owner_public_key"] = public_key
    config.write_text(tomlkit.dumps(document), encoding="utf-8")


@dataclass
class Attestation:
    kind: str
    record: Any
    person: Person
    statement: dict[str, Any]

    @property
    def predicate(self) -> dict[str, Any]:
        return self.statement.get("predicate") or {}

    @property
    def artifacts(self) -> set[str]:
        return {"sha256:" + s["digest"]["sha256"] for s in self.statement.get("subject") or []
                if str(s.get("name", "")).startswith("model-artifact:") and (s.get("digest") or {}).get("sha256")}

    def current_on(self, day: dt.date, key: str = "valid_until") -> bool:
        """Whether the statement's own end date (`key`) has not passed on `day`; no date, or one
        that does not parse, is not current."""
        from ..timestamps import parse_date

        try:
            return parse_date(str(self.predicate.get(key) or "")) >= day
        except ValueError:
            return False

    def to_dict(self) -> dict[str, Any]:
        evidence = self.predicate.get("evidence") or {}
        return {"kind": self.kind, "record_id": self.record.record_id, "seq": self.record.seq,
                "ts": self.record.ts_start, "signer": self.person.name, "roles": list(self.person.roles),
                "key_id": self.person.key_id, "artifacts": sorted(self.artifacts),
                "evidence_head_seq": evidence.get("head_seq"), "evidence_head_hash": evidence.get("head_hash"),
                "predicate": {k: v for k, v in self.predicate.items() if k != "evidence"}}


@dataclass
class Attestations:
    """The chained attestations read against the roster: those that hold, and those that do not with why."""

    roster: Roster
    valid: list[Attestation] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_records(cls, owner_key: str, records: list[Any]) -> Attestations:
        roster = Roster.from_records(owner_key, records)
        found = cls(roster)
        for record in records:
            details = record.details or {}
            kind = details.get("kind")
            if kind in ("roster-entry", "revocation"):
                continue
            why = found._why_not(record, kind)
            if isinstance(why, str):
                found.invalid.append({"record_id": record.record_id, "seq": record.seq, "kind": kind, "why": why})
            else:
                found.valid.append(why)
        return found

    def _why_not(self, record: Any, kind: Any) -> Attestation | str:
        if not self.roster.owner_key:
            return "no roster: govkit.toml sets no [people] owner_public_key"
        signed = self.roster.signer((record.details or {}).get("envelope"))
        if signed is None:
            return "not signed by a current roster key (a wrong or revoked key, or an edited statement)"
        person, body = signed
        if body.get("predicateType") != f"{PREDICATE_PREFIX}{kind}/v1":
            return f"the signed statement is a {body.get('predicateType')}, not a {kind}"
        if record.record_id in self.roster.revoked_statements:
            return f"revoked on {self.roster.revoked_statements[record.record_id][:10]}"
        allowed = KIND_ROLES.get(str(kind), ())
        if not set(allowed) & set(person.roles):
            return f"signed by {person.name}, whose roster roles ({', '.join(person.roles)}) may not sign a {kind}"
        return Attestation(str(kind), record, person, body)

    def of_kind(self, kind: str) -> list[Attestation]:
        return [a for a in self.valid if a.kind == kind]

    def about(self, kind: str, artifacts: set[str]) -> list[Attestation]:
        """The valid statements of `kind` whose subject covers every artifact in `artifacts`."""
        return [a for a in self.of_kind(kind) if artifacts and artifacts <= a.artifacts]
