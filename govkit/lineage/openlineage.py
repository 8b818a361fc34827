"""Lineage as OpenLineage RunEvents, built with `openlineage-python`.

One COMPLETE RunEvent per lineage record, in chain order:
  dataset added      job `dataset:<name>`   inputs: its parent datasets      outputs: the dataset
  model added        job `model:<name>`     inputs: its base model           outputs: the artifact
  dataset -> model   job `<relation>:<model>` inputs: the dataset            outputs: the model
  model -> deploy    job `deploy:<name>`    inputs: the model                outputs: the deployment
The run id is the audit record's ULID read as a UUIDv7 (both are 48-bit milliseconds + random),
so every event points back at the chained record it came from. Datasets carry the schema,
dataSource, version (sha256) and dataQualityMetrics facets.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from .._lazy import require
from .registry import LineageGraph

__all__ = ["PRODUCER", "run_events", "to_json_lines", "ulid_to_uuid"]

PRODUCER = "https://pypi.org/project/govkit/"
_CROCKFORD = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}


def ulid_to_uuid(ulid: str) -> str:
    value = 0
    for char in ulid.upper():
        value = value << 5 | _CROCKFORD[char]
    value &= ~(0xF << 76)
    value |= 0x7 << 76  # version 7
    value &= ~(0x3 << 62)
    value |= 0x2 << 62  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def run_events(records: list[Any], graph: LineageGraph, *, namespace: str) -> list[Any]:
    """RunEvents for the lineage records (AuditRecords of event_type 'lineage')."""
    ev = require("openlineage.client.event_v2", "lineage")
    facets = require("openlineage.client.facet_v2", "lineage")
    events = []
    for record in records:
        details = record.details or {}
        inputs: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        if "entity" in details:
            entity = details["entity"]
            job = f"{entity['kind']}:{entity['name']}"
            outputs.append(entity)
            inputs += [graph.entities[p["id"]] for p in entity.get("parents", []) if p["id"] in graph.entities]
            if entity.get("base_model") in graph.entities:
                inputs.append(graph.entities[entity["base_model"]])
        else:
            edge = details["edge"]
            source = graph.entities.get(edge["source"]) or graph.deployment(edge["source"].partition("/")[2])
            target = graph.entities.get(edge["target"]) or graph.deployment(edge["target"].partition("/")[2])
            verb = "deploy" if target["kind"] == "deployment" else edge["relation"]
            job = f"{verb}:{target['name']}"
            inputs.append(source)
            outputs.append(target)
        producer = PRODUCER
        events.append(ev.RunEvent(
            eventType=ev.RunState.COMPLETE,
            eventTime=record.ts_start,
            producer=producer,
            run=ev.Run(runId=ulid_to_uuid(record.record_id)),
            job=ev.Job(namespace=namespace, name=job, facets={"jobType": facets.job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="GOVKIT", jobType=details.get("action", "").upper(),
                producer=producer)}),
            inputs=[ev.InputDataset(namespace=namespace, name=_dataset_name(e), facets=_facets(facets, e, producer),
                                    inputFacets=_input_facets(facets, e, producer)) for e in inputs],
            outputs=[ev.OutputDataset(namespace=namespace, name=_dataset_name(e),
                                      facets={**_facets(facets, e, producer), **_quality(
                                          facets.data_quality_metrics_dataset, e, producer,
                                          "DataQualityMetricsDatasetFacet")}) for e in outputs],
        ))
    return events


def to_json_lines(events: list[Any]) -> str:
    serde = require("openlineage.client.serde", "lineage").Serde
    return "".join(serde.to_json(event) + "\n" for event in events)


def _dataset_name(entity: dict[str, Any]) -> str:
    return f"{entity['kind']}/{entity['name']}"


def _facets(facets: Any, entity: dict[str, Any], producer: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if entity.get("sha256"):
        out["version"] = facets.dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=entity["sha256"], producer=producer)
    if entity.get("path"):
        out["dataSource"] = facets.datasource_dataset.DatasourceDatasetFacet(
            name=entity.get("source") or entity["kind"], uri=Path(entity["path"]).as_uri(), producer=producer)
    if entity.get("profile"):
        fields = facets.schema_dataset.SchemaDatasetFacetFields
        out["schema"] = facets.schema_dataset.SchemaDatasetFacet(
            fields=[fields(name=c["name"], type=c["dtype"], ordinal_position=i)
                    for i, c in enumerate(entity["profile"], 1)], producer=producer)
    if entity["kind"] == "model":
        metadata = entity.get("metadata", {})
        text = ", ".join(f"{k}={metadata[k]}" for k in ("architecture", "parameter_count", "quantization",
                                                       "context_length", "license") if k in metadata)
        out["documentation"] = facets.documentation_dataset.DocumentationDatasetFacet(
            description=f"{entity['format']} model artifact ({text})", producer=producer)
    return out


def _input_facets(facets: Any, entity: dict[str, Any], producer: str) -> dict[str, Any]:
    return _quality(facets.data_quality_metrics_input_dataset, entity, producer,
                    "DataQualityMetricsInputDatasetFacet")


def _quality(module: Any, entity: dict[str, Any], producer: str, facet: str) -> dict[str, Any]:
    if not entity.get("profile"):
        return {}
    metrics = {}
    for column in entity["profile"]:
        numeric = column.get("kind") == "numeric"
        metrics[column["name"]] = module.ColumnMetrics(
            nullCount=column["missing"], distinctCount=column["distinct"], count=float(column["count"]),
            min=float(column["min"]) if numeric and column.get("min") is not None else None,
            max=float(column["max"]) if numeric and column.get("max") is not None else None)
    return {"dataQualityMetrics": getattr(module, facet)(
        columnMetrics=metrics, rowCount=entity.get("rows"), bytes=entity.get("bytes"), producer=producer)}
