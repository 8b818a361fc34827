"""`govkit explain`: shap attributions for the real SmolLM2 through its server, and for scikit-learn
and ONNX models trained on German credit, compared with shap run directly."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import shap

from govkit.audit import AuditLog
from govkit.config import load_settings

from .conftest import run
from .public_data import GERMAN_COLUMNS, german_data
from .servers import free_port

PROMPT = ("A customer, age 67, with two missed payments last year, asks the bank for a loan of 9000 DM over "
          "36 months. Should the bank approve or deny the loan? Answer with one word: approve or deny.")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run("init", "--yes", "--model-id", "loan-assistant").exit_code == 0
    return tmp_path


def records() -> list:
    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        return list(log)


def test_text_attributions_are_additive_within_budget(llama, project: Path) -> None:
    url, gguf = llama
    result = run("explain", "text", "--prompt", PROMPT, "--choices", "approve,deny", "--positive", "approve",
                 "--endpoint", url, "--model-artifact", str(gguf), "--max-evals", "120", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"value", "base_value", "attributions", "evaluations"} <= set(data)
    assert "".join(a["segment"] for a in data["attributions"]) == PROMPT  # in prompt order, nothing lost
    assert len(data["attributions"]) == len(PROMPT.split())
    total = sum(a["value"] for a in data["attributions"])
    assert abs(total - (data["value"] - data["base_value"])) <= data["tolerance"] and data["additive"]
    assert 0 < data["evaluations"] <= 120 and data["max_evals"] == 120
    assert data["noise"] is not None and data["noise"] >= 0
    # the explanation is chained, and every model call it made is an audited inference record
    kinds = [r.event_type for r in records()]
    calls = [r for r in records() if r.event_type == "inference"]
    assert kinds[-1] == "explanation" and len(calls) == data["evaluations"] + data["other_evaluations"]
    assert all(c.purpose == "explanation" and c.quantization == "Q4_1" for c in calls)
    explanation = records()[-1]
    assert explanation.details["value"] == data["value"] and explanation.mlflow_run_id == data["mlflow_run_id"]
    assert PROMPT not in json.dumps(explanation.fields)  # the chain keeps digests, not the text
    assert run("audit", "verify").exit_code == 0
    odd = json.loads(run("explain", "text", "--prompt", PROMPT, "--choices", "approve,deny", "--positive", "approve",
                         "--endpoint", url, "--max-evals", "33", "--format", "json", "--fidelity", "0",
                         "--noise-probes", "0").output)
    assert odd["evaluations"] <= 33 and odd["additive"]  # below 2 x segments: coarser, still additive


def test_same_budget_same_attributions(llama, project: Path) -> None:
    url, _ = llama
    args = ["explain", "text", "--prompt", PROMPT, "--choices", "approve,deny", "--positive", "approve",
            "--endpoint", url, "--max-evals", "80", "--format", "json", "--fidelity", "0"]
    first, second = (json.loads(run(*args).output) for _ in range(2))
    noise = max(first["noise"], second["noise"]) + 1e-3
    for a, b in zip(first["attributions"], second["attributions"]):
        assert a["segment"] == b["segment"] and abs(a["value"] - b["value"]) <= noise * 2


def test_explaining_a_logged_record_chains_to_it(llama, project: Path) -> None:
    import httpx

    from govkit.inference.transport import RECORD_ID_HEADER, transport_classes

    url, _ = llama
    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        transport, _ = transport_classes("httpx")
        with httpx.Client(transport=transport(log), timeout=120) as client:
            response = client.post(url + "/chat/completions", json={
                "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 3, "temperature": 0})
        record_id = response.headers[RECORD_ID_HEADER]
    html = project / "explanation.html"
    result = run("explain", "text", "--record", record_id, "--choices", "approve,deny", "--positive", "approve",
                 "--endpoint", url, "--max-evals", "80", "--format", "html", "-o", str(html))
    assert result.exit_code == 0, result.output
    explanation = records()[-1]
    assert explanation.event_type == "explanation" and explanation.target_record_id == record_id
    assert explanation.explanation_ref.startswith("mlflow-run:")

    class Spans(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.segments: list[str] = []
            self.inside = False

        def handle_starttag(self, tag: str, attrs: list) -> None:
            self.inside = tag == "span" and ("class", "seg") in attrs

        def handle_data(self, data: str) -> None:
            if self.inside:
                self.segments.append(data)
                self.inside = False

    parser = Spans()
    parser.feed(html.read_text())
    assert "".join(parser.segments) == PROMPT and "<script" not in html.read_text()


def _browser() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.mark.skipif(_browser() is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_the_explanation_page_renders_in_a_real_browser(llama, project: Path) -> None:
    """The page a reviewer opens: a real Chromium shows the prompt as text (its markup escaped),
    each segment in the colour of its attribution's sign at a strength in proportion, and prints."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    url, _ = llama
    prompt = 'Client <b>Zoë</b> & "partner" (age 67) ask for 9000 DM. Approve or deny?'
    page_file = project / "explanation.html"
    result = run("explain", "text", "--prompt", prompt, "--choices", "approve,deny", "--positive", "approve",
                 "--endpoint", url, "--max-evals", "40", "--fidelity", "0", "--format", "html", "-o", str(page_file))
    assert result.exit_code == 0, result.output
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_browser(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            spans = page.eval_on_selector_all(
                "span.seg", "els => els.map(e => [e.textContent, e.title, getComputedStyle(e).backgroundColor])")
            assert "".join(text for text, _, _ in spans) == prompt
            assert page.locator(".prompt b").count() == 0  # the prompt's own tags stay text
            values = [float(title) for _, title, _ in spans]
            largest = max(map(abs, values))
            for value, (_, _, colour) in zip(values, spans):
                red, green, blue, alpha = _rgba(colour)
                if value > 0:
                    assert (red, blue) == (200, 30), colour
                elif value < 0:
                    assert (red, blue) == (30, 200), colour
                assert abs(alpha - 0.6 * abs(value) / largest) < 0.01, (value, colour)
            assert page.pdf().startswith(b"%PDF-")
        finally:
            browser.close()


def _rgba(css: str) -> tuple[int, int, int, float]:
    parts = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", css)
    assert parts, css
    return int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4] if parts[4] is not None else 1)


