"""Background explanations for a sample of the proxy's live decisions.

Sampling is by the record id's hash (`sampled`), so which records get explained is reproducible
and checkable after the fact. Explanations run in one worker thread, one at a time, and each model
evaluation waits until no client request is in flight: the worker uses only idle capacity and is
never on a request's path. A full queue drops the sample and counts it. At shutdown the worker
chains a coverage event: eligible, explained, dropped, failed, still pending, and the batch's
fidelity (mean score drop from deleting each explanation's top 3 segments against 3 random ones).
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit import AuditLog
from ..config import ExplainSettings

__all__ = ["ExplanationSampler", "sampled"]

FIDELITY_K = 3  # segments deleted to check each explanation's fidelity
FIDELITY_RANDOM_SETS = 3

def sampled(record_id: str, rate: float) -> bool:
    """Whether a record falls in the sample: its id's sha256, read as a fraction, is below `rate`."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(record_id.encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass
class _Counts:
    eligible: int = 0
    explained: int = 0
    dropped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    top_k_drops: list[float] = field(default_factory=list)
    random_k_drops: list[float] = field(default_factory=list)


class ExplanationSampler:
    def __init__(self, log: AuditLog, settings: ExplainSettings, *, endpoint: str, busy: Callable[[], bool],
                 model_artifact: Path | None = None, model_id: str | None = None):
        self.log, self.settings, self.endpoint, self.busy = log, settings, endpoint, busy
        self.model_artifact, self.model_id = model_artifact, model_id
        self.pattern = re.compile(settings.match) if settings.match else None
        self.queue: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=settings.max_queue)
        self.counts = _Counts()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="govkit-explain", daemon=True)
        self._thread.start()

    def offer(self, record: Any, prompt: str | None, response: str | None) -> None:
        """Called after a chat completion's record is durable; never blocks."""
        if not prompt or record.status != "ok":
            return
        matched = bool(self.pattern and response and self.pattern.search(response))
        if not (matched or sampled(record.record_id, self.settings.sample_rate)):
            return
        self.counts.eligible += 1
        try:
            self.queue.put_nowait((record.record_id, prompt))
        except queue.Full:
            self.counts.dropped += 1

    def _run(self) -> None:
        from ..cli.explain import split_chat_prompt
        from ..fairness.llm import Decider
        from .text import Scorer, explain_text, fidelity

        decider = None
        while not self._stop.is_set():
            item = self.queue.get()
            if item is None:
                break
            record_id, stored = item
            try:
                if decider is None:
                    decider = Decider(self.log, list(self.settings.choices), endpoint=self.endpoint,
                                      purpose="explanation", model_id=self.model_id,
                                      model_artifact=self.model_artifact)
                system, prompt = split_chat_prompt(stored)
                decider.system = system

                def decide(text: str) -> Any:
                    while self.busy() and not self._stop.is_set():
                        time.sleep(0.005)
                    return decider.decide(text)

                scorer = Scorer(decide, self.settings.positive)
                result = explain_text(scorer, prompt, choices=list(self.settings.choices),
                                      segments=self.settings.segments, max_evals=self.settings.max_evals,
                                      noise_probes=0)
                checked = fidelity(scorer, result, k=FIDELITY_K, random_sets=FIDELITY_RANDOM_SETS)
                self.counts.top_k_drops.append(checked["top_k_drop"])
                self.counts.random_k_drops.append(checked["random_k_drop"])
                self.log.append("explanation", target_record_id=record_id, purpose="explanation",
                                explanation_method="shap.PartitionExplainer", model_id=self.model_id,
                                prompt=prompt, response=_attributions_text(result), details={
                                    "kind": "sampled", "value": result.value, "base_value": result.base_value,
                                    "evaluations": result.evaluations, "max_evals": result.max_evals,
                                    "additive": result.additive, "positive": result.positive, "fidelity": checked,
                                    "attributions": [a["value"] for a in result.attributions]})
                self.counts.explained += 1
            except Exception as exc:  # one bad explanation must not stop the worker
                self.counts.failed += 1
                self.counts.errors.append(f"{record_id}: {type(exc).__name__}: {exc}"[:300])

    def close(self, drain_s: float = 0.0) -> None:
        """Stop the worker (after up to `drain_s` seconds of draining) and chain the coverage."""
        deadline = time.monotonic() + drain_s
        while drain_s and not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        pending = self.queue.qsize()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=60)
        c = self.counts
        self.log.append("explanation", purpose="explanation", model_id=self.model_id, details={
            "kind": "coverage", "sample_rate": self.settings.sample_rate, "match": self.settings.match,
            "eligible": c.eligible, "explained": c.explained, "dropped": c.dropped, "failed": c.failed,
            "pending_at_shutdown": pending, "coverage": c.explained / c.eligible if c.eligible else None,
            "fidelity": {"k": FIDELITY_K, "explanations": len(c.top_k_drops),
                         "mean_top_k_drop": sum(c.top_k_drops) / len(c.top_k_drops) if c.top_k_drops else None,
                         "mean_random_k_drop": (sum(c.random_k_drops) / len(c.random_k_drops)
                                                if c.random_k_drops else None)},
            "errors": c.errors[:20]})


def _attributions_text(result: Any) -> str:
    import json

    return json.dumps(result.attributions, ensure_ascii=False)
