"""GenAI risk probes through the endpoint: prompt injection, system-prompt leakage, personal-data
disclosure, harmful-request compliance, over-refusal, confabulation on computable facts, unsafe
output and runaway output, judged without a model, with intervals, thresholds committed before
the run, and regressions against the last approved run."""

from .run import ProbeRun, import_garak, run_garak, run_probes
from .suite import Probe, ProbeSet, load_probe_set

__all__ = ["Probe", "ProbeRun", "ProbeSet", "import_garak", "load_probe_set", "run_garak", "run_probes"]
