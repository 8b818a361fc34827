"""httpx transports that audit OpenAI-API calls made by any httpx-based client (the openai SDK).

    client = govkit.audited_client(openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="-"))

The same records as `govkit proxy`, without a proxy process: the call is recorded durably before
the client sees the answer (for a stream, before its final `[DONE]` event). The classes are built
for the HTTP library the client uses: `httpx`, or `httpx2` (what recent openai releases use),
which share one API.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ..audit import AuditLog
from .calls import Call, EventStream, answer_of, kind_of
from .fingerprint import ArtifactIdentity

__all__ = ["RECORD_ID_HEADER", "AsyncAuditingTransport", "AuditingTransport", "transport_classes"]

if TYPE_CHECKING:
    AuditingTransport: type
    AsyncAuditingTransport: type


def __getattr__(name: str) -> type:
    """`from govkit.inference.transport import AuditingTransport`: the classes for httpx, built on
    first use (importing this module does not import httpx)."""
    if name == "AuditingTransport":
        return transport_classes("httpx")[0]
    if name == "AsyncAuditingTransport":
        return transport_classes("httpx")[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Auditing:
    def __init__(self, log: AuditLog, *, identity: ArtifactIdentity | None = None, model_id: str | None = None,
                 runtime: str | None = None, purpose: str | None = None):
        self.log = log
        self.base: dict[str, Any] = {**(identity.record_fields() if identity else {})}
        for key, value in (("model_id", model_id), ("runtime", runtime), ("purpose", purpose)):
            if value:
                self.base[key] = value

    def _start(self, request: Any) -> tuple[Call | None, dict[str, Any]]:
        kind = kind_of(request.url.path) if request.method == "POST" else None
        if kind is None:
            return None, {}
        call = Call(kind, request.url.path, dict(self.base))
        try:
            payload = json.loads(request.content)
        except ValueError:
            payload = {}
        if isinstance(payload, dict):
            call.read_request(payload)
        return call, payload if isinstance(payload, dict) else {}

    @staticmethod
    def _outcome(call: Call, response: Any, raw: bytes) -> dict[str, Any]:
        if response.status_code >= 400:
            return dict(status="error", error=f"upstream status {response.status_code}: {raw[:300]!r}")
        try:
            text, usage, finish = answer_of(call.kind, json.loads(_decoded(response, raw)))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return dict(status="error", error="malformed upstream JSON")
        return dict(status="ok", response=text, usage=usage, finish_reason=finish)


@functools.cache
def transport_classes(module: str = "httpx") -> tuple[type, type]:
    """(AuditingTransport, AsyncAuditingTransport) for the `httpx` or `httpx2` module."""
    httpx: Any = importlib.import_module(module)

    class AuditingTransport(_Auditing, httpx.BaseTransport):
        def __init__(self, log: AuditLog, inner: Any = None, **options: Any):
            super().__init__(log, **options)
            self.inner = inner or httpx.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            call, payload = self._start(request)
            if call is None:
                return self.inner.handle_request(request)
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError as exc:
                self.log.append("inference", **call.record(status="error", error=f"{type(exc).__name__}: {exc}"))
                raise
            if _is_stream(payload, response):
                return httpx.Response(response.status_code, headers=response.headers, request=request,
                                      stream=_Stream(self.log, call, response), extensions=response.extensions)
            try:
                raw = b"".join(response.iter_raw())
            finally:
                response.close()
            record = self.log.append("inference", **call.record(**self._outcome(call, response, raw)))
            return httpx.Response(response.status_code, headers=_with_record_id(response.headers, record),
                                  content=raw, request=request, extensions=response.extensions)

        def close(self) -> None:
            self.inner.close()


    class AsyncAuditingTransport(_Auditing, httpx.AsyncBaseTransport):
        def __init__(self, log: AuditLog, inner: Any = None, **options: Any):
            super().__init__(log, **options)
            self.inner = inner or httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            call, payload = self._start(request)
            if call is None:
                return await self.inner.handle_async_request(request)
            try:
                response = await self.inner.handle_async_request(request)
            except httpx.TransportError as exc:
                await self.log.append_async("inference", **call.record(status="error", error=f"{type(exc).__name__}: {exc}"))
                raise
            if _is_stream(payload, response):
                return httpx.Response(response.status_code, headers=response.headers, request=request,
                                      stream=_AsyncStream(self.log, call, response), extensions=response.extensions)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
            record = await self.log.append_async("inference", **call.record(**self._outcome(call, response, raw)))
            return httpx.Response(response.status_code, headers=_with_record_id(response.headers, record),
                                  content=raw, request=request, extensions=response.extensions)

        async def aclose(self) -> None:
            await self.inner.aclose()


    class _Stream(httpx.SyncByteStream):
        def __init__(self, log: AuditLog, call: Call, response: Any):
            self.log, self.call, self.response = log, call, response
            self.events = EventStream(call.kind)
            self.recorded = False

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self.response.iter_raw():
                    ready = self.events.feed(chunk)
                    if ready:
                        yield ready
            except httpx.TransportError as exc:
                self._record(status="error", error=f"upstream failed mid-stream: {type(exc).__name__}")
                raise
            self._record(**_stream_outcome(self.events))
            yield self.events.held  # [DONE], only now that the record is durable

        def _record(self, **outcome: Any) -> None:
            if not self.recorded:
                self.recorded = True
                self.log.append("inference", **self.call.record(**_assembled(self.events), **outcome))

        def close(self) -> None:
            self._record(status="client_disconnected", error="the client stopped reading mid-stream")
            self.response.close()


    class _AsyncStream(httpx.AsyncByteStream):
        def __init__(self, log: AuditLog, call: Call, response: Any):
            self.log, self.call, self.response = log, call, response
            self.events = EventStream(call.kind)
            self.recorded = False

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self.response.aiter_raw():
                    ready = self.events.feed(chunk)
                    if ready:
                        yield ready
            except httpx.TransportError as exc:
                await self._record(status="error", error=f"upstream failed mid-stream: {type(exc).__name__}")
                raise
            await self._record(**_stream_outcome(self.events))
            yield self.events.held

        async def _record(self, **outcome: Any) -> None:
            if not self.recorded:
                self.recorded = True
                await self.log.append_async("inference", **self.call.record(**_assembled(self.events), **outcome))

        async def aclose(self) -> None:
            await self._record(status="client_disconnected", error="the client stopped reading mid-stream")
            await self.response.aclose()

    return AuditingTransport, AsyncAuditingTransport


RECORD_ID_HEADER = "x-govkit-record-id"


def _with_record_id(headers: Any, record: Any) -> list[tuple[str, str]]:
    """The upstream's headers plus the audit record's id, so a caller can cite the record."""
    return [*headers.multi_items(), (RECORD_ID_HEADER, record.record_id)]


def _is_stream(payload: dict[str, Any], response: Any) -> bool:
    return bool(payload.get("stream")) and response.status_code == 200 and \
        "text/event-stream" in response.headers.get("content-type", "")


def _assembled(events: EventStream) -> dict[str, Any]:
    """What a stream's record keeps of its answer, assembled once."""
    answer = events.result()
    return {"response": answer.text, "usage": answer.usage, "finish_reason": answer.finish_reason}


def _stream_outcome(events: EventStream) -> dict[str, Any]:
    if events.done:
        return {"status": "ok"}
    return {"status": "error", "error": "upstream closed the stream before [DONE]"}


def _decoded(response: Any, raw: bytes) -> bytes:
    if not response.headers.get("content-encoding"):
        return raw
    return type(response)(200, headers={"content-encoding": response.headers["content-encoding"]}, content=raw).read()
