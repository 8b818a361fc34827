"""The README's user path runs as written: its bash block, in a folder where the demo has written
its inputs, against the real model server the block itself starts. Only the two ports are
changed to free ones (a machine may already serve something on 8080)."""

from __future__ import annotations

import json
import os
import re
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
    steps = ["init", "proxy", "lineage", "bias", "explain", "check", "report", "sync", "audit verify"]
    positions = [re.search(rf"(?m)^govkit {step}\b", script).start() for step in steps]  # type: ignore[union-attr]
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
    lines = done.stdout.splitlines()
    assert any(line.startswith("OK (trusted): ") for line in lines), done.stdout[-2000:]  # audit verify
    assert lines[-1].startswith("OK: reports/board-"), lines[-1]  # report verify
    # what each step left: the proxied call and the explanation of its record, the reports, the sync
    answer = json.loads((folder / "answer.json").read_text())
    assert answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    with AuditLog(folder / ".govkit" / "audit.db", create=False, read_only=True) as log:
        kinds = {r.event_type for r in log}
        assert {"inference", "lineage", "risk_rating", "bias_run", "explanation", "check_run", "report"} <= kinds
        [explanation] = [r for r in log.query(event_type="explanation")]
        decision = log.get(explanation.target_record_id)
        assert decision is not None and decision.subject_ref == "A0042" and decision.quantization == "Q4_1"
        assert f"<title>Explanation of {decision.record_id}</title>" in (folder / "why.html").read_text()
        assert log.verify().ok
    assert list((folder / "reports").glob("board-*.pdf")) and (folder / "MODEL_CARD.md").is_file()
    assert (folder / "central" / "mlflow.db").is_file() and "shipped " in done.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(folder) not in ps and "--port " + script.split("--port ", 1)[1].split()[0] not in ps  # killed
