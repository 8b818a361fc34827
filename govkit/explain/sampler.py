"""Background explanations for a sample of the proxy's live decisions.

Sampling is by the record id's hash (`sampled`), so which records get explained is reproducible
and checkable after the fact. Explanations run in one worker process, one at a time (a process, so
shap's Python work never competes for the proxy's GIL), and each model evaluation waits until no
client request is in flight and none has been for `idle_ms`: the worker uses only idle capacity and
is never on a request's path. A request that arrives during an evaluation waits for that one
evaluation at a single-slot server (benchmarks/bench_explain.py measures it). A full queue drops
the sample and counts it. At shutdown the worker
chains a coverage event: eligible, explained, dropped, failed, still pending, and the batch's
fidelity (mean score drop from deleting each explanation's top 3 segments against 3 random ones).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import re
import time
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


class ExplanationSampler:
    """The proxy's side: picks the records to explain and hands them to a worker process.

    The worker is a separate process (spawned) so that shap's Python work never holds the proxy's
    GIL; it sees the proxy's in-flight count through shared memory and waits for zero before each
    model evaluation.
    """

    def __init__(self, db_path: Path, settings: ExplainSettings, *, endpoint: str, log_settings: Any = None,
                 model_artifact: Path | None = None, model_id: str | None = None):
        context = multiprocessing.get_context("spawn")
        self.settings = settings
        self.pattern = re.compile(settings.match) if settings.match else None
        self.busy = context.Value("i", 0, lock=False)  # the proxy's requests in flight
        self.last_activity = context.Value("d", time.monotonic(), lock=False)  # CLOCK_MONOTONIC is system-wide
        self.eligible = context.Value("i", 0, lock=False)
        self.dropped = context.Value("i", 0, lock=False)
        self.stop = context.Event()
        self.queue = context.Queue(maxsize=settings.max_queue)
        self.process = context.Process(target=_work, name="govkit-explain", daemon=True, args=(
            str(db_path), log_settings, settings, endpoint, model_artifact, model_id, self.queue, self.busy,
            self.last_activity, self.stop, self.eligible, self.dropped))
        self.process.start()

    def in_flight(self, count: int) -> None:
        self.busy.value = count
        self.last_activity.value = time.monotonic()

    def offer(self, record: Any, prompt: str | None, response: str | None) -> None:
        """Called after a chat completion's record is durable; never blocks."""
        if not prompt or record.status != "ok":
            return
        matched = bool(self.pattern and response and self.pattern.search(response))
        if not (matched or sampled(record.record_id, self.settings.sample_rate)):
            return
        self.eligible.value += 1
        try:
            self.queue.put_nowait((record.record_id, prompt, record.subject_ref))
        except queue.Full:
            self.dropped.value += 1

    def close(self, timeout_s: float = 120.0) -> None:
        """Stop after the explanation in progress; the worker chains the coverage event."""
        self.stop.set()
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _work(db_path: str, log_settings: Any, settings: ExplainSettings, endpoint: str, model_artifact: Path | None,
          model_id: str | None, items: Any, busy: Any, last_activity: Any, stop: Any, eligible: Any,
          dropped: Any) -> None:
    import signal

    from ..inference.decider import Decider, split_chat_prompt
    from .text import Scorer, explain_text, fidelity

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the proxy stops us
    explained = failed = 0
    errors: list[str] = []
    top_drops: list[float] = []
    random_drops: list[float] = []
    with AuditLog.open(db_path, settings=log_settings) as log:
        decider = Decider(log, list(settings.choices), endpoint=endpoint, purpose="explanation", model_id=model_id,
                          model_artifact=model_artifact)

        idle_s = settings.idle_ms / 1000

        def decide(text: str) -> Any:
            # A single-slot model server answers one request at a time: evaluate only in a lull, so a
            # client's request rarely finds the server busy with an explanation.
            while not stop.is_set() and (busy.value > 0 or time.monotonic() - last_activity.value < idle_s):
                time.sleep(0.005)
            return decider.decide(text)

        while not stop.is_set():
            try:
                record_id, stored, subject_ref = items.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                system, prompt = split_chat_prompt(stored)
                decider.system = system
                decider.about(subject_ref)  # the calls made to explain it belong to its subject too
                scorer = Scorer(decide, settings.positive)
                result = explain_text(scorer, prompt, choices=list(settings.choices), segments=settings.segments,
                                      max_evals=settings.max_evals, noise_probes=0)
                checked = fidelity(scorer, result, k=FIDELITY_K, random_sets=FIDELITY_RANDOM_SETS)
                top_drops.append(checked["top_k_drop"])
                random_drops.append(checked["random_k_drop"])
                log.append("explanation", target_record_id=record_id, purpose="explanation", subject_ref=subject_ref,
                           explanation_method="shap.PartitionExplainer", model_id=model_id,
                           prompt=prompt, response=_attributions_text(result), details={
                               "kind": "sampled", "value": result.value, "base_value": result.base_value,
                               "evaluations": result.evaluations, "max_evals": result.max_evals,
                               "additive": result.additive, "positive": result.positive, "fidelity": checked,
                               "attributions": [a["value"] for a in result.attributions]})
                explained += 1
            except Exception as exc:  # one bad explanation must not stop the worker
                failed += 1
                errors.append(log.redact(f"{record_id}: {type(exc).__name__}: {exc}"[:300]))
        pending = 0
        while True:
            try:
                items.get_nowait()
                pending += 1
            except queue.Empty:
                break
        log.append("explanation", purpose="explanation", model_id=model_id, details={
            "kind": "coverage", "sample_rate": settings.sample_rate, "match": settings.match,
            "eligible": eligible.value, "explained": explained, "dropped": dropped.value, "failed": failed,
            "pending_at_shutdown": pending, "coverage": explained / eligible.value if eligible.value else None,
            "fidelity": {"k": FIDELITY_K, "explanations": len(top_drops),
                         "mean_top_k_drop": sum(top_drops) / len(top_drops) if top_drops else None,
                         "mean_random_k_drop": sum(random_drops) / len(random_drops) if random_drops else None},
            "errors": errors[:20]})


def _attributions_text(result: Any) -> str:
    import json

    return json.dumps(result.attributions, ensure_ascii=False)
