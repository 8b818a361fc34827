"""`govkit lineage ...`: fingerprint datasets and model artifacts, link them, show and export the graph."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..lineage import DATASET_ROLES, FORMATS, RELATIONS, Lineage, LineageGraph, ReadOptions
from ..lineage.tables import detect_format
from ..outputs import write_output
from ._common import COUNT, db_option, echo_json, json_option, open_log, refuse_evidence, settings_for
from ._root import cli


@cli.group()
def lineage() -> None:
    """Data lineage: datasets -> model -> deployment, each step a chained audit event and an MLflow run."""


@lineage.group()
def dataset() -> None:
    """Datasets: sha256, schema, profile and data-quality findings."""


@dataset.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--role", type=click.Choice(DATASET_ROLES), required=True, help="What the data is used for.")
@click.option("--name", help="Name in the lineage (default: the file name); a changed file under the "
                             "same name becomes a new version.")
@click.option("--source", help="Where the data came from (URL, system, vendor).")
@click.option("--license", "license_", help="Licence or terms of use.")
@click.option("--contains-pii", type=click.Choice(["yes", "no", "unknown"]), default="unknown", show_default=True)
@click.option("--synthetic", is_flag=True, help="The data is synthetic or a proxy (E-23 P3.2).")
@click.option("--parent", "parents", multiple=True, help="Dataset it was derived from (id or name); repeatable.")
@click.option("--transform", help="What was done to the parent(s) to make this dataset.")
@click.option("--input-format", "fmt", type=click.Choice(FORMATS), help="The file's format, where its name does not say.")
@click.option("--delimiter", default=",", show_default=True, help="CSV field delimiter.")
@click.option("--columns", help="Comma-separated column names for a CSV without a header row.")
@click.option("--na-values", help="Comma-separated extra missing-value markers, e.g. '?'.")
@db_option
@click.option("--format", "output_format", type=click.Choice(["table", "json", *FORMATS]), default="table",
              show_default=True, help="json: machine-readable output (csv, parquet or jsonl here: the old "
                                      "spelling of --input-format).")
@click.option("--json", "legacy_json", is_flag=True, hidden=True)
@click.pass_context
def dataset_add(ctx: click.Context, path: Path, role: str, name: str | None, source: str | None,
                license_: str | None, contains_pii: str, synthetic: bool, parents: tuple[str, ...],
                transform: str | None, fmt: str | None, delimiter: str, columns: str | None,
                na_values: str | None, db: Path | None, output_format: str, legacy_json: bool) -> None:
    """Fingerprint a CSV, Parquet or JSONL file and record its schema, profile and quality findings.

    Example: govkit lineage dataset add eval.csv --role eval --source "core banking, 2026-10"
    """
    if output_format in FORMATS:
        fmt = fmt or output_format
    as_json = legacy_json or output_format == "json"
    if transform and not parents:
        raise click.UsageError("--transform describes a --parent; give the parent too")
    read = ReadOptions(format=detect_format(path, fmt), delimiter=delimiter.replace("\\t", "\t"),
                       columns=_split(columns), na_values=_split(na_values))
    with open_log(ctx, db) as log:
        change = _lineage(ctx, log).add_dataset(
            path, role=role, name=name, source=source, license=license_, contains_pii=contains_pii,
            synthetic=synthetic, parents=[(p, transform) for p in parents], read=read)
    if as_json:
        echo_json(change.to_dict())
        return
    entity, created = change
    if not created:
        click.echo(f"{entity['id']}: unchanged ({entity['sha256']}); nothing recorded")
        return
    click.echo(f"{entity['id']}  {entity['sha256']}")
    click.echo(f"  {entity['rows']} rows x {entity['columns']} columns, {entity['missing_cells']} missing "
               f"cells, {entity['duplicate_rows']} duplicate rows")
    for change in entity.get("schema_changes", []):
        click.echo(f"  schema change vs {entity['previous_version']}: {change['column']} {change['change']}")
    for finding in entity["findings"]:
        where = f"{finding['column']}: " if "column" in finding else ""
        click.echo(f"  [{finding['severity']}] {finding['check']}: {where}{finding['message']}")


@dataset.command("sample")
@click.argument("source")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True, help="The CSV file to write.")
@click.option("--rows", help="A slice: the first and last data row, 1-based (e.g. 101-130).")
@click.option("--n", "n", type=COUNT, help="A random sample of N rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --n.")
@click.option("--name", help="Name in the lineage (default: the output file's name).")
@db_option
@json_option
@click.pass_context
def dataset_sample(ctx: click.Context, source: str, out: Path, rows: str | None, n: int | None, seed: int,
                   name: str | None, db: Path | None, as_json: bool) -> None:
    """Draw a slice or a random sample of a registered dataset, and register it as derived from it.

    Evidence on the sample (a bias run) then counts for its source, and the checks say through
    which sample. Example: govkit lineage dataset sample german_credit.csv --rows 101-130 -o sample.csv
    """
    span = None
    if rows is not None:
        found = re.fullmatch(r"\s*(\d{1,12})\s*-\s*(\d{1,12})\s*", rows)
        if not found:
            raise InputError("expected FIRST-LAST, e.g. 101-130", parameter="rows", value=rows)
        span = (int(found[1]), int(found[2]))
    with open_log(ctx, db) as log:
        change = _lineage(ctx, log).draw_sample(source, out, rows=span, n=n, seed=seed, name=name)
    if as_json:
        echo_json(change.to_dict())
        return
    entity, created = change
    parent = entity["parents"][0]
    click.echo(f"{entity['id']}  {entity['sha256']}{'' if created else '  (unchanged; nothing recorded)'}")
    click.echo(f"  derived from {parent['id']}: {parent['transform']}")


@lineage.group()
def model() -> None:
    """Model artifacts: GGUF, ONNX, safetensors; sha256 and the file's own metadata."""


