"""Audit store benchmarks. Every figure is printed with its ratio to an anchor measured in the
same run on the same disk (machines are noisy: compare ratios, not absolute times).

    python benchmarks/bench_audit.py [--records 1000000] [--skip-mlflow] [--dir DIR]

1. durable chained append, one writer   vs  bare SQLite WAL synchronous=FULL one-row commit
2. 16 concurrent writers (group commit) vs  the single writer (goal >= 10x); 64-row FULL anchor
3. govkit vs MLflow 3 tracing           cost per durable event (goal >= 100x cheaper), drops in a burst
4. verify over N records                 seconds (goal < 3 s for 1,000,000)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from govkit.audit import AuditLog
from govkit.audit.checkpoints import generate_keypair

FIELDS = dict(model_id="phi-4-mini-edge", model_version="2026.11", quantization="Q4_K_M",
              artifact_sha256="sha256:" + "ab" * 32, runtime="llama.cpp", runtime_version="b4500",
              sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": 256, "seed": 7},
              input_tokens=212, output_tokens=48, finish_reason="stop", status="ok", latency_ms=412.5,
              session_id="sess-0001", device_id="dev-branch-017")


def line(name: str, value: str, anchor: str, ratio: float, goal: str) -> None:
    print(f"{name:<46} {value:>18}   anchor {anchor:>18}   ratio {ratio:8.2f}   {goal}")


def bare_db(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """The anchor: a plain SQLite WAL table of (seq, body, record_hash), nothing else."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB NOT NULL, record_hash TEXT NOT NULL)")
    return db


