"""The demo's two servers: llama.cpp's OpenAI-compatible server with the bundled model, and
`govkit proxy` in front of it. Both are children in the demo's own process group (a terminal's
Ctrl-C reaches them too) and both are stopped when the block ends, however it ends: SIGTERM turns
into KeyboardInterrupt for the demo, and a child that does not stop within 20 s is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from ..errors import EndpointError

__all__ = ["Services"]


class Services:
    def __init__(self, logs: Path):
        self.logs = logs
        self.processes: list[subprocess.Popen] = []
        self._previous: Any = None

    def __enter__(self) -> Services:
        def interrupted(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        self._previous = signal.signal(signal.SIGTERM, interrupted)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            for process in reversed(self.processes):  # the proxy first: it chains its shutdown
                _stop(process)
        finally:
            signal.signal(signal.SIGTERM, self._previous)

    def model_server(self, gguf: Path) -> str:
        """Start llama.cpp's server (llama-cpp-python) on a free loopback port: the base URL of /v1."""
        from ..inference.localserver import free_port, wait_for_http

        port = free_port()
        process = self._start([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"], "llama-server.log")
        self._wait(lambda: wait_for_http(f"http://127.0.0.1:{port}/v1/models", process, 180), "llama-server.log")
        return f"http://127.0.0.1:{port}/v1"

    def proxy(self, upstream: str, gguf: Path) -> str:
        """Start `govkit proxy` in front of `upstream` for this folder's govkit.toml: its base URL."""
        from ..inference.localserver import free_port

        port = free_port()
        process = self._start([sys.executable, "-m", "govkit", "proxy", "--upstream", upstream, "--listen",
                               f"127.0.0.1:{port}", "--model-artifact", str(gguf)], "proxy.log")
        log = self.logs / "proxy.log"

        def listening() -> None:
            deadline = time.monotonic() + 60
            while b"listening on" not in log.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("it did not start")
                time.sleep(0.1)

        self._wait(listening, "proxy.log")
        return f"http://127.0.0.1:{port}/v1"

    def _start(self, command: list[str], log_name: str) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / log_name).open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def _wait(self, ready: Any, log_name: str) -> None:
        try:
            ready()
        except RuntimeError as exc:
            tail = (self.logs / log_name).read_text(encoding="utf-8", errors="replace")[-800:]
            raise EndpointError(f"{log_name.removesuffix('.log')} did not come up ({exc}); the end of "
                                     f"{self.logs / log_name}:\n{tail}") from None


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
