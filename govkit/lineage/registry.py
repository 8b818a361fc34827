"""Datasets, model artifacts and deployments, and how they link: all kept in the audit chain.

Every lineage action appends one `lineage` event whose `details` hold the whole entity (or edge),
so the lineage graph is a replay of the chain: nothing a verifier cannot check, and nothing to
keep in sync. Entities are named `<kind>/<name>@v<N>`; the version goes up when a file under the
same name changes, and the new version links to the old one. Re-adding unchanged bytes is a no-op.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit import AuditLog, Redactor
from ..config import Settings
from ..digests import sha256_file
from ..errors import InputError
from ..evidence import EvidenceRun, evidence_run, safe_path
from ..inference.fingerprint import fingerprint_artifact
from ..tracking import Tracker
from .profile import profile_frame
from .tables import ReadOptions, detect_format, read_table

__all__ = ["DATASET_ROLES", "RELATIONS", "Lineage", "LineageChange", "LineageGraph"]

DATASET_ROLES = ("train", "fine-tune", "eval", "reference", "prompt")
MODEL_FORMATS = {".gguf": "gguf", ".onnx": "onnx", ".safetensors": "safetensors"}
# relation -> (source kind, target kind); datasets feed models, models feed deployments
RELATIONS = {
    "trained-on": ("dataset", "model"), "fine-tuned-on": ("dataset", "model"),
    "evaluated-on": ("dataset", "model"), "reference-for": ("dataset", "model"),
    "prompts-for": ("dataset", "model"), "deployed-as": ("model", "deployment"),
    "derived-from": (None, None),
}
ROLE_RELATION = {"train": "trained-on", "fine-tune": "fine-tuned-on", "eval": "evaluated-on",
                 "reference": "reference-for", "prompt": "prompts-for"}
_NAME = re.compile(r"^[^\s@/][^@/]*$")


@dataclass
class LineageGraph:
    """The replayed state: entities by id (in the order added) and edges (source, target, relation)."""

    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, str] = field(default_factory=dict)  # entity or edge key -> record_id

    def versions(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [e for e in self.entities.values() if e["kind"] == kind and e["name"] == name]

    def resolve(self, ref: str, kind: str | None = None) -> dict[str, Any]:
        """An entity by id, `kind/name` or bare name (latest version), or sha256 (prefix of 8+)."""
        if ref in self.entities:
            found = [self.entities[ref]]
        else:
            digest = ref.removeprefix("sha256:").lower()
            if re.fullmatch(r"[0-9a-f]{8,64}", digest):
                found = [e for e in self.entities.values() if e.get("sha256", "").removeprefix("sha256:").startswith(digest)]
            else:
                want_kind, _, name = ref.rpartition("/") if "/" in ref else (None, "", ref)
                found = [e for e in self.entities.values() if e["name"] == name and want_kind in (None, e["kind"])]
                latest: dict[tuple[str, str], dict[str, Any]] = {}
                for entity in found:
                    latest[(entity["kind"], entity["name"])] = entity
                found = list(latest.values())
        if kind:
            found = [e for e in found if e["kind"] == kind]
        if not found:
            raise InputError(f"no {kind or 'lineage entity'} '{ref}'; see 'govkit lineage show'")
        if len({e["id"] for e in found}) > 1:
            raise InputError(f"'{ref}' is ambiguous: {', '.join(sorted(e['id'] for e in found))}")
        return found[0]

    def deployment(self, name: str) -> dict[str, Any]:
        return self.entities.get(f"deployment/{name}") or {"id": f"deployment/{name}", "kind": "deployment",
                                                           "name": name}


@dataclass(frozen=True)
class LineageChange:
    """What a lineage action did: the entity (or edge) as recorded, and whether it is new (an
    unchanged file or an existing link records nothing). Unpacks as (entity, created)."""

    entity: dict[str, Any]
    created: bool

    def __iter__(self) -> Iterator[Any]:
        return iter((self.entity, self.created))

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, **self.entity}


class Lineage:
    """Lineage over one audit log, mirrored into MLflow by `tracker`."""

    def __init__(self, log: AuditLog, *, settings: Settings | None = None, tracker: Tracker | None = None):
        self.log, self.settings = log, settings
        self.tracker = tracker or Tracker.from_settings(settings, log.path)
        self.model_id = settings.model.id if settings else ""

    def graph(self) -> LineageGraph:
        graph = LineageGraph()
        for record in self.log.query(event_type="lineage"):
            details = record.details or {}
            entity, edge = details.get("entity"), details.get("edge")
            if entity:
                graph.entities[entity["id"]] = entity
                graph.records[entity["id"]] = record.record_id
                graph.edges.extend(_implied_edges(entity))
            if edge:
                graph.edges.append(edge)
                graph.records[_edge_key(edge)] = record.record_id
        return graph

    # -- datasets ---------------------------------------------------------------------------
    def add_dataset(self, path: str | Path, *, role: str, name: str | None = None,
                    source: str | None = None, license: str | None = None, contains_pii: str = "unknown",
                    synthetic: bool = False, parents: Sequence[tuple[str, str | None]] = (),
                    read: ReadOptions | None = None) -> LineageChange:
        """Fingerprint, profile and record a dataset file; returns (entity, created)."""
        path = Path(path)
        if role not in DATASET_ROLES:
            raise InputError(f"expected one of {', '.join(DATASET_ROLES)}, got '{role}'", parameter="role")
        if contains_pii not in ("yes", "no", "unknown"):
            raise InputError(f"expected yes, no or unknown, got '{contains_pii}'", parameter="contains_pii")
        patterns = self.settings.policy.patterns if self.settings else ()
        name = _check_name(name or path.name, patterns)
        safe_path(path, parameter="path", patterns=patterns)
        graph = self.graph()
        parent_refs = [(graph.resolve(ref, "dataset")["id"], transform) for ref, transform in parents]
        read = read or ReadOptions(format=detect_format(path))
        digest, size = sha256_file(path)
        previous = graph.versions("dataset", name)
        if previous and previous[-1]["sha256"] == digest:
            return LineageChange(previous[-1], False)
        frame = read_table(path, read)
        if sha256_file(path)[0] != digest:
            raise InputError(f"{path}: the file changed while it was being read; try again")
        redactor = Redactor(self.settings.policy.patterns if self.settings else ())
        profile = profile_frame(frame, redactor=redactor, declared_pii=contains_pii)
        version = len(previous) + 1
        entity: dict[str, Any] = {
            "id": f"dataset/{name}@v{version}", "kind": "dataset", "name": name, "version": version,
            "sha256": digest, "bytes": size, "path": str(path.resolve()), "format": read.format,
            "role": role, "source": source, "license": license, "contains_pii": contains_pii,
            "synthetic": synthetic, "read_options": read.to_dict(), **profile.summary(),
            "profile": profile.column_profiles, "findings": profile.findings, "schema": profile.schema,
            "parents": [{"id": ref, "transform": transform} for ref, transform in parent_refs],
            "previous_version": previous[-1]["id"] if previous else None,
            "schema_changes": _schema_changes(previous[-1], profile.column_profiles) if previous else [],
        }
        entity = _clean(entity)
        with evidence_run(self.log, self.tracker, f"lineage: dataset {entity['id']}",
                          _tags("dataset_add", entity)) as evidence:
            run = evidence.run
            run.log_dataset(name=entity["id"], source=entity["path"], digest=digest, context=role,
                            frame=frame, profile=profile.summary())
            run.log_params({"role": role, "format": read.format, "sha256": digest, "source": source,
                            "license": license, "contains_pii": contains_pii, "synthetic": synthetic})
            run.log_metrics({**profile.summary(), "findings": len(profile.findings)})
            run.log_dict({"columns": profile.column_profiles, "findings": profile.findings}, "profile.json")
            run.log_dict(profile.schema, "pandera_schema.json")
            self._append("dataset_add", evidence, entity=entity)
        return LineageChange(entity, True)

    def draw_sample(self, source: str, out: str | Path, *, rows: tuple[int, int] | None = None, n: int | None = None,
                    seed: int = 0, name: str | None = None) -> LineageChange:
        """Draw a slice (`rows`, first and last data row, 1-based) or a random sample (`n` rows,
        `seed`) of a registered dataset, write it to `out` as CSV, and register it as a dataset
        derived from the source: the same role, source, licence and personal-data declaration,
        with how it was drawn as the transform. A check that asks whether a dataset was examined
        follows the derivation, so evidence on the sample counts for its source, and says so."""
        from ..outputs import write_output

        if (rows is None) == (n is None):
            raise InputError("give either rows (a slice) or n (a random sample)", parameter="rows")
        parent = self.graph().resolve(source, "dataset")
        path = Path(parent["path"])
        if not path.is_file() or sha256_file(path)[0] != parent["sha256"]:
            raise InputError(f"the file is not the one registered as {parent['id']} (missing, or its sha256 "
                             "differs): register the file as it is now first", file=path)
        options = parent.get("read_options") or {}
        frame = read_table(path, ReadOptions(format=options.get("format", "csv"), delimiter=options.get("delimiter", ","),
                                             columns=tuple(options.get("columns") or ()),
                                             na_values=tuple(options.get("na_values") or ())))
        total = len(frame)
        if rows is not None:
            first, last = rows
            if not 1 <= first <= last <= total:
                raise InputError(f"expected rows within 1 to {total:,} (first <= last), got {first} to {last}",
                                 parameter="rows")
            frame, how = frame.iloc[first - 1:last], f"rows {first} to {last} of {total:,} (a slice drawn by govkit)"
        else:
            assert n is not None
            if not 1 <= n <= total:
                raise InputError(f"expected 1 to {total:,} rows, got {n}", parameter="n")
            frame = frame.sample(n, random_state=seed).sort_index()
            how = f"a random sample of {n:,} of {total:,} rows (drawn by govkit: pandas, seed {seed})"
        out = Path(out)
        write_output(out, frame.to_csv(index=False), parameter="output")
        return self.add_dataset(out, role=parent.get("role") or "eval", name=name, source=parent.get("source"),
                                license=parent.get("license"), contains_pii=parent.get("contains_pii") or "unknown",
                                synthetic=bool(parent.get("synthetic")), parents=[(parent["id"], how)])

    # -- models -----------------------------------------------------------------------------
    def add_model(self, path: str | Path, *, name: str | None = None, base_model: str | None = None,
                  adapter: str | Path | None = None) -> list[LineageChange]:
        """Fingerprint a model artifact (and its adapter); returns the change for each."""
        graph = self.graph()
        base = _registered_model(graph, base_model) if base_model else None
        if adapter is not None:  # a command that fails records nothing: check the adapter before the base goes in
            self._checked_identity(Path(adapter))
        model, created = self._add_artifact(graph, Path(path), name=name, base=base,
                                            base_text=None if base else base_model)
        results = [LineageChange(model, created)]
        if adapter is not None:
            graph = self.graph()
            results.append(self._add_artifact(graph, Path(adapter), name=None, base=model, base_text=None,
                                              adapter_of=model["id"]))
        return results

    def _checked_identity(self, path: Path) -> Any:
        """A model file's identity, or InputError naming what is wrong with the file."""
        fmt = MODEL_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise InputError(f"{path}: unsupported model file '{path.suffix or '(none)'}'; "
                             f"expected {', '.join(MODEL_FORMATS)}")
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty")
        identity = fingerprint_artifact(path, cache_file=self.log.path.parent / "artifacts.json")
        if identity.format != fmt:
            raise InputError(f"{path}: the name says {fmt}, but the file is not a {fmt} file")
        return identity

    def _add_artifact(self, graph: LineageGraph, path: Path, *, name: str | None, base: dict[str, Any] | None,
                      base_text: str | None, adapter_of: str | None = None) -> LineageChange:
        identity = self._checked_identity(path)
        patterns = self.settings.policy.patterns if self.settings else ()
        name = _check_name(name or path.name, patterns)
        safe_path(path, parameter="path", patterns=patterns)
        previous = graph.versions("model", name)
        if previous and previous[-1]["sha256"] == identity.sha256:
            return LineageChange(previous[-1], False)
        details = identity.details or {}
        declared = [b.get("name") or b.get("repo_url") for b in details.get("base_models", [])]
        version = len(previous) + 1
        entity = _clean({
            "id": f"model/{name}@v{version}", "kind": "model", "name": name, "version": version,
            "sha256": identity.sha256, "bytes": identity.bytes, "path": identity.path, "format": identity.format,
            "type": "adapter" if adapter_of or details.get("type") == "adapter" else "model",
            "metadata": {k: v for k, v in {
                "name": identity.name, "architecture": identity.architecture,
                "parameter_count": identity.parameter_count, "quantization": identity.quantization,
                "context_length": identity.context_length, "chat_template_sha256": identity.chat_template_sha256,
                "license": identity.license, **details}.items() if v is not None},
            "base_model": base["id"] if base else None, "base_model_ref": base_text,
            "declared_base_models": [d for d in declared if d],
            "adapter_of": adapter_of,
            "previous_version": previous[-1]["id"] if previous else None,
            "inventory_model_id": self.model_id or None,
        })
        with evidence_run(self.log, self.tracker, f"lineage: model {entity['id']}",
                          _tags("model_add", entity)) as evidence:
            run = evidence.run
            run.log_params({k: v for k, v in entity["metadata"].items() if not isinstance(v, (dict, list))})
            run.log_params({"sha256": identity.sha256, "format": identity.format, "type": entity["type"],
                            "base_model": entity.get("base_model") or base_text})
            run.log_metrics({"bytes": identity.bytes, "parameter_count": identity.parameter_count})
            run.log_dict(entity, "model_artifact.json")
            self._append("model_add", evidence, entity=entity, artifact=identity)
        return LineageChange(entity, True)

    # -- edges ------------------------------------------------------------------------------
    def link(self, source: str, target: str, relation: str | None = None) -> LineageChange:
        """Link dataset -> model or model -> deployment; returns (edge, created)."""
        graph = self.graph()
        src = graph.resolve(source)
        if target == "deployment" or target.startswith("deployment/"):
            dst = graph.deployment(target.partition("/")[2] or self.model_id or "default")
        else:
            dst = graph.resolve(target)
        if relation is None:
            relation = (ROLE_RELATION.get(src.get("role", ""), "evaluated-on") if src["kind"] == "dataset"
                        else "deployed-as" if dst["kind"] == "deployment" else "derived-from")
        expected = RELATIONS.get(relation)
        if expected is None:
            raise InputError(f"expected one of {', '.join(RELATIONS)}, got '{relation}'", parameter="relation")
        if expected[0] and (src["kind"], dst["kind"]) != expected:
            raise InputError(f"'{relation}' links a {expected[0]} to a {expected[1]}; "
                             f"got {src['kind']} {src['id']} -> {dst['kind']} {dst['id']}")
        if src["id"] == dst["id"]:
            raise InputError(f"cannot link {src['id']} to itself")
        edge = {"source": src["id"], "target": dst["id"], "relation": relation}
        if any(_edge_key(e) == _edge_key(edge) for e in graph.edges):
            return LineageChange(edge, False)
        with evidence_run(self.log, self.tracker, f"lineage: {src['id']} {relation} {dst['id']}",
                          _tags("link", edge)) as evidence:
            run = evidence.run
            for entity in (src, dst):
                if entity["kind"] == "dataset":
                    run.log_dataset(name=entity["id"], source=entity["path"], digest=entity["sha256"],
                                    context=entity.get("role", "eval"),
                                    profile={k: entity.get(k) for k in ("rows", "columns", "missing_cells",
                                                                        "duplicate_rows")})
            run.log_params(edge)
            self._append("link", evidence, edge=edge, artifact_sha256=dst.get("sha256") if dst["kind"] == "model" else None)
        return LineageChange(edge, True)

    def _append(self, action: str, evidence: EvidenceRun, *, entity: dict[str, Any] | None = None,
                edge: dict[str, Any] | None = None, artifact: Any = None, artifact_sha256: str | None = None) -> None:
        fields: dict[str, Any] = {"model_id": self.model_id or None, "artifact_sha256": artifact_sha256,
                                  "purpose": "lineage"}
        if artifact is not None:
            fields.update(artifact.record_fields())
        details: dict[str, Any] = {"action": action}
        if entity is not None:
            details["entity"] = entity
        if edge is not None:
            details["edge"] = edge
        evidence.append("lineage", details=details, **fields)


