"""Board report over 10,000, 100,000 and 1,000,000 audit records: time and peak memory, against
bare SQL aggregates over the same store in the same run (the anchor).

    python benchmarks/bench_report.py [--sizes 10000,100000,1000000] [--cache DIR]

Each store is built once (cached in --cache, default ~/.cache/govkit-bench-report): model calls
over one quarter with latencies, errors, a third with an e-mail address redacted from the prompt,
plus refusals, overrides and explanations. Each measurement runs in a child process that reports
its time and its peak RSS above what it held before it started:
  anchor   plain sqlite3, no govkit: per event type count, error count and mean latency; the p50 and
           p95 latency (ORDER BY ... LIMIT 1 OFFSET); redactions per entity (json_each)
  report   govkit report board --format html --no-record: the evidence snapshot (verify of the
           whole store included), the KPIs, the scorecard, the rendered page
Goals: 1,000,000 records in under 10 s, memory flat in the record count, at most 3x the anchor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BUILD = r"""
import sys
from govkit import AuditLog, load_settings
n = int(sys.argv[1])
settings = load_settings()
with AuditLog.open(settings=settings) as log:
    batch, first = [], None
    for i in range(n):
        day, minute = 1 + (i * 7) % 91, i % 1440
        month, dom = (10, day) if day <= 31 else (11, day - 31) if day <= 61 else (12, day - 61)
        ts = f"2026-{month:02d}-{min(dom, 30):02d}T{minute // 60:02d}:{minute % 60:02d}:00.000000Z"
        kind = i % 100
        if kind < 95:
            batch.append({"event_type": "inference", "model_id": "m", "ts_start": ts, "latency_ms": float(40 + (i * 37) % 900),
                          "status": "error" if i % 41 == 0 else "ok", "artifact_sha256": "sha256:" + "a" * 64,
                          "prompt": f"client {i}: reach me at c{i}@mail.example" if i % 3 == 0 else f"client {i} asks",
                          "response": "approve"})
        elif kind < 98:
            batch.append({"event_type": "request", "ts_start": ts, "status": "refused" if kind == 95 else "received"})
        elif kind == 98:
            batch.append({"event_type": "override", "ts_start": ts, "reviewer_id": "rev-1", "human_decision": "accepted"})
        else:
            batch.append({"event_type": "explanation", "ts_start": ts, "explanation_method": "shap.PartitionExplainer"})
        if len(batch) == 2000:
            log.append_many(batch)
            batch = []
    if batch:
        log.append_many(batch)
"""

ANCHOR = r"""
import json, resource, sqlite3, sys, time
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
j = "json_extract(CAST(body AS TEXT), '$.{}')"
counts = db.execute(f"SELECT {j.format('event_type')}, count(*), sum({j.format('status')} <> 'ok'), "
                    f"avg({j.format('latency_ms')}) FROM records WHERE {j.format('ts_start')} >= '2026-10-01' "
                    f"AND {j.format('ts_start')} < '2027-01-01' GROUP BY 1").fetchall()
n = sum(c for e, c, _, _ in counts if e == "inference")
latency = (f"SELECT {j.format('latency_ms')} AS l FROM records WHERE {j.format('event_type')} = 'inference' "
           "ORDER BY l LIMIT 1 OFFSET ?")
p50 = db.execute(latency, (n // 2,)).fetchone()
p95 = db.execute(latency, (int(n * 0.95),)).fetchone()
entities = db.execute("SELECT e.key, sum(e.value) FROM records r, json_each(json_extract(CAST(r.body AS TEXT), "
                      "'$.redaction.entities')) e GROUP BY e.key").fetchall()
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""

REPORT = r"""
import json, resource, sys, time
from pathlib import Path
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import govkit.report, govkit.cli  # imports are not the report's work
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
from govkit import AuditLog, load_settings
from govkit.report import board_report, parse_period
settings = load_settings()
with AuditLog.open(settings=settings, read_only=True) as log:
    made = board_report(log, settings, parse_period("2026-Q4"), as_of="2026-12-31T23:00:00.000000Z",
                        formats=("html",), output=Path(sys.argv[1]), record=False)
print(json.dumps({"seconds": time.perf_counter() - started, "inference": made.manifest["figures"]["kpis"]["inference"],
                  "verified": made.manifest["snapshot"]["verify"]["ok"],
                  "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def build(folder: Path, n: int) -> Path:
    db = folder / ".govkit" / "audit.db"
    if (folder / "built").exists():
        return db
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    subprocess.run([sys.executable, "-m", "govkit", "init", "--yes", "--force"], cwd=folder, check=True,
                   capture_output=True, env=env)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", BUILD, str(n)], cwd=folder, check=True, env=env)
    (folder / "built").write_text(f"{n} records in {time.perf_counter() - started:.1f} s\n")
    return db


def child(code: str, folder: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=folder, check=True, capture_output=True, text=True,
                          env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "govkit-bench-report")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs of each")
    options = parser.parse_args()
    print("board report over the audit store vs bare SQL aggregates (2 cores; best of "
          f"{options.rounds}; peak RSS above the process's start)\n")
    print(f"{'records':>10} {'anchor s':>9} {'report s':>9} {'ratio':>6} {'anchor MB':>10} {'report MB':>10}")
    rows = []
    for n in (int(s) for s in options.sizes.split(",")):
        folder = options.cache / f"store-{n}"
        db = build(folder, n)
        anchor = min((child(ANCHOR, folder, str(db)) for _ in range(options.rounds)), key=lambda r: r["seconds"])
        report = min((child(REPORT, folder, str(folder / "out")) for _ in range(options.rounds)),
                     key=lambda r: r["seconds"])
        assert report["verified"] and report["inference"] > 0, report
        ratio = report["seconds"] / anchor["seconds"]
        rows.append((n, report, ratio))
        print(f"{n:>10,} {anchor['seconds']:>9.2f} {report['seconds']:>9.2f} {ratio:>6.2f} "
              f"{anchor['peak_mb']:>10.1f} {report['peak_mb']:>10.1f}")
    largest = max(rows, key=lambda r: r[0])
    smallest = min(rows, key=lambda r: r[0])
    print(f"\n-> {largest[0]:,} records: {largest[1]['seconds']:.2f} s (goal < 10 s), "
          f"{largest[2]:.2f}x the bare aggregates (goal <= 3x); peak memory {smallest[1]['peak_mb']:.0f} MB at "
          f"{smallest[0]:,} and {largest[1]['peak_mb']:.0f} MB at {largest[0]:,} (goal: flat)")


if __name__ == "__main__":
    main()
