"""govkit monitor over 1,000,000 production records, and the fleet query over synced segments.

1. A store of 1,000,000 production calls (14 daily windows: a reference week, then a week judged)
   and `run_monitoring` over it (MLflow off: its runs are a per-window constant), timed with its
   peak memory; against, in the same run, a bare scan of the same bodies (the floor any reader
   pays) and Evidently's data-drift preset (legacy Report + DataDriftPreset) on one judged window
   with the same columns, whose drift scores must equal govkit's.
2. DuckDB over hive-partitioned Parquet segments of 10, 30 and 100 devices x 100,000 records.

    python benchmarks/bench_monitor.py [--records 1000000] [--devices 10,30,100] [--evidently PYTHON]

Evidently 0.7 does not import beside pandas 3: --evidently (default $GOVKIT_EVIDENTLY_PYTHON, as
.ci/run makes it) names an interpreter that has it.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ("input_tokens", "output_tokens", "finish_reason", "decision")
DAYS = 14


def build_store(folder: Path, records: int) -> Path:
    from click.testing import CliRunner

    from govkit.audit import AuditLog
    from govkit.cli import cli

    os.chdir(folder)
    assert CliRunner().invoke(cli, ["init", "--yes", "--owner", "risk@bank.example"]).exit_code == 0
    text = (folder / "govkit.toml").read_text()
    text = text.replace('reference = "approval"', 'reference = "2026-11-01/2026-11-08"')
    text = text.replace("decision_choices = []", 'decision_choices = ["approve", "deny"]')
    text = text.replace('positive = ""                    # the favourable one: its', 'positive = "approve"  # its')
    (folder / "govkit.toml").write_text(text.replace("enabled = true", "enabled = false"))
    import random

    rng = random.Random(0)
    from govkit.config import load_settings

    settings = load_settings(folder / "govkit.toml")
    with AuditLog.open(settings=settings) as log:
        batch = []
        for i in range(records):
            day = i * DAYS // records
            drift = day >= 11
            stamp = f"2026-11-{1 + day:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00.000000Z"
            batch.append(dict(event_type="inference", ts_start=stamp, ts_end=stamp, status="ok",
                              latency_ms=round(rng.gauss(500, 60), 3), input_tokens=int(rng.gauss(120, 15)),
                              output_tokens=int(rng.gauss(12 if drift else 8, 2)), finish_reason="stop",
                              artifact_sha256="sha256:" + "a" * 64,
                              details={"signals": {"refusal": rng.random() < 0.03,
                                                   "decision": "approve" if rng.random() < 0.6 else "deny"}}))
            if len(batch) == 20_000:
                log.append_many(batch)
                batch = []
        if batch:
            log.append_many(batch)
    return folder / "govkit.toml"


def bare_scan(db_path: Path) -> float:
    started = time.perf_counter()
    db = sqlite3.connect(db_path)
    n = 0
    for (body,) in db.execute("SELECT CAST(body AS TEXT) FROM records"):
        n += len(body)
    db.close()
    return time.perf_counter() - started


def monitor_in_child(config: Path) -> dict:
    """The monitor run in a fresh process, for its own peak memory."""
    code = f"""
import json, resource, time
import duckdb, numpy, scipy.spatial.distance, scipy.stats  # imported before the clock starts, as Evidently is
import govkit.evidence, govkit.monitoring.judge, govkit.tracking
from govkit.audit import AuditLog
from govkit.config import load_settings
from govkit.monitoring import run_monitoring
s = load_settings({str(config)!r})
with AuditLog.open(settings=s) as log:
    started = time.perf_counter()
    ran = run_monitoring(log, s, as_of="2026-11-15T00:00:00Z", tracked=False)
    seconds = time.perf_counter() - started
