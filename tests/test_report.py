"""The board report: figures equal to SQL over the same store, byte-identical renders, page one
honest about the evidence, hostile content inert in a real browser, and `report verify` failing
on an edited figure or an edited store."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

from govkit.audit import AuditLog
from govkit.config import load_settings

from .conftest import run
from .stores import edit_bodies

AS_OF = "2026-12-31T23:00:00.000000Z"
PERIOD = ["--period", "2026-Q4", "--as-of", AS_OF]


def _browser() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def edit_config(folder: Path, section: str, **values: str) -> None:
    path = folder / "govkit.toml"
    document = tomlkit.parse(path.read_text())
    for key, value in values.items():
        document[section][key] = value
    path.write_text(tomlkit.dumps(document))


def fill(folder: Path, calls: int = 40) -> None:
    """Model calls in the period (latencies, errors, redactions), refusals, an override, an explanation."""
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        first = None
        for i in range(calls):
            record = log.append("inference", prompt=f"applicant {i}: write to p{i}@mail.example or +44 20 7946 0{i % 10}00",
                                response="approve" if i % 3 else "deny", model_id="m",
                                ts_start=f"2026-11-{1 + i % 28:02d}T10:00:00.000000Z",
                                latency_ms=float(50 + (i * 37) % 400), status="error" if i % 7 == 0 else "ok")
            first = first or record
        log.append("inference", prompt="before the period", response="x", ts_start="2026-09-30T23:59:59.000000Z",
                   latency_ms=9999.0, status="ok")
        for status in ("refused", "rejected", "received", "received"):
            log.append("request", status=status, ts_start="2026-11-15T09:00:00.000000Z")
        log.append("override", target_record_id=first.record_id, reviewer_id="rev-1", human_decision="overridden",
                   override_reason="misread", ts_start="2026-11-20T09:00:00.000000Z")
        log.append("explanation", target_record_id=first.record_id, explanation_method="shap.PartitionExplainer",
                   ts_start="2026-11-21T09:00:00.000000Z", details={"value": 0.5})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run("init", "--yes", "--model-id", "loan-assistant").exit_code == 0
    fill(tmp_path)
    rows = "".join(f"{'fm'[i % 2]},{int(i % 3 == 0)},{int(i % (4 if i % 2 else 2) == 0)}\n" for i in range(120))
    (tmp_path / "preds.csv").write_text("sex,y,decision\n" + rows)
    run("bias", "tabular", "--data", "preds.csv", "--y-true", "y", "--y-pred", "decision", "--sensitive", "sex",
        "--bootstrap", "50")
    assert run("check", "--exit-zero").exit_code == 0
    return tmp_path


def board(*args: str) -> dict:
    result = run("report", "board", *PERIOD, *args)
    assert result.exit_code == 0, result.output
    return result


def figures_of(path: Path) -> dict:
    return json.loads(path.read_text())["figures"]


def test_every_kpi_equals_an_independent_sql_computation(project: Path) -> None:
    board("--format", "json", "--format", "html", "-o", "out", "--no-record")
    kpis = figures_of(project / "out" / "board-2026-Q4.json")["kpis"]
    html = (project / "out" / "board-2026-Q4.html").read_text()
    db = sqlite3.connect(project / ".govkit" / "audit.db")
    period = ("SELECT json_extract(body, '$.event_type') AS e, json_extract(body, '$.status') AS s, "
              "json_extract(body, '$.latency_ms') AS l, body FROM records "
              "WHERE json_extract(body, '$.ts_start') BETWEEN '2026-10-01' AND '2026-12-31T23:59:59.999999Z'")
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    calls = one(f"SELECT count(*) FROM ({period}) WHERE e = 'inference'")
    errors = one(f"SELECT count(*) FROM ({period}) WHERE e = 'inference' AND s <> 'ok'")
    assert (kpis["inference"], kpis["errors"]) == (calls, errors) == (40, 6)
    assert kpis["error_rate"] == pytest.approx(errors / calls)
    requests = one(f"SELECT count(*) FROM ({period}) WHERE e = 'request'")
    refused = one(f"SELECT count(*) FROM ({period}) WHERE e = 'request' AND s IN ('refused', 'rejected')")
    assert (kpis["requests"], kpis["refused"]) == (requests, refused) == (4, 2)
    assert kpis["override_rate"] == pytest.approx(one(f"SELECT count(*) FROM ({period}) WHERE e = 'override'") / calls)
    assert kpis["explanation_coverage"] == pytest.approx(1 / calls)
    ranked = (f"SELECT l, row_number() OVER (ORDER BY l) AS k, count(*) OVER () AS n FROM ({period}) "
              "WHERE e = 'inference'")
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        assert kpis["latency_ms"][name] == one(f"SELECT min(l) FROM ({ranked}) WHERE k >= {q} * n")
    entities = dict(db.execute(f"SELECT j.key, sum(j.value) FROM ({period}) AS p, "
                               "json_each(json_extract(p.body, '$.redaction.entities')) AS j GROUP BY j.key"))
    assert kpis["redactions"] == entities and entities["EMAIL"] == 40
    p50, p95 = kpis["latency_ms"]["p50"], kpis["latency_ms"]["p95"]
    from govkit.report.formatting import milliseconds, percent

    for shown in (f"<td>Model calls (live traffic; every rate below counts these)</td><td>{calls}</td>",
                  f"{percent(errors / calls)} ({errors} of {calls})",
                  f"{milliseconds(p50)} / {milliseconds(p95)}", f"{percent(refused / requests)} ({refused} of {requests})",
                  f"EMAIL {entities['EMAIL']}"):
        assert shown in html, shown


def test_the_same_evidence_renders_byte_identical_reports_in_two_processes(project: Path) -> None:
    from govkit.timestamps import utc_now

    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST",)}
    outputs = []
    as_of = utc_now()  # a time that has passed when both render (a future one is taken as each one's now)
    for name in ("a", "b"):
        done = subprocess.run([sys.executable, "-m", "govkit", "report", "board", "--period", "2026-Q4", "--as-of", as_of,
                               "--format", "html",
                               "--format", "md", "--format", "json", "--format", "pdf", "-o", name, "--no-record"],
                              cwd=project, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        outputs.append({p.name: p.read_bytes() for p in sorted((project / name).iterdir())})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 5  # html, json, md, pdf, and the manifest beside them
    manifest = json.loads(outputs[0]["board-2026-Q4.manifest.json"])
    assert manifest["signature"]["value"] and set(manifest["outputs"]) == {"html", "md"}
    assert run("report", "verify", str(project / "a" / "board-2026-Q4.manifest.json")).exit_code == 0


def test_report_verify_passes_untouched_and_fails_on_an_edited_figure_or_store(project: Path) -> None:
    board("--format", "html", "--format", "md", "-o", "out")
    html, md = project / "out" / "board-2026-Q4.html", project / "out" / "board-2026-Q4.md"
    for path in (html, md):
        assert run("report", "verify", str(path)).exit_code == 0
    run("audit", "list")  # later records change nothing: the snapshot is pinned to its head
    with AuditLog.open(settings=load_settings()) as log:
        log.append("inference", prompt="later", response="x", status="ok")
    assert run("report", "verify", str(html)).exit_code == 0

    edited = project / "edited.html"
    edited.write_text(html.read_text().replace("<td>40</td>", "<td>39</td>", 1))
    result = run("report", "verify", str(edited))
    assert result.exit_code == 1 and "Model calls" in result.output and "<td>40</td>" in result.output

    edit_bodies(project / ".govkit" / "audit.db", '"status":"error"', '"status":"ok"',
                "seq = (SELECT min(seq) FROM records WHERE json_extract(body, '$.status') = 'error')")
    result = run("report", "verify", str(html))
    assert result.exit_code == 1
    assert "verify.ok" in result.output and "kpis.errors" in result.output


def test_an_empty_log_is_said_on_page_one(tmp_path: Path) -> None:
    assert run("init", "--yes").exit_code == 0
    board("--format", "html", "-o", "out", "--no-record")
    text = (tmp_path / "out" / "board-2026-Q4.html").read_text()
    page_one = text.split('id="regmap"', 1)[0]
    assert "The audit log is empty of model calls" in page_one and "has not been run" in page_one
    assert "Overall: NO-EVIDENCE" in page_one and "GREEN" not in page_one


def test_a_log_that_fails_verification_turns_the_scorecard_red_on_page_one(project: Path) -> None:
    edit_bodies(project / ".govkit" / "audit.db", "rev-1", "rev-2", "json_extract(body, '$.event_type') = 'override'")
    board("--format", "html", "-o", "out", "--no-record")
    page_one = (project / "out" / "board-2026-Q4.html").read_text().split('id="regmap"', 1)[0]
    assert "The audit log does not verify" in page_one and "Overall: RED" in page_one
    assert "<td>Governance</td><td class=\"red\">" in page_one


def test_a_reviewer_who_is_also_the_developer_is_flagged(project: Path) -> None:
    edit_config(project, "model", reviewer="dev-team@bank.example", developer="Dev-Team@bank.example")
    board("--format", "html", "--format", "md", "-o", "out", "--no-record")
    assert "the review is not independent" in (project / "out" / "board-2026-Q4.html").read_text()
    assert "not independent" in (project / "out" / "board-2026-Q4.md").read_text()


def test_a_user_template_overrides_one_block_and_is_in_the_manifest(project: Path) -> None:
    ours = project / "branding"
    ours.mkdir()
    (ours / "board.html.j2").write_text('{% extends "govkit/board.html.j2" %}\n'
                                        '{% block decisions %}<h2>Decisions for the Risk Committee</h2>{% endblock %}\n')
    board("--format", "html", "-o", "out", "--no-record", "--templates-dir", str(ours))
    path = project / "out" / "board-2026-Q4.html"
    text = path.read_text()
    assert "Decisions for the Risk Committee" in text and "Decisions requested from the board" not in text
    assert "1. Executive summary" in text
    manifest = json.loads(text.split('id="govkit-manifest">', 1)[1].split("</script>", 1)[0])
    assert set(manifest["inputs"]["templates"]) == {"board.html.j2", "govkit/board.html.j2", "_report.css"}
    assert run("report", "verify", str(path), "--templates-dir", str(ours)).exit_code == 0
    assert run("report", "verify", str(path)).exit_code == 1  # rebuilt with govkit's own: not the same


def test_the_report_is_a_chained_event_with_an_mlflow_run(project: Path) -> None:
    board("--format", "html", "-o", "out")
    with AuditLog.open(settings=load_settings()) as log:
        [record] = list(log.query(event_type="report"))
    assert record.details["kind"] == "board" and record.mlflow_run_id
    assert record.details["figures"]["kpis"]["inference"] == 40
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / '.govkit' / 'mlflow.db'}")
    names = {a.path for a in client.list_artifacts(record.mlflow_run_id)}
    assert {"board.html", "manifest.json"} <= names
    board("--format", "html", "-o", "again")  # the next report names what changed since this one
    assert "Changes since the last report" in (project / "again" / "board-2026-Q4.html").read_text()


@pytest.mark.skipif(_browser() is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_hostile_content_is_inert_text_in_a_real_browser(project: Path) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    hostile = '<script>window.__pwned = 1</script>{{ 7*7 }}</style><img src=x onerror="window.__pwned = 2">'
    edit_config(project, "model", name=hostile, owner=hostile)
    board("--format", "html", "--format", "md", "-o", "out", "--no-record")
    page_file = project / "out" / "board-2026-Q4.html"
    assert "{{ 7*7 }}" in page_file.read_text() and "<script>window" not in page_file.read_text()
    assert "<script>" not in (project / "out" / "board-2026-Q4.md").read_text()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_browser(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            page.goto(page_file.as_uri())
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert hostile in page.inner_text("h1")
            assert page.locator("img").count() == 0
            shot = page.screenshot(full_page=False)
        finally:
            browser.close()
    from io import BytesIO

    from PIL import Image

    pixels = Image.open(BytesIO(shot)).convert("L")
    darkest, lightest = pixels.getextrema()
    assert lightest - darkest > 100  # text and coloured cards, not a blank page
    assert sum(1 for count in pixels.histogram() if count) > 20


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="no poppler-utils here (.ci/run installs them)")
def test_the_pdf_has_a_title_page_numbered_pages_a_running_header_and_its_manifest(project: Path) -> None:
    board("--format", "pdf", "-o", "out")
    pdf = project / "out" / "board-2026-Q4.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(project / "page")], check=True)
    pages = sorted(project.glob("page-*.png"))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    per_page = text.split("\f")
    assert len(pages) >= 4 and len(per_page) - 1 == len(pages)
    assert "AI model-risk report" in per_page[0] and "1. Executive summary" not in per_page[0]  # a title page
    assert f"Page 2 of {len(pages)}" in per_page[1] and "2026-Q4" in per_page[1].splitlines()[0]
    assert "13. Evidence appendix" in text
    from govkit.report.pdf import manifest_of

    manifest = manifest_of(pdf.read_bytes(), source=pdf)
    assert manifest["figures"]["kpis"]["inference"] == 40 and manifest["signature"]["value"]
    assert run("report", "verify", str(pdf)).exit_code == 0
    damaged = project / "damaged.pdf"
    damaged.write_bytes(pdf.read_bytes() + b"\n% a byte more than was rendered\n")
    result = run("report", "verify", str(damaged))
    assert result.exit_code == 1 and "PDF differs" in result.output


def test_fairness_charts_are_inline_svg_with_alt_text_hatched_for_grayscale(project: Path) -> None:
    board("--format", "html", "--format", "md", "-o", "out", "--no-record")
    html = (project / "out" / "board-2026-Q4.html").read_text()
    svg = html[html.index("<figure><svg"):html.index("</svg>", html.index("<figure><svg"))]
    assert 'role="img"' in svg and "aria-label=\"tabular on preds.csv: sex: sex=f (n=60)" in svg
    assert "<title>" in svg and "<pattern" in svg  # alt text, and hatching that survives grayscale
    assert "dc:date" not in svg
    with AuditLog.open(settings=load_settings()) as log:
        [run_record] = list(log.query(event_type="bias_run"))
    groups = run_record.details["groups"]["sex"]
    assert [g["group"] for g in groups] == ["sex=f", "sex=m"] and all(g["count"] == 60 for g in groups)
    from govkit.report.formatting import percent

    shown = "; ".join(f"{g['group']} {percent(g['selection_rate'])} (n=60)" for g in groups)
    assert shown in (project / "out" / "board-2026-Q4.md").read_text()


def test_a_finding_is_aged_from_the_first_gate_run_of_its_unbroken_streak(project: Path) -> None:
    assert run("check", "--exit-zero").exit_code == 0  # a second run: the same findings still stand
    board("--format", "json", "-o", "out", "--no-record")
    manifest = json.loads((project / "out" / "board-2026-Q4.json").read_text())["manifest"]
    with AuditLog.open(settings=load_settings()) as log:
        first, last = [r.record_id for r in log.query(event_type="check_run")]
    gate = manifest["snapshot"]["gate"]
    assert gate["record_id"] == last
    failing = [cid for cid, r in gate["results"].items() if r["status"] not in ("PASS", "SKIP")]
    assert failing and all(gate["open_since"][cid]["since_record_id"] == first for cid in failing)
    assert set(gate["open_since"]) == set(failing)


def test_the_model_card_has_the_hugging_face_layout_and_the_toolkit_fields(project: Path) -> None:
    import yaml

    edit_config(project, "model", developer="ml-team@bank.example")
    result = run("report", "model-card", *PERIOD, "--format", "md", "--format", "html", "-o", "card", "--no-record")
    assert result.exit_code == 0, result.output
    text = (project / "card" / "model-card-2026-Q4.md").read_text()
    metadata = yaml.safe_load(text.split("---\n", 2)[1])
    taken = json.loads((project / "card" / "model-card-2026-Q4.manifest.json").read_text())["snapshot"]["as_of"]
    assert metadata["model_id"] == "loan-assistant" and metadata["date"] == taken[:10]
    [evaluation] = {r["dataset"]["name"] for r in metadata["model-index"][0]["results"]}
    assert evaluation == "preds.csv"
    names = {m["name"] for r in metadata["model-index"][0]["results"] for m in r["metrics"]}
    assert "demographic_parity_difference (sex)" in names
    for heading in ("## Model Details", "## Uses", "## Bias, Risks, and Limitations", "### Risks and mitigations",
                    "## Evaluation", "### Metrics (with slice and interval)", "## Model Card Contact"):
        assert heading in text
    assert "ml\\-team@bank.example" in text or "ml-team@bank.example" in text
    assert "How to fix" not in text and "govkit lineage" in text  # mitigations: each check's own how-to-fix
    assert re.search(r"sex=f \d+(\.\d)?% \(\d+(\.\d)?\u2013\d+(\.\d)?%\) \(n=60\)", text)
    for path in (project / "card").iterdir():
        assert run("report", "verify", str(path)).exit_code == 0


def test_the_engineer_report_has_every_control_and_every_group_in_full(project: Path) -> None:
    result = run("report", "engineer", *PERIOD, "--format", "html", "-o", "eng", "--no-record")
    assert result.exit_code == 0, result.output
    html = (project / "eng" / "engineer-2026-Q4.html").read_text()
    with AuditLog.open(settings=load_settings()) as log:
        [gate] = list(log.query(event_type="check_run"))
        [bias] = list(log.query(event_type="bias_run"))
    assert all(f"<code>{cid}</code>" in html for cid in gate.details["results"])
    from govkit.report.formatting import interval, percent

    for group in bias.details["groups"]["sex"]:  # in the formatting layer: the JSON twin keeps full precision
        assert (f"<td>{group['group']}</td><td>{group['count']}</td><td>{percent(group['selection_rate'])}</td>"
                f"<td>{interval(group['interval'])}</td>") in html
    assert f"seq {gate.seq}" in html
    assert "0.0211" not in html and "None" not in html.split("<script")[0]  # no raw Python values on the page
    result = run("report", "engineer", *PERIOD, "--format", "json", "-o", "eng.json", "--no-record")
    twin = json.loads((project / "eng.json").read_text())["manifest"]["snapshot"]["fairness"][0]
    assert twin["groups"]["sex"][0]["selection_rate"] == bias.details["groups"]["sex"][0]["selection_rate"]


def test_a_store_with_no_trusted_key_is_said_on_page_one_and_its_reports_do_not_verify(project: Path) -> None:
    """An auditor's copy without the device's key: no public key in govkit.toml, no private key file."""
    edit_config(project, "audit", public_key="")
    (project / ".govkit" / "device_ed25519.pem").rename(project / "elsewhere.pem")
    board("--format", "html", "-o", "out", "--no-record")
    path = project / "out" / "board-2026-Q4.html"
    page_one = path.read_text().split('id="regmap"', 1)[0]
    assert "No trusted device key" in page_one and "Overall: GREEN" not in page_one
    result = run("report", "verify", str(path))
    assert result.exit_code == 1 and "signature no trusted key" in result.output


def test_several_formats_into_one_file_name_is_an_input_error_that_records_nothing(project: Path) -> None:
    result = run("report", "board", *PERIOD, "--format", "html", "--format", "md", "-o", "board.html")
    assert result.exit_code == 2 and "--output board.html: 2 formats go into a folder" in result.output
    assert not (project / "board.html").exists()
    with AuditLog.open(settings=load_settings()) as log:
        assert list(log.query(event_type="report")) == []
    result = run("report", "board", "--period", "2026-Q5")
    assert result.exit_code == 2 and "--period 2026-Q5: expected a quarter" in result.output


def test_report_verify_rebuilds_the_figures_and_the_previous_report_not_only_the_signature(project: Path) -> None:
    """A manifest signed by the device key but not rendered from the store (its figures or its
    "changes since" edited, then signed again) does not verify: both are rebuilt and compared."""
    from govkit.audit.checkpoints import load_private_key
    from govkit.report.manifest import sign

    board("--format", "json", "-o", "out")
    beside = project / "out" / "board-2026-Q4.manifest.json"
    key = load_private_key(project / ".govkit" / "device_ed25519.pem")
    for edit in ("figures", "previous"):
        manifest = json.loads(beside.read_text())
        if edit == "figures":
            manifest["figures"]["overall"] = {"colour": "green", "statement": "Within risk appetite."}
        else:
            manifest["previous"] = {"record_id": "01FORGED", "figures": {"findings": []}}
        forged = project / f"forged-{edit}.manifest.json"
        forged.write_text(json.dumps(sign(manifest, key)))
        result = run("report", "verify", str(forged))
        assert result.exit_code == 1 and f"{edit}." in result.output and "signature valid" in result.output


def test_synthetic_model_calls_are_counted_and_said_on_page_one(project: Path) -> None:
    """Records no model produced (`govkit demo --scripted` marks them purpose 'synthetic') never
    pass as a model in use: page one says how many of the period's calls they are."""
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:
        for i in range(3):
            log.append("inference", prompt=f"scripted {i}", response="refer", purpose="synthetic", runtime="synthetic",
                       status="ok", ts_start="2026-11-10T10:00:00.000000Z")
    board("--format", "json", "-o", "board.json")
    figures = figures_of(project / "board.json")
    assert figures["kpis"]["synthetic"] == 3
    alerts = [a for a in figures["alerts"] if "synthetic" in a]
    assert alerts == [f"3 of the period's {40 + 3} model calls are synthetic (scripted answers, no model ran): the "
                      "monitoring figures describe a demonstration, not a model in use."]


