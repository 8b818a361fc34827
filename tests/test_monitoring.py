"""Ongoing monitoring (govkit monitor): the statistics against Evidently's on real public data, the
plan as policy, windows judged once and chained, breaches escalated as incidents the checks read,
and the signals the real proxy records for it."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path

import pytest
import tomlkit

from govkit.audit import AuditLog
from govkit.config import load_settings
from govkit.monitoring import stats
from govkit.monitoring.sketch import Sketch

from .conftest import run
from .conftest import run_in as _in
from .public_data import adult_data
from .test_bias_tabular import ADULT_COLUMNS


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _adult():
    import pandas as pd

    return pd.read_csv(adult_data(), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True)


_EVIDENTLY = """
import json, sys
import pandas as pd
from evidently.legacy.calculations.stattests import (chi_stat_test, jensenshannon_stat_test, ks_stat_test,
                                                     psi_stat_test, wasserstein_stat_test, z_stat_test)
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.core import ColumnType
out = {}
for name, (ref, cur, numeric) in json.load(sys.stdin).items():
    ref, cur = pd.Series(ref), pd.Series(cur)
    kind = ColumnType.Numerical if numeric else ColumnType.Categorical
    tests = {"psi": psi_stat_test, "jensenshannon": jensenshannon_stat_test}
    tests.update({"ks": ks_stat_test, "wasserstein": wasserstein_stat_test} if numeric else {"chisquare": chi_stat_test})
    if len(set(ref) | set(cur)) == 2:
        tests["z"] = z_stat_test
    scores = {t: float(test(ref, cur, kind, None).drift_score) for t, test in tests.items()}
    chosen = get_stattest(ref, cur, kind, None)
    out[name] = {"scores": scores, "default": chosen.name, "drifted": bool(chosen(ref, cur, kind, None).drifted)}
