"""Monotonic ULIDs: 48-bit millisecond time + 80 random bits, Crockford base32, sortable."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 characters
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def new_ulid(now_ns: int | None = None) -> str:
    """A ULID strictly greater than the previous one made in this process (`now_ns`: the
    time to stamp, when the caller has just read the clock)."""
    global _last_ms, _last_rand
    with _lock:
        ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand += 1
            if _last_rand >= 1 << 80:  # overflow within one millisecond: borrow the next one
                ms += 1
                _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
        _last_ms = ms
        value = (ms << 80) | _last_rand
    return _encode(value)


def _encode(value: int) -> str:
    """Crockford base32 of a 128-bit value: 26 characters of 5 bits, as the top 3 bits alone,
    12 pairs of 10 bits (one table lookup each), then the last 5 bits."""
    pairs = _PAIRS
    return (_ALPHABET[value >> 125] + "".join([pairs[value >> shift & 1023] for shift in range(115, 0, -10)])
            + _ALPHABET[value & 31])
