"""A real central store: Debian's PostgreSQL and `mlflow server` on loopback (proxied artifacts
into a local folder), started for the fleet tests and benchmarks/bench_sync.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def mlflow_server(folder: Path, backend: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlflow server` on `backend` with proxied artifacts in `folder/artifacts`; yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (folder / "mlflow.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                             "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "2", *extra],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})})
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
