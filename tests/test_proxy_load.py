"""The proxy under load and under fire: clients that hang up, a graceful stop, a SIGKILL
mid-load, and a bounded load test on loopback with zero lost records and flat memory."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from govkit.audit import AuditLog

from .servers import start_proxy, stop
from .test_proxy import FaultyUpstream, inference_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream() -> FaultyUpstream:
    return FaultyUpstream()


def ask(url: str, model: str, marker: str, *, stream: bool = False, timeout: float = 30) -> bytes:
    body = json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": f"request {marker}"}]}).encode()
    request = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_client_hanging_up_mid_stream(upstream: FaultyUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    try:
        host, port = url.split("//")[1].split("/")[0].split(":")
        body = json.dumps({"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
            received = b""
            while b"w0" not in received:  # the first event arrives, then the client goes away
                chunk = sock.recv(4096)
                assert chunk, received
                received += chunk
        deadline = time.monotonic() + 10
        while not inference_records(tmp_path / ".govkit" / "audit.db") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(proc)
    [record] = inference_records(tmp_path / ".govkit" / "audit.db")
    assert record.status == "client_disconnected"
    with AuditLog(tmp_path / ".govkit" / "audit.db", create=False) as log:
        assert log.content(record)["response"] == "".join(f"w{i} " for i in range(20))  # the whole answer


def test_sigterm_finishes_in_flight_requests(upstream: FaultyUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    answers: list[bytes] = []
    client = threading.Thread(target=lambda: answers.append(ask(url, "slow", "in-flight")))
    client.start()
    time.sleep(0.4)  # the request is now waiting on the slow upstream
    proc.send_signal(signal.SIGTERM)
    client.join(10)
    assert proc.wait(10) == 0
    assert answers and json.loads(answers[0])["choices"][0]["message"]["content"] == "fine"
    [record] = inference_records(tmp_path / ".govkit" / "audit.db")
    assert record.status == "ok"
    assert b"stopping" in (tmp_path / "proxy.log").read_bytes()


def test_sigkill_under_load_loses_no_answered_call(upstream: FaultyUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    answered: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 30

    def client(k: int) -> None:
        n = 0
        while time.monotonic() < stop_at:
            marker = f"c{k}-{n}"
            try:
                ask(url, "fine", marker, timeout=5)
            except (urllib.error.URLError, ConnectionError, OSError):
                return  # the proxy is gone
            with lock:
                answered.append(marker)
            n += 1

    clients = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for c in clients:
        c.start()
    while len(answered) < 300 and time.monotonic() < stop_at:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    for c in clients:
        c.join(10)
    proc.wait()
    assert len(answered) >= 300
    with AuditLog(tmp_path / ".govkit" / "audit.db", create=False) as log:
        assert log.verify().ok
        recorded = {log.content(r)["prompt"].removeprefix("user: request ") for r in log.query(event_type="inference")}
    missing = set(answered) - recorded
    assert not missing, sorted(missing)[:10]


def test_bounded_load_zero_lost_records_and_flat_memory(upstream: FaultyUpstream, tmp_path: Path) -> None:
    url, proc = start_proxy(tmp_path, upstream.url)
    sent, failed = [0], [0]
    lock = threading.Lock()

    def run(seconds: float, concurrency: int) -> None:
        stop_at = time.monotonic() + seconds

        def client() -> None:
            while time.monotonic() < stop_at:
                try:
                    ask(url, "fine", "load", timeout=10)
                    with lock:
                        sent[0] += 1
                except OSError:
                    with lock:
                        failed[0] += 1

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        run(3, 32)  # warm up: caches, pools, the first WAL checkpoints
        before = rss_kib(proc.pid)
        run(15, 32)
        after = rss_kib(proc.pid)
    finally:
        stop(proc)
    assert failed[0] == 0
    assert len(inference_records(tmp_path / ".govkit" / "audit.db")) == sent[0]
    assert after - before < 20 * 1024, f"proxy RSS grew from {before} KiB to {after} KiB"
