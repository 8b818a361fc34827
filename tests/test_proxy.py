"""govkit proxy against the real llama.cpp server serving SmolLM2, driven by the official openai SDK;
and against a fault-injecting upstream (the only fake: a server that stalls, lies or dies)."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import importlib.metadata
import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.audit.redact import Redactor

from .servers import free_port, start_llama_server, start_proxy, stop

pytestmark = pytest.mark.slow
openai = pytest.importorskip("openai")
aiohttp_web = pytest.importorskip("aiohttp.web")

MESSAGES = [{"role": "user", "content": "Name three colours. My email is jane.doe@example.com."}]


@pytest.fixture(scope="module")
def proxied(llama, tmp_path_factory: pytest.TempPathFactory):
    upstream, gguf = llama
    folder = tmp_path_factory.mktemp("proxy")
    url, proc = start_proxy(folder, upstream, "--model-artifact", str(gguf))
    yield url, folder / ".govkit" / "audit.db", gguf
    stop(proc)


def inference_records(db: Path) -> list:
    with AuditLog(db, create=False) as log:
        return list(log.query(event_type="inference"))


def test_each_call_is_one_durable_record_tied_to_the_artifact(proxied) -> None:
    url, db, gguf = proxied
    client = openai.OpenAI(base_url=url, api_key="unused")
    before = len(inference_records(db))
    answers = [client.chat.completions.create(model="smollm2", messages=MESSAGES, temperature=0, max_tokens=12,
                                              seed=7) for _ in range(5)]
    records = inference_records(db)[before:]  # the response came back: its record is already on disk
    assert len(records) == 5
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    version = importlib.metadata.version("xllamacpp")  # e.g. 2026.10.11549: llama.cpp build b11549
    library = next(f for f in importlib.metadata.distribution("xllamacpp").files or [] if f.name.endswith(".so"))
    runtime = ("llama.cpp", f"b{version.split('.')[2]} (xllamacpp {version})",
               hashlib.sha256(Path(str(library.locate())).read_bytes()).hexdigest())
    for record, answer in zip(records, answers):
        assert record.artifact_sha256 == digest and record.quantization == "Q4_1"
        assert record.architecture == "llama" and record.parameter_count > 100_000_000
        assert record.status == "ok"
        # llama.cpp's /props says "b0-unknown": the build and its library's hash come from govkit serve
        assert (record.runtime, record.runtime_version, record.runtime_sha256) == runtime
        assert record.input_tokens == answer.usage.prompt_tokens
        assert record.output_tokens == answer.usage.completion_tokens
        assert record.finish_reason == answer.choices[0].finish_reason
        assert record.sampling == {"temperature": 0, "max_tokens": 12, "seed": 7}
        # the prompt's address, and any the model repeats in its answer
        in_answer = Redactor().redact(answer.choices[0].message.content).counts.get("EMAIL", 0)
        assert record.redaction["entities"] == {"EMAIL": 1 + in_answer}
    with AuditLog(db, create=False) as log:
        assert log.content(records[0])["prompt"] == "user: Name three colours. My email is [EMAIL]."
        assert log.content(records[0])["response"] == Redactor().redact(answers[0].choices[0].message.content).text
        assert log.verify().ok
    assert b"jane.doe@example.com" not in b"".join(p.read_bytes() for p in db.parent.glob("audit.db*"))


def test_each_answer_names_its_record(proxied) -> None:
    url, db, _ = proxied
    client = openai.OpenAI(base_url=url, api_key="unused")
    raw = client.chat.completions.with_raw_response.create(model="smollm2", messages=MESSAGES, temperature=0,
                                                           max_tokens=4)
    with AuditLog(db, create=False) as log:
        record = log.get(raw.headers["x-govkit-record-id"])
    assert record is not None and record.event_type == "inference"
    assert record.output_tokens == raw.parse().usage.completion_tokens


def test_answers_match_direct_calls_streamed_and_not(proxied, llama) -> None:
    url, db, _ = proxied
    via = openai.OpenAI(base_url=url, api_key="unused")
    direct = openai.OpenAI(base_url=llama[0], api_key="unused")
    ask = dict(model="smollm2", messages=[{"role": "user", "content": "Count from one to five."}],
               temperature=0, max_tokens=24)
    # llama.cpp reuses the previous request's KV cache, which can shift a temperature-0 answer:
    # compare each proxied call with a direct call made in the same cache state (same prompt just before).
    direct.chat.completions.create(**ask)
    expected = direct.chat.completions.create(**ask).choices[0].message.content
    assert via.chat.completions.create(**ask).choices[0].message.content == expected

    def streamed(client) -> str:
        return "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(**ask, stream=True)
                       if chunk.choices)

    expected_stream = streamed(direct)
    got = streamed(via)
    assert got == expected_stream == expected
    record = inference_records(db)[-1]
    with AuditLog(db, create=False) as log:
        assert log.content(record)["response"] == got  # the record assembled the whole stream
    assert record.finish_reason in ("stop", "length") and record.status == "ok"


def test_legacy_completions_are_audited_too(proxied) -> None:
    url, db, _ = proxied
    client = openai.OpenAI(base_url=url, api_key="unused")
    before = len(inference_records(db))
    plain = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0, stream=True) if c.choices)
    first, second = inference_records(db)[before:]
    with AuditLog(db, create=False) as log:
        assert first.endpoint == second.endpoint == "/v1/completions"
        assert log.content(first) == {"prompt": "The capital of France is", "response": plain.choices[0].text}
        assert log.content(second)["response"] == streamed and second.status == "ok"
        assert first.output_tokens == plain.usage.completion_tokens


def test_embeddings_are_audited(llama, tmp_path: Path) -> None:
    _, gguf = llama
    upstream, server = start_llama_server(gguf, tmp_path / "embedding-server.log", "--embedding")
    url, proc = start_proxy(tmp_path / "p", upstream, "--model-artifact", str(gguf))
    try:
        request = urllib.request.Request(url + "/embeddings", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"model": "m", "input": "card 4111 1111 1111 1111"}).encode())
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        stop(proc)
        stop(server)
    assert answer["data"][0]["embedding"]
    [record] = inference_records(tmp_path / "p" / ".govkit" / "audit.db")
    assert record.endpoint == "/v1/embeddings" and record.status == "ok"
    assert record.artifact_sha256 == "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    with AuditLog(tmp_path / "p" / ".govkit" / "audit.db", create=False) as log:
        assert log.content(record) == {"prompt": "card [PAYMENT_CARD]"}  # vectors are not content


def test_require_token_and_no_secret_in_the_log(llama, tmp_path: Path) -> None:
    upstream, _ = llama
    url, proc = start_proxy(tmp_path, upstream, "--require-token", "--upstream-key-env", "UPSTREAM_KEY",
                            env={"GOVKIT_PROXY_TOKEN": "client-secret-123", "UPSTREAM_KEY": "upstream-secret-456"})
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong").chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
        answer = openai.OpenAI(base_url=url, api_key="client-secret-123").chat.completions.create(
            model="m", messages=MESSAGES, max_tokens=2)
        assert answer.choices
    finally:
        stop(proc)
    raw = b"".join(p.read_bytes() for p in (tmp_path / ".govkit").glob("audit.db*"))
    assert b"client-secret-123" not in raw and b"upstream-secret-456" not in raw
    with AuditLog(tmp_path / ".govkit" / "audit.db", create=False) as log:
        [incident] = log.query(event_type="incident")  # the refused attempt is evidence too
        assert incident.details == {"kind": "unauthorized_client", "attempts": 1, "window_s": 60.0}


def test_a_flood_of_refused_attempts_is_counted_not_logged_one_by_one(tmp_path: Path) -> None:
    upstream = FaultyUpstream()
    url, proc = start_proxy(tmp_path, upstream.url, "--require-token", env={"GOVKIT_PROXY_TOKEN": "t0ken"})
    try:
        for _ in range(25):
            assert post(url, json.dumps({"model": "ok", "messages": MESSAGES}).encode())[0] == 401
    finally:
        stop(proc)  # graceful: the attempts still pending are recorded at shutdown
    with AuditLog(tmp_path / ".govkit" / "audit.db", create=False) as log:
        incidents = [r.details["attempts"] for r in log.query(event_type="incident")]
        assert incidents == [1, 24] and not list(log.query(event_type="inference"))


def test_model_change_is_chained_before_the_next_inference(llama, tmp_path: Path) -> None:
    upstream, gguf = llama
    artifact = tmp_path / "model.gguf"
    shutil.copy(gguf, artifact)
    url, proc = start_proxy(tmp_path / "p", upstream, "--model-artifact", str(artifact))
    client = openai.OpenAI(base_url=url, api_key="unused")
    try:
        client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
        with artifact.open("ab") as handle:  # a new build of the model lands at the same path
            handle.write(b"\0" * 64)
        client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
    finally:
        stop(proc)
    with AuditLog(tmp_path / "p" / ".govkit" / "audit.db", create=False) as log:
        events = [(r.event_type, r.artifact_sha256) for r in log.query() if r.event_type in ("inference", "model_change")]
        new = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
        assert [e for e, _ in events] == ["inference", "model_change", "inference"]
        assert events[0][1] != new and events[1][1] == new and events[2][1] == new
        assert log.verify().ok


# -- faults: a fake upstream that stalls, lies or dies ------------------------------------------

class FaultyUpstream:
    """Answers /v1/chat/completions according to the requested model name."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = aiohttp_web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", lambda r: aiohttp_web.json_response({"data": [{"owned_by": "faulty"}]}))
        runner = aiohttp_web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(aiohttp_web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()

    async def chat(self, request):
        behaviour = (await request.json())["model"]
        self.last_authorization = request.headers.getall("Authorization", [])  # every one sent
        self.last_cookie = request.headers.get("Cookie")
        if behaviour == "set-cookie":
            response = aiohttp_web.json_response({"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]})
            response.set_cookie("session", "client-a-only")
            return response
        if behaviour == "stall":
            await asyncio.sleep(30)
        if behaviour == "malformed":
            return aiohttp_web.Response(text="{not json", content_type="application/json")
        if behaviour == "refuse":
            return aiohttp_web.json_response({"error": {"message": "model overloaded"}}, status=503)
        if behaviour == "drop-first-attempt":
            self.attempts = getattr(self, "attempts", 0) + 1
            if self.attempts % 2 == 1:  # the connection dies before any answer
                request.transport.close()
                return aiohttp_web.Response()
        if behaviour == "slow":
            await asyncio.sleep(1.5)
        if behaviour == "slow-stream":
            response = aiohttp_web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i in range(20):
                await response.write(b'data: {"choices":[{"delta":{"content":"w%d "}}]}\n\n' % i)
                await asyncio.sleep(0.05)
            await response.write(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
            return response
        if behaviour == "die-mid-stream":
            response = aiohttp_web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n')
            request.transport.close()  # the server process dies mid-answer
            return response
        return aiohttp_web.json_response({"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
                                          "usage": {"prompt_tokens": 3, "completion_tokens": 1}})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory):
    upstream = FaultyUpstream()
    folder = tmp_path_factory.mktemp("faulty")
    url, proc = start_proxy(folder, upstream.url, "--timeout", "1", "--max-body-bytes", "2000")
    yield url, folder / ".govkit" / "audit.db"
    stop(proc)


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize("behaviour,status,error", [
    ("stall", 504, "upstream timeout"),
    ("malformed", 502, "malformed upstream JSON"),
    ("refuse", 503, "upstream status 503"),
])
def test_upstream_faults_give_a_clean_error_and_a_failure_record(faulty, behaviour: str, status: int, error: str) -> None:
    url, db = faulty
    before = len(inference_records(db))
    code, body = post(url, json.dumps({"model": behaviour, "messages": MESSAGES}).encode())
    assert code == status and "error" in body
    [record] = inference_records(db)[before:]
    assert record.status == "error" and error in record.error
    assert record.content_mode == "redacted"  # the prompt is kept (redacted) for failures too


def test_stream_dying_mid_answer_is_recorded(faulty) -> None:
    url, db = faulty
    before = len(inference_records(db))
    request = urllib.request.Request(url + "/chat/completions", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"model": "die-mid-stream", "messages": MESSAGES, "stream": True}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    assert b"Hel" in body and b"[DONE]" not in body and b'"error"' in body
    [record] = inference_records(db)[before:]
    assert record.status == "error" and "stream" in record.error
    with AuditLog(db, create=False) as log:
        assert log.content(record)["response"] == "Hel"


def test_oversized_and_invalid_requests_are_refused_and_recorded(faulty) -> None:
    url, db = faulty
    def refusals() -> list:
        with AuditLog(db, read_only=True) as log:
            return [r for r in log.query(event_type="request") if r.status == "rejected"]

    before, answered = len(refusals()), len(inference_records(db))
    assert post(url, json.dumps({"model": "ok", "messages": [{"role": "user", "content": "x" * 5000}]}).encode())[0] == 413
    assert post(url, b"[1, 2")[0] == 400
    records = refusals()[before:]
    assert [r.status for r in records] == ["rejected", "rejected"]
    assert "over 2000 bytes" in records[0].error
    assert len(inference_records(db)) == answered  # the model was not asked


def test_the_clients_token_never_reaches_the_upstream(tmp_path: Path) -> None:
    upstream = FaultyUpstream()
    url, proc = start_proxy(tmp_path, upstream.url, "--require-token", "--upstream-key-env", "UPSTREAM_KEY",
                            env={"GOVKIT_PROXY_TOKEN": "client-secret-123", "UPSTREAM_KEY": "upstream-secret-456"})
    try:
        host, port = url.split("//")[1].split("/")[0].split(":")
        for header in ("Authorization", "authorization", "AUTHORIZATION"):  # sent as spelled
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            body = json.dumps({"model": "ok", "messages": MESSAGES})
            connection.putrequest("POST", "/v1/chat/completions")
            for name, value in (("Content-Type", "application/json"), (header, "Bearer client-secret-123"),
                                ("Content-Length", str(len(body)))):
                connection.putheader(name, value)
            connection.endheaders(body.encode())
            assert connection.getresponse().status == 200
            connection.close()
            assert upstream.last_authorization == ["Bearer upstream-secret-456"]
    finally:
        stop(proc)


def test_a_cookie_the_upstream_sets_for_one_client_never_reaches_another(tmp_path: Path) -> None:
    upstream = FaultyUpstream()
    url, proc = start_proxy(tmp_path, upstream.url.replace("127.0.0.1", "localhost"))  # a host cookies stick to
    try:
        code, _ = post(url, json.dumps({"model": "set-cookie", "messages": MESSAGES}).encode())
        assert code == 200
        code, _ = post(url, json.dumps({"model": "ok", "messages": MESSAGES}).encode())  # another client
        assert code == 200 and upstream.last_cookie is None
    finally:
        stop(proc)


def test_unreachable_upstream(tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    try:
        code, body = post(url, json.dumps({"model": "m", "messages": MESSAGES}).encode())
    finally:
        stop(proc)
    assert code == 502 and body["error"]["type"] == "upstream_error"
    [record] = inference_records(tmp_path / ".govkit" / "audit.db")
    assert record.status == "error" and "unreachable" in record.error


def _chained(db: Path) -> bytes:
    """Every byte of the chain (the records table's bodies), none of the content table's."""
    import sqlite3

    with sqlite3.connect(db) as connection:
        return b"".join(bytes(row[0]) for row in connection.execute("SELECT body FROM records"))


def test_personal_data_in_model_and_sampling_fields_never_reaches_the_chain(proxied) -> None:
    """Sent in "model" or in a sampling value (seed, temperature, max_tokens, Ollama options, an
    unknown key), it was chained raw, where no purge reaches it."""
    url, db, _ = proxied
    secret = ["jane.doe@example.com", "4111 1111 1111 1111", "046-454-286", "Jane Roe", "jane-key"]
    body = {"model": "jane.doe@example.com", "messages": [{"role": "user", "content": "Say yes."}],
            "max_tokens": 2, "temperature": 0, "seed": "4111 1111 1111 1111", "top_p": "046-454-286",
            "options": {"num_predict": "Jane Roe"}, "jane-key": "private note"}
    request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=60).read()
    except urllib.error.HTTPError:
        pass  # llama.cpp may refuse a seed that is not a number: the request's record is written first
    chain = _chained(db)
    assert not [s for s in secret if s.encode() in chain]
    record = inference_records(db)[-1]
    assert record.model_version.startswith("sha256:") and record.sampling["temperature"] == 0
    assert record.sampling["seed"].startswith("sha256:") and record.sampling["max_tokens"] == 2
    assert set(record.request_params) == {"unknown"}


def test_inputs_that_decide_the_answer_are_chained_as_digests(proxied) -> None:
    """A grammar that forces "deny", tools, images, chat_template_kwargs and response_format
    schemas left no trace; every field that can change the answer is digested, never dropped."""
    url, db, _ = proxied

    def call(**extra: object) -> object:
        body = {"model": "m", "messages": [{"role": "user", "content": "Approve or deny?"}], "max_tokens": 3,
                "temperature": 0, **extra}
        request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=60).read()
        except urllib.error.HTTPError:
            pass
        return inference_records(db)[-1]

    deny, approve = call(grammar='root ::= "deny"'), call(grammar='root ::= "approve"')
    assert deny.request_params["grammar"] != approve.request_params["grammar"]
    tools = call(tools=[{"type": "function", "function": {"name": "grant_refund", "parameters": {"type": "object"}}}],
                 chat_template_kwargs={"enable_thinking": False},
                 response_format={"type": "json_schema", "json_schema": {"name": "d", "schema": {"type": "object"}}})
    assert {"tools", "chat_template_kwargs"} <= set(tools.request_params)
    assert tools.sampling["response_format"].startswith("sha256:")
    image = call(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Is this cheque signed?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert image.request_params["media"].startswith("sha256:")
    assert b"iVBORw0KGgo" not in _chained(db) and b"grant_refund" not in _chained(db)


def test_a_body_sent_a_byte_at_a_time_cannot_hold_the_proxy(tmp_path: Path) -> None:
    """A full request head, then one body byte every few seconds, from 8 loopback addresses, filled
    --max-connections and every other client got 503 for as long as the trickle lasted."""
    import socket
    import time

    url, proxy = start_proxy(tmp_path, f"http://127.0.0.1:{free_port()}/v1", "--body-timeout", "1",
                             "--max-connections", "16", "--max-per-client", "2")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{")
    trickles = []
    try:
        for address in range(2, 10):
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(f"127.0.0.{address}", 0))
                sock.sendall(head)
                trickles.append(sock)
        time.sleep(0.3)

        def status_of_new_client() -> int:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return int(sock.recv(64).split(b" ")[1])

        assert status_of_new_client() == 503  # every slot is held by a trickle ...
        answers = []
        for sock in trickles:  # ... which keeps sending, a byte at a time, until the limit cuts it off
            deadline, data = time.monotonic() + 10, b""
            while time.monotonic() < deadline and not data:
                try:
                    sock.sendall(b" ")
                    sock.settimeout(0.3)
                    data = sock.recv(256)
                except TimeoutError:
                    continue
                except OSError:
                    break
            answers.append(data.split(b"\r\n", 1)[0])
        assert answers == [b"HTTP/1.1 408 Request Timeout"] * len(trickles), answers
        deadline = time.monotonic() + 5
        while (status := status_of_new_client()) == 503 and time.monotonic() < deadline:
            time.sleep(0.2)  # the cut-off connections are closed as their 408 is sent
        assert status == 502  # served again: the upstream here is down, so a clean 502
    finally:
        for sock in trickles:
            sock.close()
        stop(proxy)
    with AuditLog(tmp_path / ".govkit" / "audit.db", create=False) as log:
        refused = [r for r in log.query(event_type="request") if r.status == "rejected"]
        assert len(refused) == len(trickles) and all("did not arrive within 1 s" in (r.error or "") for r in refused)