@model.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Name in the lineage (default: the file name).")
@click.option("--base-model", help="What it derives from: a registered model (id, name or sha256) or a "
                                   "free-text reference such as a Hugging Face repo.")
@click.option("--adapter", type=click.Path(path_type=Path), help="A LoRA adapter applied to this model.")
@db_option
@json_option
@click.pass_context
def model_add(ctx: click.Context, path: Path, name: str | None, base_model: str | None,
              adapter: Path | None, db: Path | None, as_json: bool) -> None:
    """Fingerprint a model artifact and record its metadata (architecture, parameters, quantization, ...).

    Example: govkit lineage model add phi-4-mini-q4_k_m.gguf --base-model microsoft/Phi-4-mini-instruct
    """
    with open_log(ctx, db) as log:
        results = _lineage(ctx, log).add_model(path, name=name, base_model=base_model, adapter=adapter)
    if as_json:
        echo_json([change.to_dict() for change in results])
        return
    for entity, created in results:
        meta = entity["metadata"]
        state = "" if created else "  (unchanged; nothing recorded)"
        click.echo(f"{entity['id']}  {entity['sha256']}{state}")
        click.echo("  " + ", ".join(f"{k}={meta[k]}" for k in ("architecture", "parameter_count", "quantization",
                                                            "context_length", "license") if k in meta))
        for key in ("base_model", "base_model_ref", "adapter_of"):
            if entity.get(key):
                click.echo(f"  {key.replace('_', ' ')}: {entity[key]}")


@lineage.command()
@click.argument("source")
@click.argument("target")
@click.option("--relation", type=click.Choice(list(RELATIONS)),
              help="Default: from the dataset's role (train -> trained-on, eval -> evaluated-on, ...), "
                   "or deployed-as for a model -> deployment.")
@db_option
@click.pass_context
def link(ctx: click.Context, source: str, target: str, relation: str | None, db: Path | None) -> None:
    """Link a dataset to a model, or a model to a deployment.

    TARGET 'deployment' means this device's deployment of the inventory model.

    Example: govkit lineage link eval.csv phi-4-mini-q4_k_m.gguf && govkit lineage link phi-4-mini-q4_k_m.gguf deployment
    """
    with open_log(ctx, db) as log:
        edge, created = _lineage(ctx, log).link(source, target, relation)
    click.echo(f"{edge['source']} --{edge['relation']}--> {edge['target']}"
               + ("" if created else "  (already linked; nothing recorded)"))


@lineage.command()
@click.argument("entity_id", required=False)
@db_option
@json_option
@click.pass_context
def show(ctx: click.Context, entity_id: str | None, db: Path | None, as_json: bool) -> None:
    """The lineage tree (datasets -> model -> deployment), or one entity in full.

    Example: govkit lineage show dataset/eval.csv@v2
    """
    with open_log(ctx, db, read_only=True) as log:
        graph = _lineage(ctx, log).graph()
    if entity_id:
        entity = graph.resolve(entity_id)
        if as_json:
            echo_json({**entity, "record_id": graph.records.get(entity["id"])})
        else:
            _show_entity(entity, graph)
        return
    if as_json:
        echo_json({"entities": list(graph.entities.values()), "edges": graph.edges})
        return
    for line in tree_lines(graph):
        click.echo(line)


