"""The board report: evidence first (a snapshot at `as_of`), then words. Every figure and status
in it cites its records, checks and runs; the signed manifest inside each output lets
`govkit report verify` take the snapshot again and name any figure that differs.

    from govkit import AuditLog, load_settings
    from govkit.report import board_report, parse_period

    settings = load_settings()
    with AuditLog.open(settings=settings) as log:
        report = board_report(log, settings, parse_period("2026-Q4"), formats=("html", "md", "json"))
    print(report.paths, report.manifest["figures"]["overall"])
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._lazy import require
from .._version import __version__
from ..audit import AuditLog
from ..audit.checkpoints import load_private_key
from ..config import Settings
from ..digests import sha256_digest
from ..errors import InputError
from ..inventory import chain_inventory
from . import manifest as manifests
from .charts import group_rates_chart, monitoring_chart
from .formatting import percent, rate_with_interval
from .render import QUALITY_MEASURES, environment, template_digests
from .scorecard import RULE, overall, scorecard
from .snapshot import LARGE_LOG, Period, claimed_fleet_parameters, default_as_of, fleet_parameters, take_fleet, take_snapshot
from .summary import page_one

__all__ = ["FORMATS", "TEMPLATES", "Report", "ReportCheck", "board_report", "make_report", "verify_report"]

FORMATS = ("html", "md", "json", "pdf")
# The templates of each kind of report, by format (a PDF is printed from the HTML).
TEMPLATES = {
    "board": {"html": "board.html.j2", "md": "board.md.j2"},
    "engineer": {"html": "engineer.html.j2", "md": "engineer.md.j2"},
    "model-card": {"html": "model_card.html.j2", "md": "model_card.md.j2"},
}


@dataclass(frozen=True)
class Report:
    kind: str
    manifest: dict[str, Any] = field(repr=False)
    documents: dict[str, bytes] = field(repr=False)  # format -> the document's bytes, manifest embedded
    record_id: str | None = None  # the chained `report` event (None: not recorded)
    paths: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "record_id": self.record_id, "paths": [str(p) for p in self.paths],
                "manifest": copy.deepcopy(self.manifest)}


@dataclass(frozen=True)
class ReportCheck:
    """What `verify_report` found: the report rebuilt from the store matches it, or each difference."""

    path: Path
    differences: tuple[str, ...]
    signature: str  # valid, invalid, unsigned, or no trusted key
    notes: tuple[str, ...] = ()  # what differs without changing what the report says (a later govkit.toml)

    @property
    def ok(self) -> bool:
        return not self.differences and self.signature == "valid"

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "signature": self.signature,
                "differences": list(self.differences), "notes": list(self.notes)}


def board_report(log: AuditLog, settings: Settings, period: Period, **options: Any) -> Report:
    """The board report: page-one summary and scorecard, regulatory map, KPIs, findings, sign-off."""
    return make_report("board", log, settings, period, **options)


def make_report(kind: str, log: AuditLog, settings: Settings, period: Period, *, as_of: str | None = None,
                formats: Sequence[str] = ("html",), templates_dir: Path | None = None, output: Path | None = None,
                record: bool = True, progress: Callable[[str], None] | None = None, fleet: bool = False) -> Report:
    """Take the evidence snapshot, render the report of this kind (board, engineer, model-card) in
    each format, sign its manifest, write the files (`output`: a file for one format, else a
    folder), and chain a `report` event mirrored to MLflow with the files and the manifest.
    `fleet` adds every device's state from the central store ([fleet] in govkit.toml) at `as_of`."""
    if kind not in TEMPLATES:
        raise InputError(f"expected one of {', '.join(TEMPLATES)}", parameter="kind", value=kind)
    if fleet and kind != "board":
        raise InputError("the fleet section is part of the board report only", parameter="fleet")
    allowed = (*TEMPLATES[kind], "json", "pdf")
    unknown = sorted(set(formats) - set(allowed))
    if unknown:
        raise InputError(f"unknown format(s) {', '.join(unknown)} for a {kind} report; expected "
                         f"{', '.join(allowed)}", parameter="formats")
    chain_inventory(log, settings)  # a changed govkit.toml is chained before the as-of is taken: the snapshot holds it
    as_of = clamp_as_of(as_of or default_as_of(period))
    snapshot = take_snapshot(log, settings, period, as_of=as_of, progress=progress)
    if fleet:
        if progress:
            progress("reading the fleet from the central store")
        snapshot["fleet"] = take_fleet(fleet_parameters(settings), as_of)
    previous = _previous(log, snapshot["store"]["head_seq"], kind)
    if progress and snapshot["store"]["head_seq"] >= LARGE_LOG:
        progress(f"rendering {', '.join(formats)}")
    documents, manifest = _render(kind, snapshot, settings, previous, formats, templates_dir)
    paths = _write(kind, documents, manifest, output, period)
    record_id = _record(kind, log, settings, manifest, documents) if record else None
    return Report(kind, manifest, documents, record_id, paths)


