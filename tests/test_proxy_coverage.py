"""No model call without a record: `govkit proxy` routes every path spelling to the route it reaches,
audits every inference route of the servers it fronts, refuses the rest (recorded), writes the
request's record before the upstream runs, and withholds any answer whose record fails.

The upstream here is the only fake: a server that answers every path and counts what it served."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.inference.routes import normalise_path, route_of

from .servers import free_port, start_proxy, stop
from .stores import hold_writer_lock

pytestmark = pytest.mark.slow
aiohttp_web = pytest.importorskip("aiohttp.web")

MESSAGES = [{"role": "user", "content": "Approve a loan for jane.doe@example.com, card 4111 1111 1111 1111?"}]
CHAT_ANSWER = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


class CountingUpstream:
    """Answers any method on any path like a model server would, and counts what it served."""

    def __init__(self) -> None:
        self.port = free_port()
        self.served: list[tuple[str, str]] = []
        self.on_request = None  # called as each request arrives, before it is answered
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = aiohttp_web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.any)
        runner = aiohttp_web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(aiohttp_web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    async def any(self, request):
        body = await request.read()
        if request.path == "/v1/models":
            return aiohttp_web.json_response({"data": [{"id": "m", "owned_by": "counting"}]})
        self.served.append((request.method, request.path))
        if self.on_request is not None:
            self.on_request()
        payload = json.loads(body) if body.startswith(b"{") else {}
        behaviour = payload.get("model", "") if isinstance(payload, dict) else ""
        if behaviour == "echo-error":  # an upstream error that echoes the prompt back
            return aiohttp_web.json_response({"error": f"cannot parse {payload['messages'][0]['content']}"}, status=400)
        if behaviour == "many":
            return aiohttp_web.json_response({"choices": [
                {"index": i, "message": {"content": f"answer {i}"}, "finish_reason": "stop"} for i in range(3)]})
        if behaviour == "tool":
            return aiohttp_web.json_response({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "approve_loan", "arguments": json.dumps({"applicant": "jane.doe@example.com",
                                                                     "amount": 5000})}}]}}]})
        if behaviour == "drop":  # the connection dies before any answer
            request.transport.close()
            return aiohttp_web.Response()
        if behaviour == "stream-huge":  # 50 MB of answer, in 10 KB events
            response = aiohttp_web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            piece = "w" * 10_000
            event = b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % piece.encode()
            for _ in range(5_000):
                await response.write(event)
            await response.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                                 b"data: [DONE]\n\n")
            return response
        if behaviour.startswith("stream"):
            response = aiohttp_web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i in range(30 if behaviour == "stream-slow" else 10):  # slow: 3 s, time to lock the store
                await response.write(b'data: {"choices":[{"index":0,"delta":{"content":"w%d "}}]}\n\n' % i)
                await asyncio.sleep(0.1 if behaviour == "stream-slow" else 0)
            await response.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                                 b"data: [DONE]\n\n")
            return response
        if request.path == "/api/generate":
            return aiohttp_web.json_response({"response": "fine", "done": True, "done_reason": "stop",
                                              "prompt_eval_count": 3, "eval_count": 1})
        if request.path == "/completion":
            return aiohttp_web.json_response({"content": "fine", "stop": True, "stop_type": "eos"})
        return aiohttp_web.json_response(CHAT_ANSWER)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
def upstream() -> CountingUpstream:
    return CountingUpstream()


def send(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         chunked: bool = False) -> tuple[int, bytes]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest(method, path, skip_accept_encoding=True)
    connection.putheader("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    if chunked:
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(body or b""), 65536):
            part = body[start:start + 65536]
            connection.send(b"%x\r\n%b\r\n" % (len(part), part))
        connection.send(b"0\r\n\r\n")
    else:
        connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body or b"")
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def records(db: Path, event_type: str) -> list:
    with AuditLog(db, read_only=True) as log:
        return list(log.query(event_type=event_type))


def test_paths_are_normalised_as_servers_route_them() -> None:
    assert normalise_path("/V1/./chat//completions/?x=1") == "/v1/chat/completions"
    assert normalise_path("//v1/chat/completions") == "/v1/chat/completions"
    assert normalise_path("/v1/%63hat/completions") == "/v1/chat/completions"
    assert normalise_path("/v1/models/../chat/completions") == "/v1/chat/completions"
    assert normalise_path("/v1%2Fchat%2Fcompletions") == "/v1/chat/completions"
    assert normalise_path("/v1/%252e%252e/v1/completions") == "/v1/completions"
    assert route_of("POST", "/api/chat").kind == "chat"
    assert route_of("GET", "/v1/chat/completions").method_allowed is False
    assert route_of("GET", "/v1/models").forward and not route_of("POST", "/v1/models").forward
    assert not route_of("POST", "/slots/0").forward and route_of("POST", "/slots/0").kind is None


PATHS = ["/v1/chat/completions", "/v1/./chat/completions", "//v1/chat/completions", "/V1/chat/completions",
         "/v1/chat/completions/", "/chat/completions", "/completion", "/completions", "/v1/completions",
         "/api/chat", "/api/generate", "/v1/responses", "/v1/messages", "/infill", "/v1/embeddings",
         "/api/embed", "/v1/%63hat/completions", "/v1/rerank", "/tokenize"]
REFUSED = [("GET", "/v1/chat/completions"), ("PUT", "/v1/chat/completions"), ("POST", "/slots/0"),
           ("POST", "/props"), ("DELETE", "/api/delete"), ("POST", "/lora-adapters"), ("GET", "/slots")]


def test_every_path_variant_is_recorded_and_served_never_exceeds_recorded(upstream: CountingUpstream,
                                                                          tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    body = json.dumps({"model": "m", "messages": MESSAGES, "prompt": "p", "input": "i"}).encode()
    try:
        statuses = {path: send(url, "POST", path, body)[0] for path in PATHS}
        refused = {(method, path): send(url, method, path, body)[0] for method, path in REFUSED}
        assert send(url, "GET", "/v1/models")[0] == 200  # read-only: forwarded
    finally:
        stop(proc)
    db = tmp_path / ".govkit" / "audit.db"
    assert all(code == 200 for code in statuses.values()), {p: c for p, c in statuses.items() if c != 200}
    assert refused == {key: 405 if key[1] == "/v1/chat/completions" else 404 for key in REFUSED}
    requested = [r for r in records(db, "request") if r.status == "started"]
    answered = records(db, "inference")
    served = [(m, p) for m, p in upstream.served]
    assert len(served) == len(PATHS) <= len(requested) == len(answered)
    assert sorted(r.endpoint for r in requested) == sorted(normalise_path(p) for p in PATHS)
    assert all(a.request_record_id == r.record_id for r, a in zip(requested, answered))
    assert sorted(p for _, p in served) == sorted(normalise_path(p) for p in PATHS)  # what was audited is what was asked
    refusals = [r for r in records(db, "request") if r.status == "refused"]
    assert len(refusals) == len(REFUSED) and {r.error for r in refusals} == {"404 not_found", "405 method_not_allowed"}
    with AuditLog(db, read_only=True) as log:
        assert log.verify().ok


def test_the_request_is_on_record_before_the_upstream_is_called(upstream: CountingUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    db = tmp_path / ".govkit" / "audit.db"
    seen: list = []
    # The upstream looks at the log while it is being asked.
    upstream.on_request = lambda: seen.append([r.status for r in records(db, "request")])
    try:
        assert send(url, "POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": MESSAGES}).encode())[0] == 200
    finally:
        stop(proc)
    assert seen == [["started"]]


@pytest.mark.parametrize("body,problem", [
    (b'{"model": "m", "messages": [], "temperature": NaN}', "NaN"),
    (b'{"model": "m", "messages": [], "temperature": 1e999}', "out of range"),
    (b'{"model": "m", "messages": [], "temperature": Infinity}', "NaN, Infinity"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', "surrogate"),
    (b'[1, 2]', "not a JSON object"),
])
def test_values_the_log_cannot_hold_are_refused_before_the_upstream(upstream: CountingUpstream, tmp_path: Path,
                                                                    body: bytes, problem: str) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    try:
        status, answer = send(url, "POST", "/v1/chat/completions", body)
    finally:
        stop(proc)
    assert status == 400 and problem in json.loads(answer)["error"]["message"]
    assert upstream.served == []
    [refusal] = records(tmp_path / ".govkit" / "audit.db", "request")
    assert refusal.status == "rejected" and problem in refusal.error


def test_a_request_reaches_the_upstream_at_most_once(upstream: CountingUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    try:
        status, _ = send(url, "POST", "/v1/chat/completions", json.dumps({"model": "drop", "messages": MESSAGES}).encode())
    finally:
        stop(proc)
    assert status == 502 and len(upstream.served) == 1
    [answer] = records(tmp_path / ".govkit" / "audit.db", "inference")
    assert answer.status == "error"


def test_every_choice_and_tool_call_is_recorded(upstream: CountingUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    try:
        for model in ("many", "tool"):
            assert send(url, "POST", "/v1/chat/completions",
                        json.dumps({"model": model, "n": 3, "messages": MESSAGES}).encode())[0] == 200
    finally:
        stop(proc)
    db = tmp_path / ".govkit" / "audit.db"
    many, tool = records(db, "inference")
    assert [c["index"] for c in many.details["choices"]] == [0, 1, 2]
    assert all(c["content_sha256"].startswith("sha256:") for c in many.details["choices"])
    assert tool.details["choices"][0]["tool_calls"][0]["name"] == "approve_loan"
    assert tool.finish_reason == "tool_calls"
    with AuditLog(db, read_only=True) as log:
        assert log.content(many)["response"] == "[choice 0]\nanswer 0\n[choice 1]\nanswer 1\n[choice 2]\nanswer 2"
        response = log.content(tool)["response"]
        assert "[choice 0 tool call approve_loan]" in response and "5000" in response and "[EMAIL]" in response
    raw = b"".join(p.read_bytes() for p in db.parent.glob("audit.db*"))
    assert b"jane.doe@example.com" not in raw and b"4111 1111 1111 1111" not in raw


def test_an_upstream_error_body_never_reaches_the_chain_raw(upstream: CountingUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    try:
        status, _ = send(url, "POST", "/v1/chat/completions", json.dumps({"model": "echo-error", "messages": MESSAGES}).encode(),
                         headers={"X-Session-Id": "session of jane.doe@example.com"})
    finally:
        stop(proc)
    assert status == 400
    db = tmp_path / ".govkit" / "audit.db"
    [answer] = records(db, "inference")
    assert answer.error == "upstream status 400" and answer.session_id == "session of [EMAIL]"
    raw = b"".join(p.read_bytes() for p in db.parent.glob("audit.db*"))
    assert b"jane.doe@example.com" not in raw and b"4111 1111 1111 1111" not in raw


def test_a_700_kb_chunked_body_is_read_whole(upstream: CountingUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url, "--max-body-bytes", str(1024 * 1024))
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "y" * 700_000}]}).encode()
    try:
        results = [send(url, "POST", "/v1/chat/completions", big, chunked=True)[0] for _ in range(5)]
    finally:
        stop(proc)
    assert results == [200] * 5 and len(upstream.served) == 5



def journaled(db: Path) -> list[tuple[int, int, str]]:
    """(part, bytes forwarded so far, running sha256) of each stream journal row, in order."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT part, bytes, sha256 FROM stream_journal ORDER BY request_seq, part").fetchall()
    finally:
        con.close()
    total, out = 0, []
    for part, size, digest in rows:
        total += size
        out.append((part, total, digest))
    return out


