"""The roster: who may sign for this model, in which role, with which key.

Each entry is a `roster-entry` attestation signed by the model owner's key, which govkit.toml
pins as `[people] owner_public_key` (the owner's own entry is signed by that key too). Editing
the roster is therefore visible: an entry that the owner's key did not sign is not on it, and a
revocation, also signed by the owner, takes a key or a statement off it from then on. Separation
of duties is checked on the keys, not on names: a reviewer's key is not a developer's, an
approver's is neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROLES", "Person", "Roster"]

ROLES = ("owner", "developer", "reviewer", "approver", "oversight", "board")


@dataclass(frozen=True)
class Person:
    name: str
    roles: tuple[str, ...]
    public_key: str
    key_id: str
    trained: str  # YYYY-MM-DD, "" when not recorded
    record_id: str  # the chained roster entry

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "roles": list(self.roles), "key_id": self.key_id, "trained": self.trained,
                "record_id": self.record_id}


@dataclass
class Roster:
    """The people as the chain's owner-signed entries give them, and the revoked keys and statements."""

    owner_key: str
    people: dict[str, Person] = field(default_factory=dict)  # key id -> person
    revoked_keys: dict[str, str] = field(default_factory=dict)  # key id -> when
    revoked_statements: dict[str, str] = field(default_factory=dict)  # record id -> when
    rejected: list[str] = field(default_factory=list)  # entries not signed by the owner's key

    @classmethod
    def from_records(cls, owner_key: str, records: list[Any]) -> Roster:
        """Replay `attestation` records (oldest first): roster entries and revocations count only
        when the owner's key signed them."""
        from ..audit.checkpoints import key_id
        from .envelope import PREDICATE_PREFIX, verify_envelope

        roster = cls(owner_key)
        if not owner_key:
            return roster
        for record in records:
            details = record.details or {}
            if details.get("kind") not in ("roster-entry", "revocation"):
                continue
            body = verify_envelope(details.get("envelope"), owner_key)
            if body is None:
                roster.rejected.append(record.record_id)
                continue
            predicate = body.get("predicate") or {}
            if body.get("predicateType") == f"{PREDICATE_PREFIX}roster-entry/v1":
                public = str(predicate.get("public_key") or "")
                roles = tuple(r for r in predicate.get("roles") or () if r in ROLES)
                if public and roles:
                    person = Person(str(predicate.get("name") or ""), roles, public, key_id(public),
                                    str(predicate.get("trained") or ""), record.record_id)
                    roster.people[person.key_id] = person
            elif body.get("predicateType") == f"{PREDICATE_PREFIX}revocation/v1":
                if predicate.get("key_id"):
                    roster.revoked_keys[str(predicate["key_id"])] = record.ts_start
                if predicate.get("record_id"):
                    roster.revoked_statements[str(predicate["record_id"])] = record.ts_start
        return roster

    def signer(self, envelope: Any) -> tuple[Person, dict[str, Any]] | None:
        """The roster person whose key validly signed the envelope, and the statement; None when no
        current (unrevoked) roster key signed it."""
        from .envelope import verify_envelope

        for signature in (envelope or {}).get("signatures") or []:
            person = self.people.get(str(signature.get("keyid")))
            if person is None or person.key_id in self.revoked_keys:
                continue
            body = verify_envelope(envelope, person.public_key)
            if body is not None:
                return person, body
        return None

    def listing(self) -> list[dict[str, Any]]:
        """Each person as the reports and `govkit people list` show them, revoked keys marked."""
        return [p.to_dict() | {"revoked": p.key_id in self.revoked_keys} for p in self.people.values()]

    def with_role(self, role: str) -> list[Person]:
        return [p for p in self.people.values() if role in p.roles and p.key_id not in self.revoked_keys]
