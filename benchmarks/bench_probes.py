"""GenAI probe figures on the real model (SmolLM2-135M behind llama.cpp's server, 2 cores): the
smoke suite's wall time and probes per second sent directly to the model server and through
govkit proxy (every probe also recorded by the proxy), in alternating rounds; and, with --gate,
the gate-size suite (100 a category) through the proxy, which must finish in under 10 minutes.

    python benchmarks/bench_probes.py [--rounds 3] [--gate] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.servers import smollm2_gguf, start_llama_server, start_proxy, stop  # noqa: E402


def probe_run(folder: Path, endpoint: str, gguf: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "govkit", "probe", "run", "--endpoint", endpoint,
                           "--model-artifact", str(gguf), "--max-tokens", "24", *args],
                          cwd=folder, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--gate", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="govkit-bench-probes-"))
    procs = []
    try:
        gguf = smollm2_gguf()
        model, p = start_llama_server(gguf, folder / "llama.log", "--parallel", str(args.parallel))
        procs.append(p)
        via, p = start_proxy(folder / "proxy", model, "--model-artifact", str(gguf))
        procs.append(p)
        project = folder / "project"
        project.mkdir()
        subprocess.run([sys.executable, "-m", "govkit", "init", "--yes"], cwd=project, check=True, capture_output=True)
        suite = ["--suite", "smoke", "--parallel", str(args.parallel)]
        probe_run(project, model, gguf, *suite)  # warm up
        times: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(args.rounds):
            for name, url in (("direct", model), ("proxy", via)):
                times[name].append(probe_run(project, url, gguf, *suite))
        direct, proxied = (statistics.median(times[n]) for n in ("direct", "proxy"))
        print(f"govkit probe benchmarks ({os.cpu_count()} cores, parallel {args.parallel}, 24 new tokens a probe)")
        print(f"  smoke suite (100 probes): direct to the model server {direct:.1f} s ({100 / direct:.2f} probes/s), "
              f"through govkit proxy {proxied:.1f} s ({100 / proxied:.2f} probes/s) -> audit overhead "
              f"{(proxied / direct - 1) * 100:+.1f}% (goal <= 3%; medians of {args.rounds} alternating rounds)")
        if args.gate:
            seconds = probe_run(project, via, gguf, "--suite", "gate", "--parallel", str(args.parallel))
            print(f"  gate suite (1,000 probes) through the proxy: {seconds:.0f} s ({1000 / seconds:.2f} probes/s) "
                  f"(goal < 600 s); bounded by the model server's decoding, {args.parallel} slot(s) on 2 cores")
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
