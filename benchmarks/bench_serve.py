"""llama.cpp's own server (`govkit serve`, the xllamacpp wheel) against the server the demo ran
before (llama-cpp-python's `python -m llama_cpp.server`), same GGUF, same threads, same run.

    python benchmarks/bench_serve.py [--calls 40] [--rounds 2] [--demo]

For each server, in alternating rounds: the seconds from the process start to its first answer
on /health, then the demo's credit decision (its system message and prompt, `max_tokens` 1 and
`logprobs`, as govkit's Decider asks) for `--calls` German credit applicants, posted directly,
one at a time: calls per second. With --demo, the whole `govkit demo` runs once on each server
(in-process, with the demo's server start swapped): its wall time. Prints every figure and the
ratio of govkit serve to llama-cpp-python.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from govkit.inference import localserver  # noqa: E402
from govkit.inference.localserver import bundled_model, free_port, stop, wait_for_http  # noqa: E402


def start_llama_cpp_python(gguf: Path, log: Path, *extra: str, threads: int | None = None) -> tuple[str, subprocess.Popen]:
    """The demo's server before govkit serve: llama-cpp-python's FastAPI server (the `llama` extra)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads or 2), *extra],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", proc, 300)
    except BaseException:
        stop(proc)
        raise
    return f"http://127.0.0.1:{port}/v1", proc


SERVERS = {"govkit serve": localserver.start_llama_server, "llama-cpp-python": start_llama_cpp_python}


def bodies(calls: int) -> list[bytes]:
    """The demo tablet's credit decisions: one token with its log-probabilities, temperature 0."""
    from govkit.demo.german import read_applicants
    from govkit.demo.workload import credit_body

    return [json.dumps(credit_body(applicant)).encode() for applicant in read_applicants()[:calls]]


def measure(name: str, gguf: Path, requests: list[bytes], folder: Path) -> tuple[float, float]:
    started = time.monotonic()
    url, proc = SERVERS[name](gguf, folder / f"{name.replace(' ', '-')}.log", threads=2)
    ready = time.monotonic() - started
    try:
        urllib.request.urlopen(urllib.request.Request(url + "/chat/completions", data=requests[0], headers={
            "Content-Type": "application/json"}), timeout=300).read()  # warm: the first call loads the weights' pages
        began = time.monotonic()
        for body in requests:
            request = urllib.request.Request(url + "/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            answer = json.loads(urllib.request.urlopen(request, timeout=300).read())
            assert answer["choices"][0]["logprobs"]["content"], answer
        rate = len(requests) / (time.monotonic() - began)
    finally:
        stop(proc)
    return ready, rate


def demo_seconds(name: str, folder: Path) -> float:
    from click.testing import CliRunner

    from govkit.cli import cli

    original = localserver.start_llama_server
    localserver.start_llama_server = SERVERS[name]  # the demo imports it from the module when it starts
    try:
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["demo", "--dir", str(folder / name.replace(" ", "-"))])
        seconds = time.monotonic() - started
    finally:
        localserver.start_llama_server = original
    if result.exit_code != 0:
        raise SystemExit(f"the demo on {name} failed:\n{result.output[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--demo", action="store_true", help="also time the whole demo on each server")
    args = parser.parse_args()
    gguf = bundled_model()
    requests = bodies(args.calls)
    figures: dict[str, dict[str, list[float]]] = {name: {"ready": [], "rate": []} for name in SERVERS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            order = list(SERVERS) if round_number % 2 == 0 else list(reversed(SERVERS))
            for name in order:
                ready, rate = measure(name, gguf, requests, Path(tmp))
                figures[name]["ready"].append(ready)
                figures[name]["rate"].append(rate)
                print(f"round {round_number + 1} {name:<17} ready after {ready:5.1f} s, {rate:5.2f} calls/s "
                      f"({args.calls} decisions)", flush=True)
        new, old = (statistics.median(figures[name]["rate"]) for name in SERVERS)
        ready_new, ready_old = (statistics.median(figures[name]["ready"]) for name in SERVERS)
        print(f"\nmedian calls/s: govkit serve {new:.2f}, llama-cpp-python {old:.2f}: ratio {new / old:.2f}x")
        print(f"median start to first /health: govkit serve {ready_new:.1f} s, llama-cpp-python {ready_old:.1f} s")
        if args.demo:
            seconds = {name: demo_seconds(name, Path(tmp)) for name in SERVERS}
            print(f"govkit demo wall time: govkit serve {seconds['govkit serve']:.0f} s, "
                  f"llama-cpp-python {seconds['llama-cpp-python']:.0f} s: ratio "
                  f"{seconds['govkit serve'] / seconds['llama-cpp-python']:.2f}x")


if __name__ == "__main__":
    main()
