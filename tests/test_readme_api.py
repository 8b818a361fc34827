"""The README's "Python API" examples run as written: every workflow, from Python, against the
real model server, in a project `govkit init` made. Each one's evidence is then on the record."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from govkit.audit import AuditLog

from .conftest import run

README = Path(__file__).resolve().parent.parent / "README.md"


def python_api_examples() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- python-api -->", 1)[1].split("<!-- /python-api -->", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 5  # sample inputs, evidence, oversight, rating and gate, report
    return "\n".join(blocks)


@pytest.mark.slow
def test_the_readme_python_api_examples_run_and_leave_their_evidence(tmp_path: Path, llama) -> None:
    url, _ = llama
    assert run("init", "--yes", "--model-id", "loan-assistant").exit_code == 0
    script = tmp_path / "examples.py"
    script.write_text(python_api_examples(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "GOVKIT_RAISE_ERRORS")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "GOVKIT_ENDPOINT": url}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    with AuditLog.open(tmp_path / ".govkit" / "audit.db") as log:
        kinds = [r.details.get("kind") for r in log.query(event_type="bias_run")]
        assert kinds == ["tabular", "llm", "counterfactual"]
        assert {r.details.get("kind") for r in log.query(event_type="explanation")} == {None, "tabular"}
        assert [r.human_decision for r in log.query(event_type="override")] == ["overridden"]
        assert len(list(log.query(event_type="purge"))) == 1
        assert len(list(log.query(event_type="risk_rating"))) == 1
        assert len(list(log.query(event_type="check_run"))) == 1
        assert [r.details["kind"] for r in log.query(event_type="report")] == ["board"]
        assert len(list(log.query(event_type="lineage"))) == 1
        assert log.verify().ok
    assert 'risk_rating = "' in (tmp_path / "govkit.toml").read_text()
