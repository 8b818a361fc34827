"""People sign: a roster of people with their own Ed25519 keys and roles, and attestations
(reviews, approvals, exemptions, ...) as in-toto Statements in DSSE envelopes, whose subject is
the exact model artifact, the evidence snapshot and the policy they were judged under."""

from .envelope import PAYLOAD_TYPE, PREDICATE_PREFIX, sign_statement, statement, verify_envelope
from .ledger import KINDS, Attestations, current_subject, record_attestation
from .roster import ROLES, Person, Roster

__all__ = ["KINDS", "PAYLOAD_TYPE", "PREDICATE_PREFIX", "ROLES", "Attestations", "Person", "Roster",
           "current_subject", "record_attestation", "sign_statement", "statement", "verify_envelope"]
