"""Fingerprinting a large file: govkit's streamed sha256 against `sha256sum`, same file, same run.

    python benchmarks/bench_lineage.py [--size-mib 1024] [--rounds 3]

Writes a file of random bytes (1 GiB by default), reads it once so both tools hash from the page
cache, then alternates `sha256sum FILE` and a child process running
`govkit.inference.fingerprint.sha256_file` (what `lineage dataset add` and `lineage model add` use).
`--cold` drops the file from the page cache before every run instead. Prints each tool's best
throughput, their ratio (goal: close to 1), both digests (they must match)
and the child's peak RSS against a child that only imports govkit (goal: flat, independent of the
file size; run with a smaller --size-mib to compare).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time
from pathlib import Path
from govkit.digests import sha256_file
if sys.argv[1] != "--import-only":
    start = time.perf_counter()
    digest, size = sha256_file(Path(sys.argv[1]))
    print(digest.removeprefix("sha256:"), time.perf_counter() - start)
"""


def run_child(args: list[str]) -> tuple[str, float]:
    """(stdout, peak RSS in MiB) of a child process."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{args[0]} failed with {proc.returncode}")
    return out, usage.ru_maxrss / 1024


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="Drop the file from the page cache before "
                        "every run (posix_fadvise DONTNEED), so both read from disk.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as folder:
        path = Path(folder) / "artifact.bin"
        with path.open("wb") as handle:
            block = os.urandom(8 << 20)
            for i in range(args.size_mib // 8):
                handle.write(block[i % 7:] + block[: i % 7])  # distinct blocks, cheap to make
        size = path.stat().st_size
        os.sync()
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        _, baseline_rss = run_child([sys.executable, "-c", CHILD, "--import-only"])
        anchor, ours, rss = [], [], []
        digests = set()
        for _ in range(args.rounds):
            if args.cold:
                drop_cache(path)
            start = time.perf_counter()
            out, _ = run_child(["sha256sum", str(path)])
            anchor.append(time.perf_counter() - start)
            digests.add(out.split()[0])
            if args.cold:
                drop_cache(path)
            start = time.perf_counter()
            out, peak = run_child([sys.executable, "-c", CHILD, str(path)])
            ours.append(float(out.split()[1]))  # hashing time only, without the interpreter start
            digests.add(out.split()[0])
            rss.append(peak)
    mib = size / (1 << 20)
    best_anchor, best_ours = min(anchor), min(ours)
    cache = "dropped before every run" if args.cold else "warm"
    print(f"file: {mib:.0f} MiB of random bytes, {args.rounds} alternating rounds, page cache {cache}")
    print(f"sha256sum          {mib / best_anchor:8.0f} MiB/s  (best {best_anchor:.2f} s; whole process)")
    print(f"govkit sha256_file {mib / best_ours:8.0f} MiB/s  (best {best_ours:.2f} s; hashing only)")
    print(f"ratio govkit/sha256sum throughput: {best_anchor / best_ours:.2f}  (goal: close to 1)")
    print(f"digests agree: {len(digests) == 1}")
    print(f"peak RSS: {max(rss):.0f} MiB hashing vs {baseline_rss:.0f} MiB after import only "
          f"(+{max(rss) - baseline_rss:.1f} MiB for a {mib:.0f} MiB file)")


if __name__ == "__main__":
    main()
