"""Check results as a table (rich), JSON, JUnit XML and SARIF 2.1.0."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from ._model import CheckResult, CheckSpec, Status

__all__ = ["FORMATS", "as_json", "as_junit", "as_sarif", "as_table", "summary"]

FORMATS = ("table", "json", "junit", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/govkit/"


def summary(results: list[CheckResult]) -> dict[str, Any]:
    counts = {status.value: sum(1 for r in results if r.status is status) for status in Status}
    return {"checks": len(results), **counts, "blocking": sum(1 for r in results if r.blocking),
            "passed": not any(r.blocking for r in results)}


def as_json(results: list[CheckResult], extra: dict[str, Any]) -> str:
    return json.dumps({**extra, "summary": summary(results), "results": [r.to_dict() for r in results]},
                      indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def as_table(results: list[CheckResult], width: int | None = None, colour: bool = False) -> str:
    """The results as a table `width` columns wide (default 140), in colour for a terminal."""
    from rich.console import Console
    from rich.table import Table

    colours = {Status.PASS: "green", Status.FAIL: "bold red", Status.WARN: "yellow", Status.ERROR: "magenta",
               Status.SKIP: "dim", Status.NO_EVIDENCE: "bold yellow"}
    table = Table(show_lines=False, expand=False)
    for column in ("ID", "Status", "Check", "Finding"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.spec.id, f"[{colours[r.status]}]{r.status.value}[/]", r.spec.title, r.message)
    import io

    console = Console(file=io.StringIO(), record=True, width=width or 140, force_terminal=colour,
                      color_system="standard" if colour else None)
    console.print(table)
    s = summary(results)
    verdict = "no blocking finding" if s["passed"] else f"{s['blocking']} blocking finding(s)"
    console.print(f"{s['checks']} checks: {s['PASS']} pass, {s['FAIL']} fail, {s['WARN']} warn, "
                  f"{s['NO EVIDENCE']} without evidence, {s['ERROR']} error, {s['SKIP']} not applicable; {verdict}")
    return console.export_text(styles=colour)


def as_junit(results: list[CheckResult]) -> str:
    """JUnit XML: a FAIL is a failure, an ERROR an error, a SKIP skipped; a WARN passes with its note."""
    s = summary(results)
    suites = ET.Element("testsuites", name="govkit check", tests=str(len(results)),
                        failures=str(s["FAIL"] + sum(r.status is Status.NO_EVIDENCE and r.blocking for r in results)),
                        errors=str(s["ERROR"]), skipped=str(s["SKIP"]))
    by_principle: dict[str, list[CheckResult]] = {}
    for r in results:
        by_principle.setdefault(r.spec.principle, []).append(r)
    for principle, items in by_principle.items():
        suite = ET.SubElement(suites, "testsuite", name=principle, tests=str(len(items)),
                              failures=str(sum(r.status is Status.FAIL or (r.status is Status.NO_EVIDENCE and r.blocking)
                                               for r in items)),
                              errors=str(sum(r.status is Status.ERROR for r in items)),
                              skipped=str(sum(r.status is Status.SKIP for r in items)),
                              time=f"{sum(r.seconds for r in items):.4f}")
        for r in items:
            case = ET.SubElement(suite, "testcase", classname=f"govkit.{principle}", name=f"{r.spec.id} {r.spec.title}",
                                 time=f"{r.seconds:.4f}")
            if r.status is Status.FAIL or (r.status is Status.NO_EVIDENCE and r.blocking):
                ET.SubElement(case, "failure", message=r.message, type="blocking").text = _help(r.spec)
            elif r.status is Status.NO_EVIDENCE:
                ET.SubElement(case, "system-out").text = f"NO EVIDENCE: {r.message}\n{_help(r.spec)}"
            elif r.status is Status.ERROR:
                ET.SubElement(case, "error", message=r.message, type="check error")
            elif r.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=r.message)
            elif r.status is Status.WARN:
                ET.SubElement(case, "system-out").text = f"WARN: {r.message}\n{_help(r.spec)}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def as_sarif(results: list[CheckResult], specs: list[CheckSpec], version: str, config_uri: str) -> str:
    rules = [{
        "id": spec.id,
        "name": spec.function.__name__,
        "shortDescription": {"text": spec.title},
        "fullDescription": {"text": spec.section("What it checks") or spec.title},
        "help": {"text": _help(spec), "markdown": _help_markdown(spec)},
        "defaultConfiguration": {"level": "error" if spec.severity.value != "warning" else "warning"},
        "properties": {"tags": [spec.principle, *spec.references], "severity": spec.severity.value,
                       "references": spec.references, "crosswalk": spec.crosswalk},
    } for spec in specs]
    index = {spec.id: i for i, spec in enumerate(specs)}
    levels = {Status.FAIL: "error", Status.WARN: "warning", Status.ERROR: "error", Status.PASS: "none",
              Status.SKIP: "none", Status.NO_EVIDENCE: "error"}
    kinds = {Status.FAIL: "fail", Status.WARN: "fail", Status.ERROR: "fail", Status.PASS: "pass",
             Status.SKIP: "notApplicable", Status.NO_EVIDENCE: "fail"}
    sarif_results = [{
        "ruleId": r.spec.id,
        "ruleIndex": index[r.spec.id],
        "kind": kinds[r.status],
        "level": levels[r.status] if r.status is not Status.NO_EVIDENCE or r.blocking else "warning",
        "message": {"text": f"{r.spec.title}: {r.message}"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": config_uri}}}],
        "properties": {"status": r.status.value, "blocking": r.blocking, "evidence": r.evidence},
    } for r in results]
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "govkit", "informationUri": INFORMATION_URI, "version": version,
                                "rules": rules}},
            "results": sarif_results,
        }],
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def _help(spec: CheckSpec) -> str:
    refs = "; ".join(f"{k} {v}" for k, v in spec.references.items())
    return (f"What it checks: {spec.section('What it checks')}\nWhy it matters: {spec.section('Why it matters')}\n"
            f"How to fix: {spec.section('How to fix')}\nReferences: {refs}")


def _help_markdown(spec: CheckSpec) -> str:
    refs = ", ".join(f"**{k}** {v}" for k, v in spec.references.items())
    return (f"**What it checks.** {spec.section('What it checks')}\n\n**Why it matters.** {spec.section('Why it matters')}"
            f"\n\n**How to fix.** {spec.section('How to fix')}\n\n**References.** {refs}")
