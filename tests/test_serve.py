"""`govkit serve`: llama.cpp's own server from the xllamacpp wheel, as a process a user starts;
and llama.cpp's native routes audited through govkit proxy in front of it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from govkit.audit import AuditLog

from .servers import free_port, smollm2_gguf, start_proxy, stop

pytest.importorskip("xllamacpp")


def serve(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "govkit", "serve", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    return proc, port


def ready_line(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first line of stdout, once the server listens
    assert line, f"govkit serve exited with {proc.wait()} before it was ready"
    return line


def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_says_where_it_listens_on_loopback_and_stops_cleanly(sig: signal.Signals) -> None:
    gguf = smollm2_gguf()
    proc, port = serve(str(gguf), "--threads", "1")
    try:
        line = ready_line(proc)
        assert f"listening on http://127.0.0.1:{port}/v1" in line and gguf.name in line and "1 threads" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        with socket.socket() as other:  # loopback only: the machine's other addresses do not answer
            other.settimeout(2)
            outward = socket.gethostbyname(socket.gethostname())
            if not outward.startswith("127."):
                assert other.connect_ex((outward, port)) != 0
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in (proc.stdout.read() if proc.stdout else "")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_names_the_mistake_with_exit_2(tmp_path: Path) -> None:
    gguf = smollm2_gguf()
    not_a_model = tmp_path / "model.gguf"
    not_a_model.write_text("not a model")
    result = subprocess.run([sys.executable, "-m", "govkit", "serve", str(not_a_model)], capture_output=True, text=True)
    assert result.returncode == 2 and f"{not_a_model}: not a GGUF file" in result.stderr
    assert "Traceback" not in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "govkit", "serve", str(gguf), "--port", str(port)],
                                capture_output=True, text=True)
    assert result.returncode == 2 and f"--port: cannot listen on 127.0.0.1:{port}" in result.stderr
    for flag in ("--threads", "--parallel"):  # a number past what llama.cpp takes crashed with exit 4
        result = subprocess.run([sys.executable, "-m", "govkit", "serve", str(gguf), flag, "99999999999"],
                                capture_output=True, text=True)
        assert result.returncode == 2 and flag in result.stderr and "Internal error" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "govkit", "serve", str(gguf), "--api-key-env", "NO_SUCH_VAR"],
                            capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "NO_SUCH_VAR"})
    assert result.returncode == 2 and "--api-key-env" in result.stderr and "$NO_SUCH_VAR" in result.stderr


def test_serve_with_an_api_key_refuses_other_callers_and_the_proxy_sends_it(tmp_path: Path) -> None:
    gguf = smollm2_gguf()
    proc, port = serve(str(gguf), "--api-key-env", "MODEL_KEY", env={"MODEL_KEY": "model-secret-789"})
    proxy = None
    try:
        ready_line(proc)
        body = {"messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 2}
        assert post(f"http://127.0.0.1:{port}/v1/chat/completions", body)[0] == 401
        status, _ = post(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                         {"Authorization": "Bearer model-secret-789"})
        assert status == 200
        url, proxy = start_proxy(tmp_path, f"http://127.0.0.1:{port}/v1", "--upstream-key-env", "MODEL_KEY",
                                 env={"MODEL_KEY": "model-secret-789"})
        status, answer = post(url + "/chat/completions", body)
        assert status == 200 and answer["choices"]
    finally:
        if proxy is not None:
            stop(proxy)
        stop(proc)
    raw = b"".join(p.read_bytes() for p in (tmp_path / ".govkit").glob("audit.db*"))
    assert b"model-secret-789" not in raw


def test_llama_cpps_native_routes_are_audited_through_the_proxy(llama, tmp_path: Path) -> None:
    """/completion, /infill, /v1/completions and /v1/messages on llama.cpp's real server: each is
    one record naming its route, the runtime's build and the answer's tokens; /props passes."""
    upstream, gguf = llama
    url, proxy = start_proxy(tmp_path, upstream, "--model-artifact", str(gguf))
    root = url.removesuffix("/v1")
    try:
        calls = {
            "/completion": post(root + "/completion", {"prompt": "Colours: red,", "n_predict": 4, "temperature": 0}),
            "/v1/completions": post(url + "/completions", {"prompt": "Colours: red,", "max_tokens": 4}),
            "/v1/messages": post(url + "/messages", {"model": "m", "max_tokens": 4,
                                                     "messages": [{"role": "user", "content": "Say yes."}]}),
            # SmolLM2 has no fill-in-the-middle tokens: llama.cpp answers 501, and that is on record too
            "/infill": post(root + "/infill", {"input_prefix": "def f(", "input_suffix": "):", "n_predict": 4}),
        }
        with urllib.request.urlopen(root + "/props", timeout=10) as response:
            assert "default_generation_settings" in json.loads(response.read())
    finally:
        stop(proxy)
    assert calls["/completion"][0] == 200 and calls["/completion"][1]["content"]
    assert calls["/v1/completions"][0] == 200 and calls["/v1/completions"][1]["choices"][0]["text"]
    assert calls["/v1/messages"][0] == 200 and calls["/v1/messages"][1]["content"][0]["text"]
    assert calls["/infill"][0] == 501
    with AuditLog(tmp_path / ".govkit" / "audit.db", create=False) as log:
        records = {r.endpoint: r for r in log.query(event_type="inference")}
        assert log.verify().ok
    assert set(records) == set(calls)
    for endpoint in ("/completion", "/v1/completions", "/v1/messages"):
        record = records[endpoint]
        assert record.status == "ok" and record.runtime == "llama.cpp" and record.runtime_version.startswith("b")
        assert record.output_tokens and record.output_tokens <= 4
    assert records["/completion"].output_tokens == calls["/completion"][1]["tokens_predicted"]
    assert records["/v1/messages"].output_tokens == calls["/v1/messages"][1]["usage"]["output_tokens"]
    assert records["/infill"].status != "ok" and "501" in (records["/infill"].error or "")