def test_synthetic_model_calls_keep_the_overall_status_from_green() -> None:
    """Every control passed, on a verified and trusted log, is green, unless some of the period's
    model calls are synthetic: then the monitoring evidence is a demonstration's, and amber at best."""
    from govkit.report.scorecard import overall

    cards = {p: {"colour": "green"} for p in ("EXP", "DAT", "GOV", "ETH")}
    verify = {"ok": True, "trusted": True}
    assert overall(cards, verify)["colour"] == "green"
    scripted = overall(cards, verify, synthetic=3)
    assert scripted["colour"] == "amber" and "3 of the period's model calls are synthetic" in scripted["statement"]



def test_a_future_as_of_is_taken_as_now_and_the_manifest_says_so(project: Path) -> None:
    """Two board reports for one period and one future as-of, one after the other, both verified
    with different figures (30 vs 35 calls): records still to come counted in the second."""
    import datetime as dt

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    first = run("report", "board", "--period", "2026-Q4", "--as-of", future, "--format", "json", "-o", "first.json")
    assert first.exit_code == 0 and "is in the future: the evidence is taken as of now" in first.output, first.output
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:
        log.append("inference", prompt="a call dated ahead", response="approve", model_id="m", status="ok",
                   latency_ms=10.0, ts_start=(dt.datetime.now(dt.UTC) + dt.timedelta(days=5)).strftime(
                       "%Y-%m-%dT%H:%M:%S.000000Z"))
    second = run("report", "board", "--period", "2026-Q4", "--as-of", future, "--format", "json", "-o", "second.json")
    assert second.exit_code == 0, second.output
    manifests = [json.loads((project / f"{name}.manifest.json").read_text()) for name in ("first", "second")]
    taken = [m["snapshot"]["as_of"] for m in manifests]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.999999Z")
    assert all(t <= now and t != future for t in taken) and taken[0] <= taken[1], taken
    assert manifests[0]["figures"]["kpis"]["inference"] == manifests[1]["figures"]["kpis"]["inference"]
    for name in ("first", "second"):
        assert run("report", "verify", f"{name}.json").exit_code == 0


