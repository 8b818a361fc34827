"""Nothing raw on disk: personal data planted in every request field and header, driven through the
proxy, the wrappers, bias, explain, lineage and the gate, is found in no file govkit wrote (the
database and its WAL, the checkpoint file, the MLflow store and artifacts, exports).

The model is the real SmolLM2 behind the real llama.cpp server; hypothesis chooses which request
fields carry which value."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govkit.audit import AuditLog
from govkit.config import load_settings

from .conftest import run
from .servers import start_proxy, stop

pytestmark = pytest.mark.slow
openai = pytest.importorskip("openai")

# Recognisable, valid values of every kind the redactor knows (a card and an IBAN with good
# checksums), each unique to this test so that a hit can only be a leak.
PLANTED = {
    "EMAIL": "zoe.plantedleak@example.org",
    "PAYMENT_CARD": "5500 0000 0000 0004",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "PHONE": "+44 20 7946 0958",
    "US_SSN": "219-09-9999",
}
INPUTS = ("cases.csv", "loan.j2", "people.csv")  # files the test itself writes: not govkit's


def written_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.name not in INPUTS and "proxy.log" != p.name]


def leaks(folder: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in written_files(folder):
        data = path.read_bytes()
        for entity, value in PLANTED.items():
            for form in {value, value.replace(" ", ""), json.dumps(value)[1:-1]}:
                if form.encode() in data:
                    found.setdefault(entity, []).append(str(path.relative_to(folder)))
    return found


def _post(url: str, body: dict, headers: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


FIELDS = ("user message", "system message", "stop", "user", "metadata", "session header", "purpose header",
          "tool definition", "refused path")


@pytest.fixture(scope="module")
def proxied(llama, tmp_path_factory: pytest.TempPathFactory):
    upstream, gguf = llama
    folder = tmp_path_factory.mktemp("planted")
    url, proc = start_proxy(folder, upstream, "--model-artifact", str(gguf))
    yield folder, url, proc
    stop(proc)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(sorted(PLANTED))), min_size=1, max_size=5))
def test_planted_data_in_any_request_field_leaves_no_raw_trace(proxied, placements) -> None:
    folder, url, _ = proxied
    body: dict = {"model": "m", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 2,
                  "temperature": 0}
    headers: dict = {}
    path = "/chat/completions"
    for field, entity in placements:
        value = PLANTED[entity]
        if field == "user message":
            body["messages"][-1]["content"] += f" I am {value}."
        elif field == "system message":
            body["messages"].insert(0, {"role": "system", "content": f"The customer is {value}."})
        elif field == "stop":
            body["stop"] = [value]
        elif field == "user":
            body["user"] = value
        elif field == "metadata":
            body["metadata"] = {"customer": value}
        elif field == "session header":
            headers["X-Session-Id"] = f"session {value}"
        elif field == "purpose header":
            headers["X-Govkit-Purpose"] = f"review of {value}"
        elif field == "tool definition":
            body["tools"] = [{"type": "function", "function": {"name": "lookup", "description": f"look up {value}",
                                                                "parameters": {"type": "object", "properties": {}}}}]
        elif field == "refused path":
            path = "/admin/" + value.replace(" ", "")
    status = _post(url + path, body, headers)
    assert status in (200, 400, 404, 500), status
    assert leaks(folder) == {}


def test_planted_data_through_wrappers_bias_explain_lineage_check_and_exports(llama, tmp_path: Path) -> None:
    url, gguf = llama
    os.chdir(tmp_path)
    assert run("init", "--yes", "--model-id", "loan-assistant").exit_code == 0
    email, card, phone = PLANTED["EMAIL"], PLANTED["PAYMENT_CARD"], PLANTED["PHONE"]
    # the wrappers: an OpenAI client, audited in-process
    import govkit

    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        client = govkit.audited_client(openai.OpenAI(base_url=url, api_key="-"), log, model_artifact=gguf)
        client.chat.completions.create(model="m", max_tokens=2, temperature=0, messages=[
            {"role": "user", "content": f"Customer {email}, card {card}, phone {phone}: approve?"}])
    # bias: prompts built from rows that hold personal data
    (tmp_path / "cases.csv").write_text("sex,contact\n" + "".join(
        f"{'female' if i % 2 else 'male'},{email if i % 3 == 0 else phone}\n" for i in range(6)))
    (tmp_path / "loan.j2").write_text("The applicant ({{ contact }}) asks for a loan. Approve or deny? "
                                      "Answer with one word: approve or deny.")
    assert run("bias", "llm", "--data", "cases.csv", "--prompt-template", "loan.j2", "--choices", "approve,deny",
               "--positive", "approve", "--sensitive", "sex", "--endpoint", url, "--model-artifact", str(gguf),
               "-o", "bias.json").exit_code in (0, 1)
    # explain: a prompt with personal data, attributed word by word
    assert run("explain", "text", "--prompt", f"Applicant {email} with card {card} asks for a loan. Approve or "
               "deny? Answer approve or deny.", "--choices", "approve,deny", "--positive", "approve",
               "--endpoint", url, "--max-evals", "30", "--fidelity", "0", "--noise-probes", "0").exit_code == 0
    # lineage: a dataset with a column of e-mail addresses and one of card numbers as integers
    (tmp_path / "people.csv").write_text("id,email,card\n" + "".join(
        f"{i},{email if i % 2 else 'x' + str(i) + '@example.net'},5500000000000004\n" for i in range(30)))
    assert run("lineage", "dataset", "add", "people.csv", "--role", "eval", "--contains-pii", "yes").exit_code == 0
    # the gate, a checkpoint, and the exports an auditor takes away
    run("check", "--exit-zero")
    assert run("audit", "checkpoint").exit_code == 0
    assert run("audit", "export", "-o", "audit.jsonl", "--with-content").exit_code == 0
    assert run("audit", "export", "--format", "parquet", "-o", "audit.parquet", "--with-content").exit_code == 0
    assert run("lineage", "export", "-o", "lineage.ndjson").exit_code == 0
    assert (tmp_path / ".govkit" / "mlflow.db").exists() and any((tmp_path / ".govkit" / "mlartifacts").rglob("*"))
    assert leaks(tmp_path) == {}
    # bias.json is the user's own output file, written where they asked; it holds digests only
    assert email.encode() not in (tmp_path / "bias.json").read_bytes()
