"""Which model file is under review: the models the lineage links to the deployment, else the
ones that answered live traffic. One rule, for the checks and for what a signature covers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["reviewed_artifacts"]


def reviewed_artifacts(graph: Any, decisions: Iterable[Any]) -> set[str]:
    """sha256 of each model file under review; `decisions` are the inference records of live traffic."""
    linked: set[str] = set()
    if graph is not None:
        sources = {e["source"] for e in graph.edges if e["target"].startswith("deployment/")}
        linked = {e["sha256"] for e in graph.entities.values() if e["kind"] == "model" and e["id"] in sources}
    return linked or {r.artifact_sha256 for r in decisions if r.artifact_sha256}
