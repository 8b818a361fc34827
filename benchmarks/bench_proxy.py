"""Proxy benchmarks: added latency and throughput, direct vs through govkit proxy (every record
durable: the request's before the upstream is called, the answer's before it reaches the client),
against an instant upstream and against the real model server, at concurrency 1 and 16; the
design before the request record in the same run; and the same through LiteLLM's proxy (one
worker) in the same run when it is installed.

    python benchmarks/bench_proxy.py [--requests 3000] [--litellm PATH/TO/litellm]

LiteLLM is looked up as --litellm, then `litellm` on PATH, then the venv
~/.cache/govkit-bench-litellm (python -m venv ~/.cache/govkit-bench-litellm &&
~/.cache/govkit-bench-litellm/bin/pip install 'litellm[proxy]'). Every server runs in its own
process on loopback; the load generator is this script's event loop, the same for every target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.servers import free_port, smollm2_gguf, start_llama_server, start_proxy, stop, wait_for  # noqa: E402

BENCH_KEY = "sk-govkit-bench-0000"  # LiteLLM refuses to start without a master key; the others ignore it

# The instant upstream answers from asyncio's protocol layer, with no web framework: it should
# cost the machine as little as possible, since the load generator and the proxy under test
# share the same two cores with it.
INSTANT = r"""
import asyncio, sys
ANSWER = (b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
          b'"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')
MODELS = b'{"object":"list","data":[{"id":"m","object":"model","owned_by":"instant"}]}'
def response(body):
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
CHAT, LIST = response(ANSWER), response(MODELS)

class Instant(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15:].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return  # the body is still arriving
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(LIST if head.startswith(b"get /v1/models") else CHAT)