def verify_report(path: Path, log: AuditLog, settings: Settings, *, templates_dir: Path | None = None) -> ReportCheck:
    """Rebuild the report from the store and the manifest embedded in `path`, and compare: every
    figure of the evidence snapshot, then the document itself."""
    fmt = {".json": "json", ".md": "md", ".pdf": "pdf"}.get(path.suffix.lower(), "html")
    try:
        raw = path.read_bytes()
        text = "" if fmt == "pdf" else raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the report ({exc})", file=path) from None
    if fmt == "pdf":
        from .pdf import manifest_of

        claimed = manifest_of(raw, source=path)
    else:
        claimed = manifests.extract(text, source=path)
    public = settings.audit.public_key
    signature = ("no trusted key" if not public else
                 "unsigned" if "signature" not in claimed else
                 "valid" if manifests.signature_valid(claimed, public) else "invalid")
    try:
        period = Period(**claimed["snapshot"]["period"])
        as_of, head = claimed["snapshot"]["as_of"], claimed["snapshot"]["store"]["head_seq"]
    except (KeyError, TypeError):
        raise InputError("its manifest lacks the snapshot it was rendered from", file=path) from None
    snapshot = take_snapshot(log, settings, period, as_of=as_of, head=head)
    if isinstance(claimed["snapshot"].get("fleet"), dict):  # taken again as it was: same store, same parameters
        snapshot["fleet"] = take_fleet(claimed_fleet_parameters(claimed["snapshot"]["fleet"]), as_of)
    differences = [f"{where}: the report says {said}, the store gives {found}"
                   for where, said, found in _differ(claimed["snapshot"], snapshot)]
    rendered = tuple(claimed.get("formats") or ()) or (fmt,)  # the formats rendered together (their templates)
    kind = str(claimed.get("kind"))
    if kind not in TEMPLATES:
        raise InputError(f"its manifest names no report kind govkit renders ({kind})", file=path)
    previous = _previous(log, head, kind)  # from the store too, as the report took it
    documents, rebuilt = _render(kind, snapshot, settings, previous, tuple(sorted({*rendered, fmt})), templates_dir)
    notes: list[str] = []
    changed: list[str] = []  # the PDF's byte dependencies that differ on this machine
    for name in ("govkit", "inputs", "previous", "figures"):
        for where, said, found in _differ(claimed.get(name), rebuilt.get(name), name):
            if where == CONFIG_INPUT:  # what the report says comes from the chain (its inventory too), not the file
                notes.append(f"govkit.toml has changed since the report was rendered ({said} then, {found} now); "
                             "nothing the report shows is read from it")
            elif where.startswith(PDF_RENDERER):  # what a PDF's bytes depend on, not what it says
                changed.append(f"{where.removeprefix(PDF_RENDERER + '_dependencies.') if where != PDF_RENDERER else 'pdf'} "
                               f"was {said}, now {found}")
            else:
                differences.append(f"{where}: the report says {said}, now {found}")
    if fmt == "json":  # the manifest, alone (name.manifest.json) or beside its figures: they must be the signed ones
        document = json.loads(text)
        if "manifest" in document and document.get("figures") != claimed.get("figures"):
            differences.append("the figures beside the manifest are not the ones it signs")
    elif fmt == "pdf":
        if not differences and raw != documents["pdf"]:
            given_text, rebuilt_text = _pdf_content(raw), _pdf_content(documents["pdf"])
            if changed and given_text == rebuilt_text:
                notes.append("the PDF's bytes differ from its rebuild only as what they depend on changed on this "
                             f"machine ({'; '.join(changed)}); its text is the rebuild's, word for word, and its "
                             "manifest is the signed one")
            else:
                because = f" (and this machine's {'; '.join(changed)})" if changed else ""
                differences.append(f"the PDF differs from its rebuild{because}: "
                                   f"{_first_difference(given_text, rebuilt_text)}")
        elif changed:
            notes.append(f"what a PDF's bytes depend on differs on this machine ({'; '.join(changed)}); "
                         "the rebuild is byte-identical all the same")
    else:
        given, rebuilt_text = manifests.strip(text), manifests.strip(documents[fmt].decode("utf-8"))
        if not differences and given != rebuilt_text:
            differences.append(f"the document differs from its rebuild: {_first_difference(given, rebuilt_text)}")
        if claimed.get("outputs", {}).get(fmt) != manifests.digest_of(text):
            differences.append(f"the document's digest is not the one its manifest names ({fmt})")
    if changed and fmt != "pdf":
        notes.append(f"the PDF rendered with it would depend on other libraries here ({'; '.join(changed)})")
    return ReportCheck(path, tuple(differences), signature, tuple(notes))