def test_a_name_that_reads_like_an_event_handler_renders_and_real_markup_is_still_refused(project: Path) -> None:
    """Every report exited 4 once a dataset name or group label held ` on<word>=`: the chart
    guard matched text that matplotlib had already escaped."""
    from govkit.report.charts import _inert

    rows = "".join(f"{['onboard=yes', 'onboard=no'][i % 2]},{int(i % 3 == 0)},{int(i % 4 == 0)}\n" for i in range(120))
    (project / "applicants onboarding=2026.csv").write_text("channel,y,decision\n" + rows)
    result = run("bias", "tabular", "--data", "applicants onboarding=2026.csv", "--y-true", "y", "--y-pred", "decision",
                 "--sensitive", "channel", "--bootstrap", "50")
    assert result.exit_code in (0, 1), result.output
    for kind, formats in (("board", ["--format", "html", "--format", "md"]), ("engineer", ["--format", "html"]),
                          ("model-card", ["--format", "md", "--format", "html"])):
        result = run("report", kind, *PERIOD, *formats, "-o", f"out-{kind}", "--no-record")
        assert result.exit_code == 0, result.output
    html = (project / "out-board" / "board-2026-Q4.html").read_text()
    assert "applicants onboarding=2026.csv" in html and "channel=onboard=yes" in html
    assert _inert('<svg xmlns="http://www.w3.org/2000/svg"><!-- a onload=x --><text>b onclick=y</text></svg>')
    assert not _inert('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>')
    assert not _inert('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')


