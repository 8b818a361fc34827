"""govkit is one library with thin commands on top: nothing below govkit/cli/ imports the CLI,
the import graph has no cycle, and every error class is in errors.py's documented tree."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import govkit
import govkit.errors
from govkit.audit.records import AuditRecord

PACKAGE = Path(govkit.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The govkit modules `name` imports, anywhere in it (lazy imports inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    out.add(f"{target}.{alias.name}")
                elif target in modules:
                    out.add(target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in modules)
    out.discard(name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_nothing_below_the_cli_imports_it(graph: dict[str, set[str]]) -> None:
    entry_points = {"govkit.__main__"}  # `python -m govkit` is the CLI
    offenders = sorted(f"{name} imports {target}" for name, targets in graph.items()
                       if not name.startswith("govkit.cli") and name not in entry_points
                       for target in targets if target == "govkit.cli" or target.startswith("govkit.cli."))
    assert offenders == []


def test_the_module_graph_has_no_cycle(graph: dict[str, set[str]]) -> None:
    assert _cycles(graph) == []


def test_the_subpackage_graph_has_no_cycle(graph: dict[str, set[str]]) -> None:
    """govkit.inference, .explain, .fairness, .audit ... as units: no hidden loop through them."""
    def unit(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else name

    units: dict[str, set[str]] = {}
    for name, targets in graph.items():
        units.setdefault(unit(name), set()).update(unit(t) for t in targets if unit(t) != unit(name))
    units.pop("govkit", None)  # the package's own __init__ re-exports the public API of all of them
    for targets in units.values():
        targets.discard("govkit")
    assert _cycles(units) == []


def test_the_test_suite_imports_no_workflow_from_the_cli() -> None:
    tests = Path(__file__).parent
    offenders = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("govkit.cli"):
                names = [a.name for a in node.names]
                if node.module != "govkit.cli" or names != ["cli"]:
                    offenders.append(f"{path.name}: from {node.module} import {', '.join(names)}")
    assert offenders == []


def test_every_error_class_is_in_errors_py_and_in_its_tree() -> None:
    documented = set(re.findall(r"^\s*(?:[│├└─ ]+)?(\w+)\s+\(exit \d\)", govkit.errors.__doc__ or "", re.M))
    defined = {name for name, value in vars(govkit.errors).items()
               if inspect.isclass(value) and issubclass(value, govkit.errors.GovkitError)}
    assert documented == defined
    assert set(govkit.errors.__all__) == defined
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(base, "id", getattr(base, "attr", "")) in defined for base in node.bases):
                elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert elsewhere == []


def test_every_error_class_is_raised_somewhere() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py")) if p.name != "errors.py")
    checks = "\n".join(p.read_text(encoding="utf-8") for p in sorted((PACKAGE.parent / "checks").glob("*.py")))
    unused = [name for name in govkit.errors.__all__ if name != "GovkitError" and not re.search(
        rf"\b{name}\(", sources + checks)]
    assert unused == []


def test_a_library_error_names_the_parameter_and_the_cli_names_the_flag(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from govkit.audit import AuditLog
    from govkit.errors import InputError
    from govkit.inference.decider import Decider

    log = AuditLog(tmp_path / "audit.db", create=True)
    with pytest.raises(InputError) as raised:
        Decider(log, ["approve", "deny"], method="x", endpoint="http://127.0.0.1:9/v1")
    assert raised.value.parameter == "method" and str(raised.value).startswith("method x: ")
    assert "--" not in str(raised.value)
    with pytest.raises(InputError) as raised:
        Decider(log, ["approve", "deny"])
    assert raised.value.parameter == ("endpoint", "model_path") and "--" not in str(raised.value)
    log.close()

    from govkit.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cases.csv").write_text("sex\nf\nm\n")
    (tmp_path / "t.j2").write_text("{{ sex }}")
    result = CliRunner().invoke(cli, ["bias", "llm", "--data", str(tmp_path / "cases.csv"), "--prompt-template",
                                      str(tmp_path / "t.j2"), "--choices", "approve,deny", "--positive", "approve",
                                      "--sensitive", "sex", "--db", str(tmp_path / "audit.db")],
                           env={"GOVKIT_RAISE_ERRORS": ""})
    assert result.exit_code == 2
    assert "--endpoint / --model: give an endpoint URL or a model file" in result.output


def test_a_record_refuses_a_name_that_is_no_field() -> None:
    record = AuditRecord(1, "sha256:" + "1" * 64, "sha256:" + "0" * 64, b'{"event_type":"inference","model_id":"m"}')
    assert record.event_type == "inference" and record.model_id == "m"
    assert record.subject_ref is None  # a field this record does not carry
    with pytest.raises(AttributeError, match="evnt_type"):
        record.evnt_type  # noqa: B018
    assert record.fields == {"event_type": "inference", "model_id": "m"}
    record.fields["model_id"] = "changed"
    assert record.model_id == "m"


def test_every_workflow_returns_a_frozen_result_with_to_dict() -> None:
    import dataclasses

    from govkit.explain.runs import ExplanationRun
    from govkit.fairness.runs import BiasRun
    from govkit.gate import GateResult
    from govkit.inventory import RecordedRating
    from govkit.lineage import LineageChange
    from govkit.oversight import Checkpoint, PurgeResult

    for result in (BiasRun, ExplanationRun, GateResult, RecordedRating, LineageChange, Checkpoint, PurgeResult):
        assert dataclasses.is_dataclass(result) and result.__dataclass_params__.frozen, result
        assert callable(getattr(result, "to_dict", None)), result
