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

from ..digests import PREFIX, sha256_digest

__all__ = ["ENVELOPE", "GENESIS_HASH", "HASH_PREFIX", "canonical_json", "chain_hash", "content_digest", "encode_body"]

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; plain json is the fallback
    _orjson = None

HASH_PREFIX = PREFIX
GENESIS_HASH = HASH_PREFIX + "0" * 64


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN: the bytes that get hashed and stored."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def encode_body(fields: dict[str, Any]) -> bytes:
    """A record body's stored bytes: canonical JSON, by orjson when it is installed (ten times
    faster than the json module; the two differ only in the exponent format of some floats, and
    a body is hashed as stored, never re-encoded). Callers reject NaN and infinity first:
    orjson would write them as null."""
    if _orjson is not None:
        try:
            return _orjson.dumps(fields, option=_orjson.OPT_SORT_KEYS)
        except TypeError:  # what orjson does not take (non-string keys, huge ints): the json module
            pass
    return canonical_json(fields)


# The one spelling of the envelope: ENVELOPE % (body, prev_hash as ASCII bytes, seq).
ENVELOPE = b'{"body":%b,"prev_hash":"%b","seq":%d}'


def chain_hash(body: bytes, prev_hash: str, seq: int) -> str:
    return HASH_PREFIX + hashlib.sha256(ENVELOPE % (body, prev_hash.encode("ascii"), seq)).hexdigest()


def content_digest(text: str) -> str:
    return sha256_digest(text)