def test_the_model_card_parses_without_a_bias_run_and_every_value_is_escaped_for_its_format(tmp_path: Path) -> None:
    """The YAML did not parse for a model without a bias run (every fresh project), nor with a C1
    or DEL character in an inventory value; a NEL was folded; Markdown kept a value's CR, so a
    value could add a heading of its own."""
    import yaml

    assert run("init", "--yes", "--model-id", "fresh-model").exit_code == 0
    tricky = "v1\x85\x7f\x9b\u2028\rAPPROVED BY THE BOARD\r# heading\r---"
    edit_config(tmp_path, "model", version=tricky, developer="team\r## Approved\nby nobody")
    result = run("report", "model-card", "--period", "2026", "--format", "md", "-o", "card.md", "--no-record")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "card.md").read_text(encoding="utf-8")
    metadata = yaml.safe_load(text.split("---\n", 2)[1])
    assert metadata["model-index"] == [{"name": "fresh-model", "results": []}]
    assert metadata["version"] == tricky  # every character kept, each escaped as YAML requires
    body = text.split("---\n", 2)[2]
    lines = body.splitlines()
    assert not [line for line in lines if line.startswith(("# heading", "## Approved", "APPROVED", "---"))], body
    assert "\r" not in body and "\x85" not in body


def test_every_rate_counts_one_population_the_gate_counts_too(project: Path) -> None:
    """381 "model calls" included 351 made by bias tests and explanations, so one override was
    0.3% on the board and 3.3% in the gate."""
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:
        for i in range(360):
            log.append("inference", prompt=f"evaluation case {i}", response="approve", model_id="m", status="ok",
                       latency_ms=5.0, purpose="evaluation" if i % 2 else "explanation",
                       ts_start="2026-11-10T10:00:00.000000Z")
    figures = board("--format", "json", "-o", "pop.json", "--no-record")
    kpis = json.loads((project / "pop.json").read_text())["figures"]["kpis"]
    assert (kpis["inference"], kpis["evaluation_calls"], kpis["explanation_calls"]) == (40, 180, 180), figures
    assert kpis["override_rate"] == pytest.approx(1 / 40) and kpis["latency_ms"]["n"] == 40
    assert run("check", "--exit-zero", "--format", "json").exit_code == 0
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:
        [gate] = list(log.query(event_type="check_run", newest_first=True, limit=1))
    message = gate.details["results"]["ETH-005"]["message"]  # its window is the last 30 days: live calls in it
    assert int(re.search(r"/ (\d+) decisions", message)[1]) <= 40, message  # never the 360 evaluation calls