w = ran.windows[-1]
print(json.dumps({{"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "windows": len(ran.windows), "last": {{"start": w["window"]["start"], "signals": w["signals"]}}}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


EVIDENTLY = """
import json, sys, time, sqlite3
import pandas as pd
from evidently.legacy.report import Report
from evidently.legacy.metric_preset import DataDriftPreset
from evidently.legacy.pipeline.column_mapping import ColumnMapping
started = time.perf_counter()
db = sqlite3.connect(sys.argv[1])
rows = []
for (body,) in db.execute("SELECT CAST(body AS TEXT) FROM records"):
    r = json.loads(body)
    if r["event_type"] == "inference":
        signals = r["details"]["signals"]
        rows.append((r["ts_start"][:10], r["input_tokens"], r["output_tokens"], r["finish_reason"], signals["decision"]))
frame = pd.DataFrame(rows, columns=["day", "input_tokens", "output_tokens", "finish_reason", "decision"])
loaded = time.perf_counter() - started
ref = frame[frame.day < "2026-11-08"].drop(columns="day")
mapping = ColumnMapping(numerical_features=["input_tokens", "output_tokens"],
                        categorical_features=["finish_reason", "decision"])
started = time.perf_counter()
for day in range(8, 15):
    cur = frame[frame.day == f"2026-11-{day:02d}"].drop(columns="day")
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
    result = report.as_dict()
seconds = time.perf_counter() - started
scores = {}
for metric in result["metrics"]:
    for name, col in (metric["result"].get("drift_by_columns") or {}).items():
        scores[name] = {"test": col["stattest_name"], "score": col["drift_score"], "drifted": col["drift_detected"]}
print(json.dumps({"seconds": seconds, "load_seconds": loaded, "scores": scores, "rows": [len(ref), len(cur)]}))
"""


def evidently(python: str, db_path: Path) -> dict | None:
    done = subprocess.run([python, "-c", EVIDENTLY, str(db_path)], capture_output=True, text=True,
                          env={**os.environ, "DO_NOT_TRACK": "1"})
    if done.returncode:
        print("Evidently did not run:", done.stderr[-800:])
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def fleet(devices: int, per_device: int, folder: Path) -> dict:
    import duckdb

    from govkit.config import MonitoringPlan
    from govkit.monitoring.fleet import fleet_windows

    root = folder / f"fleet-{devices}"
    (root / "segments").mkdir(parents=True)
    with duckdb.connect() as con:
        con.execute(f"""COPY (
            SELECT 'device-' || lpad(CAST(i // {per_device} AS VARCHAR), 3, '0') AS device_id, '2026-11-01' AS date,
                   'inference' AS event_type, ts AS ts_start,
                   json_object('ts_start', ts, 'event_type', 'inference', 'status', 'ok',
                               'latency_ms', 400 + (i * 7919) % 200, 'input_tokens', 100 + (i * 31) % 40,
                               'output_tokens', 6 + (i * 13) % 6, 'finish_reason', 'stop',
                               'artifact_sha256', 'sha256:aa',
                               'details', json_object('signals', json_object('refusal', i % 33 = 0,
                                   'decision', CASE WHEN (i * 17) % 10 < 6 THEN 'approve' ELSE 'deny' END)))::VARCHAR AS body
            FROM (SELECT i, strftime(TIMESTAMP '2026-11-01' + INTERVAL (i % {per_device} * 1209600 // {per_device}) SECOND,
                                     '%Y-%m-%dT%H:%M:%S.000000Z') AS ts FROM range({devices * per_device}) t(i))
        ) TO '{root / "segments"}' (FORMAT parquet, PARTITION_BY (device_id, date), FILENAME_PATTERN 'seg_{{uuid}}')""")
    plan = MonitoringPlan(reference="2026-11-01/2026-11-08", decision_choices=("approve", "deny"), positive="approve")
    started = time.perf_counter()
    found = fleet_windows(root, plan, start="2026-11-08", end="2026-11-15")
    return {"devices": found["devices"], "records": found["records"], "seconds": time.perf_counter() - started,
            "query_seconds": found["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--devices", default="10,30,100")
    parser.add_argument("--per-device", type=int, default=100_000)
    parser.add_argument("--evidently", default=os.environ.get("GOVKIT_EVIDENTLY_PYTHON", ""))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        config = build_store(folder, args.records)
        print(f"store of {args.records:,} production calls built in {time.perf_counter() - started:.0f} s")
        db_path = folder / ".govkit" / "audit.db"
        floor = bare_scan(db_path)
        ours = monitor_in_child(config)
        small_folder = folder / "tenth"
        small_folder.mkdir()
        small = monitor_in_child(build_store(small_folder, args.records // 10))
        os.chdir(folder)
        print(f"memory: peak {small['peak_mb']:.0f} MB over {args.records // 10:,} records, {ours['peak_mb']:.0f} MB over "
              f"{args.records:,} (the batches are read and parsed in turn; the imports alone hold most of it)")
        print(f"govkit monitor run: {ours['windows']} daily windows judged (and the reference week) in "
              f"{ours['seconds']:.2f} s, peak {ours['peak_mb']:.0f} MB (goal <= 5 s)")
        print(f"anchor, a bare Python scan of every body: {floor:.2f} s -> {ours['seconds'] / floor:.2f}x the floor")
        if args.evidently:
            theirs = evidently(args.evidently, db_path)
            if theirs:
                whole = theirs["seconds"] + theirs["load_seconds"]
                print(f"Evidently DataDriftPreset, the same 7 windows (the last {theirs['rows'][1]:,} rows) against "
                      f"the reference ({theirs['rows'][0]:,}): {theirs['seconds']:.2f} s, plus {theirs['load_seconds']:.2f} s "
                      f"to read the same records into a DataFrame -> govkit is {whole / ours['seconds']:.1f}x faster "
                      f"end to end, {theirs['seconds'] / ours['seconds']:.1f}x against the preset alone (goal >= 10x)")
                last = ours["last"]["signals"]
                for column in COLUMNS:
                    mine = last.get(column) or {}
                    value = mine.get("p_value", mine.get("distance"))
                    other = theirs["scores"].get(column, {})
                    same = value is not None and abs(value - other.get("score", float("nan"))) <= 1e-9
                    print(f"  {column:<14} govkit {mine.get('test')} {value!r:<24} Evidently {other.get('test')} "
                          f"{other.get('score')!r:<24} {'identical' if same else 'DIFFERENT'}")
        else:
            print("Evidently: not run (give --evidently PYTHON, an interpreter where it imports)")
        for devices in [int(d) for d in args.devices.split(",") if d]:
            found = fleet(devices, args.per_device, folder)
            print(f"fleet: {found['devices']} devices x {args.per_device:,} = {found['records']:,} records in "
                  f"{found['seconds']:.2f} s ({found['records'] / found['seconds']:,.0f} records/s)")


if __name__ == "__main__":
    main()
