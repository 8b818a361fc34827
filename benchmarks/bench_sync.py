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
  the same sizes, measured just before and just after the sync, and sync's ratio to their mean.
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
        device, cold = make_device(root, "bench-device"), make_device(root, "bench-cold")
        made = time.perf_counter()
        head = device.append(args.records)
        cold_head = cold.append(args.records)
        print(f"stores: {head} + {cold_head} records made in {time.perf_counter() - made:.1f} s")
        registry = root / "fleet.toml"
        for one in (device, cold):
            enroll(registry, Device(one.id, one.store_id, one.settings.audit.public_key))
        generate_keypair(root / "witness.pem")
        sealed_at = time.perf_counter()
        with inside(device.folder):
            sealed = seal(device.settings, max_records=args.segment_records)
        seal_s = time.perf_counter() - sealed_at
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
            central.experiment(Tracker.from_settings(device.settings, device.settings.audit.db).experiment)

            def acknowledge() -> tuple[float, Any]:
                at = time.perf_counter()
                checked = witness(central, registry=load_registry(registry), key=witness_key, ledger=root / "witness.db")
                return time.perf_counter() - at, checked

            sizes = [p.stat().st_size for p in sorted(sealed_folder(device.settings.audit.db).glob("*.parquet"))]
            anchor_before = bare_upload(central, sizes)
            started = time.perf_counter()
            with inside(device.folder):
                shipped = sync(device.settings, to=url, max_records=args.segment_records)
            ship_s = time.perf_counter() - started
            anchor_after = bare_upload(central, sizes)
            witness_s, checked = acknowledge()
            assert checked.ok and checked.records == head, checked.to_dict()
            started = time.perf_counter()
            with inside(cold.folder):
                cold_shipped = sync(cold.settings, to=url, max_records=args.segment_records)
            cold_ship_s = time.perf_counter() - started
            cold_witness_s, checked = acknowledge()
            assert checked.ok and checked.records == cold_head, checked.to_dict()
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
    anchor_s = (anchor_before + anchor_after) / 2
    size = sum(len(d) for _, d in segments)
    print(f"sync: {head} records, {len(segments)} segments ({shipped.sealed} sealed ahead), "
          f"{size / head:.0f} bytes/record on the wire")
    print(f"sealed ahead (device, offline): {sealed.records / seal_s:>10,.0f} records/s ({seal_s:.2f} s, "
          f"{sealed.segments} segments; {sealed.open_tail} records left open for the sync)")
    print(f"shipped:                 {head / ship_s:>10,.0f} records/s ({ship_s:.2f} s)")
    print(f"shipped + acknowledged:  {head / (ship_s + witness_s):>10,.0f} records/s (witness {witness_s:.2f} s)  "
          f"goal >= 50,000")
    print(f"cold (nothing sealed):   {cold_head / cold_ship_s:>10,.0f} records/s shipped ({cold_ship_s:.2f} s), "
          f"{cold_head / (cold_ship_s + cold_witness_s):,.0f} shipped + acknowledged (witness {cold_witness_s:.2f} s); "
          f"{cold_shipped.sealed} sealed ahead")
    print(f"verified centrally:      {head / verify_s:>10,.0f} records/s ({verify_s:.2f} s)  goal >= 200,000 "
          f"(the witness's check of each segment: sha256, seqs, every hash, the chain; best of 3)")
    print(f"audit verify --from-mlflow: {head / whole_s:>7,.0f} records/s ({whole_s:.2f} s; downloads, signatures, "
          f"the chain and every field against its body)")
    print(f"anchor, bare upload of the same bytes: {anchor_before:.2f} s before, {anchor_after:.2f} s after the sync; "
          f"sync / bare = {ship_s / anchor_s:.2f}x  goal <= 1.5x; cold sync / bare = {cold_ship_s / anchor_s:.2f}x")


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