def test_a_report_shows_and_verifies_the_inventory_chained_by_its_as_of_not_todays_config(project: Path) -> None:
    """Editing govkit.toml after a report (a new review date, the same rating again) leaves that
    report verifying; the next report shows the new values, chained before its as-of."""
    edit_config(project, "model", last_review="2026-10-01", reviewer="Val Idator")
    board("--format", "html", "-o", "before")
    before = project / "before" / "board-2026-Q4.html"
    assert "Val Idator" in before.read_text()

    edit_config(project, "model", last_review="2026-11-30", reviewer="Another Person")
    result = run("report", "verify", str(before))
    assert result.exit_code == 0, result.output  # the report's inventory is the chained one, not today's file
    assert "note: govkit.toml has changed since the report was rendered" in result.output
    board("--format", "html", "-o", "after")
    after = (project / "after" / "board-2026-Q4.html").read_text()
    assert "Another Person" in after and "Val Idator" not in after
    assert run("report", "verify", str(project / "after" / "board-2026-Q4.html")).exit_code == 0
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:
        chained = [r.details for r in log.query(event_type="config_change") if r.details.get("action") == "inventory"]
    assert [d["inventory"]["reviewer"] for d in chained][-2:] == ["Val Idator", "Another Person"]
    board("--format", "html", "-o", "again")  # an unchanged inventory is not chained again
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:
        assert sum(r.details.get("action") == "inventory" for r in log.query(event_type="config_change")) == len(chained)


