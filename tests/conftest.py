from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from govkit.audit import AuditLog
from govkit.audit.checkpoints import generate_keypair


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder with no govkit environment leaking in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVKIT_CONFIG", raising=False)
    monkeypatch.delenv("GOVKIT_RAISE_ERRORS", raising=False)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "device.pem"
    generate_keypair(path)
    return path


@pytest.fixture
def log(tmp_path: Path, key_path: Path):
    with AuditLog(tmp_path / "audit.db", private_key=key_path, checkpoint_every=5, create=True) as opened:
        yield opened


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory):
    """llama.cpp's own server (`govkit serve`) serving SmolLM2 on loopback: (url, gguf path)."""
    from .servers import smollm2_gguf, start_llama_server, stop

    gguf = smollm2_gguf()
    url, proc = start_llama_server(gguf, tmp_path_factory.mktemp("llama") / "server.log")
    yield url, gguf
    stop(proc)


def copy_store(src: Path, dst_dir: Path) -> Path:
    """Copy a closed store with its checkpoint sidecar."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for path in src.parent.glob(src.name + "*"):
        if path.is_file():  # not the folder of sealed segments
            shutil.copy(path, dst_dir / path.name)
    return dst_dir / src.name


def run(*args: str, input: str | None = None) -> Result:
    """`govkit ARGS` in this process. An exception the CLI's error boundary does not turn into an
    exit code (a bug) propagates into the test, never passes as a mere exit code."""
    from govkit.cli import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_in(folder: Path, *args: str) -> Result:
    """`govkit ARGS` run from `folder` (its govkit.toml), the working folder restored after."""
    import os

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return run(*args)
    finally:
        os.chdir(cwd)


@pytest.fixture
def central(tmp_path: Path) -> str:
    """A local central MLflow store (the server path is tests/central_server.py)."""
    return f"sqlite:///{tmp_path / 'central' / 'mlflow.db'}"


@pytest.fixture
def witness_key(tmp_path: Path) -> tuple[Path, str]:
    """The witness's private key file and its public key, as `govkit fleet keygen` makes them."""
    key = tmp_path / "witness.pem"
    result = run("fleet", "keygen", "--key", str(key))
    assert result.exit_code == 0, result.output
    return key, result.output.strip()