def _short_busy_timeout(folder: Path) -> None:
    config = folder / "govkit.toml"
    config.write_text(config.read_text().replace("busy_timeout_s = 10", "busy_timeout_s = 0.3"))


@pytest.mark.parametrize("stream", [True, False])
def test_no_answer_reaches_the_client_when_its_record_cannot_be_committed(upstream: CountingUpstream,
                                                                          tmp_path: Path, stream: bool) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "govkit", "init", "--yes"], cwd=tmp_path, check=True, capture_output=True)
    _short_busy_timeout(tmp_path)
    url, proc = start_proxy(tmp_path, upstream.url)
    db = tmp_path / ".govkit" / "audit.db"
    result: dict = {}
    body = json.dumps({"model": "stream-slow" if stream else "m", "messages": MESSAGES, "stream": stream}).encode()

    def call() -> None:
        result["status"], result["body"] = send(url, "POST", "/v1/chat/completions", body)

    held = None
    try:
        if stream:
            caller = threading.Thread(target=call)
            caller.start()
            deadline = time.monotonic() + 20
            while not records(db, "request") and time.monotonic() < deadline:
                time.sleep(0.01)
            held = hold_writer_lock(db)  # the store is locked past the timeout as the stream ends
            caller.join(30)
        else:
            held = hold_writer_lock(db)  # locked before the request: not even the request is recorded
            call()
    finally:
        if held is not None:
            os.close(held)
        stop(proc)
    if stream:
        # Only what the journal made durable before the lock reached the client: then the error.
        assert result["status"] == 200 and b"audit_store_unavailable" in result["body"]
        got = result["body"].split(b"data: {\"error\"")[0]
        assert b"[DONE]" not in got and b'"finish_reason":"stop"' not in got and b"w29" not in got
        assert got == b"" or journaled(db)[-1][1:] == (len(got), hashlib.sha256(got).hexdigest())
        assert records(db, "inference") == []  # and the request record says the model was asked
        assert [r.status for r in records(db, "request")] == ["started"]
    else:
        assert result["status"] == 503 and b"fine" not in result["body"]
        assert upstream.served == []  # the model was never asked: nothing could be recorded
    with AuditLog(db, read_only=True) as log:
        assert log.verify().ok


