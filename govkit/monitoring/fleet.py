"""The fleet's windows from its synced Parquet segments, read as one dataset by DuckDB (embedded):
the same sketches as on a device, per device and for the whole fleet, each judged against its own
reference period. The segments are read as they lie; `govkit fleet verify` is what proves them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .._lazy import require
from ..config import MonitoringPlan
from ..errors import InputError
from .judge import judge_window
from .sketch import Sketch, add_rows, sketch_sql

__all__ = ["FLEET", "fleet_windows", "segment_files"]

FLEET = "(fleet)"  # the sum of every device


def segment_files(root: Path) -> list[str]:
    """Every segment under `root` (an MLflow artifact root, or any copy of its sync runs), once:
    a segment's file is named by its sha256, so a re-uploaded one is the same file."""
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("segments/device_id=*/date=*/*.parquet")):
        seen.setdefault(path.name, str(path))
    return sorted(seen.values())


def fleet_windows(root: Path, plan: MonitoringPlan, *, start: str, end: str) -> dict[str, Any]:
    """{devices, records, files, seconds, by_device, fleet, breaching} for the windows in [start, end)."""
    duckdb = require("duckdb", "monitor")
    if plan.reference == "approval":
        raise InputError("the fleet is judged against a named period: set [monitoring] reference = "
                         "\"YYYY-MM-DD/YYYY-MM-DD\" (each device's approval is its own)", parameter="reference")
    ref_start, ref_end = (f"{day}T00:00:00Z" for day in plan.reference.split("/"))
    files = segment_files(root)
    if not files:
        raise InputError(f"no synced segments under {root} (segments/device_id=*/date=*/*.parquet)")
    first_day, last_day = min(start, ref_start[:10]), max(end, ref_end[:10])
    started = time.perf_counter()
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    source = (f"(SELECT device_id, body FROM read_parquet({listed}, hive_partitioning = true) "
              f"WHERE event_type = 'inference' AND ts_start >= '{first_day}' AND ts_start < '{last_day}')")
    sketches: dict[tuple[str, str], Sketch] = {}
    with duckdb.connect() as con:
        add_rows(sketches, con.execute(sketch_sql(source, window=plan.window, attributes=plan.group_attributes)).fetchall())
    seconds = time.perf_counter() - started
    devices = sorted({device for device, _ in sketches})
    window_start, window_stop = f"{start}T00:00:00Z", f"{end}T00:00:00Z"
    by_device: dict[str, Any] = {}
    fleet_ref = Sketch()
    fleet_windows_: dict[str, Sketch] = {}
    for device in devices:
        mine = {win: s for (d, win), s in sketches.items() if d == device}
        reference, reference_windows = Sketch(), 0
        for win, sketch in mine.items():
            if ref_start <= win < ref_end:
                reference.add(sketch)
                reference_windows += 1
        fleet_ref.add(reference)
        judged = {}
        for win, sketch in sorted(mine.items()):
            if window_start <= win < window_stop and not ref_start <= win < ref_end:
                fleet_windows_.setdefault(win, Sketch()).add(sketch)
                judged[win] = _judged(reference, sketch, plan, reference_windows)
        by_device[device] = _summary(judged, reference)
    fleet_reference_windows = len({win for (_d, win) in sketches if ref_start <= win < ref_end})
    fleet = _summary({win: _judged(fleet_ref, s, plan, fleet_reference_windows)
                      for win, s in sorted(fleet_windows_.items())}, fleet_ref)
    return {"devices": len(devices), "records": sum(s.calls for s in sketches.values()), "files": len(files),
            "seconds": seconds, "reference": plan.reference, "window": plan.window, "by_device": by_device,
            "fleet": fleet, "breaching": sorted(d for d, row in by_device.items() if row["status"] == "breach")}


def _judged(reference: Sketch, sketch: Sketch, plan: MonitoringPlan, reference_windows: int) -> dict[str, Any]:
    if reference.calls < plan.min_calls:
        return {"status": "no reference", "breaches": [], "signals": {"volume": {"calls": sketch.calls}}}
    return judge_window(reference, sketch, plan, reference_windows=max(reference_windows, 1))


def _summary(judged: dict[str, dict[str, Any]], reference: Sketch) -> dict[str, Any]:
    statuses = {j["status"] for j in judged.values()}
    status = ("breach" if "breach" in statuses else "no reference" if "no reference" in statuses
              else "ok" if "ok" in statuses else "not judged")
    return {"status": status, "windows": len(judged), "reference_calls": reference.calls,
            "breaches": [f"{win[:13]}: {b['why']}" for win, j in judged.items() for b in j["breaches"]],
            "by_window": {win: {"status": j["status"], "calls": j["signals"]["volume"]["calls"],
                                "breaches": [b["signal"] for b in j["breaches"]]} for win, j in judged.items()}}
