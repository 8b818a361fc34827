"""The device registry the central side trusts: which store and public key each device has.

It is kept by the institution, not learned from uploads (a forged upload would otherwise bring
its own key). A TOML file, one table per enrolled store:

    [[device]]
    id = "branch-17-tablet"
    store_id = "01JD..."
    public_key = "base64 of the 32-byte Ed25519 key govkit init wrote"
    owner_public_key = "base64 of the model owner's key that signs the device's roster (optional)"

With `owner_public_key`, the witness reads the device's signed statements against that roster and
says when the device runs a model file no valid approval covers.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..audit.checkpoints import parse_public_key
from ..errors import InputError

__all__ = ["Device", "enroll", "load_registry"]


@dataclass(frozen=True)
class Device:
    id: str
    store_id: str
    public_key: str
    owner_public_key: str = ""  # the device's roster anchor ([people] owner_public_key), when enrolled with it


def load_registry(path: Path) -> dict[tuple[str, str], Device]:
    """(device id, store id) -> Device; InputError naming the file and entry when one is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such device registry (govkit fleet enroll writes one)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not a readable device registry ({exc})") from None
    devices: dict[tuple[str, str], Device] = {}
    for number, entry in enumerate(data.get("device", []), 1):
        where = f"{path}, device entry {number}"
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) and entry.get(k)
                                                  for k in ("id", "store_id", "public_key")):
            raise InputError(f"{where}: needs id, store_id and public_key")
        key = parse_public_key(entry["public_key"], source=f"{where}: public_key")
        owner = entry.get("owner_public_key") or ""
        if owner:
            owner = parse_public_key(str(owner), source=f"{where}: owner_public_key")
        devices[(entry["id"], entry["store_id"])] = Device(entry["id"], entry["store_id"], key, owner)
    return devices


def enroll(path: Path, device: Device) -> bool:
    """Add the device's store to the registry; False when it is already there with this key.
    A store enrolled with another key is refused: re-keying is a decision, not an accident."""
    path = Path(path)
    known = load_registry(path) if path.exists() else {}
    existing = known.get((device.id, device.store_id))
    if existing is not None:
        if existing.public_key != device.public_key:
            raise InputError(f"{path}: store {device.store_id} of device {device.id} is enrolled with another key; "
                             f"edit the registry by hand to re-key it")
        return False
    for value in (device.id, device.store_id):
        if not value or any(c in value for c in "\"\\\n'"):
            raise InputError(f"device id or store id {value!r}: expected plain text", parameter="device")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[[device]]\nid = "{device.id}"\nstore_id = "{device.store_id}"\n'
                     f'public_key = "{device.public_key}"\n'
                     + (f'owner_public_key = "{device.owner_public_key}"\n' if device.owner_public_key else ""))
    return True
