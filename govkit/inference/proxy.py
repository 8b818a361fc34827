"""An auditing reverse proxy for the inference APIs of llama.cpp, Ollama, vLLM, LM Studio, ...

Every call to an inference route (routes.py: chat, completions, responses, embeddings, rerank,
..., in the OpenAI, llama.cpp, Ollama and Anthropic shapes) becomes two audit records: a
`request` record, durable before the upstream is called, and an `inference` record with the
answer: latency, token counts, finish reason, sampling parameters, status, every choice and tool
call, and the model artifact's identity. Read-only routes (models, health, props, version) are
forwarded; anything else is refused with 404, and the refusal is recorded.

No answer reaches the client before its record is committed: a plain response is sent after the
commit; a stream passes through event by event, each once the stream journal holds it (its length
and the running sha256 of what was forwarded, group-committed), except its final event and
`[DONE]`, which wait for the inference record that takes the journal over. When the journal or
the record cannot be committed the client gets a 503 (or, mid-stream, an error event and no end).
Upstream failures become failure records and clean JSON errors (502, or 504 on a timeout). A
request reaches the upstream at most once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from .._lazy import require
from ..audit import AuditLog, AuditRecord
from ..errors import GovkitError
from .calls import Call, EventStream, read_answer
from .connections import GuardPolicy
from .fingerprint import ArtifactIdentity, fingerprint_artifact
from .routes import Route, route_of
from .serve import parse_runtime_tags
from .signals import answer_signals, group_attributes
from .transport import RECORD_ID_HEADER

__all__ = ["AuditingProxy", "CallObserver", "ProxyConfig"]


class CallObserver(Protocol):
    """What the proxy tells a watcher of its calls (`govkit proxy` plugs in the explanation
    sampler): how many requests are in flight, and each answered chat call once it is on record.
    Both run on the event loop and must not block it; `close` runs in a worker thread at shutdown."""

    def in_flight(self, count: int) -> None: ...

    def offer(self, record: AuditRecord, prompt: str | None, response: str | None) -> None: ...

    def close(self) -> None: ...

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host", "content-length", "content-encoding"}


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str  # e.g. http://127.0.0.1:8080/v1
    host: str = "127.0.0.1"
    port: int = 8765
    model_artifact: Path | None = None
    model_id: str | None = None
    client_token: str | None = None  # required bearer token for clients (None: open)
    upstream_api_key: str | None = None  # sent upstream; never logged
    max_body_bytes: int = 8 * 1024 * 1024
    timeout_s: float = 300.0
    runtime: str | None = None  # e.g. "llama.cpp" ("name=version" accepted)
    allow_routes: frozenset[str] = frozenset()  # more normalised paths to forward unaudited (read-only ones)
    guard: GuardPolicy = field(default_factory=GuardPolicy)  # connection caps, the request-head time limit
    body_timeout_s: float = 30.0  # the whole request body must arrive within this (408 after it)
    # A stream's parts that arrive within this window share one journal commit: each still reaches
    # the client only once it is durable, at most this much later; fewer commits leave the CPU
    # to the model server (0: a commit per part as it arrives).
    journal_window_s: float = 0.02
    # [monitoring]: a declared decision prompt's answers (each record then names the one given)
    # and the group attributes a call may carry in X-Govkit-Group (any other is dropped unread).
    decision_choices: tuple[str, ...] = ()
    group_attributes: tuple[str, ...] = ()

    @property
    def upstream_root(self) -> str:
        root = self.upstream.rstrip("/")
        return root[:-3] if root.endswith("/v1") else root


REFUSED_WINDOW_S = 60.0

# (stage, timed out) -> (what the record says, what the client is told)
_FAILURES = {
    ("connect", True): ("upstream timeout", "the upstream model server did not answer in time"),
    ("connect", False): ("upstream unreachable", "the upstream model server is unreachable"),
    ("read", True): ("upstream timeout while reading the answer", "the upstream model server did not finish in time"),
    ("read", False): ("upstream failed mid-answer", "the upstream model server failed mid-answer"),
}


class AuditingProxy:
    def __init__(self, log: AuditLog, config: ProxyConfig, observer: CallObserver | None = None):
        self.log = log
        self.config = config
        self.observer = observer
        self.identity: ArtifactIdentity | None = None
        self.runtime: dict[str, str] = {}
        self._session: Any = None
        self._identity_lock = asyncio.Lock()
        self.in_flight = 0
        self._refused = 0  # unauthorized attempts not yet in an incident record
        self._refused_logged_at = float("-inf")

    # -- lifecycle ----------------------------------------------------------------------------

    def app(self) -> Any:
        web = require("aiohttp.web", "proxy")
        app = web.Application(client_max_size=self.config.max_body_bytes + 1)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: Any) -> None:
        aiohttp = require("aiohttp", "proxy")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self.config.timeout_s),
            # Idle upstream connections are dropped before common servers' 5 s keep-alive runs
            # out (uvicorn, llama-server), so a request is rarely sent on a dying connection.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0), auto_decompress=False,
            # One session serves every client: a cookie the upstream sets for one must never
            # travel with another's request (and no jar means no cookie work per request).
            cookie_jar=aiohttp.DummyCookieJar())
        if self.config.model_artifact is not None:
            cache = self.log.path.with_name("artifacts.json")
            artifact = self.config.model_artifact
            self.identity = await asyncio.get_running_loop().run_in_executor(
                None, lambda: fingerprint_artifact(artifact, cache_file=cache))
        self.runtime = await self._detect_runtime()
        for incident in self.log.recover_streams():  # a stream an earlier proxy was cut off in
            details = incident.details or {}
            sys.stderr.write(f"govkit proxy: a streamed answer to request seq {details.get('request_seq')} had no "
                             f"final record ({details.get('bytes_forwarded')} bytes reached the client); incident "
                             f"{incident.record_id} says so\n")

    async def _cleanup(self, _app: Any) -> None:
        if self._session is not None:
            await self._session.close()
        if self._refused:
            await self._log_refused()
        if self.observer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.observer.close)

    async def _note_refused(self) -> None:
        """Unauthorized attempts become `incident` records: the first of a window at once, the
        rest counted into the next one (or at shutdown), so that a flood cannot flood the log."""
        self._refused += 1
        if time.monotonic() - self._refused_logged_at >= REFUSED_WINDOW_S:
            await self._log_refused()

    async def _log_refused(self) -> None:
        attempts, self._refused = self._refused, 0
        self._refused_logged_at = time.monotonic()
        await self.log.append_async("incident", model_id=self.config.model_id, details={
            "kind": "unauthorized_client", "attempts": attempts, "window_s": REFUSED_WINDOW_S})

    async def _detect_runtime(self) -> dict[str, str]:
        if self.config.runtime:
            name, _, version = self.config.runtime.partition("=")
            return {"runtime": name, **({"runtime_version": version} if version else {})}
        try:
            async with self._session.get(self.config.upstream_root + "/v1/models", headers=self._auth_headers()) as resp:
                server = resp.headers.get("Server", "")
                data = await resp.json(content_type=None)
            first = (data.get("data") or [{}])[0] if isinstance(data, dict) else {}
            owner = first.get("owned_by", "") if isinstance(first, dict) else ""
        except Exception:  # the upstream may not be up yet; the records will say "unknown"
            return {"runtime": "unknown"}
        published = parse_runtime_tags(first.get("tags"))  # `govkit serve` names its build and library
        if published:
            return published
        # What each server says of itself: llama.cpp's llama-server owns models as "llamacpp",
        # llama-cpp-python's server as "me", vLLM as "vllm", Ollama as "library"/"ollama".
        known = {"llamacpp": "llama.cpp", "me": "llama-cpp-python", "vllm": "vllm", "library": "ollama",
                 "ollama": "ollama"}
        if str(owner).lower() in known:
            return {"runtime": known[str(owner).lower()]}
        return {"runtime": "llama.cpp" if "llama.cpp" in server.lower() else (owner or server or "unknown")}

    # -- request handling ---------------------------------------------------------------------

    async def handle(self, request: Any) -> Any:
        self.in_flight += 1
        if self.observer is not None:
            self.observer.in_flight(self.in_flight)
        try:
            if self.config.client_token is not None and not self._client_authorized(request):
                await self._note_refused()
                return _error(401, "missing or wrong bearer token", "unauthorized")
            route = route_of(request.method, request.raw_path, self.config.allow_routes)
            if route.kind is not None and route.method_allowed:
                return await self._audited(request, route)
            if route.forward:
                return await self._passthrough(request, route)
            if route.kind is not None:
                return await self._refuse(request, route, 405, f"{route.path} takes POST only", "method_not_allowed")
            return await self._refuse(request, route, 404, "not a route govkit forwards: only inference routes "
                                      "(audited) and read-only ones (models, health, props, version)", "not_found")
        finally:
            self.in_flight -= 1
            if self.observer is not None:
                self.observer.in_flight(self.in_flight)

    def _client_authorized(self, request: Any) -> bool:
        header = request.headers.get("Authorization", "")
        supplied = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(supplied.encode(), str(self.config.client_token).encode())

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.upstream_api_key}"} if self.config.upstream_api_key else {}

    def _upstream_headers(self, request: Any) -> dict[str, str]:
        drop = _HOP_BY_HOP
        if self.config.client_token is not None or self.config.upstream_api_key:
            drop = _HOP_BY_HOP | {"authorization"}  # the client's token is ours, not the upstream's
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
        headers.update(self._auth_headers())
        return headers

    def _upstream_url(self, request: Any, route: Route) -> str:
        """The route as normalised (what was audited is what is asked), with the query."""
        query = request.raw_path.partition("?")[2]
        return self.config.upstream_root + route.path + (f"?{query}" if query else "")

    async def _refuse(self, request: Any, route: Route, status: int, message: str, code: str) -> Any:
        """A route govkit does not forward: refused, and on the record (the path redacted: it is
        whatever the client sent)."""
        return await self._turned_away("refused", status, message, code, error=f"{status} {code}",
                                       endpoint=self.log.redact(route.path)[:512],
                                       details={"method": request.method[:16]}, **self._request_context(request))

    async def _turned_away(self, outcome: str, status: int, message: str, code: str, **fields: Any) -> Any:
        """Answer with an error the upstream never saw, once a `request` record says why."""
        try:
            await self.log.append_async("request", status=outcome, **fields)
        except GovkitError as exc:
            return _store_failed(exc)
        return _error(status, message, code)

    async def _passthrough(self, request: Any, route: Route) -> Any:
        web = require("aiohttp.web", "proxy")
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                body = await request.read()
        except TimeoutError:
            response = _error(408, f"the request body did not arrive within {self.config.body_timeout_s:g} s",
                              "request_timeout")
            response.force_close()
            return response
        try:
            async with self._session.request(request.method, self._upstream_url(request, route),
                                             data=body, headers=self._upstream_headers(request)) as upstream:
                data = await upstream.read()
                return web.Response(body=data, status=upstream.status, headers=_response_headers(upstream))
        except TimeoutError:
            return _error(504, "the upstream model server did not answer in time", "upstream_timeout")
        except Exception as exc:  # aiohttp.ClientError and friends
            return _error(502, f"the upstream model server failed: {type(exc).__name__}", "upstream_error")

    async def _audited(self, request: Any, route: Route) -> Any:
        call = Call(route.kind or "other", route.path, {**self.runtime, **self._request_context(request)})
        group = group_attributes(request.headers.get("X-Govkit-Group"), self.config.group_attributes)
        if group:
            call.fields["details"] = {"group": {k: self.log.redact(v) for k, v in group.items()}}
        if self.config.model_id:
            call.fields["model_id"] = self.config.model_id
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                raw = await self._read_limited(request)
        except TimeoutError:  # a body sent a byte at a time holds a connection: not past this limit
            response = await self._rejected(call, 408, f"the request body did not arrive within "
                                                       f"{self.config.body_timeout_s:g} s", "request_timeout")
            response.force_close()
            return response
        if raw is None:
            return await self._rejected(call, 413, f"request body over {self.config.max_body_bytes} bytes",
                                        "request_too_large")
        try:
            payload = orjson.loads(raw)  # refuses NaN, Infinity, 1e999 and lone surrogates
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            return await self._rejected(call, 400, f"request body is not a JSON object the audit log can "
                                                   f"hold ({_json_problem(exc)})", "invalid_request")
        call.read_request(payload, raw)
        await self._check_artifact()
        if self.identity is not None:
            call.fields.update(self.identity.record_fields())
        try:
            requested = await self._record_request(call)
        except GovkitError as exc:
            return _store_failed(exc)
        if requested is not None:
            call.fields["request_record_id"] = requested.record_id
            call.request_seq = requested.seq
        try:
            upstream = await self._session.post(self._upstream_url(request, route), data=raw,
                                                headers=self._upstream_headers(request))
        except Exception as exc:  # never retried: a request reaches the upstream at most once
            return await self._upstream_failed(call, exc, "connect")
        async with upstream:
            content_type = upstream.headers.get("Content-Type", "")
            if upstream.status == 200 and ("text/event-stream" in content_type or "ndjson" in content_type):
                return await self._stream(request, upstream, call, lines="ndjson" in content_type)
            return await self._whole(upstream, call)

    async def _record_request(self, call: Call) -> Any:
        """The request on the record before the model is asked: an answer lost to a crash still
        leaves the record that the model was asked, and what."""
        return await self.log.append_async("request", inline_when_idle=self.in_flight == 1, prompt=call.prompt,
                                           status="started", ts_start=call.ts_start, endpoint=call.endpoint,
                                           **call.fields)

    async def _rejected(self, call: Call, status: int, message: str, code: str) -> Any:
        """A request to an inference route refused before the upstream ran (too large, not JSON)."""
        return await self._turned_away("rejected", status, message, code, error=message, ts_start=call.ts_start,
                                       endpoint=call.endpoint, **call.fields)

    async def _upstream_failed(self, call: Call, exc: Exception, stage: str) -> Any:
        """Record the failure, then answer the client with a clean 504 (timeout) or 502."""
        timed_out = isinstance(exc, asyncio.TimeoutError)
        error, message = _FAILURES[stage, timed_out]
        detail = "" if timed_out else f": {type(exc).__name__}"
        try:
            await self._record(call, status="error", error=error + detail)
        except GovkitError as store_exc:
            return _store_failed(store_exc)
        return _error(504 if timed_out else 502, message, "upstream_timeout" if timed_out else "upstream_error")

    async def _whole(self, upstream: Any, call: Call) -> Any:
        web = require("aiohttp.web", "proxy")
        try:
            data = await upstream.read()
        except Exception as exc:
            return await self._upstream_failed(call, exc, "read")
        try:
            if upstream.status >= 400:
                # The error body may echo the prompt: it is content (redacted, purgeable), never
                # free text in the chain.
                await self._record(call, status="error", error=f"upstream status {upstream.status}",
                                   response=data.decode("utf-8", "replace"))
                return web.Response(body=data, status=upstream.status, headers=_response_headers(upstream))
            try:
                answer = read_answer(call.kind, orjson.loads(data))
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                await self._record(call, status="error", error="malformed upstream JSON",
                                   response=data.decode("utf-8", "replace"))
                return _error(502, "the upstream model server sent a malformed answer", "upstream_malformed")
            record = await self._record(call, status="ok", answer=answer)
        except GovkitError as exc:
            return _store_failed(exc)  # no answer without its record
        # The app can cite the record of each answer (an override names it), as the wrappers do.
        return web.Response(body=data, status=upstream.status,
                            headers={**_response_headers(upstream), RECORD_ID_HEADER: record.record_id})

    async def _stream(self, request: Any, upstream: Any, call: Call, *, lines: bool) -> Any:
        """Relay a streamed answer. Each part reaches the client only once the journal holds it
        (its length and the running sha256 of every byte forwarded, committed with the other
        callers' records); the final event and [DONE] only once the inference record, which
        takes the journal over, is durable. A journal or record that cannot be committed stops
        the relay there: the client has nothing that is not on record, and is told why."""
        web = require("aiohttp.web", "proxy")
        response = web.StreamResponse(status=upstream.status, headers=_response_headers(upstream))
        await response.prepare(request)
        events = EventStream(call.kind, lines=lines)
        forwarded = hashlib.sha256()
        parts = sent = 0
        error = None
        client_gone = unrecorded = False
        pending = bytearray()  # complete events read, not yet journaled (nor forwarded)
        due = 0.0  # when the oldest pending part must be journaled and forwarded
        window = self.config.journal_window_s
        loop = asyncio.get_running_loop()

        async def flush() -> None:
            nonlocal parts, sent, unrecorded, error, client_gone
            ready = bytes(pending)
            pending.clear()
            if not ready or client_gone or unrecorded:
                return
            forwarded.update(ready)
            parts += 1
            sent += len(ready)
            try:
                if call.request_seq is not None:
                    await self.log.journal_async(call.request_seq, parts, len(ready), forwarded.hexdigest(),
                                                 inline_when_idle=self.in_flight == 1)
            except GovkitError as exc:
                unrecorded = True
                error = f"the audit journal could not be committed ({type(exc).__name__}); the rest of the answer is withheld"
                return
            try:
                await response.write(ready)
            except (ConnectionResetError, RuntimeError):
                client_gone = True  # keep reading: the record gets the full answer

        reading: asyncio.Future[bytes] | None = None
        try:
            while True:
                if reading is None:
                    reading = asyncio.ensure_future(upstream.content.readany())
                if pending:
                    done, _ = await asyncio.wait({reading}, timeout=max(0.0, due - loop.time()))
                    if not done:  # the window is over: what arrived in it goes out now
                        await flush()
                        continue
                chunk = await reading
                reading = None
                if not chunk:
                    break
                ready = events.feed(chunk)
                if ready and not (client_gone or unrecorded):
                    if not pending:
                        due = loop.time() + window
                    pending += ready
                    if window <= 0 or loop.time() >= due:
                        await flush()
            await flush()
        except TimeoutError:
            error = error or "upstream timeout mid-stream"
        except Exception as exc:
            error = error or f"upstream failed mid-stream: {type(exc).__name__}"
        finally:
            if reading is not None and not reading.done():
                reading.cancel()
        if error is None and not events.done:
            error = "upstream closed the stream before it ended"
        status = ("unrecorded" if unrecorded else "error" if error else
                  "client_disconnected" if client_gone else "ok")
        # What the upstream sent may pass once it is on record (parts still pending after a failure too).
        final = b"" if (unrecorded or client_gone) else bytes(pending) + events.held
        if final:
            forwarded.update(final)
        stream = {"parts_forwarded": parts + bool(final), "bytes_forwarded": sent + len(final),
                  "sha256_forwarded": forwarded.hexdigest()}
        try:
            await self._record(call, status="error" if unrecorded else status, stream=stream,
                               error=error or ("client disconnected mid-stream" if client_gone else None),
                               answer=events.result())
        except GovkitError as exc:  # the final chunk and [DONE] are withheld: no answer without its record
            if not unrecorded:  # a journal that failed first says where the answer stopped
                error = f"the audit record could not be committed ({type(exc).__name__}); the answer is withheld"
            status = "unrecorded"
        if not client_gone:
            try:
                if status != "unrecorded":
                    await response.write(final)  # the final chunk, only now that the record is durable
                if error:
                    code = 503 if status == "unrecorded" else 502
                    kind = "audit_store_unavailable" if status == "unrecorded" else "upstream_error"
                    payload = {"error": {"message": error, "type": kind, "code": code}}
                    await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                await response.write_eof()
            except (ConnectionResetError, RuntimeError):
                pass
        return response

    # -- helpers --------------------------------------------------------------------------------

    def _request_context(self, request: Any) -> dict[str, str]:
        """The headers a record keeps. The session id and purpose are free text: redacted, as the
        chain cannot be purged. The subject reference stays as given: it is what an erasure
        request names (a pseudonymous id, by the institution's own convention)."""
        headers = request.headers
        context = {"session_id": headers.get("X-Session-Id"), "purpose": headers.get("X-Govkit-Purpose")}
        kept = {k: self.log.redact(v[:256]) for k, v in context.items() if v}
        if headers.get("X-Subject-Ref"):
            kept["subject_ref"] = headers["X-Subject-Ref"][:256]
        return kept

    async def _read_limited(self, request: Any) -> bytes | None:
        """The whole body, chunked or not, or None past the limit."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return None
        parts, size = [], 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def _check_artifact(self) -> None:
        """Chain a model_change event before the next inference when the artifact file changed."""
        if self.identity is None or self.identity.same_file():
            return
        async with self._identity_lock:
            if self.identity.same_file():
                return
            previous = self.identity
            cache = self.log.path.with_name("artifacts.json")
            current = await asyncio.get_running_loop().run_in_executor(
                None, lambda: fingerprint_artifact(previous.path, cache_file=cache))
            if current.sha256 != previous.sha256:
                await self.log.append_async("model_change", model_id=self.config.model_id, **current.record_fields(),
                                            details={"previous_sha256": previous.sha256, "path": current.path,
                                                     "bytes": current.bytes})
            self.identity = current

    async def _record(self, call: Call, *, stream: dict[str, Any] | None = None, **outcome: Any) -> Any:
        # A lone request commits on the loop thread (no hand-offs); under load, group commit.
        fields = call.record(**outcome)
        if outcome.get("status") == "ok" and call.kind in ("chat", "completion"):
            signals = answer_signals(fields.get("response"), self.config.decision_choices)
            if signals:  # for monitoring: what the answer was, without its text
                fields["details"] = {**(fields.get("details") or {}), "signals": signals}
        if stream is not None:  # what reached the client, sealed: the journal's rows go in this commit
            fields["details"] = {**(fields.get("details") or {}), "stream": stream}
        record = await self.log.append_async("inference", inline_when_idle=self.in_flight == 1,
                                             seals_journal=call.request_seq if stream is not None else None,
                                             **fields)
        if self.observer is not None and call.kind == "chat" and outcome.get("status") == "ok":
            self.observer.offer(record, call.prompt, fields.get("response"))
        return record


def _response_headers(upstream: Any) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}


def _store_failed(exc: GovkitError) -> Any:
    """The audit store refused the record: the client gets no answer (fail closed)."""
    sys.stderr.write(f"govkit proxy: {exc}\n")
    return _error(503, f"the audit log cannot record this call, so it was not answered: "
                       f"{type(exc).__name__}", "audit_store_unavailable")


def _json_problem(exc: ValueError) -> str:
    text = str(exc)
    if "infinity" in text or "NaN" in text or "unexpected character" in text:
        return "NaN, Infinity or a number out of range: JSON has none"
    if "surrogate" in text:
        return "a lone surrogate: not Unicode text"
    return text.split(":", 1)[0][:120]


def _error(status: int, message: str, code: str) -> Any:
    web = require("aiohttp.web", "proxy")
    return web.json_response({"error": {"message": message, "type": code, "code": status}}, status=status)
