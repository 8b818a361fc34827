"""The demo's two servers: llama.cpp's own server (`govkit serve`) with the bundled model, and
`govkit proxy` in front of it. Both are children in the demo's own process group (a terminal's
Ctrl-C reaches them too) and both are stopped when the block ends, however it ends: SIGTERM turns
into KeyboardInterrupt for the demo, and a child that does not stop within 20 s is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from ..errors import EndpointError

__all__ = ["Services"]

T = TypeVar("T")


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
        from ..inference.localserver import stop

        try:
            for process in reversed(self.processes):  # the proxy first: it chains its shutdown
                stop(process)
        finally:
            signal.signal(signal.SIGTERM, self._previous)

    def model_server(self, gguf: Path, threads: int | None = None) -> str:
        """Start llama.cpp's own server (`govkit serve`) on a free loopback port: the base URL of /v1."""
        from ..inference.localserver import start_llama_server

        self.logs.mkdir(parents=True, exist_ok=True)
        # A server that never comes up (or Ctrl-C while it starts) is stopped by start_llama_server itself.
        url, process = self._wait(lambda: start_llama_server(gguf, self.logs / "llama-server.log", threads=threads),
                                  "llama-server.log")
        self.processes.append(process)
        return url

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

    def _wait(self, ready: Callable[[], T], log_name: str) -> T:
        try:
            return ready()
        except RuntimeError as exc:
            tail = (self.logs / log_name).read_text(encoding="utf-8", errors="replace")[-800:]
            raise EndpointError(f"{log_name.removesuffix('.log')} did not come up ({exc}); the end of "
                                     f"{self.logs / log_name}:\n{tail}") from None

