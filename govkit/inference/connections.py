"""What one client may hold of the proxy: a cap on open connections, per client address and in
all, and a time limit for a request's head to arrive. A client that opens connections and sends
nothing (or sends its headers a byte at a time) gets them closed; it cannot starve the others.

The guard wraps aiohttp's protocol factory: each connection's protocol is aiohttp's own request
handler, behind a thin delegate that counts it and times its first request head.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConnectionGuard", "GuardPolicy"]

_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class GuardPolicy:
    max_connections: int = 1024  # open connections in all
    max_per_client: int = 128  # open connections from one client address
    header_timeout_s: float = 10.0  # from connect to the end of the first request head


@dataclass
class ConnectionGuard:
    """Wraps a protocol factory (aiohttp's `web.Server`)."""

    factory: Any
    policy: GuardPolicy = field(default_factory=GuardPolicy)
    open_total: int = 0
    by_client: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    timed_out: int = 0

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.factory())


class _Guarded(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard, inner: Any):
        self.guard, self.inner = guard, inner
        self.client: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.head = b""  # the first request head, until it is complete
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        guard, policy = self.guard, self.guard.policy
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if guard.open_total >= policy.max_connections or guard.by_client.get(client, 0) >= policy.max_per_client:
            guard.refused += 1
            transport.write(_REFUSED)
            transport.close()
            return
        self.client, self.transport = client, transport
        guard.open_total += 1
        guard.by_client[client] = guard.by_client.get(client, 0) + 1
        self.timer = asyncio.get_running_loop().call_later(policy.header_timeout_s, self._too_slow)
        self.inner.connection_made(transport)

    def _too_slow(self) -> None:
        self.timer = None
        self.guard.timed_out += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_TIMED_OUT)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            self.head = (self.head + data)[-65536:]
            if b"\r\n\r\n" in self.head:
                self.timer.cancel()
                self.timer, self.head = None, b""
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.client is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is None:
            return  # refused at once: never counted, never handed to aiohttp
        if self.timer is not None:
            self.timer.cancel()
        guard = self.guard
        guard.open_total -= 1
        left = guard.by_client.get(self.client, 1) - 1
        if left:
            guard.by_client[self.client] = left
        else:
            guard.by_client.pop(self.client, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
