"""Fleet sync against a real `mlflow server` on PostgreSQL (loopback, proxied artifacts).

Prints, in one run:
- records/s sealed ahead of the link (`govkit sync --seal`, on the device, offline);
- records/s shipped (govkit sync of the sealed segments and the open tail) and shipped +
  acknowledged (sync, then the witness pass);
- the same for a cold sync of another device that sealed nothing (every segment built at sync);
- records/s verified centrally (check_segment over the segments in memory: hashes and chain), and
  records/s of the whole `audit verify --from-mlflow` of the device (downloads included);
- bytes per record on the wire;
- the anchor: a bare upload (the artifact repository's log_artifact, one PUT a file) of files of
  the same sizes, measured just before and just after each sync, and that sync's ratio to their
  mean. The machine is noisy (the anchor itself varies two- to threefold between runs), so the
  sealed sync is measured in several rounds (--rounds, one device each, anchors between them):
  the median ratio is the figure, and every round's ratio is printed beside it.
Goals (DESIGN.md §6): >= 50,000 records/s end to end, sync <= 1.5x the bare upload,
central verification >= 200,000 records/s.

    python benchmarks/bench_sync.py --records 200000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.central_server import mlflow_server, postgres  # noqa: E402
from tests.fleet import inside, make_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--segment-records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5, help="sealed syncs measured, one device each")
    args = parser.parse_args()
    from govkit.audit.checkpoints import generate_keypair, load_private_key
    from govkit.fleet.central import Central
    from govkit.fleet.registry import Device, enroll, load_registry
    from govkit.fleet.sealed import sealed_folder
    from govkit.fleet.segments import check_segment, parse_segment_note
    from govkit.fleet.status import verify_device
    from govkit.fleet.sync import seal, sync
    from govkit.fleet.witness import witness

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        devices = [make_device(root, f"bench-device-{n}") for n in range(args.rounds)]
        cold = make_device(root, "bench-cold")
        made = time.perf_counter()
        heads = [one.append(args.records) for one in devices]
        cold_head = cold.append(args.records)
        print(f"stores: {len(devices)} x {heads[0]} + {cold_head} records made in {time.perf_counter() - made:.1f} s")
        registry = root / "fleet.toml"
        for one in (*devices, cold):
            enroll(registry, Device(one.id, one.store_id, one.settings.audit.public_key))
        generate_keypair(root / "witness.pem")
        seal_s: list[float] = []
        for one in devices:
            sealed_at = time.perf_counter()
            with inside(one.folder):
                sealed = seal(one.settings, max_records=args.segment_records)
            seal_s.append(time.perf_counter() - sealed_at)
        with postgres(root / "pg") as backend, mlflow_server(root / "mlflow", backend) as url:
            central = Central(url)
            # The first request of each kind pays for imports (the server's and this process's): warm each
            # kind once, as a long-running server and the anchor measured after the sync both are.
            # Each of the server's workers pays for its own imports: the warm-up goes round several times.
            for _ in range(6):
                warm = central.experiment("warm-up") or "0"
                central.runs([warm])
                warm_run = central.create_run(warm, "warm-up", {})
                central.upload(warm_run, "warm/file.bin", b"warm-up")
                central.upload(warm_run, "warm/large.bin", bytes(8 << 20))  # a worker's first large body grows its heap
                central.list(warm_run, "warm")
                central.download(warm_run, "warm/file.bin")
                central.set_tags(warm_run, {"warm": "up"}, {"warm": 1.0})
                central.finish(warm_run)
            witness_key = load_private_key(root / "witness.pem")
            from govkit.tracking import Tracker

            # The model's experiment exists, as it does for every sync of a fleet but its very first.
            central.experiment(Tracker.from_settings(devices[0].settings, devices[0].settings.audit.db).experiment)

            def acknowledge() -> tuple[float, Any]:
                at = time.perf_counter()
                checked = witness(central, registry=load_registry(registry), key=witness_key, ledger=root / "witness.db")
                return time.perf_counter() - at, checked

            sizes = [p.stat().st_size for p in sorted(sealed_folder(devices[0].settings.audit.db).glob("*.parquet"))]
            anchors = [bare_upload(central, sizes)]
            ship_s, witness_s, results = [], [], []
            for one, head in zip(devices, heads):
                started = time.perf_counter()
                with inside(one.folder):
                    results.append(sync(one.settings, to=url, max_records=args.segment_records))
                ship_s.append(time.perf_counter() - started)
                anchors.append(bare_upload(central, sizes))
                took, checked = acknowledge()
                witness_s.append(took)
                assert checked.ok and checked.records == head, checked.to_dict()
            started = time.perf_counter()
            with inside(cold.folder):
                cold_shipped = sync(cold.settings, to=url, max_records=args.segment_records)
            cold_ship_s = time.perf_counter() - started
            cold_anchor = bare_upload(central, sizes)
            cold_witness_s, checked = acknowledge()
            assert checked.ok and checked.records == cold_head, checked.to_dict()
            device, head, shipped = devices[0], heads[0], results[0]
            run_id = shipped.run_id
            notes = [central.download(run_id, p).decode() for p in central.list(run_id, "notes")]
            segments = []
            for text in notes:
                note, _ = parse_segment_note(text)
                path = f"segments/device_id={note.device_id}/date={note.date}/{note.key}.parquet"
                segments.append((note, central.download(run_id, path)))
            verify_s = float("inf")
            for _ in range(3):  # best of three: the machine is shared and noisy
                verified_at = time.perf_counter()
                for note, data in segments:
                    assert not check_segment(note, data)
                verify_s = min(verify_s, time.perf_counter() - verified_at)
            whole_at = time.perf_counter()  # `govkit audit verify --from-mlflow`: downloads, every check
            whole = verify_device(central, central.experiments(), device_id=device.id,
                                  public_key=device.settings.audit.public_key)
            whole_s = time.perf_counter() - whole_at
            assert whole.ok and whole.records == head, whole.to_dict()
            central.close()
    ratios = [took / ((before + after) / 2) for took, before, after in zip(ship_s, anchors, anchors[1:])]
    acked = [head / (took + checked_s) for head, took, checked_s in zip(heads, ship_s, witness_s)]
    size = sum(len(d) for _, d in segments)
    print(f"sync: {head} records, {len(segments)} segments ({shipped.sealed} sealed ahead), "
          f"{size / head:.0f} bytes/record on the wire; {len(devices)} rounds, median (and each round)")
    print(f"sealed ahead (device, offline): {sealed.records / median(seal_s):>10,.0f} records/s "
          f"({median(seal_s):.2f} s, {sealed.segments} segments; {sealed.open_tail} records left open for the sync)")
    print(f"shipped:                 {head / median(ship_s):>10,.0f} records/s ({each(ship_s, 's')})")
    print(f"shipped + acknowledged:  {median(acked):>10,.0f} records/s ({each(acked, '')}; "
          f"witness {each(witness_s, 's')})  goal >= 50,000")
    print(f"cold (nothing sealed):   {cold_head / cold_ship_s:>10,.0f} records/s shipped ({cold_ship_s:.2f} s), "
          f"{cold_head / (cold_ship_s + cold_witness_s):,.0f} shipped + acknowledged (witness {cold_witness_s:.2f} s); "
          f"{cold_shipped.sealed} sealed ahead")
    print(f"verified centrally:      {head / verify_s:>10,.0f} records/s ({verify_s:.2f} s)  goal >= 200,000 "
          f"(the witness's check of each segment: sha256, seqs, every hash, the chain; best of 3)")
    print(f"audit verify --from-mlflow: {head / whole_s:>7,.0f} records/s ({whole_s:.2f} s; downloads, signatures, "
          f"the chain and every field against its body)")
    print(f"anchor, bare upload of the same bytes: {each(anchors, 's')} (before the first sync, then after each)")
    print(f"sync / bare = {median(ratios):.2f}x ({each(ratios, 'x')})  goal <= 1.5x; "
          f"cold sync / bare = {cold_ship_s / ((anchors[-1] + cold_anchor) / 2):.2f}x")


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def each(values: list[float], unit: str) -> str:
    return ", ".join(f"{v:,.2f}{unit}" if unit else f"{v:,.0f}" for v in values)


def bare_upload(central: Any, sizes: list[int]) -> float:
    """The anchor: files of these sizes uploaded as bare artifacts of one run; no building, no signing."""
    import os

    files = [os.urandom(size) for size in sizes]
    run = central.create_run(central.experiment("anchor") or "0", "bare upload", {})
    at = time.perf_counter()
    for number, data in enumerate(files):
        central.upload(run, f"bare/{number}.parquet", data)
    return time.perf_counter() - at


if __name__ == "__main__":
    main()