CONFIG_INPUT = "inputs.govkit.toml"
PDF_RENDERER = "govkit.renderers.pdf"


def _render(kind: str, snapshot: dict[str, Any], settings: Settings, previous: dict[str, Any] | None,
            formats: Sequence[str], templates_dir: Path | None) -> tuple[dict[str, bytes], dict[str, Any]]:
    view = board_view(snapshot, previous)
    html_env, md_env = environment(templates_dir, html=True), environment(templates_dir, html=False)
    jinja2 = require("jinja2", "report")
    formats = tuple(sorted(set(formats)))
    texts = sorted({"html" if f == "pdf" else f for f in formats} - {"json"})  # a PDF is printed from the HTML
    used = [TEMPLATES[kind][f] for f in texts]
    inputs = {"govkit.toml": sha256_digest(settings.path.read_bytes()) if settings.path else None,
              "templates": {**template_digests(html_env, [n for n in used if n.endswith(".html.j2")]),
                            **template_digests(md_env, [n for n in used if n.endswith(".md.j2")])}}
    renderers: dict[str, Any] = {"templates": f"jinja2 {jinja2.__version__}"}
    unsigned = {"kind": kind, "govkit": {"version": __version__, "renderers": renderers}, "formats": list(formats),
                "inputs": inputs, "snapshot": snapshot, "figures": view["figures"], "previous": previous}

    def bodies_of(manifest: dict[str, Any]) -> dict[str, str]:
        return {fmt: (html_env if fmt == "html" else md_env).get_template(TEMPLATES[kind][fmt]).render(
            **view, manifest=manifest) for fmt in texts}

    bodies = bodies_of(unsigned)
    if "pdf" in formats:
        from .pdf import byte_dependencies, renderer_version, require_pdf

        require_pdf()
        renderers["pdf"] = renderer_version()
        renderers["pdf_dependencies"] = byte_dependencies(bodies["html"])
    outputs = {fmt: sha256_digest(body) for fmt, body in bodies.items()}
    manifest = _signed({**unsigned, "outputs": outputs}, settings)
    documents = {fmt: manifests.embed(body, manifest, fmt).encode("utf-8") for fmt, body in bodies.items()
                 if fmt in formats}
    if "pdf" in formats:
        from .pdf import render_pdf

        documents["pdf"] = render_pdf(bodies["html"], manifest, as_of=snapshot["as_of"])
    if "json" in formats:
        documents["json"] = (json.dumps({"manifest": manifest, "figures": view["figures"]}, indent=2, sort_keys=True,
                                        ensure_ascii=False) + "\n").encode("utf-8")
    return documents, manifest


