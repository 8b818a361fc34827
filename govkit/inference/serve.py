"""llama.cpp's own HTTP server, from the prebuilt xllamacpp wheel (no compiler), as `govkit serve`.

xllamacpp embeds llama.cpp's C++ server (`/v1/chat/completions`, `/v1/completions`,
`/v1/embeddings`, `/completion`, `/infill`, `/v1/messages`, `/props`, `/metrics`, ...). Its
`/props` reports `build_info: b0-unknown`, so the runtime's identity comes from the package
instead: its version encodes the llama.cpp build (2026.10.11549 is b11549), and the sha256 of its
native library names the exact code that answers. The server publishes both as model tags in
`/v1/models`, where `govkit proxy` reads them into every record.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .._lazy import require
from ..errors import EndpointError, InputError, MissingDependency

__all__ = ["RUNTIME_TAG", "ServeOptions", "parse_runtime_tags", "runtime_identity", "serve"]

PACKAGE = "xllamacpp"
# Model tags in /v1/models: "govkit.runtime.<field>=<value>", read back by parse_runtime_tags.
RUNTIME_TAG = "govkit.runtime."
_RUNTIME_FIELDS = ("runtime", "runtime_version", "runtime_sha256")


@dataclass(frozen=True)
class ServeOptions:
    model: Path
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int | None = None  # None: every core this process may use
    ctx: int = 2048
    api_key: str | None = None
    embedding: bool = False
    parallel: int = 1


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def runtime_identity() -> dict[str, str]:
    """What every record says of the runtime: llama.cpp, its build from the package version, and
    the sha256 of the native library that runs it."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependency(PACKAGE, "serve") from None
    build = version.split(".")[2] if version.count(".") >= 2 else ""
    identity = {"runtime": "llama.cpp",
                "runtime_version": f"b{build} (xllamacpp {version})" if build.isdigit() else f"xllamacpp {version}"}
    library = _native_library()
    if library is not None:
        digest = hashlib.sha256()
        with library.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        identity["runtime_sha256"] = digest.hexdigest()
    return identity


def _native_library() -> Path | None:
    files = importlib.metadata.distribution(PACKAGE).files or []
    for file in files:
        if file.name.startswith("xllamacpp") and file.name.endswith(".so"):
            return Path(str(file.locate()))
    return None


def _check_inputs(options: ServeOptions) -> None:
    """The two mistakes llama.cpp reports only as "failed to init server": named here instead."""
    try:
        with options.model.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise InputError(f"cannot read the model: {exc.strerror}", file=options.model) from None
    if magic != b"GGUF":
        raise InputError("not a GGUF file (llama.cpp serves GGUF models)", file=options.model)
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((options.host, options.port))
        except OSError as exc:
            raise InputError(f"cannot listen on {options.host}:{options.port}: {exc.strerror}",
                             parameter="port") from None


def parse_runtime_tags(tags: Any) -> dict[str, str]:
    """The runtime identity a `govkit serve` server published in its model tags (else {})."""
    found: dict[str, str] = {}
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.startswith(RUNTIME_TAG):
            name, _, value = tag[len(RUNTIME_TAG):].partition("=")
            if name in _RUNTIME_FIELDS and value:
                found[name] = value
    return found


def serve(options: ServeOptions, ready: Callable[[str, dict[str, str], int], None]) -> None:
    """Serve until SIGINT or SIGTERM. `ready(url, identity, threads)` runs once it listens."""
    xllamacpp = require("xllamacpp", "serve")
    _check_inputs(options)
    identity = runtime_identity()
    threads = options.threads or default_threads()
    params = xllamacpp.CommonParams()
    params.model.path = str(options.model)
    params.model_alias = {options.model.name}  # the file's name, not its path, in every answer's "model"
    params.model_tags = {f"{RUNTIME_TAG}{name}={value}" for name, value in identity.items()}
    params.hostnames = [options.host]
    params.port = options.port
    params.n_ctx = options.ctx
    params.n_parallel = options.parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.endpoint_metrics = True
    if options.api_key:
        params.api_keys = [options.api_key]
    if options.embedding:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN  # what /v1/embeddings needs

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:  # a file llama.cpp cannot load, a port in use: the server says which
            raise EndpointError(f"llama.cpp's server did not start on {options.host}:{options.port} with "
                                f"{options.model}: {exc}") from None
        try:
            ready(f"http://{options.host}:{options.port}", identity, threads)
            while not stopping.wait(0.5):
                pass
        finally:
            del server  # stops the server's loop and frees the model
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
