"""Signed checkpoints: the device's Ed25519 key signs (store, seq, head hash) now and then.

A checkpoint is chained into the log as a `checkpoint` record and also appended to a sidecar
file beside the database (`<db>.checkpoints.jsonl`), so that truncating the log, checkpoint
records included, still leaves a signed statement that the log once reached that seq. Ship the
sidecar off the device (or pass an external copy to verify) for the strongest guarantee.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, StoreFull
from .hashing import canonical_json

__all__ = [
    "generate_keypair",
    "key_id",
    "load_private_key",
    "parse_public_key",
    "public_key_b64",
    "read_checkpoint_file",
    "read_sidecar",
    "sidecar_path",
    "sign_checkpoint",
    "signature_valid",
]

SIGNED_FIELDS = ("device_id", "head_hash", "seq", "store_id", "ts")


def generate_keypair(path: Path) -> str:
    """Write a new PEM private key readable by the owner only; return the public key (base64)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)  # in case the umask widened it
    return public_key_b64(key)


def load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the device key: {exc.strerror}") from None
    except ValueError:
        raise InputError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: expected an Ed25519 private key")
    return key


def public_key_b64(private_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str, *, source: str = "public key") -> str:
    """A base64 Ed25519 public key as given by a person (config, flag); InputError if it is not one."""
    import binascii

    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{source}: not base64 (expected the 32-byte Ed25519 public key govkit init wrote)") from None
    if len(raw) != 32:
        raise InputError(f"{source}: {len(raw)} bytes; an Ed25519 public key has 32")
    return base64.b64encode(raw).decode("ascii")


def key_id(public_b64: str) -> str:
    return "ed25519:" + hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:16]


def sign_checkpoint(private_key: Any, *, store_id: str, seq: int, head_hash: str, ts: str,
                    device_id: str) -> dict[str, Any]:
    signed = {"device_id": device_id, "head_hash": head_hash, "seq": seq, "store_id": store_id, "ts": ts}
    signature = private_key.sign(canonical_json(signed))
    return {**signed, "key_id": key_id(public_key_b64(private_key)),
            "signature": base64.b64encode(signature).decode("ascii")}


def signature_valid(public_b64: str, checkpoint: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
        signed = {name: checkpoint[name] for name in SIGNED_FIELDS}
        key.verify(base64.b64decode(checkpoint["signature"]), canonical_json(signed))
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
    return True


def sidecar_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".checkpoints.jsonl")


def append_sidecar(db_path: Path, checkpoint: dict[str, Any]) -> None:
    """One line per checkpoint, appended with O_APPEND in a single write and synced."""
    line = canonical_json(checkpoint) + b"\n"
    try:
        fd = os.open(sidecar_path(db_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            raise StoreFull(f"{sidecar_path(db_path)}: disk full while writing a checkpoint") from None
        raise


def read_checkpoint_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """An off-device copy of the checkpoint file, given by the person verifying: it must exist,
    be readable and hold at least one checkpoint (InputError otherwise)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the checkpoint file: {exc.strerror}") from None
    found, problems = _parse_checkpoints(path, raw)
    if not found:
        raise InputError(f"{path}: holds no checkpoint" + (f" ({problems[0]})" if problems else " (empty)"))
    return found, problems


def read_sidecar(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Checkpoints in the sidecar file, and the problems met reading it (line numbers named)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], []
    return _parse_checkpoints(path, raw)


def _parse_checkpoints(path: Path, raw: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    checkpoints, problems = [], []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("seq"), int):
                raise ValueError
        except ValueError:
            problems.append(f"{path}, line {number}: not a checkpoint")
            continue
        checkpoints.append(item)
    return checkpoints, problems