def _signed(manifest: dict[str, Any], settings: Settings) -> dict[str, Any]:
    key_path = settings.audit.private_key
    if key_path and Path(key_path).exists():
        return manifests.sign(manifest, load_private_key(Path(key_path)))
    return manifest


def board_view(snapshot: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """What the templates show, computed once from the snapshot (the templates only format)."""
    from ..gate import crosswalk, load_registry

    gate, verify, kpis = snapshot["gate"], snapshot["verify"], snapshot["kpis"]
    fleet = snapshot.get("fleet")
    cards = scorecard(gate, verify)
    status = overall(cards, verify, fleet, synthetic=kpis.get("synthetic", 0))
    specs = load_registry().specs
    rows = {r["crosswalk_id"]: r for r in crosswalk()["rows"]}
    controls = []
    for cid, result in sorted((gate or {}).get("results", {}).items()):
        spec = specs.get(cid)
        opened = (gate or {}).get("open_since", {}).get(cid) or {}
        controls.append({"id": cid, "status": result["status"], "blocking": result["blocking"],
                         "severity": spec.severity.value if spec else "", "since": opened.get("since"),
                         "fix": _how_to_fix(spec.doc) if spec else "",
                         "age_days": opened.get("age_days"),
                         "message": result["message"], "title": spec.title if spec else "(a user check)",
                         "blocking_note": result.get("blocking_note"), "items": result.get("items") or [],
                         "principle": spec.principle if spec else "", "references": spec.references if spec else {},
                         "clauses": rows.get(spec.crosswalk, {}).get("clauses") if spec else None,
                         "shown": {"PASS": "pass", "FAIL": "fail", "WARN": "fail (warning)", "NO EVIDENCE": "no evidence",
                                   "ERROR": "error", "SKIP": "does not apply"}.get(result["status"], result["status"])})
    inventory = snapshot["inventory"]
    reviewer, developer = inventory.get("reviewer") or "", inventory.get("developer") or ""
    alerts = _page_one(snapshot) + (fleet_alerts(fleet) if fleet else [])
    findings = [c for c in controls if c["status"] in ("FAIL", "WARN", "NO EVIDENCE", "ERROR")]
    plans = snapshot.get("remediation") or {}
    for f in findings:  # who owns each and by when: its remediation plan, else the model's owner with no date
        plan = plans.get(f["id"]) or {}
        f.update(owner=plan.get("owner") or inventory.get("owner") or "(no owner)", due=plan.get("due"),
                 action=plan.get("action"), plan_record_id=plan.get("record_id"),
                 overdue=bool(plan.get("due")) and plan["due"] < snapshot["as_of"][:10])
    figures = {
        "overall": status, "scorecard": {name: card["colour"] for name, card in cards.items()},
        "alerts": alerts, "kpis": kpis, "findings": [f["id"] for f in findings],
        "controls": {c["id"]: c["status"] for c in controls},
        "rating": (snapshot["rating"] or {}).get("tier"), "artifacts": [m["artifact_sha256"] for m in kpis["models"]],
        "fairness": {f"{b['kind']}:{b['data']['name']}": b["status"] for b in snapshot["fairness"]},
        "quality": {f"{b['kind']}:{b['data']['name']}": quality_figures(b["quality"])
                    for b in snapshot["fairness"] if b.get("quality")},
        "open_incidents": len(snapshot["incidents"]["open"]),
    }
    if fleet:
        totals = fleet["totals"]
        figures["fleet"] = {"devices": totals["devices"], "healthy": totals["healthy"],
                            "not_synced": sorted(totals["never_synced"] + totals["silent"]),
                            "findings": totals["findings"], "late_acks": totals["late_acks"],
                            "records_acknowledged": totals["records_acknowledged"]}
    charts = {b["record_id"]: [{"view": view, "svg": group_rates_chart(f"{b['kind']} on {b['data']['name']}: {view}", rows,
                                                                     measure="favourable-answer rate" if b["kind"] ==
                                                                     "counterfactual" else "selection rate")}
                               for view, rows in (b.get("groups") or {}).items() if rows]
              for b in snapshot["fairness"]}
    quality = [{"record_id": b["record_id"], "seq": b["seq"], "mlflow_run_id": b["mlflow_run_id"], "kind": b["kind"],
                "data": b["data"], "status": b["quality"]["status"], "measures": b["quality"],
                "sentence": quality_sentence(b["data"]["name"], b["quality"])}
               for b in snapshot["fairness"] if b.get("quality")]
    monitoring = snapshot.get("monitoring") or {}
    figures["monitoring"] = {"windows": len(monitoring.get("windows") or []),
                             "breached_windows": sum(1 for w in monitoring.get("windows") or [] if w["breaches"]),
                             "open_breaches": sorted(b["record_id"] for b in monitoring.get("open_breaches") or [])}
    trend = monitoring_chart(monitoring["windows"], monitoring.get("plan")) if monitoring.get("windows") else None
    changes = _changes(figures, previous)
    fairness_rows = {b["record_id"]: fairness_table(b) for b in snapshot["fairness"]}
    return {"r": snapshot, "cards": cards, "charts": charts, "monitoring_chart": trend, "overall": status, "rule": RULE,
            "controls": controls,
            "quality": quality, "quality_measures": QUALITY_MEASURES,
            "page_one": page_one(snapshot, controls, status, changes), "fairness_rows": fairness_rows,
            "findings": findings, "alerts": alerts, "figures": figures, "changes": changes,
            "independence": {"reviewer": reviewer, "developer": developer, "approver": inventory.get("approver") or "",
                             "owner": inventory.get("owner") or "",
                             "conflict": bool(reviewer) and reviewer.strip().lower() == developer.strip().lower()},
            "version": __version__}


def fairness_table(run: dict[str, Any]) -> list[dict[str, Any]]:
    """A bias run's metrics as the board reads them: a judged metric per row; a view whose metrics
    could not be judged is one row, with what would settle it (not a row of "n/a" per metric)."""
    settle: dict[str, list[str]] = {}
    for line in run.get("to_conclude") or []:
        view, _, reason = str(line).partition(": ")
        settle.setdefault(view.rsplit(".", 1)[0], []).append(reason)
    rows = []
    for view, metrics in (run.get("metrics") or {}).items():
        judged = {name: m for name, m in metrics.items() if m.get("value") is not None}
        unjudged = sorted(set(metrics) - set(judged))
        for name, m in judged.items():
            rows.append({"view": view, "metric": name, "value": m["value"], "status": m.get("status")})
        if unjudged:
            reasons = sorted(set(settle.get(view) or []))
            rows.append({"view": view, "metric": None, "unjudged": unjudged, "status": "inconclusive",
                         "settle": "; ".join(reasons[:3]) or "more rows in each group"})
    return rows


def quality_figures(quality: dict[str, Any]) -> dict[str, Any]:
    """The decision-quality figures a report signs: status, accuracy, its interval, baseline, lift."""
    return {"status": quality["status"], "accuracy": quality["accuracy"]["value"],
            "interval": quality["accuracy"]["interval"], "baseline": quality["baseline"]["accuracy"],
            "lift": quality["lift"], "min_lift": quality["min_lift"], "rows": quality["rows"]}


def quality_sentence(data_name: str, quality: dict[str, Any]) -> str:
    """How well the model decides, in one sentence a board member reads."""
    accuracy, baseline = quality["accuracy"], quality["baseline"]
    if accuracy["value"] is None or baseline["accuracy"] is None:
        return f"On {data_name} no decision with a known outcome is on record: its quality is not measured."
    lift, needed = quality["lift"] * 100, quality["min_lift"] * 100
    verdict = {"pass": "it beats that rule by at least the policy's margin",
               "fail": "it does not beat the rule that needs no model by the policy's margin",
               "inconclusive": "too few cases to tell whether it beats that rule by the policy's margin"}[quality["status"]]
    return (f"On {data_name} ({quality['rows']:,} cases with a known outcome) the model's decisions match the outcome "
            f"in {rate_with_interval(accuracy)}, against {percent(baseline['accuracy'])} for {baseline['name']}: "
            f"{verdict} (lift {lift:+.1f} points; the policy asks {needed:+.1f}).")


def _how_to_fix(doc: str) -> str:
    """The "How to fix:" part of a check's documentation: the mitigation a model card states."""
    found = re.search(r"How to fix:\s*(.*?)(?:\n\s*\n|\Z)", doc, re.S)
    return " ".join(found.group(1).split()) if found else ""


def _page_one(snapshot: dict[str, Any]) -> list[str]:
    """What page one must say in plain words before anything else."""
    verify, kpis, store = snapshot["verify"], snapshot["kpis"], snapshot["store"]
    alerts = []
    if not verify["ok"]:
        alerts.append(f"The audit log does not verify ({verify['problem_count']} problem(s); first: "
                      f"{(verify['problems'] or ['?'])[0]}). No figure drawn from it can be relied on.")
    if not verify["trusted_key"]:
        alerts.append("No trusted device key: the log was checked against its own claims only, which whoever "
                      "rewrote it could rewrite too.")
    if not store["model_calls"]:
        alerts.append("The audit log is empty of model calls: none has ever been recorded, so there is no "
                      "evidence of how the model behaves in use.")
    elif not kpis["inference"]:
        alerts.append("No model call is on record in this period: the monitoring figures are empty.")
    if kpis.get("synthetic"):
        alerts.append(f"{kpis['synthetic']} of the period's {kpis['inference']} model calls are synthetic (scripted "
                      "answers, no model ran): the monitoring figures describe a demonstration, not a model in use.")
    if snapshot.get("inventory_record") is None:
        alerts.append("No inventory record was chained by this report's as-of: what the model is, who owns, "
                      "reviewed and approved it is not on record for this date (govkit report or govkit check "
                      "chains govkit.toml's [model] as it stands).")
    monitoring = snapshot.get("monitoring") or {}
    for breach in monitoring.get("open_breaches") or []:
        alerts.append(f"Monitoring breach open since the window of {str(breach.get('window'))[:10]}: {breach.get('why')}. "
                      f"{breach.get('owner')} must answer by {str(breach.get('due'))[:10]}; meanwhile: "
                      f"{breach.get('contingency')}.")
    if store["model_calls"] and not monitoring.get("windows"):
        alerts.append("No window of production calls was monitored in this period (govkit monitor run): drift and "
                      "breaches are unknown.")
    if snapshot["gate"] is None:
        alerts.append("The pre-deployment gate (govkit check) has not been run: every control is without evidence.")
    else:
        results = snapshot["gate"]["results"]
        missing = sorted(c for c, r in results.items() if r["blocking"] and r["status"] == "NO EVIDENCE")
        if missing:
            alerts.append("No evidence for blocking control(s) " + ", ".join(missing) + ".")
        for check_id, result in sorted(results.items()):  # a weakened verdict is said where the board reads first
            note = result.get("blocking_note")
            if note and result.get("status") not in ("PASS", "SKIP"):
                alerts.append(f"{check_id}: {note}.")
    return alerts


def _names(ids: list[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def fleet_alerts(fleet: dict[str, Any]) -> list[str]:
    """What page one must say of the fleet: every device that has not synced, every gap, fork,
    rollback, altered segment, unknown device and late acknowledgement, and what the figures rest on."""
    totals, alerts = fleet["totals"], []
    if not fleet["devices"]:
        alerts.append(f"The central store {fleet['central']} holds no sync of {', '.join(fleet['experiments'])}: "
                      "no device's evidence has reached it.")
    elif fleet["experiments_missing"]:
        alerts.append(f"The central store has no experiment for {', '.join(fleet['experiments_missing'])}.")
    said = {"fork": "Forked device log(s), two different records for one seq, from {n}: {ids}.",
            "rollback": "Device(s) rolled back behind a head the witness had cosigned: {ids}.",
            "altered": "Altered or forged evidence on the central store from {n}: {ids}.",
            "unknown": "Evidence shipped by {n} not in the device registry: {ids}.",
            "gap": "Records missing on the central store (a gap in the chain) for {n}: {ids}."}
    for kind, text in said.items():
        ids = totals["findings"].get(kind) or []
        if ids:
            alerts.append(text.format(n=f"{len(ids)} device(s)", ids=_names(ids)))
    breaching = totals["findings"].get("monitoring_breach") or []
    if breaching:
        alerts.append(f"Monitoring breaches open on {len(breaching)} device(s): {_names(breaching)} (their own "
                      "logs, as the witness read them: govkit fleet status names each breach and its owner).")
    if totals["never_synced"]:
        alerts.append(f"{len(totals['never_synced'])} enrolled device(s) have never synced: "
                      f"{_names(totals['never_synced'])}. Their evidence is not in this report.")
    if totals["silent"]:
        alerts.append(f"{len(totals['silent'])} device(s) have not synced for more than {fleet['silent_days']:g} days: "
                      f"{_names(totals['silent'])}.")
    if totals["late_acks"]:
        alerts.append(f"{totals['late_acks']} sync(s) were not acknowledged by the witness within "
                      f"{fleet['late_hours']:g} hours (device(s) {_names(totals['late_devices'])}).")
    if not fleet["witness_public_key"]:
        alerts.append("No witness key is configured ([fleet] witness_public_key): the acknowledgements were read "
                      "from MLflow tags, which anyone with write access to the tracking server can edit.")
    if fleet["registry"] is None:
        alerts.append("No device registry is configured ([fleet] registry): devices that never synced cannot be "
                      "listed, and no device can be told unknown.")
    return alerts


def _changes(figures: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """Changes since the previous report, from the figures its record keeps."""
    if not previous:
        return None
    before = previous.get("figures") or {}
    old, new = set(before.get("findings") or []), set(figures["findings"])
    kpi_deltas = {}
    for name in ("inference", "error_rate", "override_rate", "refusal_rate", "explanation_coverage"):
        a, b = (before.get("kpis") or {}).get(name), figures["kpis"].get(name)
        if a is not None and b is not None and a != b:
            kpi_deltas[name] = {"before": a, "now": b}
    return {"report_record_id": previous.get("record_id"), "period": previous.get("period"),
            "new_findings": sorted(new - old), "closed_findings": sorted(old - new),
            "rating": None if before.get("rating") == figures["rating"] else
            {"before": before.get("rating"), "now": figures["rating"]},
            "artifacts": None if before.get("artifacts") == figures["artifacts"] else
            {"before": before.get("artifacts"), "now": figures["artifacts"]},
            "kpis": kpi_deltas, "breaches": _breach_changes(before.get("monitoring"), figures["monitoring"])}


def _breach_changes(before: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
    """Monitoring breaches opened and answered since the previous report (none known before it: all new)."""
    old, new = set((before or {}).get("open_breaches") or []), set(now["open_breaches"])
    return {"opened": sorted(new - old), "answered": sorted(old - new)}


def clamp_as_of(as_of: str) -> str:
    """A report states the evidence as of a time that has passed. A future as-of is taken as now,
    and the manifest names that time: with the future time itself, two reports of one period and
    one as-of could hold different figures (records still to come count in the later one) and
    both verify."""
    import datetime as dt

    from ..timestamps import normalise_ts, parse_ts

    now = dt.datetime.now(dt.UTC)
    return normalise_ts(now.isoformat()) if parse_ts(as_of) > now else as_of


def _previous(log: AuditLog, head: int, kind: str) -> dict[str, Any] | None:
    """The newest report of this kind chained before this snapshot's head: its figures, as recorded."""
    reports = [r for r in log.query(event_type="report") if r.seq <= head and (r.details or {}).get("kind") == kind]
    if not reports:
        return None
    details = reports[-1].details or {}
    return {"record_id": reports[-1].record_id, "seq": reports[-1].seq, "period": details.get("period"),
            "figures": details.get("figures")}


def _write(kind: str, documents: dict[str, bytes], manifest: dict[str, Any], output: Path | None,
           period: Period) -> tuple[Path, ...]:
    """The documents, and their signed manifest beside them as JSON (`<name>.manifest.json`)."""
    if output is None:
        return ()
    beside = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    from ..outputs import check_output, write_output

    if len(documents) == 1 and output.suffix:
        sidecar = output.with_name(output.stem + ".manifest.json")
        for path in (output, sidecar):
            check_output(path)  # both refused before either is written
        write_output(output, next(iter(documents.values())))
        write_output(sidecar, beside)
        return (output, sidecar)
    if output.suffix and not output.is_dir():
        raise InputError(f"{len(documents)} formats go into a folder, not one file; give a folder",
                         parameter="output", value=output)
    output.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in period.label)
    paths = [output / f"{stem}.{fmt}" for fmt in sorted(documents)]
    sidecar = output / f"{stem}.manifest.json"
    for path in (*paths, sidecar):
        check_output(path)
    for path, fmt in zip(paths, sorted(documents)):
        write_output(path, documents[fmt])
    write_output(sidecar, beside)
    return (*paths, sidecar)


def _record(kind: str, log: AuditLog, settings: Settings, manifest: dict[str, Any], documents: dict[str, bytes]) -> str:
    from ..evidence import evidence_run
    from ..tracking import Tracker

    snapshot = manifest["snapshot"]
    tracker = Tracker.from_settings(settings, log.path)
    with evidence_run(log, tracker, f"report: {kind} {snapshot['period']['label']}",
                      {"govkit.event": "report", "govkit.report_kind": kind}) as evidence:
        for fmt, data in sorted(documents.items()):
            evidence.run.log_bytes(data, f"{kind}.{fmt}")
        evidence.run.log_dict(manifest, "manifest.json")
        record = evidence.append("report", model_id=settings.model.id, details={
            "kind": kind, "period": snapshot["period"], "as_of": snapshot["as_of"],
            "head_seq": snapshot["store"]["head_seq"], "manifest_sha256": sha256_digest(json.dumps(
                manifest, sort_keys=True, ensure_ascii=False)),
            "outputs": manifest.get("outputs"), "figures": manifest["figures"]})
    return record.record_id


def _differ(said: Any, found: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """Each leaf where two JSON values differ, named by its path (kpis.error_rate, gate.results.GOV-010)."""
    if isinstance(said, dict) and isinstance(found, dict):
        out = []
        for key in sorted(set(said) | set(found)):
            out.extend(_differ(said.get(key), found.get(key), f"{where}.{key}" if where else str(key)))
        return out
    if isinstance(said, list) and isinstance(found, list) and len(said) == len(found):
        out = []
        for i, (a, b) in enumerate(zip(said, found)):
            out.extend(_differ(a, b, f"{where}[{i}]"))
        return out
    return [] if said == found else [(where or "(the whole snapshot)", json.dumps(said), json.dumps(found))]


def _pdf_content(pdf: bytes) -> str:
    """What a reader of a PDF is shown: its document information (title, dates) and the text of
    each page, page by page; not how its fonts are packed."""
    import io

    pypdf = require("pypdf", "report")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    info = "\n".join(f"{key}: {value}" for key, value in sorted((reader.metadata or {}).items()))
    pages = [f"--- page {number} ---\n{page.extract_text() or ''}" for number, page in enumerate(reader.pages, 1)]
    return "\n".join([info, *pages])


def _first_difference(a: str, b: str) -> str:
    for number, (x, y) in enumerate(zip(a.splitlines(), b.splitlines()), 1):
        if x != y:
            return f"line {number}: {x.strip()[:120]!r} where the evidence gives {y.strip()[:120]!r}"
    return "its length"
