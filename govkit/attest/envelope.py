"""in-toto Statements (v1) in DSSE envelopes, signed with Ed25519: the format in-toto's own
library verifies (in_toto.models.metadata.Envelope), so that an auditor needs no govkit to check
who signed what."""

from __future__ import annotations

import base64
import json
from typing import Any

from ..audit.checkpoints import key_id, public_key_b64

__all__ = ["PAYLOAD_TYPE", "PREDICATE_PREFIX", "STATEMENT_TYPE", "pae", "sign_statement", "statement",
           "verify_envelope"]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_PREFIX = "https://govkit.dev/attestation/"


def statement(kind: str, subjects: list[dict[str, Any]], predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto Statement: `subjects` as [{"name", "digest": {"sha256": hex}}]."""
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": f"{PREDICATE_PREFIX}{kind}/v1",
            "predicate": predicate}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign_statement(body: dict[str, Any], private_key: Any) -> dict[str, Any]:
    """A DSSE envelope over the statement, signed by `private_key` (keyid: govkit's key id)."""
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signature = private_key.sign(pae(PAYLOAD_TYPE, payload))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [{"keyid": key_id(public_key_b64(private_key)),
                            "sig": base64.b64encode(signature).decode("ascii")}]}


def verify_envelope(envelope: Any, public_b64: str) -> dict[str, Any] | None:
    """The statement, when one of the envelope's signatures is valid under `public_b64`; else None."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        if envelope["payloadType"] != PAYLOAD_TYPE:
            return None
        payload = base64.b64decode(envelope["payload"], validate=True)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
        wanted = key_id(public_b64)
        for signature in envelope["signatures"]:
            if signature.get("keyid") != wanted:
                continue
            try:
                key.verify(base64.b64decode(signature["sig"], validate=True), pae(PAYLOAD_TYPE, payload))
            except InvalidSignature:
                continue
            body = json.loads(payload)
            return body if isinstance(body, dict) and body.get("_type") == STATEMENT_TYPE else None
    except (KeyError, TypeError, ValueError):
        return None
    return None
