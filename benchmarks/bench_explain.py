"""Text explanations against the real model server: cost per budget, stability, and what reuse saves.

    python benchmarks/bench_explain.py [--budgets 50,200,500] [--proxy-requests 30]

Starts llama.cpp's server with the bundled SmolLM2 and explains one 40-word loan prompt with
shap's Partition explainer at each budget, printing wall time, model calls and how closely the
attributions agree with those of the largest budget (Pearson correlation). The "naive" run
evaluates every masked prompt shap asks for, one by one in shap's order, with no de-duplication;
govkit's scorer de-duplicates and sends each batch sorted so consecutive prompts share prefixes
(llama.cpp keeps the shared prefix in its KV cache). The ratio is the speed-up.

Then the proxy: p50/p95 latency of requests through a proxy with background explanation sampling
off (sample_rate 0) and one with it on (1.0), in alternating blocks against the same server. The
worker evaluates only after [explain] idle_ms without a request; a request that arrives while one
of its evaluations runs waits for it at the single-slot server: that is the cost reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = ("A retired customer aged 67, with two missed card payments last year, asks the bank for a loan "
          "of 9000 dollars over 36 months to buy a car. Should the bank approve or deny "
          "the loan? Answer: approve or deny.")


def explain_at(url: str, folder: Path, budget: int, reuse: bool) -> tuple[float, int, list[float]]:
    from govkit.audit import AuditLog
    from govkit.explain.text import Scorer, explain_text
    from govkit.inference.decider import Decider

    with AuditLog(folder / f"audit-{budget}-{reuse}.db", create=True) as log:
        decider = Decider(log, ["approve", "deny"], endpoint=url, purpose="explanation")
        scorer = Scorer(decider.decide, "approve", reuse=reuse)
        start = time.perf_counter()
        result = explain_text(scorer, PROMPT, choices=["approve", "deny"], max_evals=budget, noise_probes=0)
        return time.perf_counter() - start, scorer.calls, [a["value"] for a in result.attributions]


def pearson(a: list[float], b: list[float]) -> float:
    return statistics.correlation(a, b)


def proxy_latency(url: str, gguf: Path, folder: Path, requests: int) -> dict[str, list[float]]:
    import httpx

    latencies: dict[str, list[float]] = {"off": [], "on": []}
    procs = {}
    for mode, rate in (("off", "0.0"), ("on", "1.0")):
        edge = folder / f"edge-{mode}"
        edge.mkdir()
        subprocess.run([sys.executable, "-m", "govkit", "init", "--yes"], cwd=edge, check=True, capture_output=True)
        config = edge / "govkit.toml"
        config.write_text(config.read_text().replace("sample_rate = 0.0", f"sample_rate = {rate}")
                          .replace("choices = []", 'choices = ["approve", "deny"]')
                          .replace('positive = ""', 'positive = "approve"').replace("max_evals = 100", "max_evals = 60")
                          .replace("enabled = true", "enabled = false"))
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.servers import start_proxy

        procs[mode] = start_proxy(edge, url, "--model-artifact", str(gguf))
    try:
        with httpx.Client(timeout=120) as client:
            # Alternating blocks of 10 requests per proxy, 0.25 s apart (busier than the worker's idle
            # threshold), with a 1.5 s lull between blocks in which the worker may run.
            for block in range(max(1, requests // 10)):
                for mode in (("off", "on") if block % 2 else ("on", "off")):
                    for i in range(10):
                        body = {"max_tokens": 2, "temperature": 0, "messages": [{"role": "user", "content":
                                f"Loan for a customer aged {25 + i + block}? Answer approve or deny."}]}
                        start = time.perf_counter()
                        client.post(procs[mode][0] + "/chat/completions", json=body).raise_for_status()
                        latencies[mode].append(time.perf_counter() - start)
                        time.sleep(0.25)
                    time.sleep(1.5)
    finally:
        for _, proc in procs.values():
            proc.terminate()
            proc.wait(60)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="50,200,500")
    parser.add_argument("--proxy-requests", type=int, default=30)
    args = parser.parse_args()
    from govkit.inference.localserver import bundled_model, start_llama_server

    budgets = [int(b) for b in args.budgets.split(",")]
    gguf = bundled_model()
    print(f"prompt: {len(PROMPT.split())} words; model SmolLM2-135M Q4_1 on llama.cpp's server (2 threads)")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        url, server = start_llama_server(gguf, folder / "server.log")
        try:
            explain_at(url, folder, 4, reuse=True)  # warm the server up
            results = {b: explain_at(url, folder, b, reuse=True) for b in budgets}
            reference = results[max(budgets)][2]
            for budget, (seconds, calls, values) in results.items():
                print(f"  budget {budget:>4}: {seconds:6.1f} s, {calls:>4} model calls, "
                      f"correlation with budget {max(budgets)}: {pearson(values, reference):.3f}")
            middle = sorted(budgets)[len(budgets) // 2]
            naive_seconds, naive_calls, _ = explain_at(url, folder, middle, reuse=False)
            seconds, calls, _ = results[middle]
            print(f"  budget {middle}, naive (every masked prompt, shap's order, no de-duplication): "
                  f"{naive_seconds:.1f} s, {naive_calls} calls")
            print(f"  speed-up of govkit's reuse over naive: {naive_seconds / seconds:.2f}x "
                  f"({naive_calls - calls} calls saved)")
            if args.proxy_requests:
                lat = proxy_latency(url, gguf, folder, args.proxy_requests)
                for mode in ("off", "on"):
                    values = sorted(lat[mode])
                    p95 = values[max(0, int(len(values) * 0.95) - 1)]
                    print(f"  proxy, explanation sampling {mode:>3}: p50 {statistics.median(values) * 1000:6.1f} ms, "
                          f"p95 {p95 * 1000:6.1f} ms over {len(values)} requests")
                print(f"  p50 ratio on/off: {statistics.median(lat['on']) / statistics.median(lat['off']):.3f}")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