def _implied_edges(entity: dict[str, Any]) -> list[dict[str, Any]]:
    edges = [{"source": p["id"], "target": entity["id"], "relation": "derived-from",
              "transform": p.get("transform")} for p in entity.get("parents", [])]
    if entity.get("previous_version"):
        edges.append({"source": entity["previous_version"], "target": entity["id"], "relation": "new-version"})
    if entity.get("base_model"):
        edges.append({"source": entity["base_model"], "target": entity["id"],
                      "relation": "adapter-for" if entity.get("adapter_of") else "derived-from"})
    return edges


def _edge_key(edge: dict[str, Any]) -> str:
    return f"{edge['source']}|{edge['relation']}|{edge['target']}"


def _tags(action: str, item: dict[str, Any]) -> dict[str, str]:
    return {"govkit.event": "lineage", "govkit.action": action,
            "govkit.entity": item.get("id") or _edge_key(item)}


def _registered_model(graph: LineageGraph, ref: str) -> dict[str, Any] | None:
    """The registered model `ref` names, or None when it is free text (e.g. a Hugging Face repo)."""
    try:
        return graph.resolve(ref, "model")
    except InputError as exc:
        if "ambiguous" in str(exc):
            raise
        return None


def _check_name(name: str, patterns: Any = ()) -> str:
    from ..evidence import safe_name

    safe_name(name, parameter="name", patterns=patterns)  # first: the message below repeats the name
    if not _NAME.match(name):
        raise InputError(f"'{name}' may not contain '@' or '/' or start with a space", parameter="name")
    return name


def _schema_changes(previous: dict[str, Any], columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    before = {c["name"]: c["dtype"] for c in previous.get("profile", [])}
    after = {c["name"]: c["dtype"] for c in columns}
    changes = [{"column": n, "change": "added", "dtype": t} for n, t in after.items() if n not in before]
    changes += [{"column": n, "change": "removed", "dtype": t} for n, t in before.items() if n not in after]
    changes += [{"column": n, "change": "dtype", "from": before[n], "to": t}
                for n, t in after.items() if n in before and before[n] != t]
    return changes


def _clean(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity without unset top-level keys, JSON-safe for the chain."""
    return {k: _plain(v) for k, v in entity.items() if v is not None}


def _plain(value: Any) -> Any:
    """No NaN, only plain Python scalars (numpy's are not JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _plain(value.item())
    return value
