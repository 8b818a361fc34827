"""The fleet as a board report shows it: every device's state from the central store at `as_of`,
and the totals page one speaks of (devices not synced, gaps, forks, rollbacks, late
acknowledgements). Plain JSON with the parameters it was taken with, so `govkit report verify`
can take it again from the same central store and compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..digests import sha256_digest
from ..errors import InputError

__all__ = ["INTEGRITY", "fleet_summary"]

INTEGRITY = ("fork", "rollback", "altered", "unknown")  # findings that mean the central evidence cannot be relied on


def fleet_summary(central_uri: str, *, as_of: str, registry: str = "", witness_public_key: str = "",
                  experiments: tuple[str, ...] = (), silent_days: float = 7.0, late_hours: float = 24.0) -> dict[str, Any]:
    """Each device of these experiments (model ids) as the central store shows it at `as_of`, and
    the fleet's totals. With a registry, enrolled devices that never synced count as not synced
    and devices outside it as unknown; with the witness's key, an acknowledgement counts only if
    its cosignature verifies (without it, the MLflow tags are taken at their word, and the
    summary says so)."""
    from .central import Central
    from .registry import load_registry
    from .status import fleet_status

    if not central_uri:
        raise InputError("a fleet report needs the central tracking URI: set [fleet] central (or [sync] to) in "
                         "govkit.toml", parameter="fleet.central")
    devices = None
    registry_cited = None
    if registry:
        path = Path(registry)
        devices = load_registry(path)
        registry_cited = {"path": str(path), "sha256": sha256_digest(path.read_bytes()) if path.exists() else None}
    central = Central(central_uri)
    try:
        ids, missing = [], []
        for name in experiments:
            found = central.experiment(name, create=False)
            if found is None:
                missing.append(name)
            else:
                ids.append(found)
        states = fleet_status(central, ids, registry=devices, witness_key=witness_public_key or None, as_of=as_of,
                              silent_days=silent_days, late_hours=late_hours)
    finally:
        central.close()
    rows = [s.to_dict() for s in states]
    by_kind: dict[str, list[str]] = {}
    for s in states:
        for kind in s.findings:
            by_kind.setdefault(kind, []).append(s.device_id)
    totals = {
        "devices": len(states),
        "enrolled": sum(s.enrolled for s in states),
        "healthy": sum(s.healthy for s in states),
        "never_synced": [s.device_id for s in states if s.last_sync is None],
        "silent": [s.device_id for s in states if s.silent and s.last_sync is not None],
        "late_acks": sum(s.late_acks for s in states),
        "late_devices": [s.device_id for s in states if s.late_acks],
        "unchecked_syncs": sum(s.unchecked for s in states),
        "findings": {kind: sorted(ids) for kind, ids in sorted(by_kind.items())},
        "records_shipped": sum(s.shipped_seq for s in states),
        "records_acknowledged": sum(s.acked_seq for s in states),
        "integrity": not any(kind in by_kind for kind in INTEGRITY),
    }
    return {"central": central_uri, "registry": registry_cited, "experiments": list(experiments),
            "experiments_missing": missing, "witness_public_key": witness_public_key or None,
            "silent_days": silent_days, "late_hours": late_hours, "devices": rows, "totals": totals}
