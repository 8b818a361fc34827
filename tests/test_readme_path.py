"""The README's user path runs as written: its bash block, in a folder where the demo has written
its inputs, against the real model server the block itself starts. Only the two ports are
changed to free ones (a machine may already serve something on 8080)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from govkit.audit import AuditLog

from .conftest import run
from .servers import free_port

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"


def user_path() -> str:
    section = README.read_text(encoding="utf-8").split("<!-- user-path -->", 1)[1].split("<!-- /user-path -->", 1)[0]
    return section.split("```bash\n", 1)[1].rsplit("```", 1)[0]


def test_the_readme_user_path_runs_as_written(tmp_path: Path) -> None:
    script = user_path()
    steps = ["init", "proxy", "lineage", "bias", "explain", "check", "report", "sync", "verify"]
    positions = [script.index(f"govkit {step}") for step in steps]
    assert positions == sorted(positions), "the README's path is not init -> proxy -> ... -> verify"
    assert run("demo", "--dir", str(tmp_path / "govkit-demo"), "--scripted").exit_code == 0  # writes the inputs
    script = script.replace("8080", str(free_port())).replace("8765", str(free_port()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("GOVKIT_CONFIG", None)
    assert shutil.which("govkit", path=env["PATH"]), "the govkit command is not installed"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    folder = tmp_path / "my-model"
    assert "OK" in done.stdout.splitlines()[-2] or "OK" in done.stdout  # audit verify
    # what each step left: the proxied call, the explanation of it, the reports, the sync, no server running
    answer = json.loads((folder / "answer.json").read_text())
    assert answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert (folder / "why.html").read_text().count("<mark") or "attribution" in (folder / "why.html").read_text()
    assert list((folder / "reports").glob("board-*.pdf")) and (folder / "MODEL_CARD.md").is_file()
    assert (folder / "central" / "mlflow.db").is_file()
    with AuditLog(folder / ".govkit" / "audit.db", create=False, read_only=True) as log:
        kinds = {r.event_type for r in log}
        assert {"inference", "lineage", "risk_rating", "bias_run", "explanation", "check_run", "report"} <= kinds
        [explanation] = [r for r in log.query(event_type="explanation")]
        assert explanation.target_record_id and log.get(explanation.target_record_id).subject_ref == "A0042"
        assert log.verify().ok
    assert "Report verified" in done.stdout or "OK" in done.stdout.splitlines()[-1]