def test_a_stream_passes_through_with_its_final_chunk_after_the_record(upstream: CountingUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    try:
        status, body = send(url, "POST", "/v1/chat/completions",
                            json.dumps({"model": "stream", "messages": MESSAGES, "stream": True}).encode())
    finally:
        stop(proc)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n") and b'"finish_reason":"stop"' in body
    [answer] = records(tmp_path / ".govkit" / "audit.db", "inference")
    assert answer.status == "ok" and answer.finish_reason == "stop"
    with AuditLog(tmp_path / ".govkit" / "audit.db", read_only=True) as log:
        assert log.content(answer)["response"] == "".join(f"w{i} " for i in range(10))


def test_allow_route_forwards_read_only_paths_but_never_an_inference_route(upstream: CountingUpstream,
                                                                          tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url, "--allow-route", "/slots")
    try:
        assert send(url, "GET", "/slots")[0] == 200
    finally:
        stop(proc)
    import subprocess
    import sys

    refused = subprocess.run([sys.executable, "-m", "govkit", "proxy", "--upstream", upstream.url,
                              "--allow-route", "/V1/chat/completions/"], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2 and "always audited" in refused.stderr
    assert sqlite3.connect(tmp_path / ".govkit" / "audit.db").execute("SELECT count(*) FROM records").fetchone()[0] >= 2


def test_idle_connections_from_one_client_do_not_starve_another(upstream: CountingUpstream, tmp_path: Path) -> None:
    """1,100 connections that send nothing, from 127.0.0.2: a request from 127.0.0.1 is still
    served, and the idle ones are closed once their request head is overdue."""
    import socket

    url, proc = start_proxy(tmp_path, upstream.url, "--header-timeout", "2", "--max-per-client", "64")
    port = int(url.split(":")[2].split("/")[0])
    idle = []
    try:
        for _ in range(1100):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            idle.append(sock)
        status, _ = send(url, "POST", "/v1/chat/completions", json.dumps({"model": "m", "messages": MESSAGES}).encode())
        assert status == 200
        over_cap = idle[200]  # beyond the client's 64: refused at once with 503
        over_cap.settimeout(30)
        assert over_cap.recv(100).startswith(b"HTTP/1.1 503")
        first = idle[0]  # within the cap, silent: closed when its request head is overdue
        first.settimeout(30)
        assert first.recv(100).startswith(b"HTTP/1.1 408")
        slow = socket.create_connection(("127.0.0.1", port))  # headers a byte at a time: the same
        slow.settimeout(30)
        slow.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        assert slow.recv(100).startswith(b"HTTP/1.1 408")
        slow.close()
    finally:
        for sock in idle:
            sock.close()
        stop(proc)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_huge_streamed_answer_passes_whole_with_bounded_memory(upstream: CountingUpstream, tmp_path: Path) -> None:
    """Today's break: a 50 MB answer took 271 MB in the proxy. It passes through whole; its record
    keeps the first RECORD_TEXT_LIMIT characters, the whole length and the whole text's sha256."""
    import hashlib

    from govkit.inference.calls import RECORD_TEXT_LIMIT

    url, proc = start_proxy(tmp_path, upstream.url)
    try:
        send(url, "POST", "/v1/chat/completions", json.dumps({"model": "stream", "messages": MESSAGES,
                                                            "stream": True}).encode())
        before = _peak_rss_mb(proc.pid)
        status, body = send(url, "POST", "/v1/chat/completions",
                            json.dumps({"model": "stream-huge", "messages": MESSAGES, "stream": True}).encode())
        grown = _peak_rss_mb(proc.pid) - before
    finally:
        stop(proc)
    assert status == 200 and body.count(b"w" * 10_000) == 5_000 and body.endswith(b"data: [DONE]\n\n")
    answer = records(tmp_path / ".govkit" / "audit.db", "inference")[-1]
    [choice] = answer.details["choices"]
    whole = "w" * 50_000_000
    assert choice["truncated"] == {"chars": 50_000_000, "sha256": "sha256:" + hashlib.sha256(whole.encode()).hexdigest()}
    with AuditLog(tmp_path / ".govkit" / "audit.db", read_only=True) as log:
        kept = log.content(answer)["response"]
    assert kept.startswith("w" * RECORD_TEXT_LIMIT) and "more characters not kept" in kept
    print(f"proxy peak RSS grew {grown:.1f} MB")
    assert grown < 50, f"the proxy grew by {grown:.0f} MB for a 50 MB answer"  # the answer is never held whole


def test_an_older_copy_moved_over_the_live_log_gets_503_not_lost_records(upstream: CountingUpstream,
                                                                        tmp_path: Path) -> None:
    """Today's break: an `mv` of an older copy over the live log while the proxy ran lost every
    later acknowledged record, and verify then said OK."""
    import shutil

    url, proc = start_proxy(tmp_path, upstream.url)
    db = tmp_path / ".govkit" / "audit.db"
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    try:
        assert send(url, "POST", "/v1/chat/completions", body)[0] == 200
        older = tmp_path / "older.db"
        source = sqlite3.connect(db)
        backup = sqlite3.connect(older)
        source.backup(backup)  # a consistent older copy, as a backup tool makes it
        source.close()
        backup.close()
        served_before = len(upstream.served)
        assert send(url, "POST", "/v1/chat/completions", body)[0] == 200
        shutil.move(older, db)  # the older copy replaces the live log
        statuses = [send(url, "POST", "/v1/chat/completions", body)[0] for _ in range(5)]
    finally:
        stop(proc)
    assert statuses == [503] * 5 and len(upstream.served) == served_before + 1  # no answer, no model call
    assert "was replaced by another file while govkit had it open" in (tmp_path / "proxy.log").read_text()


def test_no_streamed_word_reaches_the_client_before_it_is_journaled(upstream: CountingUpstream, tmp_path: Path) -> None:
    """The store locked after the request record: the app got every word, then "withheld" (only
    the last, empty event was held). Now each part waits for the journal, so the words stop where
    the store stopped, and the journal names exactly the bytes the client got."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "govkit", "init", "--yes"], cwd=tmp_path, check=True, capture_output=True)
    _short_busy_timeout(tmp_path)
    url, proc = start_proxy(tmp_path, upstream.url)
    db = tmp_path / ".govkit" / "audit.db"
    result: dict = {}
    body = json.dumps({"model": "stream-slow", "messages": MESSAGES, "stream": True}).encode()

    def call() -> None:
        result["status"], result["body"] = send(url, "POST", "/v1/chat/completions", body)

    caller = threading.Thread(target=call)
    held = None
    try:
        caller.start()
        deadline = time.monotonic() + 20
        while len(journaled(db)) < 5 and time.monotonic() < deadline:  # some words are out, on record
            time.sleep(0.01)
        held = hold_writer_lock(db)
        caller.join(30)
    finally:
        if held is not None:
            os.close(held)
        stop(proc)
    got = result["body"].split(b"data: {\"error\"")[0]
    rows = journaled(db)
    assert len(rows) >= 5 and b"w29" not in got and b"audit_journal" not in got
    assert rows[-1][1:] == (len(got), hashlib.sha256(got).hexdigest())  # the client has exactly what is journaled
    assert b"the audit journal could not be committed" in result["body"]

    url, proc = start_proxy(tmp_path, upstream.url)  # the next proxy says what the cut-off stream delivered
    stop(proc)
    [incident] = [r for r in records(db, "incident") if (r.details or {}).get("kind") == "stream_without_record"]
    assert incident.details["bytes_forwarded"] == len(got) and incident.details["parts_forwarded"] == len(rows)
    assert incident.details["sha256_forwarded"] == hashlib.sha256(got).hexdigest()
    assert journaled(db) == []
    with AuditLog(db, read_only=True) as log:
        assert log.verify().ok


@pytest.mark.parametrize("window", ["0", "20"])
def test_a_whole_stream_is_sealed_by_its_record_and_leaves_no_journal(upstream: CountingUpstream, tmp_path: Path,
                                                                      window: str) -> None:
    url, proc = start_proxy(tmp_path, upstream.url, "--journal-window-ms", window)
    try:
        status, body = send(url, "POST", "/v1/chat/completions",
                            json.dumps({"model": "stream", "messages": MESSAGES, "stream": True}).encode())
    finally:
        stop(proc)
    db = tmp_path / ".govkit" / "audit.db"
    [answer] = records(db, "inference")
    assert status == 200 and answer.details["stream"] == {
        "parts_forwarded": answer.details["stream"]["parts_forwarded"], "bytes_forwarded": len(body),
        "sha256_forwarded": hashlib.sha256(body).hexdigest()}
    assert journaled(db) == []