def test_a_store_that_never_chained_its_inventory_says_so_on_page_one(tmp_path: Path) -> None:
    """A store written before inventories were chained (here: one made without `govkit init`)
    has no inventory as of any as-of; the report says so rather than show today's govkit.toml."""
    import dataclasses

    from govkit.report import parse_period
    from govkit.report.board import board_view
    from govkit.report.snapshot import take_snapshot

    assert run("init", "--yes", "--model-id", "loan-assistant").exit_code == 0
    edit_config(tmp_path, "model", description="Credit pre-screening of loan applications")
    settings = load_settings(tmp_path / "govkit.toml")
    older = tmp_path / "older.db"
    with AuditLog(older, create=True) as log:
        log.append("inference", prompt="p", response="approve", status="ok", ts_start="2026-11-02T10:00:00.000000Z")
        snapshot = take_snapshot(log, dataclasses.replace(settings, audit=dataclasses.replace(settings.audit, db=older)),
                                 parse_period("2026-Q4"), as_of="2026-12-01T00:00:00.000000Z")
    assert snapshot["inventory_record"] is None and snapshot["inventory"]["description"] == ""
    assert any("No inventory record was chained" in alert for alert in board_view(snapshot, None)["figures"]["alerts"])
    from govkit.report.board import _render

    documents, _ = _render("model-card", snapshot, settings, None, ("md", "html"), None)  # every template renders it
    assert b"(not recorded)" in documents["md"]


