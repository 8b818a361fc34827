"""Every error govkit raises on purpose, and the CLI exit code each maps to.

    GovkitError                      (exit 1)
    ├── InputError                   (exit 2) bad user input: a file, field or value
    │   ├── ConfigError              (exit 2) govkit.toml: names file, key and line
    │   └── InvalidRecord            (exit 2) an audit record field or event type
    │   └── DuplicateCheck           (exit 2) two checks claim one id
    ├── MissingDependency            (exit 2) an optional extra is not installed
    ├── EndpointError                (exit 3) the model endpoint is unreachable or failing
    ├── TrackingError                (exit 3) the MLflow server or store cannot be used
    │   ├── ArtifactMissing          (exit 3) a file the store should hold is not there
    │   └── CentralUnreachable       (exit 3) no answer from the server, after its retries
    ├── StoreError                   (exit 3) the audit store cannot be used as asked
    │   ├── StoreNotFound            (exit 3) no store at the path (only `govkit init` makes one)
    │   ├── StoreMismatch            (exit 3) a store, but not the one govkit.toml names
    │   ├── StoreReplaced            (exit 3) the file was replaced or removed while open
    │   ├── PurgeIncomplete          (exit 3) a purge is recorded, but an open reader keeps old pages
    │   ├── StoreCorrupt             (exit 3) not a SQLite file / unreadable pages
    │   ├── StoreBusy                (exit 3) locked by another writer past the timeout
    │   └── StoreFull                (exit 3) the disk (or the store's page limit) is full

A failed verification is a result (`VerifyResult.ok` false), not an error: nothing raises it.

Errors speak the library's language. An error about one argument names it in `parameter` (the
Python name, e.g. "model_path"); about a file, in `file`, and a row of it, in `row` (1-based).
`str(error)` names them as a Python caller knows them; the CLI's error boundary renders the
same error with the command's own flag names (`render(flag_of)`).

Exit codes of the CLI: 0 ok, 1 findings (a verification failure, a blocking check, a breached
threshold), 2 usage or input error, 3 the environment failed (an unreachable or failing model
endpoint; a store that is missing, locked, corrupt or full), 4 an internal error (a bug in
govkit, never a user's mistake). Nothing already committed is lost by any of these: the store
only ever appends inside a transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "ConfigError",
    "PurgeIncomplete",
    "EndpointError",
    "GovkitError",
    "InputError",
    "InvalidRecord",
    "MissingDependency",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreMismatch",
    "StoreNotFound",
    "StoreReplaced",
    "DuplicateCheck",
    "TrackingError",
    "ArtifactMissing",
    "CentralUnreachable",
]


class GovkitError(Exception):
    """Base of every error govkit raises on purpose; the CLI shows its message without a traceback."""

    exit_code = 1

    def __init__(self, message: str = "", *, parameter: str | tuple[str, ...] | None = None,
                 value: object = None, file: object = None, row: int | None = None):
        self.message, self.parameter, self.value, self.file, self.row = message, parameter, value, file, row
        super().__init__(message)

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message after where it happened: "FILE, row N: PARAMETER VALUE: message", each part
        only when set. `name` spells a parameter (the CLI passes one giving the flag)."""
        where = []
        if self.file is not None:
            where.append(f"{self.file}, row {self.row}" if self.row is not None else str(self.file))
        elif self.row is not None:
            where.append(f"row {self.row}")
        if self.parameter:
            names = (self.parameter,) if isinstance(self.parameter, str) else self.parameter
            where.append(" / ".join(name(p) for p in names) + ("" if self.value is None else f" {self.value}"))
        return ": ".join([*where, self.message]) if where else self.message

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments; rebuild from the state instead (an error
        # raised in the explanation sampler's process reaches the proxy whole).
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[GovkitError], state: dict[str, Any]) -> GovkitError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class InputError(GovkitError):
    exit_code = 2


class ConfigError(InputError):
    def __init__(self, path: object, key: str | None, message: str, line: int | None = None):
        self.path, self.key, self.line = path, key, line
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if key:
            where += f", key '{key}'"
        super().__init__(f"{where}: {message}")


class InvalidRecord(InputError):
    pass


class DuplicateCheck(InputError):
    """Two checks (built-in or from a --checks-dir folder) declare the same id."""


class MissingDependency(GovkitError):
    exit_code = 2

    def __init__(self, module: str, extra: str):
        self.module, self.extra = module, extra
        super().__init__(f"this feature needs '{module}': pip install 'govkit[{extra}]'")


class EndpointError(GovkitError):
    exit_code = 3


class TrackingError(GovkitError):
    """The tracking server or store could not be used (exit 3: the environment failed)."""

    exit_code = 3


class ArtifactMissing(TrackingError):
    """The server answered, but a file it should hold is not there (deleted, or expired by an
    object store's lifecycle rule): a finding about the evidence where one is read."""


class CentralUnreachable(TrackingError):
    """The tracking server did not answer at all, after its retries with backoff."""


class StoreError(GovkitError):
    exit_code = 3


class StoreNotFound(StoreError):
    pass


class StoreMismatch(StoreError):
    pass


class StoreReplaced(StoreError):
    pass


class PurgeIncomplete(StoreError):
    """The purge is committed and chained (`record`), but an open reader kept the write-ahead log
    from being emptied, so the erased text is still physically on disk until the next purge."""

    def __init__(self, message: str, record: object):
        self.record = record
        super().__init__(message)


class StoreCorrupt(StoreError):
    pass


class StoreBusy(StoreError):
    pass


class StoreFull(StoreError):
    pass
