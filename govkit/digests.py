"""The `sha256:<hex>` strings govkit writes for every digest: of text, bytes, files and hashers."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["PREFIX", "sha256_digest", "sha256_file", "tagged"]

PREFIX = "sha256:"


def sha256_digest(data: bytes | str) -> str:
    """The digest of bytes, or of text encoded as UTF-8."""
    return PREFIX + hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def tagged(hasher: Any) -> str:
    """The digest a running hashlib sha256 object has reached."""
    return PREFIX + hasher.hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    """(digest, bytes read), streamed in fixed-size blocks: memory stays flat for any size.

    hashlib.file_digest reads straight into a reused buffer and hashes without the GIL, so this runs
    at the speed of OpenSSL's sha256, like `sha256sum` (benchmarks/bench_lineage.py).
    """
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256")
            return tagged(digest), handle.tell()
    except IsADirectoryError:
        raise InputError("not a file", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", file=path) from None