async def main():
    server = await asyncio.get_running_loop().create_server(Instant, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


# The design before the request record: one record per call, written after the answer. Only for
# comparison in the same run; govkit itself always records the request first.
PREVIOUS_DESIGN = r"""
import asyncio, sys
from pathlib import Path
from govkit.audit import AuditLog
from govkit.cli.proxy import _serve
from govkit.config import load_settings
from govkit.inference.proxy import AuditingProxy, ProxyConfig

class AnswerOnly(AuditingProxy):
    async def _record_request(self, call):
        return None

folder, upstream, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
settings = load_settings(folder / "govkit.toml")
config = ProxyConfig(upstream=upstream, port=port, model_id=settings.model.id)
try:
    import uvloop
    factory = uvloop.new_event_loop
except ImportError:
    factory = None
with AuditLog.open(settings=settings) as log, asyncio.Runner(loop_factory=factory) as runner:
    runner.run(_serve(AnswerOnly(log, config), config, log.path))
"""


# The floor the design allows: a bare aiohttp relay that makes two durable SQLite commits per call
# (WAL, synchronous=FULL; the request's row before the upstream is called, the answer's before
# the client gets it) and nothing else: no parsing, no hashing, no redaction, no chain.
FLOOR = r"""
import asyncio, sqlite3, sys
from aiohttp import ClientSession, TCPConnector, web
upstream, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB)")

def commit(body):
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO rows (body) VALUES (?)", (body,))
    db.execute("COMMIT")

async def main():
    loop = asyncio.get_running_loop()
    writer = asyncio.Lock()  # one writer connection, as the store has
    session = ClientSession(connector=TCPConnector(limit=0))

    async def relay(request):
        body = await request.read()
        async with writer:
            await loop.run_in_executor(None, commit, body)
        async with session.request(request.method, upstream + request.path.removeprefix("/v1"), data=body,
                                   headers={"Content-Type": "application/json"}) as answer:
            data = await answer.read()
        async with writer:
            await loop.run_in_executor(None, commit, data)
        return web.Response(body=data, status=answer.status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_floor(folder: Path, upstream: str) -> tuple[str, subprocess.Popen]:
    folder.mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR, upstream, str(port), str(folder / "floor.db")],
                            stdout=(folder / "floor.log").open("wb"), stderr=subprocess.STDOUT)
    wait_for(f"http://127.0.0.1:{port}/v1/models", proc, 30)
    return f"http://127.0.0.1:{port}/v1", proc


def start_previous_design(folder: Path, upstream: str) -> tuple[str, subprocess.Popen]:
    folder.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "govkit", "init", "--yes"], cwd=folder, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", PREVIOUS_DESIGN, str(folder), upstream, str(port)], cwd=folder,
                            stdout=(folder / "proxy.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", proc, 60)
    except BaseException:
        stop(proc)  # nothing of it may outlive the benchmark
        raise
    return f"http://127.0.0.1:{port}/v1", proc


def start_instant_upstream() -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", INSTANT, str(port)])
    wait_for(f"http://127.0.0.1:{port}/v1/models", proc, 30)
    return f"http://127.0.0.1:{port}/v1", proc


def find_litellm(explicit: str | None) -> str | None:
    candidates = [explicit, shutil.which("litellm"),
                  str(Path.home() / ".cache" / "govkit-bench-litellm" / "bin" / "litellm")]
    return next((c for c in candidates if c and Path(c).exists()), None)


def start_litellm(executable: str, upstream: str, folder: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    config = folder / "litellm.yaml"
    config.write_text("model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
                      f"      api_base: {upstream}\n      api_key: none\n")
    proc = subprocess.Popen([executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", "1"], stdout=(folder / "litellm.log").open("wb"),
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": BENCH_KEY})
    wait_for(f"http://127.0.0.1:{port}/health/liveliness", proc, 180)
    return f"http://127.0.0.1:{port}/v1", proc


async def load(url: str, requests: int, concurrency: int, body: dict,
               seconds: float | None = None) -> tuple[list[float], float]:
    """Send `requests` chat completions (or as many as fit in `seconds`) from `concurrency`
    workers; (latencies in s, elapsed s)."""
    latencies: list[float] = []
    payload = json.dumps(body).encode()
    remaining = [requests]
    deadline = time.perf_counter() + seconds if seconds else float("inf")
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json",
                                                                   "Authorization": f"Bearer {BENCH_KEY}"}) as session:
        async def worker() -> None:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                start = time.perf_counter()
                async with session.post(url + "/chat/completions", data=payload) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: HTTP {response.status}")
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def measure(url: str, requests: int, concurrency: int, body: dict) -> dict[str, float]:
    asyncio.run(load(url, min(200, requests), concurrency, body))  # warm up connections and caches
    latencies, elapsed = asyncio.run(load(url, requests, concurrency, body))
    latencies.sort()
    return {"p50_ms": statistics.median(latencies) * 1000, "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "rps": len(latencies) / elapsed}


def report(title: str, direct: dict, via: dict, label: str = "govkit") -> None:
    print(f"  {title:<34} direct p50 {direct['p50_ms']:7.2f} ms p99 {direct['p99_ms']:7.2f} ms {direct['rps']:8,.0f}/s"
          f"   {label} p50 {via['p50_ms']:7.2f} ms p99 {via['p99_ms']:7.2f} ms {via['rps']:8,.0f}/s"
          f"   added p50 {via['p50_ms'] - direct['p50_ms']:+.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--model-requests", type=int, default=60)
    parser.add_argument("--litellm")
    args = parser.parse_args()
    os.sync()  # write back what earlier work left dirty: it would slow every fsync measured here
    folder = Path(tempfile.mkdtemp(prefix="govkit-bench-proxy-"))
    procs: list[subprocess.Popen] = []
    body = {"model": "m", "messages": [{"role": "user", "content": "Is this transaction unusual? amount=20"}]}
    try:
        instant, p = start_instant_upstream()
        procs.append(p)
        via, p = start_proxy(folder / "govkit-instant", instant)
        procs.append(p)
        print(f"govkit proxy benchmarks ({os.cpu_count()} cores; every proxied call's record committed with fsync)\n")
        print("instant upstream (answers at once)")
        results = {}
        for concurrency in (1, 16):
            results[concurrency] = (measure(instant, args.requests, concurrency, body),
                                    measure(via, args.requests, concurrency, body))
            report(f"concurrency {concurrency}", *results[concurrency])
        floor, p = start_floor(folder / "floor", instant)
        procs.append(p)
        # Alternating blocks (direct, floor, govkit, direct, ...) at concurrency 1: drift in the
        # machine's speed falls on all three alike.
        p50s: dict[str, list[float]] = {"direct": [], "floor": [], "govkit": []}
        for _ in range(3):
            for name, url in (("direct", instant), ("floor", floor), ("govkit", via)):
                p50s[name].append(measure(url, max(300, args.requests // 3), 1, body)["p50_ms"])
        stop(procs.pop())
        direct_p50, floor_p50, ours_p50 = (statistics.median(p50s[n]) for n in ("direct", "floor", "govkit"))
        floor_added, ours_added = floor_p50 - direct_p50, ours_p50 - direct_p50
        print(f"  the floor (a bare aiohttp relay with two durable SQLite commits), concurrency 1, alternating blocks:"
              f"\n    direct p50 {direct_p50:.2f} ms, floor {floor_p50:.2f} ms (adds {floor_added:.2f} ms), govkit "
              f"{ours_p50:.2f} ms (adds {ours_added:.2f} ms)")
        print(f"  -> added p50 at concurrency 1: {ours_added:.2f} ms = {ours_added / floor_added:.2f}x the floor's "
              f"(goal <= 1.3x); throughput at 16: {results[16][1]['rps']:,.0f}/s (goal >= 1,000/s)")
        previous, p = start_previous_design(folder / "govkit-previous", instant)
        procs.append(p)
        # Alternating blocks (previous, current, previous, ...): drift in the machine's speed
        # falls on both designs alike.
        blocks: dict[str, dict[int, list[dict[str, float]]]] = {"previous": {1: [], 16: []}, "current": {1: [], 16: []}}
        for _ in range(3):
            for name, url in (("previous", previous), ("current", via)):
                for concurrency in (1, 16):
                    blocks[name][concurrency].append(measure(url, args.requests // 3, concurrency, body))
        print("  the request recorded before the upstream (current) against one record after the answer (previous):")
        for concurrency in (1, 16):
            for key, unit in (("p50_ms", "ms"), ("rps", "/s")):
                old = statistics.median(b[key] for b in blocks["previous"][concurrency])
                new = statistics.median(b[key] for b in blocks["current"][concurrency])
                print(f"    concurrency {concurrency:>2} {key:<7} previous {old:9.2f} {unit:<3} current {new:9.2f} {unit:<3}"
                      f" ratio {new / old:.2f}")
        stop(procs.pop())
        litellm = find_litellm(args.litellm)
        if litellm:
            lite, p = start_litellm(litellm, instant, folder)
            procs.append(p)
            lite_results = {c: measure(lite, max(300, args.requests // 5), c, body) for c in (1, 16)}
            for c in (1, 16):
                report(f"concurrency {c} (LiteLLM proxy)", results[c][0], lite_results[c], label="litellm")
            # The ratio from alternating blocks of equal duration (govkit, LiteLLM, govkit, ...):
            # drift in the machine's speed during the run falls on both sides alike.
            served = {"govkit": [0, 0.0], "litellm": [0, 0.0]}
            for _ in range(3):
                for name, url in (("govkit", via), ("litellm", lite)):
                    latencies, elapsed = asyncio.run(load(url, 10**9, 16, body, seconds=3.0))
                    served[name][0] += len(latencies)
                    served[name][1] += elapsed
            ours, theirs = (served[n][0] / served[n][1] for n in ("govkit", "litellm"))
            print(f"  -> govkit / LiteLLM throughput at 16, alternating blocks: {ours:,.0f}/s vs {theirs:,.0f}/s = "
                  f"{ours / theirs:.1f}x (goal >= 25x)")
            stop(procs.pop())  # LiteLLM's part is done: nothing of it runs beside the real model
        else:
            print("  (LiteLLM not installed: see --help to compare against it in the same run)")

        print("\nreal model (llama.cpp server, SmolLM2-135M Q4_1, 8 new tokens)")
        gguf = smollm2_gguf()
        model, p = start_llama_server(gguf, folder / "llama.log")
        procs.append(p)
        via_model, p = start_proxy(folder / "govkit-model", model, "--model-artifact", str(gguf))
        procs.append(p)
        model_body = {**body, "max_tokens": 8, "temperature": 0}
        # The model server's own timing varies by several percent from call to call, far more than
        # the proxy adds. At concurrency 1, pair the calls (direct, proxied, direct, ...) and take
        # the median of the per-pair differences; at 16, alternate batches (ABAB...) and compare totals.
        floor_model, p = start_floor(folder / "floor-model", model)
        procs.append(p)
        for url in (model, via_model, floor_model):
            asyncio.run(load(url, 10, 1, model_body))
        differences, floor_differences, directs = [], [], []
        for _ in range(args.model_requests):
            (direct_latency,), _ = asyncio.run(load(model, 1, 1, model_body))
            (proxied_latency,), _ = asyncio.run(load(via_model, 1, 1, model_body))
            (direct_again,), _ = asyncio.run(load(model, 1, 1, model_body))
            (floor_latency,), _ = asyncio.run(load(floor_model, 1, 1, model_body))
            differences.append(proxied_latency - direct_latency)
            floor_differences.append(floor_latency - direct_again)
            directs.append(direct_latency)
        stop(procs.pop())
        added, typical = statistics.median(differences), statistics.median(directs)
        floor_added = statistics.median(floor_differences)
        print(f"  concurrency 1                      direct p50 {typical * 1000:7.2f} ms   added by govkit (median of "
              f"{len(differences)} pairs) {added * 1000:+.2f} ms -> slowdown {added / typical * 100:+.1f}% (goal < 2%)")
        print(f"                                     the floor (bare relay, two durable commits) adds "
              f"{floor_added * 1000:+.2f} ms ({floor_added / typical * 100:+.1f}%): govkit is "
              f"{added / floor_added:.2f}x the floor against the real model")
        spent = {"direct": 0.0, "govkit": 0.0}
        for _ in range(max(4, args.model_requests // 32)):
            for name, url in (("direct", model), ("govkit", via_model)):
                spent[name] += asyncio.run(load(url, 32, 16, model_body))[1]
        print(f"  concurrency 16                     direct {spent['direct']:.1f} s   govkit {spent['govkit']:.1f} s"
              f"   -> slowdown through govkit: {(spent['govkit'] / spent['direct'] - 1) * 100:+.1f}% (goal < 2%)")
        # Streamed: every part is journaled (durable) before it is forwarded. Tokens per second
        # as the client receives them, direct and through govkit, in alternating calls.
        stream_body = {**body, "max_tokens": 64, "temperature": 0, "stream": True}
        rates: dict[str, list[float]] = {"direct": [], "govkit": []}
        for _ in range(max(6, args.model_requests // 4)):
            for name, url in (("direct", model), ("govkit", via_model)):
                rates[name].append(asyncio.run(streamed_rate(url, stream_body)))
        direct_rate, ours_rate = (statistics.median(rates[n]) for n in ("direct", "govkit"))
        print(f"  streamed, 64 tokens                direct {direct_rate:6.1f} tokens/s   govkit {ours_rate:6.1f} tokens/s"
              f"   -> {ours_rate / direct_rate * 100:.1f}% of direct (goal >= 95%; each part journaled first)")
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


async def streamed_rate(url: str, body: dict) -> float:
    """Content events per second as a client receives them, from the first to the last."""
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/chat/completions", json=body) as response:
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if b'"content"' in event:
                        times.append(time.perf_counter())
    if len(times) < 2:
        raise RuntimeError(f"{url}: the stream carried {len(times)} content event(s)")
    return (len(times) - 1) / (times[-1] - times[0])


if __name__ == "__main__":
    main()