class NoLogprobs:
    """Fault injection: an OpenAI-compatible server that answers without log-probabilities."""

    def __init__(self) -> None:
        from aiohttp import web

        async def chat(request: web.Request) -> web.Response:
            return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": "approve"},
                                                   "finish_reason": "length"}]})

        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_text_bad_input(project: Path) -> None:
    server = NoLogprobs()
    try:
        no_logprobs = run("explain", "text", "--prompt", PROMPT, "--choices", "approve,deny", "--positive", "approve",
                          "--endpoint", f"http://127.0.0.1:{server.port}/v1", "--max-evals", "80")
    finally:
        server.close()
    assert no_logprobs.exit_code == 3 and "must support 'logprobs' and 'top_logprobs'" in no_logprobs.output
    empty = run("explain", "text", "--prompt", "  ", "--choices", "approve,deny", "--positive", "approve",
                "--endpoint", "http://127.0.0.1:9/v1")
    assert empty.exit_code == 2 and "the prompt is empty" in empty.output
    no_choices = run("explain", "text", "--prompt", PROMPT, "--positive", "approve", "--endpoint", "http://127.0.0.1:9/v1")
    assert no_choices.exit_code == 2 and "--choices" in no_choices.output
    shared = run("explain", "text", "--prompt", PROMPT, "--choices", "yes please,yes thanks", "--positive",
                 "yes please", "--endpoint", "http://127.0.0.1:9/v1")
    assert shared.exit_code == 2 and "yes begins more than one choice" in shared.output
    small = run("explain", "text", "--prompt", PROMPT, "--choices", "approve,deny", "--positive", "approve",
                "--endpoint", "http://127.0.0.1:9/v1", "--max-evals", "3")
    assert small.exit_code == 2 and "--max-evals" in small.output
    assert "Traceback" not in no_logprobs.output + empty.output + shared.output + small.output


