"""Files a command writes for its user (`-o/--output` and the like): never over evidence, never half.

An output may not be an audit store or one of its sidecars, a key, a configuration, a sealed
segment, or anything in govkit's state folder: `govkit audit export -o .govkit/audit.db` emptied
the store it was exporting. Outputs are written to a temporary file beside the target and renamed
over it, so a reader (or a crash) sees the old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import InputError

__all__ = ["check_output", "open_output", "write_output"]

_SQLITE = b"SQLite format 3\x00"
_STATE_FOLDERS = (".govkit",)


def evidence_kind(path: Path) -> str | None:
    """What of govkit's evidence or state `path` is (None: an ordinary file or no file yet)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name in _STATE_FOLDERS:
            return f"inside govkit's state folder {parent}"
        if parent.name.endswith(".segments"):
            return f"inside the sealed segments folder {parent}"
    name = resolved.name
    if name == "govkit.toml" or (resolved.suffix == ".toml" and resolved.exists()):
        return "a configuration file"
    if name.endswith(".checkpoints.jsonl") or name.endswith(".segments"):
        return "an audit store's checkpoint file" if name.endswith(".jsonl") else "a sealed segments folder"
    for suffix in ("-wal", "-shm", "-journal"):
        if name.endswith(suffix) and _is_sqlite(resolved.with_name(name[: -len(suffix)])):
            return "a SQLite database's sidecar (an audit store's?)"
    if _is_sqlite(resolved):
        return "a SQLite database (an audit store, a witness ledger or an MLflow store)"
    if resolved.is_file():
        with contextlib.suppress(OSError), resolved.open("rb") as handle:
            head = handle.read(4096)
            if head.startswith(b"-----BEGIN") and b"PRIVATE KEY" in head:
                return "a private key"
    return None


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == _SQLITE
    except OSError:
        return False


def check_output(path: Path, parameter: str = "output") -> Path:
    """`path`, unless writing it would destroy evidence: then an InputError (exit 2) naming it."""
    kind = evidence_kind(path)
    if kind is not None:
        raise InputError(f"{path} is {kind}: an output never replaces govkit's evidence, keys or configuration; "
                         f"nothing was written", parameter=parameter)
    return path


@contextlib.contextmanager
def open_output(path: Path, mode: str = "w", *, parameter: str = "output", **kwargs: Any) -> Iterator[IO[Any]]:
    """A file to write `path` through: a temporary file beside it, renamed over it on success."""
    check_output(path, parameter)
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, mode, **kwargs) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_output(path: Path, data: bytes | str, *, parameter: str = "output") -> None:
    """Write a whole output file atomically (text as UTF-8)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open_output(path, "wb", parameter=parameter) as stream:
        stream.write(payload)