def single_writer_us(folder: Path, n: int, key: Path, block: int = 200,
                     synced: bool = True) -> tuple[float, float, float]:
    """(govkit us/record, bare SQLite us/commit, single-writer records/s), measured in alternating
    blocks so that drift in the disk's state during the run falls on both sides alike."""
    name = "single" if synced else "single-unsynced"
    bare = bare_db(folder / f"bare-{name}.db", "FULL" if synced else "OFF")
    spent = {"govkit": 0.0, "bare": 0.0}
    with AuditLog(folder / f"{name}.db", private_key=key, create=True) as log:
        if not synced:
            _unsynced(log)
        record = log.append("inference", **FIELDS)  # warm up: schema, caches
        seq = 0
        for _ in range(max(1, n // block)):
            start = time.perf_counter()
            for _ in range(block):
                record = log.append("inference", **FIELDS)
            spent["govkit"] += time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(block):  # the same bytes, one bare FULL commit each
                seq += 1
                bare.execute("BEGIN IMMEDIATE")
                bare.execute("INSERT INTO t VALUES (?, ?, ?)", (seq, record.body, record.record_hash))
                bare.execute("COMMIT")
            spent["bare"] += time.perf_counter() - start
    bare.close()
    count = max(1, n // block) * block
    return spent["govkit"] / count * 1e6, spent["bare"] / count * 1e6, count / spent["govkit"]


def wal_pages_per_append(folder: Path, n: int = 1000) -> tuple[float, float]:
    """(govkit, bare) WAL pages written per durable append: what each commit writes to the
    device's storage (flash wears by what is written)."""
    with AuditLog(folder / "pages.db", create=True) as log:
        record = log.append("inference", **FIELDS)
        log._writer.execute("PRAGMA wal_autocheckpoint=0")  # count every frame written
        log._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for _ in range(n):
            log.append("inference", **FIELDS)
        ours = log._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] / n
    bare = bare_db(folder / "pages-bare.db")
    bare.execute("PRAGMA wal_autocheckpoint=0")
    bare.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for seq in range(1, n + 1):
        bare.execute("BEGIN IMMEDIATE")
        bare.execute("INSERT INTO t VALUES (?, ?, ?)", (seq, record.body, record.record_hash))
        bare.execute("COMMIT")
    theirs = bare.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] / n
    bare.close()
    return ours, theirs


def bare_sqlite_batch_rows_per_s(folder: Path, body: bytes, record_hash: str, n: int, batch: int = 64) -> float:
    db = bare_db(folder / f"bare{batch}.db")
    start = time.perf_counter()
    seq = 0
    for _ in range(n // batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO t VALUES (?, ?, ?)", [(seq + j + 1, body, record_hash) for j in range(batch)])
        seq += batch
        db.execute("COMMIT")
    return seq / (time.perf_counter() - start)


def thread_wake_us(rounds: int = 5000) -> float:
    """One blocked thread woken by another: half a ping-pong over two queues (what a writer
    thread waiting for its commit costs, whatever the store does)."""
    import queue

    ping, pong = queue.SimpleQueue(), queue.SimpleQueue()

    def echo() -> None:
        for _ in range(rounds):
            ping.get()
            pong.put(None)

    other = threading.Thread(target=echo)
    other.start()
    start = time.perf_counter()
    for _ in range(rounds):
        ping.put(None)
        pong.get()
    elapsed = time.perf_counter() - start
    other.join()
    return elapsed / rounds / 2 * 1e6


def asyncio_handoff_us(writers: int = 16, per_writer: int = 4000) -> float:
    """What the group commit's machinery costs per record with nothing to do: empty records,
    16 coroutines, a commit function that writes nothing (the floor of the asyncio path)."""
    from govkit.audit.groupcommit import GroupCommit, Pending

    def write_nothing(batch: list[Pending], before_sync) -> None:
        before_sync()
        for item in batch:
            item.record = True

    group = GroupCommit(write_nothing, label="hand-off only")

    async def writer() -> None:
        for _ in range(per_writer):
            await group.submit_async(Pending(b"", []))

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    group.close()
    return elapsed / (writers * per_writer) * 1e6


def _unsynced(log: AuditLog) -> None:
    """Diagnosis only: commit without fsync (not durable), to show what the CPU alone allows."""
    log._writer.execute("PRAGMA synchronous=OFF")


def govkit_concurrent_rows_per_s(folder: Path, writers: int, per_writer: int, key: Path, synced: bool = True) -> float:
    with AuditLog(folder / f"conc{writers}{'' if synced else '-unsynced'}.db", private_key=key, create=True) as log:
        if not synced:
            _unsynced(log)
        log.append("inference", **FIELDS)
        barrier = threading.Barrier(writers + 1)

        def work() -> None:
            barrier.wait()
            for _ in range(per_writer):
                log.append("inference", **FIELDS)

        threads = [threading.Thread(target=work) for _ in range(writers)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        assert log.verify().ok
    return writers * per_writer / elapsed


def govkit_async_rows_per_s(folder: Path, writers: int, per_writer: int, key: Path, synced: bool = True) -> float:
    """The same, from asyncio tasks (how govkit proxy appends): one event loop, one commit thread."""
    with AuditLog(folder / f"async{writers}{'' if synced else '-unsynced'}.db", private_key=key, create=True) as log:
        if not synced:
            _unsynced(log)
        async def writer() -> None:
            for _ in range(per_writer):
                await log.append_async("inference", **FIELDS)

        async def run() -> float:
            await log.append_async("inference", **FIELDS)
            start = time.perf_counter()
            await asyncio.gather(*(writer() for _ in range(writers)))
            return time.perf_counter() - start

        elapsed = asyncio.run(run())
        assert log.verify().ok
    return writers * per_writer / elapsed


PROCESS_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
from bench_audit import FIELDS
from govkit.audit import AuditLog
path, count, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
log = AuditLog(path, create=True)
while time.time() < start:  # every writer begins together, whatever its start-up took
    time.sleep(0.001)
began, spent = time.perf_counter(), []
for _ in range(count):
    t = time.perf_counter()
    log.append("inference", **FIELDS)
    spent.append(time.perf_counter() - t)
print(time.perf_counter() - began, *spent)
"""


def govkit_processes(folder: Path, processes: int, per_process: int) -> tuple[float, float, float]:
    """(records/s, p99 append ms, worst append ms) with one single-threaded writer per process."""
    import subprocess

    path = folder / f"procs{processes}.db"
    AuditLog(path, create=True).close()
    start = time.time() + 2.0
    children = [subprocess.Popen([sys.executable, "-c", PROCESS_CHILD, str(path), str(per_process), str(start),
                                  str(Path(__file__).resolve().parent)], stdout=subprocess.PIPE, text=True)
                for _ in range(processes)]
    runs = [list(map(float, child.communicate()[0].split())) for child in children]
    spent = sorted(x for run in runs for x in run[1:])
    return processes * per_process / max(run[0] for run in runs), spent[int(len(spent) * 0.99)] * 1e3, spent[-1] * 1e3


MLFLOW_CHILD = r"""
import json, logging, os, sys, threading, time
mode, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "sync":  # each call returns once its trace is persisted, as an audit record must be
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
import mlflow
logging.getLogger("mlflow").setLevel(logging.CRITICAL)
mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow-{mode}.db")
experiment = mlflow.set_experiment("bench").experiment_id

@mlflow.trace
def call(prompt):
    return "ok"

call("warm up")
start = time.perf_counter()
if mode == "sync":
    for i in range(n):
        call(f"prompt {i}")
else:  # MLflow's defaults: asynchronous export, then one flush at the end
    per = n // 16
    threads = [threading.Thread(target=lambda k=k: [call(f"burst {k} {i}") for i in range(per)]) for k in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    mlflow.flush_trace_async_logging()
elapsed = time.perf_counter() - start
client, total, token = mlflow.MlflowClient(), 0, None
while True:
    page = client.search_traces(locations=[experiment], max_results=500, page_token=token)
    total, token = total + len(page), page.token
    if not token:
        break
print(json.dumps({"calls": n if mode == "sync" else (n // 16) * 16, "seconds": elapsed, "persisted": total - 1}))
"""


def mlflow_tracing(folder: Path, single: int, burst: int) -> tuple[float, int] | None:
    """(us per persisted trace, traces lost in a burst), each in a fresh process of its own."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("mlflow") is None:
        print("mlflow not installed: pip install 'govkit[mlflow]' to compare against MLflow tracing")
        return None
    results = {}
    for mode, calls in (("sync", single), ("burst", burst)):
        # cwd: MLflow writes trace artifacts under ./mlruns; keep them in the benchmark's folder.
        out = subprocess.run([sys.executable, "-c", MLFLOW_CHILD, mode, str(folder), str(calls)],
                             capture_output=True, text=True, timeout=600, cwd=folder)
        if out.returncode != 0:
            print(f"MLflow tracing ({mode}) failed: {out.stderr.strip().splitlines()[-1:]}")
            return None
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    sync, burst_result = results["sync"], results["burst"]
    return sync["seconds"] / sync["calls"] * 1e6, burst_result["calls"] - burst_result["persisted"]


def content_extra_us(folder: Path, n: int, key: Path, block: int = 100) -> float:
    """What storing the call's prompt and response adds to a durable append (redaction, digests,
    the content table), as the MLflow trace stores its function's inputs and output. Measured
    in alternating blocks against appends without, like single_writer_us."""
    spent = {"with": 0.0, "without": 0.0}
    with AuditLog(folder / "content.db", private_key=key, create=True) as with_content, \
            AuditLog(folder / "no-content.db", private_key=key, create=True) as without:
        with_content.append("inference", prompt="warm up", response="ok", **FIELDS)
        without.append("inference", **FIELDS)
        for round_ in range(max(1, n // block)):
            start = time.perf_counter()
            for i in range(block):
                with_content.append("inference", prompt=f"prompt {round_} {i}", response="ok", **FIELDS)
            spent["with"] += time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(block):
                without.append("inference", **FIELDS)
            spent["without"] += time.perf_counter() - start
    return (spent["with"] - spent["without"]) / (max(1, n // block) * block) * 1e6


PROMPT = ("The customer applied on 2026-03-14 for a loan of $25,000 over 60 months at 7.9% APR. Income is "
          "reported as 85,000 per year; employment for 4 years at the same company. Please assess the "
          "affordability and summarise the risk factors for the underwriter. ") * 8  # about 2 KB


def redaction_us(text: str, rounds: int = 300) -> tuple[float, float]:
    """(us to redact the text, us when every recognizer searches it: no skipping)."""
    from govkit.audit import Redactor

    guarded, unguarded = Redactor(), Redactor(skip=False)
    assert guarded.redact(text) == unguarded.redact(text)
    spent = []
    for redactor in (guarded, unguarded):
        start = time.perf_counter()
        for _ in range(rounds):
            redactor.redact(text)
        spent.append((time.perf_counter() - start) / rounds * 1e6)
    return spent[0], spent[1]


def govkit_burst_drops(folder: Path, burst: int, key: Path) -> int:
    with AuditLog(folder / "burst.db", private_key=key, create=True) as log:
        threads = [threading.Thread(target=lambda: [log.append("inference", prompt="p", response="r", **FIELDS)
                                                    for _ in range(burst // 16)]) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        persisted = sum(1 for _ in log.query(event_type="inference"))
    return (burst // 16) * 16 - persisted


def build_large_store(path: Path, records: int, key: Path, with_content: bool) -> None:
    spec = {"event_type": "inference", **FIELDS}
    if with_content:
        spec.update(prompt="What is the limit on card 4111 1111 1111 1111?", response="Your limit is 5,000.")
    with AuditLog(path, private_key=key, checkpoint_every=1000, create=True) as log:
        done = 0
        while done < records:
            take = min(4096, records - done)
            log.append_many([spec] * take)
            done += take


def verify_figures(folder: Path, records: int, key: Path, with_content: bool) -> None:
    large = folder / f"large-{with_content}.db"
    start = time.perf_counter()
    build_large_store(large, records, key, with_content)
    built = time.perf_counter() - start
    with AuditLog(large, create=False) as log:
        start = time.perf_counter()
        result = log.verify()
        took = time.perf_counter() - start
        start = time.perf_counter()
        single = log.verify(workers=1)
        took_single = time.perf_counter() - start
    assert result.ok and single.ok, result.problems[:3]
    # Anchor: re-serialising each record's JSON before hashing (what verify avoids).
    db = sqlite3.connect(large)
    start = time.perf_counter()
    sample = 0
    for (body,) in db.execute("SELECT body FROM records LIMIT 100000"):
        hashlib.sha256(json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        sample += 1
    reserialise = (time.perf_counter() - start) / sample * result.records
    what = f"+{round(result.content_checked / max(result.records, 1))} content each" if with_content else "no content"
    line(f"verify {result.records:,} records ({what})", f"{took:.2f} s", f"{reserialise:.1f} s re-ser.",
         reserialise / took, "goal < 3 s")
    print(f"{'  ... in one process':<46} {f'{took_single:.2f} s':>18}   ({result.checkpoints} signed checkpoints "
          f"checked; store built in {built:.0f} s)")
    large.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records for the verify benchmark")
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--dir", type=Path, help="folder on the disk to measure (default: a temp folder)")
    args = parser.parse_args()
    os.sync()  # write back what earlier work left dirty: it would slow every fsync measured here
    folder = Path(tempfile.mkdtemp(prefix="govkit-bench-", dir=args.dir))
    key = folder / "key.pem"
    generate_keypair(key)
    print(f"govkit audit benchmarks in {folder} (python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} cores)\n")
    try:
        # 1. one writer
        ours, bare, single_rate = single_writer_us(folder, args.appends, key)
        line("durable chained append, 1 writer (us/record)", f"{ours:.0f} us", f"{bare:.0f} us bare", ours / bare,
             "goal <= 1.5")
        cpu_ours, cpu_bare, _ = single_writer_us(folder, args.appends, key, synced=False)
        line("  ... CPU alone: both with no fsync at all", f"{cpu_ours:.0f} us", f"{cpu_bare:.0f} us bare",
             cpu_ours / cpu_bare, f"(+{cpu_ours - cpu_bare:.0f} us of Python per record)")
        pages, bare_pages = wal_pages_per_append(folder)
        line("  ... WAL pages written per append", f"{pages:.2f}", f"{bare_pages:.2f} bare", pages / bare_pages,
             "(4 KiB pages)")
        for label, text in (("a 2 KB prompt", PROMPT),
                            ("... holding a card, an e-mail, a phone", PROMPT + " Card 4111 1111 1111 1111, "
                             "jane@example.com, 416-555-0199.")):
            ours_us, every_us = redaction_us(text)
            line(f"redact {label}", f"{ours_us:.0f} us", f"{every_us:.0f} us all", every_us / ours_us,
                 "(x faster than searching for everything)")
        # 2. sixteen writers
        rate16 = govkit_concurrent_rows_per_s(folder, 16, args.appends // 4, key)
        sample = AuditLog(folder / "single.db", create=False)
        body, record_hash = next(sample.query(newest_first=True, limit=1)).body, "sha256:" + "0" * 64
        sample.close()
        anchor64 = bare_sqlite_batch_rows_per_s(folder, body, record_hash, 64 * 300)
        line("16 concurrent writers, threads (records/s)", f"{rate16:,.0f}/s", f"{single_rate:,.0f}/s 1 wr",
             rate16 / single_rate, "goal >= 10")
        async16 = govkit_async_rows_per_s(folder, 16, args.appends // 2, key)
        line("16 concurrent writers, asyncio (records/s)", f"{async16:,.0f}/s", f"{single_rate:,.0f}/s 1 wr",
             async16 / single_rate, "goal >= 10")
        anchor16 = bare_sqlite_batch_rows_per_s(folder, body, record_hash, 16 * 1000, batch=16)
        line("  ... asyncio against bare 16-row FULL commits", f"{async16:,.0f}/s", f"{anchor16:,.0f}/s",
             async16 / anchor16, "(16 writers fill no bigger batch)")
        line("  ... threads against a bare 64-row FULL commit", f"{rate16:,.0f}/s", f"{anchor64:,.0f}/s", rate16 / anchor64,
             "(the issue's anchor)")
        # Where the time goes: the same runs with the disk never synced. What is left is the Python
        # work per record (one interpreter lock, whatever the core count): the ceiling of each path.
        cpu_threads = govkit_concurrent_rows_per_s(folder, 16, args.appends // 4, key, synced=False)
        cpu_async = govkit_async_rows_per_s(folder, 16, args.appends // 2, key, synced=False)
        line("  ... threads, no fsync at all (CPU ceiling)", f"{cpu_threads:,.0f}/s", f"{single_rate:,.0f}/s 1 wr",
             cpu_threads / single_rate, "(not durable: diagnosis)")
        line("  ... asyncio, no fsync at all (CPU ceiling)", f"{cpu_async:,.0f}/s", f"{single_rate:,.0f}/s 1 wr",
             cpu_async / single_rate, "(not durable: diagnosis)")
        # What 10x leaves for all the work of one record: a tenth of one synced append.
        budget = 1e6 / single_rate / 10
        line("  ... asyncio CPU per record, no fsync", f"{1e6 / cpu_async:.0f} us", f"{budget:.0f} us at 10x",
             1e6 / cpu_async / budget, "(above 1: out of reach even unsynced)")
        # The floor under any record at all: the hand-off of an empty record plus its share of a
        # bare 16-row synced commit. What 10x leaves above it is all the record's own work may take.
        floor = asyncio_handoff_us() + 1e6 / anchor16
        line("  ... floor: empty record, hand-off + commit", f"{floor:.0f} us", f"{budget:.0f} us at 10x",
             floor / budget, f"(leaves {max(budget - floor, 0):.0f} us for the record's own work)")
        wake = thread_wake_us()
        line("  ... one thread wake-up, nothing else", f"{wake:.0f} us", f"{budget:.0f} us at 10x", wake / budget,
             "(each blocked writer thread needs one)")
        # Several processes: they take turns on the store's writer lock (no group commit across
        # processes); what matters is that none of them is starved.
        rate4, p99, worst = govkit_processes(folder, 4, args.appends // 4)
        line("4 processes, 1 writer each (records/s)", f"{rate4:,.0f}/s", f"{single_rate:,.0f}/s 1 wr",
             rate4 / single_rate, f"p99 {p99:.1f} ms, worst {worst:.0f} ms")
        # 3. MLflow tracing
        if not args.skip_mlflow:
            traced = mlflow_tracing(folder, 100, 2000)
            if traced:
                per_trace, dropped = traced
                line("cost per persisted event vs MLflow 3 trace", f"{ours:.0f} us", f"{per_trace:,.0f} us mlflow",
                     per_trace / ours, "goal >= 100 (x cheaper)")
                line("  ... the bare synced commit vs MLflow 3 trace", f"{bare:.0f} us", f"{per_trace:,.0f} us mlflow",
                     per_trace / bare, "(the most any synced append reaches)")
                with_content = ours + content_extra_us(folder, args.appends, key)
                line("  ... with its prompt and response stored too", f"{with_content:.0f} us",
                     f"{per_trace:,.0f} us mlflow", per_trace / with_content, "(like for like: a trace keeps both)")
                drops = govkit_burst_drops(folder, 2000, key)
                print(f"{'burst of 2,000 calls from 16 threads: lost':<46} {f'govkit {drops}':>18}   "
                      f"anchor {f'mlflow {dropped}':>18}   {'goal: govkit 0'}")
        # 4. verify
        verify_figures(folder, args.records, key, with_content=False)
        verify_figures(folder, args.records, key, with_content=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