@lineage.command()
@click.option("--format", "fmt", type=click.Choice(["openlineage", "json"]), default="openlineage", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), callback=refuse_evidence,
              help="File (default: stdout).")
@click.option("--namespace", help="OpenLineage namespace (default: govkit://<device id>).")
@db_option
@click.pass_context
def export(ctx: click.Context, fmt: str, output: Path | None, namespace: str | None, db: Path | None) -> None:
    """Export the lineage: OpenLineage RunEvents (one JSON per line) or the entities and edges as JSON.

    Example: govkit lineage export --format openlineage -o lineage.ndjson
    """
    from ..lineage.openlineage import run_events, to_json_lines

    settings = settings_for(ctx, required=False)
    with open_log(ctx, db, read_only=True) as log:
        graph = _lineage(ctx, log).graph()
        records = list(log.query(event_type="lineage"))
        device = (settings.audit.device_id if settings else "") or "local"
        if fmt == "openlineage":
            text = to_json_lines(run_events(records, graph, namespace=namespace or f"govkit://{device}"))
        else:
            text = json.dumps(export_json(graph), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        click.echo(f"Wrote {output} ({len(records)} lineage records)", err=True)


def export_json(graph: LineageGraph) -> dict[str, Any]:
    entities = [{**e, "record_id": graph.records.get(e["id"])} for e in graph.entities.values()]
    return {"entities": entities, "edges": graph.edges}


def tree_lines(graph: LineageGraph) -> list[str]:
    """deployment <- model <- datasets, with orphans listed after the tree."""
    lines: list[str] = []
    shown: set[str] = set()
    incoming: dict[str, list[dict[str, Any]]] = {}
    for edge in graph.edges:
        incoming.setdefault(edge["target"], []).append(edge)
    deployments = sorted({e["target"] for e in graph.edges if e["target"].startswith("deployment/")})

    def walk(node: str, depth: int, relation: str | None) -> None:
        entity = graph.entities.get(node)
        label = _label(entity) if entity else node
        prefix = "  " * depth + ("└─ " if depth else "")
        lines.append(f"{prefix}{label}" + (f"  [{relation}]" if relation else ""))
        if node in shown:
            return
        shown.add(node)
        for edge in incoming.get(node, []):
            walk(edge["source"], depth + 1, edge["relation"])

    for deployment in deployments:
        walk(deployment, 0, None)
    for kind in ("model", "dataset"):
        roots = [e for e in graph.entities.values() if e["kind"] == kind and e["id"] not in shown
                 and not any(x["source"] == e["id"] for x in graph.edges)]
        for entity in roots:
            walk(entity["id"], 0, None)
    return lines or ["(no lineage recorded yet: govkit lineage dataset add / model add)"]


def _label(entity: dict[str, Any]) -> str:
    if entity["kind"] == "dataset":
        flags = sum(1 for f in entity.get("findings", []) if f["severity"] == "warning")
        return (f"{entity['id']}  {entity['sha256'][:19]}  {entity['role']}  {entity['rows']}x{entity['columns']}"
                + (f"  {flags} warning(s)" if flags else ""))
    meta = entity.get("metadata", {})
    kind = f"{meta.get('architecture', entity['format'])} {meta.get('quantization', '')}"
    return f"{entity['id']}  {entity['sha256'][:19]}  {kind}".rstrip()


def _show_entity(entity: dict[str, Any], graph: LineageGraph) -> None:
    skip = {"profile", "schema", "findings", "metadata"}
    for key, value in entity.items():
        if key not in skip:
            click.echo(f"{key:<18} {json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value}")
    click.echo(f"{'record_id':<18} {graph.records.get(entity['id'])}")
    for key, value in entity.get("metadata", {}).items():
        click.echo(f"  {key:<16} {value}")
    for column in entity.get("profile", []):
        extra = ", ".join(f"{k}={column[k]}" for k in ("min", "max", "min_length", "max_length", "pii") if k in column)
        click.echo(f"  {column['name']:<20} {column['dtype']:<16} missing={column['missing']} "
                   f"distinct={column['distinct']} {extra}".rstrip())
    for finding in entity.get("findings", []):
        where = f"{finding['column']}: " if "column" in finding else ""
        click.echo(f"  [{finding['severity']}] {finding['check']}: {where}{finding['message']}")
    for edge in graph.edges:
        if entity["id"] in (edge["source"], edge["target"]):
            click.echo(f"  {edge['source']} --{edge['relation']}--> {edge['target']}")


def _lineage(ctx: click.Context, log: Any) -> Lineage:
    return Lineage(log, settings=settings_for(ctx, required=False))


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",")) if value else ()