def test_multi_token_choices(llama, project: Path) -> None:
    url, _ = llama
    prompt = "Should the bank grant a loan to a customer with no income? Reply Accepted or Declined."
    result = run("explain", "text", "--prompt", prompt, "--choices", "Accepted,Declined", "--positive", "Accepted",
                 "--endpoint", url, "--max-evals", "40", "--format", "json", "--fidelity", "0")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert np.isfinite(data["value"]) and data["additive"]


def german_numeric() -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(german_data(), sep=" ", header=None, names=list(GERMAN_COLUMNS))
    y = (frame.credit == 1).astype(int)
    numeric = frame[["duration", "credit_amount", "installment_rate", "present_residence_since", "age",
                     "number_of_existing_credits", "number_of_people_liable_for"]]
    dummies = pd.get_dummies(frame[["status", "credit_history", "savings"]], dtype=float)
    return pd.concat([numeric.astype(float), dummies], axis=1), y


@pytest.mark.parametrize("kind", ["linear", "tree"])
def test_tabular_equals_shap_run_directly(project: Path, tmp_path: Path, kind: str) -> None:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = german_numeric()
    model = (LogisticRegression(max_iter=2000) if kind == "linear"
             else GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0)).fit(X, y)
    joblib.dump(model, tmp_path / "model.joblib")
    X.to_csv(tmp_path / "applicants.csv", index=False)
    result = run("explain", "tabular", "--model", str(tmp_path / "model.joblib"), "--data",
                 str(tmp_path / "applicants.csv"), "--row", "17", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    X_read = pd.read_csv(tmp_path / "applicants.csv")
    if kind == "linear":
        direct = shap.LinearExplainer(model, shap.maskers.Independent(X_read, max_samples=100))(X_read.iloc[[16]])
    else:
        direct = shap.TreeExplainer(model)(X_read.iloc[[16]])
    assert data["method"] == ("shap.LinearExplainer" if kind == "linear" else "shap.TreeExplainer")
    assert [a["feature"] for a in data["attributions"]] == list(X.columns)
    np.testing.assert_allclose([a["value"] for a in data["attributions"]], direct.values[0], rtol=0, atol=1e-12)
    assert data["base_value"] == pytest.approx(float(np.ravel(direct.base_values)[0]), abs=1e-12)
    margin = model.decision_function(X_read.iloc[[16]])[0]
    assert data["value"] == pytest.approx(margin, abs=1e-6)  # additivity: base + sum = the model's log-odds
    assert records()[-1].event_type == "explanation"


def test_tabular_all_rows_global_importance_and_other_models(project: Path, tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    X, y = german_numeric()
    X = X.iloc[:120]
    model = KNeighborsClassifier(n_neighbors=5).fit(X, y.iloc[:120])
    joblib.dump(model, tmp_path / "knn.pkl")
    X.iloc[:6].to_csv(tmp_path / "few.csv", index=False)
    result = run("explain", "tabular", "--model", str(tmp_path / "knn.pkl"), "--data", str(tmp_path / "few.csv"),
                 "--all", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["method"] == "shap.PermutationExplainer" and len(data["rows"]) == 6
    for row in data["rows"]:  # the permutation explainer is additive on the positive-class probability
        probability = model.predict_proba(X.iloc[[row["row"] - 1]])[0, 1]
        assert row["value"] == pytest.approx(probability, abs=1e-9)
    importances = [g["mean_abs"] for g in data["global_importance"]]
    assert importances == sorted(importances, reverse=True)


def test_tabular_onnx_model(project: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array([[0.5], [-1.0], [0.25]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Sigmoid", ["z"], ["p"])], "scorer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 1])], [numpy_helper.from_array(weights, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime reads (onnx's newest IR can be ahead of it)
    onnx.save(model, tmp_path / "scorer.onnx")
    rows = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)), columns=["a", "b", "c"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = run("explain", "tabular", "--model", str(tmp_path / "scorer.onnx"), "--data", str(tmp_path / "rows.csv"),
                 "--row", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    x = rows.iloc[2].to_numpy(dtype=np.float32)
    assert data["value"] == pytest.approx(1 / (1 + np.exp(-(x @ weights[:, 0]))), abs=1e-5)


@pytest.mark.parametrize("case, message", [
    ("junk", "not a loadable scikit-learn model"),
    ("extension", "unsupported model file"),
    ("row", "--row 5000: the data has rows 1 to"),
    ("feature", "lacks the model's feature column(s) duration"),
])
def test_tabular_bad_input(project: Path, tmp_path: Path, case: str, message: str) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = german_numeric()
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "model.joblib")
    X.to_csv(tmp_path / "data.csv", index=False)
    model, data, row = tmp_path / "model.joblib", tmp_path / "data.csv", "1"
    if case == "junk":
        model = tmp_path / "junk.pkl"
        model.write_bytes(b"not a pickle")
    elif case == "extension":
        model = tmp_path / "model.txt"
        model.write_text("x")
    elif case == "row":
        row = "5000"
    else:
        X.drop(columns=["duration"]).to_csv(data, index=False)
    before = len(records())
    result = run("explain", "tabular", "--model", str(model), "--data", str(data), "--row", row)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert len(records()) == before


@pytest.mark.slow
def test_proxy_explains_the_expected_sample_off_the_request_path(llama, tmp_path: Path) -> None:
    import subprocess
    import time

    import httpx

    from govkit.explain.sampler import sampled

    from .servers import start_proxy, stop

    url, gguf = llama
    folder = tmp_path / "edge"
    folder.mkdir()
    subprocess.run([__import__("sys").executable, "-m", "govkit", "init", "--yes"], cwd=folder, check=True,
                   capture_output=True)
    config = folder / "govkit.toml"
    config.write_text(config.read_text().replace("sample_rate = 0.0", "sample_rate = 0.3")
                      .replace('choices = []', 'choices = ["approve", "deny"]')
                      .replace('positive = ""', 'positive = "approve"')
                      .replace("max_evals = 100", "max_evals = 30")
                      .replace("enabled = true", "enabled = false"))
    proxy_url, proc = start_proxy(folder, url, "--model-artifact", str(gguf))
    try:
        assert b"explaining in the background: 30% of decisions" in (folder / "proxy.log").read_bytes()
        sent = 0
        with httpx.Client(timeout=120) as client:
            # 12 calls, more if needed (at most 40) until the sample holds some but not all of
            # them: record ids are random, and 12 calls miss a 30% sample 1.4% of the time.
            while sent < 40:
                client.post(proxy_url + "/chat/completions", json={"max_tokens": 2, "temperature": 0, "messages": [
                    {"role": "user", "content": f"Loan for a customer aged {25 + sent}? Answer approve or deny."}]}
                ).raise_for_status()
                sent += 1
                if sent >= 12:
                    with AuditLog(folder / ".govkit" / "audit.db", read_only=True) as log:
                        picked = {sampled(r.record_id, 0.3) for r in log.query(event_type="inference")
                                  if r.purpose is None}
                    if picked == {True, False}:
                        break
        with AuditLog(folder / ".govkit" / "audit.db", create=False) as log:
            calls = [r for r in log.query(event_type="inference") if r.purpose is None]
            expected = {r.record_id for r in calls if sampled(r.record_id, 0.3)}
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                done = {r.target_record_id for r in log.query(event_type="explanation") if r.target_record_id}
                if done >= expected:
                    break
                time.sleep(0.5)
    finally:
        stop(proc)
    with AuditLog(folder / ".govkit" / "audit.db", create=False) as log:
        explanations = [r for r in log.query(event_type="explanation")]
        [coverage] = [r for r in explanations if r.details.get("kind") == "coverage"]
        explained = {r.target_record_id for r in explanations if r.details.get("kind") == "sampled"}
        evaluations = [r for r in log.query(event_type="inference") if r.purpose == "explanation"]
        assert log.verify().ok
    assert explained == expected and coverage.details["eligible"] == len(expected) == coverage.details["explained"]
    assert len(calls) == sent and 0 < len(expected) < sent
    fidelity = coverage.details["fidelity"]
    assert fidelity["explanations"] == len(expected) and fidelity["mean_top_k_drop"] is not None
    assert all(r.details["additive"] and r.details["evaluations"] <= 30
               for r in explanations if r.details.get("kind") == "sampled")
    # no explanation evaluation started while a client request was in flight
    for evaluation in evaluations:
        assert not any(c.ts_start < evaluation.ts_start < c.ts_end for c in calls), evaluation.record_id


def test_an_erasure_request_reaches_the_explanations_their_model_calls_and_mlflow(llama, project: Path) -> None:
    """Today's break: after `purge --subject`, the explanation of the subject's decision, the model
    calls made to explain it, and its MLflow artifacts kept the subject's words."""
    import httpx

    from govkit.inference.transport import RECORD_ID_HEADER, transport_classes

    url, _ = llama
    words = "Wilhelmina Oosterhuis-Brandt, age 67, asks for a loan of 9000 DM. Approve or deny?"
    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        transport, _ = transport_classes("httpx")
        audited = transport(log)
        audited.base["subject_ref"] = "cust-4711"  # what the proxy takes from X-Subject-Ref
        with httpx.Client(transport=audited, timeout=120) as client:
            response = client.post(url + "/chat/completions", json={
                "messages": [{"role": "user", "content": words}], "max_tokens": 2, "temperature": 0})
        record_id = response.headers[RECORD_ID_HEADER]
    result = run("explain", "text", "--record", record_id, "--choices", "approve,deny", "--positive", "approve",
                 "--endpoint", url, "--max-evals", "40", "--fidelity", "0", "--noise-probes", "0")
    assert result.exit_code == 0, result.output
    about = [r for r in records() if r.subject_ref == "cust-4711"]
    assert {r.event_type for r in about} == {"inference", "explanation"} and len(about) > 10
    stored = b"".join(p.read_bytes() for p in (project / ".govkit").rglob("*") if p.is_file())
    assert b"Oosterhuis" in stored  # before: in the content and the MLflow artifacts
    purged = run("audit", "purge", "--subject", "cust-4711", "--yes")
    assert purged.exit_code == 0 and "MLflow run(s) about the subject erased" in purged.output, purged.output
    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        assert all(all(v is None for v in log.content(r).values()) for r in about)
        assert log.verify().ok
    for path in (project / ".govkit").rglob("*"):
        if path.is_file():
            assert b"Oosterhuis" not in path.read_bytes(), path


def test_the_page_states_the_decision_and_shows_one_value_once() -> None:
    """The page of a referred applicant was titled "Why the model leaned towards 'approve'", and a
    group shap gave one value showed it on every word ("+0.21, +0.21, +0.21")."""
    from govkit.explain.runs import render_html

    data = {"choices": ["approve", "refer"], "positive": "approve", "value": -0.8, "base_value": 0.3,
            "attributions": [{"segment": "Applicant ", "value": -0.4}, {"segment": "unemployed, ", "value": -0.21},
                             {"segment": "no ", "value": -0.21}, {"segment": "savings. ", "value": -0.21},
                             {"segment": "Approve?", "value": 0.23}],
            "additivity_error": 0.0, "tolerance": 1e-6, "evaluations": 40, "max_evals": 40, "noise": None,
            "segments": "word"}
    page = render_html(data, "01TEST")
    assert "The model decided “refer”" in page and "leaned towards" not in page
    assert "Segments in blue pushed towards “refer”" in page
    assert page.count('data-segments="3"') == 1 and ">unemployed, no savings. </span>" in page
    assert page.count('title="-0.2100"') == 1
    approved = render_html({**data, "value": 1.1}, None)
    assert "The model decided “approve”" in approved and "Segments in red pushed towards “approve”" in approved
