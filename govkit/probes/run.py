"""`govkit probe run`: the probe set through the endpoint, every probe an audited call (purpose
evaluation), judged per category with a Wilson interval against the policy's threshold, which is
chained before the first probe is sent, and compared with the previous run on the same model file."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._lazy import require
from ..audit import AuditLog
from ..config import Settings
from ..errors import EndpointError, InputError
from .suite import Probe, ProbeSet, detect, load_probe_set

__all__ = ["SUITES", "ProbeRun", "import_garak", "judge", "run_garak", "run_probes"]

SUITES = {"smoke": 10, "gate": 100}  # probes per category: with 100, no success bounds the rate below 3.7%
NOT_TESTED = {"excessive_agency": "the deployment declares no tools: nothing to test (OWASP LLM06)"}


@dataclass(frozen=True)
class ProbeRun:
    record_id: str
    mlflow_run_id: str | None
    status: str
    result: dict[str, Any]


def run_probes(log: AuditLog, settings: Settings, *, endpoint: str, suite: str = "smoke",
               per_category: int | None = None, probe_file: Path | None = None, seed: int = 0, parallel: int = 2,
               max_tokens: int = 48, model_artifact: Path | None = None, only: tuple[str, ...] = (),
               reference: Path | None = None, progress: Callable[[int, int], None] | None = None) -> ProbeRun:
    """Send the probes (smoke: 10 a category, gate: 30, or `per_category`) with `parallel` calls in
    flight (the server's slots), judge them, and chain the run."""
    from ..fairness.runs import _identity_fields

    if suite not in SUITES and per_category is None:
        raise InputError(f"expected one of {', '.join(SUITES)}", parameter="suite", value=suite)
    probe_set = load_probe_set(probe_file)
    unknown = sorted(set(only) - set(probe_set.categories))
    if unknown:
        raise InputError(f"no such category: {', '.join(unknown)}", parameter="category")
    # The thresholds are on the record before the first probe: a run judged against thresholds
    # changed after it is flagged (predefined_test_thresholds).
    committed, thresholds, digest = commit_thresholds(log, settings, probe_set=probe_set.sha256, seed=seed)
    probes = probe_set.probes(per_category or SUITES[suite], seed, only)
    fields = _identity_fields(log, model_artifact)
    started = time.perf_counter()
    answers = _ask_all(log, settings, endpoint, probes, parallel=parallel, max_tokens=max_tokens,
                       model_artifact=model_artifact, progress=progress)
    seconds = time.perf_counter() - started
    categories = judge(probe_set, probes, answers, thresholds, settings.policy.fairness.confidence)
    previous, regressions = _against_previous(log, fields.get("artifact_sha256"), probe_set.sha256, categories)
    parity = _parity(reference, probe_set, fields.get("artifact_sha256"), categories,
                     settings.policy.probe_parity_tolerance) if reference is not None else None
    status = _verdict(categories)
    result = {"suite": suite if per_category is None else f"{per_category} per category",
              "probe_set": {"name": probe_set.name, "version": probe_set.version, "sha256": probe_set.sha256,
                            "source": probe_set.source, "license": probe_set.license},
              "seed": seed, "endpoint": endpoint, "parallel": parallel, "max_tokens": max_tokens,
              "probes": len(probes), "seconds": round(seconds, 2), "probes_per_s": round(len(probes) / seconds, 3)
              if seconds else None, "audited_calls": sum(1 for a in answers if a.get("record_id")),
              "thresholds": thresholds, "thresholds_digest": digest, "thresholds_record": committed.record_id,
              "previous_run": previous.record_id if previous else None, "categories": categories,
              "regressions": regressions, "artifact_sha256": fields.get("artifact_sha256"),
              **({"parity": parity} if parity is not None else {}), "status": status}
    return chain_run(log, settings, result, fields)


def chain_run(log: AuditLog, settings: Settings, result: dict[str, Any], fields: dict[str, Any]) -> ProbeRun:
    """Chain a judged run (built in, or imported) as a probe_run record and an MLflow run."""
    from ..evidence import evidence_run
    from ..tracking import Tracker

    categories = result["categories"]
    tracker = Tracker.from_settings(settings, log.path)
    with evidence_run(log, tracker, f"probe run: {result['suite']}", {"govkit.event": "probe_run"}) as evidence:
        evidence.run.log_params({"suite": result["suite"], "probe_set": result["probe_set"]["sha256"],
                                 "seed": result.get("seed"), "thresholds_digest": result["thresholds_digest"]})
        evidence.run.log_metrics({f"{name}.rate": c["rate"] for name, c in categories.items()
                                  if c.get("rate") is not None})
        evidence.run.log_dict(result, "probe_run.json")
        evidence.run.log_text(_table(categories), "categories.csv")
        record = evidence.append("probe_run", purpose="evaluation", model_id=settings.model.id, **fields,
                                 details=result)
    return ProbeRun(record.record_id, record.mlflow_run_id, result["status"], result)


def thresholds_digest(thresholds: dict[str, float]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(thresholds, sort_keys=True).encode()).hexdigest()


def commit_thresholds(log: AuditLog, settings: Settings, *, probe_set: str, seed: Any = None
                      ) -> tuple[Any, dict[str, float], str]:
    """Chain [policy.probes] as it stands (before a run): (the record, the thresholds, their digest)."""
    thresholds = dict(settings.policy.probes)
    digest = thresholds_digest(thresholds)
    committed = log.append("config_change", model_id=settings.model.id, details={
        "action": "probe_thresholds", "thresholds": thresholds, "digest": digest, "probe_set": probe_set,
        "seed": seed})
    return committed, thresholds, digest


def _ask_all(log: AuditLog, settings: Settings, endpoint: str, probes: list[Probe], *, parallel: int, max_tokens: int,
             model_artifact: Path | None, progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    from ..inference.decider import audited_client, post_chat
    from ..inference.transport import RECORD_ID_HEADER

    client, _ = audited_client(log, model_artifact=model_artifact, model_id=settings.model.id, purpose="evaluation",
                               timeout_s=300.0, headers={"X-Govkit-Purpose": "evaluation"})
    url = endpoint.rstrip("/") + "/chat/completions"
    done = [0]
    with client:
        def ask(probe: Probe) -> dict[str, Any]:
            body = {"model": settings.model.id or "default", "messages": probe.messages, "temperature": 0, "seed": 0,
                    "max_tokens": max_tokens}
            response = post_chat(client, url, body, endpoint)
            done[0] += 1
            if progress:
                progress(done[0], len(probes))
            if response.status_code >= 400:
                return {"error": f"HTTP {response.status_code}"}
            choice = (response.json().get("choices") or [{}])[0]
            return {"text": (choice.get("message") or {}).get("content") or "",
                    "finish_reason": choice.get("finish_reason"), "record_id": response.headers.get(RECORD_ID_HEADER)}

        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="govkit-probe") as pool:
            return list(pool.map(ask, probes))


def judge(probe_set: ProbeSet, probes: list[Probe], answers: list[dict[str, Any]], thresholds: dict[str, float],
          confidence: float) -> dict[str, dict[str, Any]]:
    """Per category: probes answered, successes (attacks that worked, wrong facts, refusals of a
    benign ask), the rate with its Wilson interval, and a three-state status against the policy's
    threshold: pass when the upper end is within it, fail when the lower end is beyond it,
    inconclusive in between (with how many probes would settle it), not judged without a threshold."""
    tallies: dict[str, list[int]] = {}
    examples: dict[str, list[str]] = {}
    for probe, answer in zip(probes, answers):
        tally = tallies.setdefault(probe.category, [0, 0, 0])  # answered, succeeded, errors
        if "error" in answer:
            tally[2] += 1
            continue
        tally[0] += 1
        if detect(probe, answer["text"], answer.get("finish_reason"), probe_set.categories[probe.category]["detector"]):
            tally[1] += 1
            examples.setdefault(probe.category, []).append(f"probe {probe.index}")
    out = judge_counts({name: (n, k, errors) for name, (n, k, errors) in tallies.items()}, probe_set.categories,
                       thresholds, confidence)
    for name, entry in out.items():
        entry["examples"] = examples.get(name, [])[:5]
    return _with_untested(out)


def _with_untested(categories: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The categories, and those no probe of this deployment can test, as 'not tested'."""
    for name, why in NOT_TESTED.items():
        categories.setdefault(name, {"status": "not tested", "reason": why, "n": 0})
    return categories


def _against_previous(log: AuditLog, artifact: str | None, probe_set: str, categories: dict[str, dict[str, Any]]
                      ) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The previous run on the same model file and probe set, and the regressions against it: a
    significant one fails its category."""
    previous = _previous(log, artifact, probe_set)
    regressions = _regressions(previous, categories) if previous else {}
    for name, found in regressions.items():
        if found["regressed"]:
            categories[name]["status"] = "fail"
            categories[name]["regression"] = found
    return previous, regressions


def judge_counts(tallies: dict[str, tuple[int, int, int]], specs: dict[str, dict[str, Any]],
                 thresholds: dict[str, float], confidence: float) -> dict[str, dict[str, Any]]:
    """Per category of (answered, succeeded, errors): the rate, its Wilson interval and the
    three-state status against the category's threshold."""
    from ..fairness.tabular import wilson

    out: dict[str, dict[str, Any]] = {}
    for name, spec in sorted(specs.items()):
        if name not in tallies:
            continue
        n, k, errors = tallies[name]
        interval = wilson(k, n, confidence)
        threshold = thresholds.get(name)
        entry: dict[str, Any] = {"n": n, "succeeded": k, "errors": errors, "rate": round(k / n, 6) if n else None,
                                 "interval": interval, "threshold": threshold, "owasp": spec.get("owasp"),
                                 "nist_600_1": spec.get("nist_600_1"), "e23": spec.get("e23")}
        if threshold is None:
            entry.update(status="not judged", reason=f"no threshold for {name} in [policy.probes]")
        elif interval is None:
            entry.update(status="inconclusive", reason="no probe was answered")
        elif interval[1] <= threshold:
            entry["status"] = "pass"
        elif interval[0] > threshold:
            entry["status"] = "fail"
        else:
            entry.update(status="inconclusive", to_settle=_to_settle(k / n, threshold, confidence, n))
        out[name] = entry
    return out


def _to_settle(rate: float, threshold: float, confidence: float, n: int) -> str:
    """How many probes at the observed rate would take the interval clear of the threshold."""
    from ..fairness.tabular import wilson

    for total in (n * 2, n * 3, n * 5, n * 10, n * 20, n * 50):
        low, high = wilson(round(rate * total), total, confidence) or (0.0, 1.0)
        if high <= threshold or low > threshold:
            return f"about {total} probes in all at the observed rate {rate:.0%}"
    return f"more than {n * 50} probes: the observed rate {rate:.0%} sits at the threshold {threshold:.0%}"


def _verdict(categories: dict[str, dict[str, Any]]) -> str:
    states = {c["status"] for c in categories.values()}
    return "fail" if "fail" in states else "inconclusive" if states - {"pass", "not tested"} else "pass"


def _previous(log: AuditLog, artifact: str | None, probe_set: str) -> Any:
    for record in log.query(event_type="probe_run", newest_first=True):
        details = record.details or {}
        if record.artifact_sha256 == artifact and (details.get("probe_set") or {}).get("sha256") == probe_set:
            return record
    return None


def _regressions(previous: Any, categories: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per category judged in both runs: Fisher's exact test (one-sided) that the rate went up."""
    before = (previous.details or {}).get("categories") or {}
    out = {}
    for name, now in categories.items():
        then = before.get(name) or {}
        if not now.get("n") or not then.get("n"):
            continue
        p_value = _fisher(now, then, "greater")
        out[name] = {"before": then.get("rate"), "now": now.get("rate"), "p_value": round(p_value, 6),
                     "regressed": p_value < 0.05, "previous_record_id": previous.record_id}
    return out


def _parity(reference: Path, probe_set: ProbeSet, artifact: str | None, categories: dict[str, dict[str, Any]],
            tolerance: float) -> dict[str, Any]:
    """This run against a reference run of the same model file and probe set (its JSON: govkit
    probe run --format json, or the MLflow artifact probe_run.json): per category, the rates'
    difference and Fisher's exact test (two-sided). Parity holds when no category differs by more
    than `tolerance`, nor significantly."""
    try:
        data = json.loads(Path(reference).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable probe run ({exc})", file=reference) from None
    if (data.get("probe_set") or {}).get("sha256") != probe_set.sha256:
        raise InputError("the reference ran another probe set: parity compares the same probes", file=reference)
    if artifact and data.get("artifact_sha256") and data["artifact_sha256"] != artifact:
        raise InputError("the reference ran another model file: parity compares the same file", file=reference)
    rows, apart = {}, []
    for name, now in categories.items():
        then = (data.get("categories") or {}).get(name) or {}
        if not now.get("n") or not then.get("n"):
            continue
        p_value = _fisher(now, then, "two-sided")
        gap = abs(now["succeeded"] / now["n"] - then["succeeded"] / then["n"])
        rows[name] = {"device": now.get("rate"), "reference": then.get("rate"), "gap": round(gap, 6),
                      "p_value": round(p_value, 6)}
        if gap > tolerance or p_value < 0.05:
            apart.append(name)
    return {"reference": str(reference), "tolerance": tolerance, "categories": rows, "apart": apart,
            "holds": bool(rows) and not apart}


def _fisher(now: dict[str, Any], then: dict[str, Any], alternative: str) -> float:
    """Fisher's exact test of two categories' success counts (scipy's): this run against another."""
    stats = require("scipy.stats", "bias")
    table = [[now["succeeded"], now["n"] - now["succeeded"]], [then["succeeded"], then["n"] - then["succeeded"]]]
    return float(stats.fisher_exact(table, alternative=alternative).pvalue)


def _table(categories: dict[str, dict[str, Any]]) -> str:
    lines = ["category,n,succeeded,rate,low,high,threshold,status"]
    for name, c in categories.items():
        low, high = c.get("interval") or (None, None)
        lines.append(",".join(str(v if v is not None else "") for v in (
            name, c.get("n"), c.get("succeeded"), c.get("rate"), low, high, c.get("threshold"), c["status"])))
    return "\n".join(lines) + "\n"


def import_garak(log: AuditLog, settings: Settings, report_path: Path, *, model_artifact: Path | None = None,
                 thresholds_record: Any = None) -> ProbeRun:
    """A garak report as a probe run: its probes counted under govkit's categories (garak.py), judged
    by the thresholds chained before garak started (none: GOV-032 says so), compared with the
    previous import of the same garak probes on the same model file, and chained."""
    from ..fairness.runs import _identity_fields
    from ..timestamps import normalise_ts
    from .garak import categories_of, read_garak_report

    report = read_garak_report(report_path)
    thresholds = dict(settings.policy.probes)
    digest = thresholds_digest(thresholds)
    started = normalise_ts(_garak_time(report.started))
    if thresholds_record is None:  # the newest commit of these thresholds before garak started
        for record in log.query(event_type="config_change"):
            d = record.details or {}
            if d.get("action") == "probe_thresholds" and d.get("digest") == digest and record.ts_start <= started:
                thresholds_record = record
    tallies, rows = categories_of(report)
    specs = load_probe_set(None).categories
    categories = _with_untested(judge_counts({c: (n, k, 0) for c, (k, n) in tallies.items()}, specs, thresholds,
                                             settings.policy.fairness.confidence))
    names = sorted(report.probes)
    probe_set = {"name": "garak", "version": report.version,
                 "sha256": "sha256:" + hashlib.sha256(json.dumps([report.version, names]).encode()).hexdigest(),
                 "source": f"garak report {report_path.name} ({report.sha256})",
                 "license": "garak is Apache-2.0; each probe states its own sources"}
    fields = _identity_fields(log, model_artifact)
    previous, regressions = _against_previous(log, fields.get("artifact_sha256"), probe_set["sha256"], categories)
    unmapped = sorted(p for p, row in rows.items() if row["category"] is None)
    result = {"suite": "garak import", "probe_set": probe_set, "seed": report.seed,
              "garak": {"run": report.run_id, "version": report.version, "started": report.started,
                        "finished": report.finished, "target": report.target, "report_sha256": report.sha256,
                        "attempts": report.attempts, "probes": rows, "unmapped": unmapped},
              "probes": sum(row["attempts"] for row in rows.values()),
              "thresholds": thresholds, "thresholds_digest": digest,
              "thresholds_record": thresholds_record.record_id if thresholds_record is not None else None,
              "previous_run": previous.record_id if previous else None, "categories": categories,
              "regressions": regressions, "artifact_sha256": fields.get("artifact_sha256"),
              "status": _verdict(categories)}
    return chain_run(log, settings, result, fields)


def _garak_time(text: str) -> str:
    """garak writes its times in the machine's local zone without saying so: as UTC."""
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"the report's start time {text!r} is not an ISO time") from None
    return (parsed if parsed.tzinfo else parsed.astimezone()).astimezone(dt.UTC).isoformat()


def run_garak(log: AuditLog, settings: Settings, *, endpoint: str, spec: str, garak: str, model: str = "model",
              prompt_cap: int = 10, max_tokens: int = 48, model_artifact: Path | None = None,
              workdir: Path) -> ProbeRun:
    """Run garak (the command `garak`) against the endpoint (govkit proxy: every attempt an
    audited call with purpose evaluation) with the thresholds chained first, and import its report."""
    import os
    import subprocess

    committed, _thresholds, _digest = commit_thresholds(log, settings, probe_set=f"garak:{spec}")
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = f"govkit-{committed.record_id}"
    config = {"run": {"generations": 1, "soft_probe_prompt_cap": prompt_cap, "seed": 0},
              "system": {"parallel_attempts": 2, "lite": True},
              "reporting": {"report_dir": str(workdir.resolve()), "report_prefix": prefix},
              "plugins": {"target_type": "openai.OpenAICompatible", "target_name": model,
                          "generators": {"openai": {"OpenAICompatible": {
                              "uri": endpoint, "api_key": "not-needed", "model": model, "max_tokens": max_tokens,
                              "temperature": 0.0,
                              "extra_params": {"extra_headers": {"X-Govkit-Purpose": "evaluation"}}}}}}}
    config_path = workdir.resolve() / f"{prefix}.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        done = subprocess.run([garak, "--config", str(config_path), "--spec", spec, "--report_prefix", prefix],
                              capture_output=True, text=True, env=env, cwd=workdir)
    except OSError as exc:
        raise InputError(f"cannot run garak ({exc.strerror}): install it in a venv of its own (pip install garak; "
                         "it brings torch) and give --garak VENV/bin/garak", parameter="garak", value=garak) from None
    reports = sorted(workdir.rglob(f"{prefix}.report.jsonl"))
    if done.returncode != 0 or not reports:
        tail = (done.stderr or done.stdout)[-1500:]
        raise EndpointError(f"garak exited {done.returncode} without a report (the thresholds stay chained in "
                            f"{committed.record_id}): {tail}")
    return import_garak(log, settings, reports[0], model_artifact=model_artifact, thresholds_record=committed)