def test_a_genuine_pdf_still_verifies_when_the_font_subsetter_changes_and_verify_names_it(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing libharfbuzz-subset0 makes WeasyPrint subset fonts with fontTools: other bytes, the
    same text. The manifest names what the bytes depend on; verify says which one differs and
    checks the text, instead of failing a genuine report as forged."""
    board("--format", "pdf", "--format", "html", "-o", "out")
    pdf = project / "out" / "board-2026-Q4.pdf"
    from govkit.report.pdf import manifest_of, render_pdf

    manifest = manifest_of(pdf.read_bytes(), source=pdf)
    dependencies = manifest["govkit"]["renderers"]["pdf_dependencies"]
    assert dependencies["font_subsetter"].startswith("HarfBuzz-Subset"), dependencies
    assert any(font.startswith("DejaVu Sans 400: sha256:") for font in dependencies["fonts"]), dependencies
    assert set(dependencies) >= {"weasyprint", "pydyf", "pango"}
    html = (project / "out" / "board-2026-Q4.html").read_text()
    assert render_pdf(html, manifest, as_of=manifest["snapshot"]["as_of"]) == pdf.read_bytes()

    import weasyprint.pdf.fonts

    monkeypatch.setattr(weasyprint.pdf.fonts, "harfbuzz_subset", None)  # as on a machine without libharfbuzz-subset0
    assert render_pdf(html, manifest, as_of=manifest["snapshot"]["as_of"]) != pdf.read_bytes()
    result = run("report", "verify", str(pdf))
    assert result.exit_code == 0, result.output
    assert "font_subsetter was" in result.output and "fontTools" in result.output and "word for word" in result.output

    forged = project / "forged.pdf"  # the same change of subsetter does not excuse other words with the signed manifest
    assert "Not within risk appetite" in html
    forged.write_bytes(render_pdf(html.replace("Not within risk appetite", "Within risk appetite"), manifest,
                                  as_of=manifest["snapshot"]["as_of"]))
    result = run("report", "verify", str(forged))
    assert result.exit_code == 1 and "the PDF differs from its rebuild (and this machine's font_subsetter" in result.output


def test_decision_quality_is_on_the_board_report_the_engineer_report_and_the_model_card(project: Path) -> None:
    """The quality figures of the newest bias run with known outcomes, equal to scikit-learn's on
    the same file, in words on the board report, in full on the engineer report, and as the model
    card's model-index results, which huggingface_hub loads."""
    import pandas as pd
    from huggingface_hub import ModelCard
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    frame = pd.read_csv(project / "preds.csv")
    accuracy = accuracy_score(frame["y"], frame["decision"])
    majority = max(frame["y"].mean(), 1 - frame["y"].mean())
    for kind, fmt in (("board", "html"), ("engineer", "html"), ("model-card", "md"), ("board", "json")):
        assert run("report", kind, *PERIOD, "--format", fmt, "-o", f"{kind}.{fmt}", "--no-record").exit_code == 0
    board_text = re.sub(r"\s+", " ", (project / "board.html").read_text())
    assert "How well it decides, on preds.csv" in board_text
    from govkit.report.formatting import percent

    assert f"match the outcome in {percent(accuracy)} (" in board_text
    assert f"against {percent(majority)} for the" in board_text
    figures = json.loads((project / "board.json").read_text())["figures"]["quality"]
    assert figures["tabular:preds.csv"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert figures["tabular:preds.csv"]["baseline"] == pytest.approx(majority, abs=1e-6)
    engineer = (project / "engineer.html").read_text()
    assert "Decision quality on preds.csv" in engineer and "true_positive_rate" in engineer

    card = ModelCard.load(project / "model-card.md")
    results = {(r.task_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results[("text-classification", "accuracy")] == pytest.approx(accuracy, abs=1e-6)
    assert results[("text-classification", "recall")] == pytest.approx(recall_score(frame["y"], frame["decision"]),
                                                                        abs=1e-6)
    assert results[("text-classification", "precision")] == pytest.approx(
        precision_score(frame["y"], frame["decision"]), abs=1e-6)
    assert any(name.startswith("baseline: ") and value == pytest.approx(majority, abs=1e-6)
               for (_, name), value in results.items())
    assert all(r.dataset_type and r.dataset_name for r in card.data.eval_results)
    assert "### Decision quality" in card.text and "cases with a known outcome" in card.text


def test_numbers_are_formatted_for_people() -> None:
    from govkit.report.formatting import interval, metric_value, milliseconds, percent, rate_with_interval

    assert [percent(v) for v in (0.5714, 0.0331, 0.00262, 0.010582010582010581, 0, 1, None)] == [
        "57%", "3.3%", "0.26%", "1.1%", "0%", "100%", "n/a"]
    assert interval([0.6123, 0.7401]) == "61\u201374%" and interval(None) == ""
    assert rate_with_interval({"value": 0.68, "interval": [0.6123, 0.7401], "of": 200}) == "68% (61\u201374%, of 200)"
    assert (milliseconds(322.504), milliseconds(2583.189), milliseconds(0.42)) == ("323 ms", "2,583 ms", "0.4 ms")
    assert metric_value("disparate_impact_ratio", 0.9771428571428571) == "0.98"
    assert metric_value("demographic_parity_difference", 0.021164021164021163) == "2.1%"


def _artifacts(name: str) -> Path:
    """Where a test leaves what a reviewer looks at (rendered pages): GOVKIT_TEST_ARTIFACTS, or
    tests/.artifacts beside this file."""
    folder = Path(os.environ.get("GOVKIT_TEST_ARTIFACTS") or Path(__file__).parent / ".artifacts") / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _page_words(pdf: Path) -> list[tuple[int, float, float, float, str]]:
    """(page, page width, xMin, xMax, word) for every word poppler finds in the PDF."""
    import html as html_module

    xml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words, page, width = [], 0, 0.0
    for line in xml.splitlines():
        found = re.search(r'<page width="([\d.]+)"', line)
        if found:
            page, width = page + 1, float(found[1])
            continue
        word = re.search(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">(.*)</word>', line)
        if word:
            words.append((page, width, float(word[1]), float(word[2]), html_module.unescape(word[3])))
    return words


def test_the_pdf_loses_nothing_the_html_has_and_every_word_is_inside_the_page(project: Path) -> None:
    """The findings table ran off the right edge ("Open since" clipped, "Due" missing), chart titles
    were clipped, headers were in a serif font, and the PDF was untagged."""
    import html as html_module

    edit_config(project, "model", owner="model-risk-office-with-a-long-address@bank.example")
    assert run("finding", "plan", "GOV-001", "--owner", "inventory.owner.with.a.long.name@bank.example",
               "--due", "2099-01-31", "--action", "complete the inventory record").exit_code == 0
    assert run("limitation", "add", "decides in English only", "--control", "other languages go to staff",
               "--owner", "branch operations").exit_code == 0
    board("--format", "pdf", "--format", "html", "-o", "out")
    pdf, page = project / "out" / "board-2026-Q4.pdf", project / "out" / "board-2026-Q4.html"
    pages = _artifacts("board-pdf")
    for old in pages.glob("page-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(pages / "page")], check=True)
    text = re.sub(r"\s+", " ", subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                                              check=True).stdout)
    headers = {re.sub(r"\s+", " ", html_module.unescape(re.sub(r"<[^>]+>", "", h))).strip()
               for h in re.findall(r"<th[^>]*>(.*?)</th>", page.read_text(), re.S)}
    assert {"Finding", "Owner, open since, due", "Compensating control"} <= headers
    missing = [h for h in headers if h and h not in text]
    assert not missing, missing
    assert "inventory.owner.with.a.long.name@bank.example" in text.replace(" ", "") and "due 2099-01-31" in text
    margin = 14 / 25.4 * 72  # the page's side margin, in points
    outside = [(p, w) for p, width, _, x_max, w in _page_words(pdf) if x_max > width - margin + 1]
    assert not outside, outside[:10]
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "DejaVu-Sans" in fonts and "Serif" not in fonts, fonts
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Tagged:\s+yes", info), info
    assert len(list(pages.glob("page-*.png"))) >= 4


def test_page_one_says_in_words_what_the_model_is_why_its_status_and_what_the_board_must_decide(
        project: Path) -> None:
    edit_config(project, "model", description="Pre-screens loan applications at the branch counter.",
                owner="Head of Retail Credit", risk_rating="high")
    document = tomlkit.parse((project / "govkit.toml").read_text())
    document["model"]["approved_uses"] = ["pre-screening personal loans up to 20,000 EUR"]
    (project / "govkit.toml").write_text(tomlkit.dumps(document))
    run("check", "--exit-zero")
    board("--format", "pdf", "-o", "out")
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(project / "out" / "board-2026-Q4.pdf"), "-"],
                           capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", " ", first)
    for said in ("Pre-screens loan applications at the branch counter.",
                 "Approved for: pre-screening personal loans up to 20,000 EUR", "Owned by Head of Retail Credit",
                 "risk tier high", "Overall: RED", "Why", "Since the last report", "Decisions asked of the board",
                 "1 October 2026 to 31 December 2026", "governance control(s) that block deployment",
                 "Direct Head of Retail Credit to close the", "What the model itself does is not established"):
        assert said in flat, (said, flat[:3000])
    assert not re.search(r"\b[A-Z]{3}-\d{3}\b", flat), flat  # check IDs are where an auditor looks, not here
    assert not re.search(r"[0-9a-f]{16}", flat) and "T00:00:00" not in flat  # nor hashes, nor raw timestamps
    assert "Decide whether" not in flat  # no model finding here: the board is not asked about the model's behaviour


def test_a_remediation_plan_gives_a_finding_its_owner_and_due_date_and_late_ones_are_overdue(project: Path) -> None:
    assert run("finding", "plan", "GOV-001", "--owner", "inventory team", "--due", "2000-01-01",
               "--action", "x").exit_code == 2  # a plan due in the past is refused
    assert run("finding", "plan", "gov1", "--owner", "x", "--due", "2099-01-01", "--action", "x").exit_code == 2
    assert run("finding", "plan", "GOV-001", "--owner", "inventory team", "--due", "2099-03-31",
               "--action", "complete the record").exit_code == 0
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:  # a plan whose date has since passed
        log.append("remediation", details={"check_id": "GOV-002", "owner": "model owner", "due": "2026-11-30",
                                            "action": "fill the extended fields"})
    assert run("limitation", "add", "decides in English only", "--control", "other languages go to staff",
               "--owner", "branch operations").exit_code == 0
    board("--format", "html", "--format", "md", "-o", "out")
    html = re.sub(r"\s+", " ", (project / "out" / "board-2026-Q4.html").read_text())
    assert "inventory team<br>since" in html and "due 2099-03-31" in html
    assert "due 2026-11-30 <strong>(overdue)</strong>" in html
    assert "decides in English only" in html and "other languages go to staff" in html
    assert "(**overdue**)" in (project / "out" / "board-2026-Q4.md").read_text()
    assert run("report", "model-card", *PERIOD, "--format", "md", "-o", "card.md", "--no-record").exit_code == 0
    card = (project / "card.md").read_text()
    assert "decides in English only; compensating control: other languages go to staff" in card
    assert "Any use not listed above" not in card and "every use is out of scope until one is recorded" in card
    listed = json.loads(run("limitation", "list", "--json").output)
    assert run("limitation", "retire", listed[0]["record_id"], "--reason", "fixed in 1.1").exit_code == 0
    assert json.loads(run("limitation", "list", "--json").output) == []