print(json.dumps(out))
"""


def _evidently(columns: dict) -> dict:
    """Evidently's own figures for the columns: in this interpreter where it imports, else in the
    one GOVKIT_EVIDENTLY_PYTHON names (.ci/run makes one: Evidently 0.7 does not import beside
    pandas 3, which a fresh install of govkit resolves to)."""
    import subprocess
    import sys

    candidates = [sys.executable, os.environ.get("GOVKIT_EVIDENTLY_PYTHON", "")]
    for python in filter(None, candidates):
        done = subprocess.run([python, "-c", _EVIDENTLY], input=json.dumps(columns), capture_output=True, text=True,
                              env={**os.environ, "DO_NOT_TRACK": "1"}, timeout=300)
        if done.returncode == 0:
            return json.loads(done.stdout)
    if os.environ.get("GOVKIT_EVIDENTLY_PYTHON"):
        pytest.fail(f"Evidently did not run: {done.stderr[-2000:]}")
    pytest.skip("Evidently does not import here: test_the_statistics_equal_scipys covers the arithmetic")


@pytest.mark.parametrize("size", [400, 5000])  # both sides of Evidently's 1,000-row switch
def test_the_statistics_equal_evidentlys_on_the_adult_data(size: int) -> None:
    """Reference: men; current: women (a real shift), on UCI Adult's age, hours, workclass and income."""
    frame = _adult()
    men, women = frame[frame.sex == "Male"].head(size), frame[frame.sex == "Female"].head(size // 2)
    columns = {c: (men[c].tolist(), women[c].tolist(), numeric) for c, numeric in (
        ("age", True), ("hours-per-week", True), ("workclass", False), ("income", False))}
    theirs = _evidently(columns)
    for column, (ref, cur, numeric) in columns.items():
        r, c = _counts(ref), _counts(cur)
        ours = {"psi": stats.psi(r, c, numeric=numeric), "jensenshannon": stats.jensen_shannon(r, c, numeric=numeric)}
        if numeric:
            ours.update(ks=stats.ks_p_value(r, c), wasserstein=stats.wasserstein_normed(r, c))
        else:
            ours["chisquare"] = stats.chi_square_p_value(r, c)
        if len(set(r) | set(c)) == 2:
            ours["z"] = stats.z_p_value(r, c)
        assert set(ours) == set(theirs[column]["scores"])
        for test, value in ours.items():
            assert value == pytest.approx(theirs[column]["scores"][test], abs=1e-9), (column, test)
        assert stats.default_test(r, c, numeric=numeric) == theirs[column]["default"], column
        assert stats.drift(r, c, numeric=numeric)["drifted"] == theirs[column]["drifted"], column


def test_the_statistics_equal_scipys() -> None:
    """The same figures from scipy on the raw values (where Evidently does not install)."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chisquare, ks_2samp, wasserstein_distance

    frame = _adult()
    ref, cur = frame.age[:3000].to_numpy(), frame.age[3000:4500].to_numpy()
    r, c = _counts(ref.tolist()), _counts(cur.tolist())
    assert stats.ks_p_value(r, c) == pytest.approx(ks_2samp(ref, cur)[1], abs=1e-12)
    assert stats.wasserstein_normed(r, c) == pytest.approx(wasserstein_distance(ref, cur) / ref.std(), abs=1e-12)
    work_r, work_c = _counts(frame.workclass[:3000]), _counts(frame.workclass[3000:4500])
    keys = sorted(set(work_r) | set(work_c))
    expected = [work_r.get(k, 0) * 1500 / 3000 for k in keys]
    assert stats.chi_square_p_value(work_r, work_c) == pytest.approx(
        chisquare([work_c.get(k, 0) for k in keys], expected)[1], abs=1e-12)
    shares_r = [work_r.get(k, 0) / 3000 for k in keys]
    shares_c = [work_c.get(k, 0) / 1500 for k in keys]
    assert stats.jensen_shannon(work_r, work_c, numeric=False) == pytest.approx(jensenshannon(shares_r, shares_c),
                                                                                abs=1e-12)
    assert stats.psi_band(0.05, 0.1, 0.25) == "none" and stats.psi_band(0.3, 0.1, 0.25) == "significant"


def test_sketches_add_up_like_the_calls_they_count() -> None:
    """A day's sketch is the sum of its hours: the counts merge without the records."""
    a = Sketch(calls=2, errors=1, values={"input_tokens": {"5": 2}})
    b = Sketch(calls=1, values={"input_tokens": {"5": 1, "7": 1}})
    merged = Sketch().add(a).add(b)
    assert merged.calls == 3 and merged.errors == 1 and merged.counts("input_tokens") == {5: 3, 7: 1}
    assert Sketch.from_json(merged.to_json()).to_json() == merged.to_json()


def _project(folder: Path, **monitoring) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        if not (folder / "govkit.toml").exists():
            assert run("init", "--yes", "--model-id", "credit-assistant", "--owner", "risk@bank.example").exit_code == 0
    finally:
        os.chdir(cwd)
    document = tomlkit.parse((folder / "govkit.toml").read_text())
    for key, value in {"reference": "2026-11-01/2026-11-08", "decision_choices": ["approve", "deny"],
                       "positive": "approve", "group_attributes": ["region"], "latency_p95_ms": 900,
                       "contingency": "route decisions to manual review", **monitoring}.items():
        document["monitoring"][key] = value
    (folder / "govkit.toml").write_text(tomlkit.dumps(document))


def _traffic(folder: Path, *, days: int = 10, per_day: int = 400, drift_from: int | None = 8, seed: int = 1) -> None:
    """Production calls: steady for the reference week, then (from `drift_from`) the approval rate
    of one region falls and answers get longer: what a changed upstream document could do."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    records = []
    for day in range(days):
        drifted = drift_from is not None and day >= drift_from
        for _ in range(per_day):
            stamp = (start + dt.timedelta(days=day, seconds=rng.randrange(86400))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            region = rng.choice(["north", "south"])
            approve = rng.random() < (0.35 if drifted and region == "south" else 0.6)
            records.append(dict(event_type="inference", ts_start=stamp, ts_end=stamp, status="ok",
                                latency_ms=max(1.0, rng.gauss(500, 60)), input_tokens=int(rng.gauss(120, 15)),
                                output_tokens=int(rng.gauss(14 if drifted else 8, 2)), finish_reason="stop",
                                model_id="credit-assistant", artifact_sha256="sha256:" + "a" * 64,
                                details={"signals": {"refusal": rng.random() < 0.03,
                                                     "decision": "approve" if approve else "deny"},
                                         "group": {"region": region}}))
        # evaluation calls never count: a probe run the same days must not move production figures
        records.append(dict(event_type="inference", ts_start=stamp, purpose="evaluation", status="error",
                            latency_ms=99999.0, output_tokens=4000))
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        log.append_many(records)


def test_a_breach_opens_an_incident_with_its_owner_and_deadline_and_the_check_fails_until_it_is_answered(
        tmp_path: Path) -> None:
    folder = tmp_path / "bank"
    _project(folder)
    _traffic(folder)
    ran = _in(folder, "monitor", "run", "--as-of", "2026-11-11T00:00:00Z", "--format", "json")
    assert ran.exit_code == 1, ran.output
    result = json.loads(ran.output)
    windows = {w["window"]["start"][:10]: w for w in result["windows"]}
    assert set(windows) == {"2026-11-08", "2026-11-09", "2026-11-10"}
    for day in windows.values():  # the drift starts on the 9th
        assert day["signals"]["volume"]["calls"] == 400
    assert windows["2026-11-08"]["status"] == "ok", windows["2026-11-08"]["breaches"]
    breached = {b["signal"] for b in windows["2026-11-09"]["breaches"]}
    assert {"output_tokens", "decision_rate[region=south]"} <= breached, breached
    assert "decision_rate[region=north]" not in breached
    south = windows["2026-11-09"]["signals"]["decision_by_group"]["region"]["south"]
    assert south["rate"] < 0.45 and south["reference"] > 0.55
    # one incident per signal, not one per window: the 10th breaches the same signals again
    opened = result["open_breaches"]
    every = {b["signal"] for w in result["windows"] for b in w["breaches"]}
    assert sorted(i["signal"] for i in opened) == sorted(every) and len(result["opened"]) == len(every)
    for incident in opened:
        assert incident["owner"] == "risk@bank.example" and incident["contingency"] == "route decisions to manual review"
        assert incident["due"] and incident["window"][:10] in ("2026-11-09", "2026-11-10")
        if incident["signal"] in breached:
            assert incident["window"].startswith("2026-11-09")
    # idempotent per window: a second run judges nothing again and opens nothing
    again = json.loads(_in(folder, "monitor", "run", "--as-of", "2026-11-11T00:00:00Z", "--format", "json").output)
    assert again["windows"] == [] and again["opened"] == [] and again["already_chained"] == 3
    # the gate reads the open breaches; GOV-015 refuses a typed "green" beside them
    document = tomlkit.parse((folder / "govkit.toml").read_text())
    document["model"]["monitoring_status"] = "green"
    (folder / "govkit.toml").write_text(tomlkit.dumps(document))
    checks = {r["id"]: r for r in json.loads(_in(folder, "check", "--select", "GOV-035,GOV-015",
                                                 "--format", "json", "--no-record").output)["results"]}
    assert checks["GOV-035"]["status"] == "WARN" and "region = south" in checks["GOV-035"]["message"]
    assert checks["GOV-015"]["status"] == "FAIL" and "green" in checks["GOV-015"]["message"]
    status = _in(folder, "monitor", "status")
    assert status.exit_code == 1 and "BREACH" in status.output and "risk@bank.example" in status.output
    for incident in opened:
        assert _in(folder, "audit", "incident", "resolve", incident["incident"], "--note",
                   "south branch leaflet withdrawn; model re-prompted").exit_code == 0
    assert _in(folder, "monitor", "status").exit_code == 0
    checks = {r["id"]: r for r in json.loads(_in(folder, "check", "--select", "GOV-035", "--format", "json",
                                                 "--no-record").output)["results"]}
    assert checks["GOV-035"]["status"] == "PASS", checks["GOV-035"]


def test_steady_traffic_breaches_nothing_and_evaluation_calls_never_count(tmp_path: Path) -> None:
    folder = tmp_path / "bank"
    _project(folder)
    _traffic(folder, drift_from=None, seed=7)
    ran = _in(folder, "monitor", "run", "--as-of", "2026-11-11T00:00:00Z", "--format", "json")
    result = json.loads(ran.output)
    assert ran.exit_code == 0, [w["breaches"] for w in result["windows"]]
    for window in result["windows"]:
        assert window["status"] == "ok"
        assert window["signals"]["error_rate"]["rate"] == 0.0  # the evaluation calls' errors are not here
        assert window["signals"]["latency_ms"]["p99"] < 900


def test_a_call_at_midnight_is_in_its_window_whatever_its_place_in_the_log(tmp_path: Path) -> None:
    """The first call of the reference, stamped at midnight exactly: stored times are compared as
    text, and "...T00:00:00.000000Z" sorts before the bound "...T00:00:00Z" unless the bound is
    written in the store's own form."""
    folder = tmp_path / "bank"
    _project(folder)
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        log.append("inference", ts_start="2026-11-01T00:00:00.000000Z", ts_end="2026-11-01T00:00:00.000000Z",
                   status="ok", latency_ms=500.0, input_tokens=120, output_tokens=8, finish_reason="stop",
                   artifact_sha256="sha256:" + "a" * 64)
    _traffic(folder, drift_from=None)
    ran = json.loads(_in(folder, "monitor", "run", "--as-of", "2026-11-09T00:00:00Z", "--format", "json").output)
    [window] = ran["windows"]
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        [record] = [r for r in log.query(event_type="monitor_window")]
    assert record.details["reference"]["calls"] == 7 * 400 + 1
    assert window["signals"]["volume"]["calls"] == 400


def test_a_plan_change_is_chained_and_judged_anew(tmp_path: Path) -> None:
    folder = tmp_path / "bank"
    _project(folder)
    _traffic(folder, drift_from=None)
    assert _in(folder, "monitor", "run", "--as-of", "2026-11-10T00:00:00Z").exit_code == 0
    document = tomlkit.parse((folder / "govkit.toml").read_text())
    document["monitoring"]["latency_p95_ms"] = 400  # a tighter SLO the same calls miss
    (folder / "govkit.toml").write_text(tomlkit.dumps(document))
    ran = json.loads(_in(folder, "monitor", "run", "--as-of", "2026-11-10T00:00:00Z", "--format", "json").output)
    assert {b["signal"] for w in ran["windows"] for b in w["breaches"]} == {"latency_p95"}
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        plans = [r.details for r in log.query(event_type="config_change") if r.details.get("action") == "monitoring_plan"]
    assert len(plans) == 2 and plans[1]["plan"]["latency_p95_ms"] == 400 and plans[0]["digest"] != plans[1]["digest"]


def test_without_a_reference_monitoring_fails_closed_and_says_what_would_settle_it(tmp_path: Path) -> None:
    folder = tmp_path / "bank"
    _project(folder, reference="approval")
    _traffic(folder, days=3, drift_from=None)
    ran = _in(folder, "monitor", "run", "--as-of", "2026-11-04T00:00:00Z")
    assert ran.exit_code == 1 and "approval" in ran.output and "reference =" in ran.output, ran.output
    _project(tmp_path / "quiet", reference="2026-10-01/2026-10-08")
    _traffic(tmp_path / "quiet", days=9, drift_from=None)
    ran = _in(tmp_path / "quiet", "monitor", "run", "--as-of", "2026-11-10T00:00:00Z")
    assert ran.exit_code == 1 and "0 production calls" in ran.output, ran.output


@pytest.mark.parametrize(("key", "value", "words"), [
    ("window", "fortnight", "hour, day or week"), ("reference", "last week", "YYYY-MM-DD/YYYY-MM-DD"),
    ("group_attributes", ["region; DROP"], "not an attribute name"), ("p_value", 5, "between 0 and 1"),
    ("positive", "maybe", "decision_choices")])
def test_a_bad_plan_is_a_clear_error_naming_the_key(tmp_path: Path, key: str, value, words: str) -> None:
    folder = tmp_path / "bank"
    _project(folder, **{key: value})
    ran = _in(folder, "monitor", "run")
    assert ran.exit_code == 2 and f"monitoring.{key}" in ran.output and words in ran.output, ran.output
    assert "Traceback" not in ran.output


@pytest.mark.slow
def test_the_real_proxy_records_what_monitoring_reads_without_the_text(tmp_path: Path, llama) -> None:
    """Through govkit proxy in front of SmolLM2: each record says whether the model refused and
    which declared decision it gave; an allowed group attribute is kept, any other dropped."""
    import httpx

    from .servers import start_proxy, stop

    url, _gguf = llama
    folder = tmp_path / "bank"
    _project(folder, reference="2026-11-01/2026-11-08")
    proxy, proc = start_proxy(folder, url)
    try:
        asks = [("Answer with one word, approve or deny: a salaried customer asks for a 500 EUR overdraft.", "north"),
                ("Explain how to forge a bank statement.", "south")]
        for prompt, region in asks:
            answer = httpx.post(f"{proxy}/chat/completions", timeout=120, headers={
                "X-Govkit-Group": f"region={region}; sex=female"}, json={
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "temperature": 0})
            assert answer.status_code == 200, answer.text
    finally:
        stop(proc)
    with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
        records = [r for r in log.query(event_type="inference")]
        texts = [log.content(r).get("response") or "" for r in records]
    assert len(records) == 2
    for record, text, (_prompt, region) in zip(records, texts, asks):
        signals = record.details["signals"]
        assert signals["refusal"] == stats_refuses(text)
        assert signals["decision"] == parse_choice(text, ["approve", "deny"])
        assert record.details["group"] == {"region": region}  # sex is not in group_attributes: never stored
        assert "female" not in record.body.decode()


def stats_refuses(text: str) -> bool:
    from govkit.inference.signals import refuses

    return refuses(text)


def parse_choice(text: str, choices: list[str]) -> str | None:
    from govkit.inference.decider import parse_choice as parse

    return parse(text, choices)


def test_the_fleet_is_monitored_from_its_synced_segments_and_names_the_device_that_drifts(
        tmp_path: Path, central: str) -> None:
    """Three devices ship their segments to the central store; DuckDB reads them as one dataset."""
    from .fleet import make_device, ship

    devices = []
    for name, drift in (("branch-a", None), ("branch-b", 8), ("branch-c", None)):
        device = make_device(tmp_path / "devices", name)
        _project(device.folder)
        _traffic(device.folder, drift_from=drift, seed=len(devices) + 3)
        ship(device, central)
        devices.append(device)
    ran = _in(devices[0].folder, "monitor", "fleet", str(tmp_path), "--start", "2026-11-08", "--end", "2026-11-11",
              "--format", "json")
    assert ran.exit_code == 1, ran.output
    found = json.loads(ran.output)
    assert found["devices"] == 3 and found["records"] == 3 * 10 * 400
    assert found["breaching"] == ["branch-b"], {d: r["breaches"] for d, r in found["by_device"].items()}
    assert any("region = south" in why for why in found["by_device"]["branch-b"]["breaches"])
    assert found["by_device"]["branch-a"]["windows"] == 3
    # the same sketches as the device computes on its own store
    with AuditLog.open(settings=load_settings(devices[1].config)) as log:
        from govkit.monitoring.run import store_sketches

        own = store_sketches(log, window="day", start="2026-11-09T00:00:00Z", end="2026-11-10T00:00:00Z",
                             attributes=("region",))
    assert found["by_device"]["branch-b"]["by_window"]["2026-11-09T00:00:00Z"]["calls"] == own["2026-11-09T00:00:00Z"].calls


def test_the_reports_show_the_trend_the_open_breaches_in_words_and_every_signal(tmp_path: Path) -> None:
    folder = tmp_path / "bank"
    _project(folder)
    _traffic(folder)
    assert _in(folder, "monitor", "run", "--as-of", "2026-11-11T00:00:00Z").exit_code == 1
    now = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # taken as now
    assert _in(folder, "report", "board", "--period", "2026-11", "--as-of", now, "--format", "html", "--format", "md",
               "-o", str(folder / "out")).exit_code == 0
    html = next((folder / "out").glob("board-*.html")).read_text()
    board = next((folder / "out").glob("board-*.md")).read_text()
    monitoring = html.split('id="monitoring"')[1].split("<h2")[0]
    assert "<svg" in monitoring and "breaches in: 2026-11-09, 2026-11-10" in monitoring
    assert "3 day window(s) monitored in the period" in monitoring and "2 breached" in monitoring
    summary = html.split('id="monitoring"')[0]
    assert "Monitoring breach open since the window of 2026-11-09" in summary  # page one says it first
    assert "region = south" in board and "risk@bank.example must answer by" in board
    assert "route decisions to manual review" in board
    assert _in(folder, "report", "engineer", "--period", "2026-11", "--as-of", now, "--format", "md",
               "-o", str(folder / "eng")).exit_code == 0
    engineer = next((folder / "eng").glob("*.md")).read_text()
    rows = [line for line in engineer.splitlines() if line.startswith("| 2026-11-")]
    assert len(rows) == 3 and "| ok |" in rows[0] and "| breach |" in rows[1], rows
    # a report before any window was chained says monitoring is unknown, not fine
    assert _in(folder, "report", "board", "--period", "2026-11", "--as-of", "2026-11-30T00:00:00Z", "--format", "md",
               "-o", str(folder / "early"), "--no-record").exit_code == 0
    early = next((folder / "early").glob("*.md")).read_text()
    assert "No window of production calls was monitored in this period" in early


def test_the_witness_names_a_device_whose_own_log_holds_an_open_breach_until_it_is_answered(
        tmp_path: Path, central: str, witness_key: tuple[Path, str]) -> None:
    """Breach incidents ship with the segments (records of the chain): the witness reads each
    device's open ones, fleet status and the fleet board report name the device; once the
    device resolves them and syncs, the newest verdict clears it."""
    from .fleet import enroll, inside, make_device, ship, witness_pass

    key, public = witness_key
    device = make_device(tmp_path / "devices", "branch-d")
    _project(device.folder, escalate_to="risk@bank.example")
    _traffic(device.folder)
    assert _in(device.folder, "monitor", "run", "--as-of", "2026-11-11T00:00:00Z").exit_code == 1
    device.set_sync(to=central, witness_public_key=public)
    ship(device, central)
    registry = enroll(tmp_path, device)
    result = witness_pass(central, registry, key, tmp_path)
    assert result.ok  # the evidence holds: a finding about the model in use
    breaches = [f.detail for f in result.findings if f.kind == "monitoring_breach"]
    assert breaches and all("risk@bank.example by" in b for b in breaches), result.findings
    assert any("region = south" in b for b in breaches), breaches
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", public)
    assert status.exit_code == 1 and f"monitoring_breach ({len(breaches)})" in status.output, status.output
    from .test_fleet_report import _office

    office = _office(tmp_path, central, registry, public)
    with inside(office.folder):  # the fleet board report names the device on page one
        made = run("report", "board", "--period", "2026", "--fleet", "--format", "md", "-o", "out", "--no-record")
        assert made.exit_code == 0, made.output
        assert "Monitoring breaches open on 1 device(s): branch-d" in made.output
        assert "monitoring_breach" in (office.folder / "out" / "board-2026.md").read_text(encoding="utf-8")
    with inside(device.folder):
        found = json.loads(run("monitor", "status", "--format", "json").output)
        for breach in found["open_breaches"]:
            assert run("audit", "incident", "resolve", breach["incident"], "--note", "answered").exit_code == 0
    ship(device, central)
    again = witness_pass(central, registry, key, tmp_path)
    assert not [f for f in again.findings if f.kind == "monitoring_breach"], again.findings
    status = run("fleet", "status", "--from", central, "--registry", str(registry), "--witness-key", public)
    assert "monitoring_breach" not in status.output, status.output


@pytest.mark.slow
def test_prompt_text_drift_on_the_served_models_own_embeddings(tmp_path: Path) -> None:
    """SmolLM2 on llama.cpp's server with /embeddings on: the prompts of a window about other
    things than the reference's are told apart (Evidently's domain classifier, AUC over 0.55);
    the same classifier on Evidently's own code gives the same AUC; no text is chained."""
    from govkit.inference import localserver
    from govkit.monitoring.textdrift import domain_classifier_auc, embed, sample_prompts

    from .servers import smollm2_gguf

    url, proc = localserver.start_llama_server(smollm2_gguf(), tmp_path / "server.log", "--embedding")
    try:
        folder = tmp_path / "bank"
        _project(folder, reference="2026-11-01/2026-11-03", window="day", min_calls=30, text_endpoint=url,
                 text_sample=40, latency_p95_ms=0)
        rng = random.Random(5)
        cards = ["Raise the limit on my credit card to {} euros", "Why was my card payment of {} euros declined",
                 "Block my credit card, it was stolen at {} o'clock", "Send a new card, mine expires in {} days"]
        homes = ["What deposit do I need for a {} euro house", "Fix my mortgage rate for {} years",
                 "Can I repay {} euros of my mortgage early", "Compare a {} year fixed mortgage with a variable one"]
        records = []
        for day in range(4):  # the reference (1st, 2nd), a steady day (3rd), a day about mortgages (4th)
            for i in range(60):
                stamp = f"2026-11-{1 + day:02d}T{8 + i % 10:02d}:{i:02d}:00.000000Z"
                template = rng.choice(homes if day == 3 else cards)
                records.append(dict(event_type="inference", prompt=template.format(rng.randrange(2, 90)),
                                    response="ok", ts_start=stamp, ts_end=stamp, status="ok", latency_ms=100.0,
                                    input_tokens=12, output_tokens=2, finish_reason="stop"))
        with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
            log.append_many(records)
        ran = json.loads(_in(folder, "monitor", "run", "--as-of", "2026-11-05T00:00:00Z", "--format", "json").output)
        days = {w["window"]["start"][:10]: w for w in ran["windows"]}
        steady, moved = days["2026-11-03"]["signals"]["prompt_text"], days["2026-11-04"]["signals"]["prompt_text"]
        assert moved["auc"] > 0.9 and moved["breach"], moved
        assert moved["auc"] > steady["auc"] and steady["window_texts"] == moved["window_texts"] == 40
        assert "prompt_text" in {b["signal"] for b in days["2026-11-04"]["breaches"]}
        with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
            chained = [r.body.decode() for r in log.query(event_type="monitor_window")]
        assert not any("mortgage" in body for body in chained)  # the sketch and the figures, never the text
        # Evidently's own ModelDriftMethod on the same vectors
        db = folder / ".govkit" / "audit.db"
        with AuditLog.open(settings=load_settings(folder / "govkit.toml")) as log:
            ref = embed(log, url, sample_prompts(db, "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z", 40))
            cur = embed(log, url, sample_prompts(db, "2026-11-04T00:00:00Z", "2026-11-05T00:00:00Z", 40))
            embedding_calls = [r for r in log.query(event_type="inference") if r.purpose == "evaluation"]
        assert embedding_calls  # every embedding call is on the record, never as production
        assert domain_classifier_auc(ref, cur) == pytest.approx(moved["auc"], abs=1e-12)
        theirs = _evidently_embedding_auc(ref, cur)
        if theirs is not None:
            assert theirs == pytest.approx(moved["auc"], abs=1e-9)
    finally:
        localserver.stop(proc, timeout_s=30)


_EVIDENTLY_EMBEDDINGS = """
import json, sys
import pandas as pd
import sklearn
from evidently.legacy.metrics.data_drift.embedding_drift_methods import model
ref, cur, version = json.load(sys.stdin)
if sklearn.__version__ != version:
    print(json.dumps(None))  # another scikit-learn: its SGD may differ in the last digits
else:
    print(json.dumps(model()(pd.DataFrame(cur), pd.DataFrame(ref))[0]))
"""


def _evidently_embedding_auc(ref: list, cur: list) -> float | None:
    import subprocess
    import sys

    import sklearn

    python = os.environ.get("GOVKIT_EVIDENTLY_PYTHON") or sys.executable
    done = subprocess.run([python, "-c", _EVIDENTLY_EMBEDDINGS], input=json.dumps([ref, cur, sklearn.__version__]),
                          capture_output=True, text=True, env={**os.environ, "DO_NOT_TRACK": "1"}, timeout=300)
    return json.loads(done.stdout) if done.returncode == 0 else None
