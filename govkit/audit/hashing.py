"""Canonical JSON and the chain hash.

A record's `body` is stored as canonical JSON bytes and hashed exactly as stored, never
re-serialised. The chain hash is tagged with its algorithm so that a future change is detectable:

    record_hash = "sha256:" + sha256(canonical_json({"body": body, "prev_hash": prev, "seq": seq}))

Because the keys sort as body < prev_hash < seq, that envelope is built by concatenating bytes,
so any verifier can recompute it with a plain canonical-JSON encoder.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["GENESIS_HASH", "HASH_PREFIX", "canonical_json", "chain_hash", "content_digest"]

HASH_PREFIX = "sha256:"
GENESIS_HASH = HASH_PREFIX + "0" * 64


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN: the bytes that get hashed and stored."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def chain_hash(body: bytes, prev_hash: str, seq: int) -> str:
    envelope = b'{"body":%b,"prev_hash":"%b","seq":%d}' % (body, prev_hash.encode("ascii"), seq)
    return HASH_PREFIX + hashlib.sha256(envelope).hexdigest()


def content_digest(text: str) -> str:
    return HASH_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()
