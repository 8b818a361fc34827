"""A real central store: Debian's PostgreSQL and `mlflow server` on loopback (proxied artifacts
into a local folder), started for the fleet tests and benchmarks/bench_sync.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from govkit.inference.localserver import free_port, wait_for_http

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@contextmanager
def postgres(folder: Path) -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free loopback port; yields its SQLAlchemy URI. The cluster
    lives in a folder of its own under the system's temp folder (the postgres user cannot enter
    pytest's, which is its owner's only); `folder` keeps the server's log."""
    import tempfile

    bins = PG_BIN if PG_BIN.is_dir() else Path(shutil.which("pg_ctl") or "pg_ctl").parent
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Path(tempfile.mkdtemp(prefix="govkit-pg-"))
    if os.geteuid() == 0:
        shutil.chown(cluster, "postgres", "postgres")
    data, port = cluster / "data", free_port()
    subprocess.run(_as_postgres(str(bins / "initdb"), "-D", str(data), "-U", "govkit", "--auth=trust", "-E", "UTF8"),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres(str(bins / "pg_ctl"), "-D", str(data), "-l", str(cluster / "pg.log"), "-w", "-o",
                                f"-p {port} -k {cluster} -c listen_addresses=127.0.0.1 -c fsync=on", "start"),
                   check=True, capture_output=True)
    try:
        subprocess.run(_as_postgres(str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "govkit", "mlflow"),
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://govkit@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres(str(bins / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"), capture_output=True)
        if (cluster / "pg.log").exists():
            shutil.copy(cluster / "pg.log", folder / "pg.log")
        shutil.rmtree(cluster, ignore_errors=True)


# MLflow's server starts a job runner by default (huey consumers for its GenAI jobs: eight
# processes, each importing MLflow, ~200 MB apiece); govkit runs no MLflow jobs. Left on, they
# hold both cores for the first minute after the server starts.
_NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@contextmanager
def mlflow_server(folder: Path, backend: str, *extra: str, env: dict[str, str] | None = None,
                  gunicorn: bool = True) -> Iterator[str]:
    """`mlflow server` on `backend` with proxied artifacts in `folder/artifacts`; yields its URL.
    Served by gunicorn, as the README's scale-out path is (MLflow's default, uvicorn, puts ~30 ms
    of its ASGI-to-WSGI bridge on every request); `gunicorn=False` for MLflow's default."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (folder / "mlflow.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                             "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                             *(["--gunicorn-opts", "--timeout 300"] if gunicorn else []), *extra],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **_NO_JOB_RUNNER, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", proc, 180)
        yield url
    finally:
        import signal

        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextmanager
def _serving(handle: Any) -> Iterator[str]:
    """A loopback listener handing each accepted connection to `handle`; yields its URL."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            handle(client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


@contextmanager
def hung_server() -> Iterator[str]:
    """Fault injection: a server that accepts connections and never answers (a hung proxy, an
    overloaded host). Yields its URL."""
    held: list[Any] = []
    try:
        with _serving(held.append) as url:
            yield url
    finally:
        for connection in held:
            connection.close()


@contextmanager
def slow_proxy(url: str, *, delay_s: float, unavailable: int = 0) -> Iterator[str]:
    """Fault injection in front of a real server: every request waits `delay_s` before it is
    forwarded (a slow link or an overloaded server), and the first `unavailable` connections
    are answered 503 and closed (a server restarting). Yields the proxy's URL."""
    import socket
    import threading
    import time

    host, port = url.split("//")[1].split(":")
    refused = {"n": 0}

    def pump(source: Any, target: Any, slow: bool) -> None:
        try:
            while data := source.recv(65536):
                if slow:
                    time.sleep(delay_s)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def handle(client: Any) -> None:
        if refused["n"] < unavailable:
            refused["n"] += 1
            with contextlib.suppress(OSError):
                client.recv(65536)
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection((host, int(port)))
        threading.Thread(target=pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()

    with _serving(handle) as proxy:
        yield proxy
