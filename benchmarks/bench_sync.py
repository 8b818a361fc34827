"""Fleet sync against a real `mlflow server` on PostgreSQL (loopback, proxied artifacts).

Prints, in one run:
- records/s shipped (govkit sync) and shipped + acknowledged (sync, then the witness pass);
- records/s verified centrally (check_segment over the segments in memory: hashes and chain), and
  records/s of the whole `audit verify --from-mlflow` of the device (downloads included);
- bytes per record on the wire;
- the anchor: a bare `MlflowClient.log_artifact` of files of the same sizes, and sync's ratio to it.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.central_server import mlflow_server, postgres  # noqa: E402
from tests.fleet import make_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--segment-records", type=int, default=50_000)
    args = parser.parse_args()
    from govkit.audit.checkpoints import generate_keypair, load_private_key
    from govkit.fleet.central import Central
    from govkit.fleet.registry import Device, enroll, load_registry
    from govkit.fleet.segments import check_segment, parse_segment_note
    from govkit.fleet.status import verify_device
    from govkit.fleet.sync import sync
    from govkit.fleet.witness import witness

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        device = make_device(root, "bench-device")
        made = time.perf_counter()
        head = device.append(args.records)
        print(f"store: {head} records made in {time.perf_counter() - made:.1f} s")
        registry = root / "fleet.toml"
        enroll(registry, Device(device.id, device.store_id, device.settings.audit.public_key))
        generate_keypair(root / "witness.pem")
        with postgres(root / "pg") as backend, mlflow_server(root / "mlflow", backend) as url:
            central = Central(url)
            # The first request of each kind pays for imports (the server's and this process's): warm each
            # kind once, as a long-running server and the anchor measured after the sync both are.
            warm = central.experiment("warm-up") or "0"
            central.runs([warm])
            warm_run = central.create_run(warm, "warm-up", {})
            central.upload(warm_run, "warm/file.bin", b"warm-up")
            central.download(warm_run, "warm/file.bin")
            central.set_tags(warm_run, {"warm": "up"}, {"warm": 1.0})
            started = time.perf_counter()
            shipped = sync(device.settings, to=url, max_records=args.segment_records)
            ship_s = time.perf_counter() - started
            acked_at = time.perf_counter()
            checked = witness(central, registry=load_registry(registry), key=load_private_key(root / "witness.pem"),
                              ledger=root / "witness.db")
            witness_s = time.perf_counter() - acked_at
            assert checked.ok and checked.records == head, checked.to_dict()
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
            # The anchor: the same bytes as bare artifacts of one run, no building, no signing.
            anchor_run = central.create_run(central.experiment("anchor") or "0", "bare upload", {})
            anchor_at = time.perf_counter()
            for number, (_, data) in enumerate(segments):
                central.upload(anchor_run, f"bare/{number}.parquet", data)
            anchor_s = time.perf_counter() - anchor_at
            central.close()
    size = sum(len(d) for _, d in segments)
    print(f"sync: {head} records, {len(segments)} segments, {size / head:.0f} bytes/record on the wire")
    print(f"shipped:                 {head / ship_s:>10,.0f} records/s ({ship_s:.2f} s)")
    print(f"shipped + acknowledged:  {head / (ship_s + witness_s):>10,.0f} records/s (witness {witness_s:.2f} s)  "
          f"goal >= 50,000")
    print(f"verified centrally:      {head / verify_s:>10,.0f} records/s ({verify_s:.2f} s)  goal >= 200,000 "
          f"(the witness's check of each segment: sha256, seqs, every hash, the chain; best of 3)")
    print(f"audit verify --from-mlflow: {head / whole_s:>7,.0f} records/s ({whole_s:.2f} s; downloads, signatures, "
          f"the chain and every field against its body)")
    print(f"anchor, bare log_artifact of the same bytes: {anchor_s:.2f} s; sync / bare = {ship_s / anchor_s:.2f}x  "
          f"goal <= 1.5x")


if __name__ == "__main__":
    main()
