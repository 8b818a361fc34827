"""Data checks (DAT): lineage, provenance, quality, synthetic data, bias examination of the data."""

from __future__ import annotations

from pathlib import Path

from govkit.checks import Context, NoEvidence, Result, Skip, check


def _datasets(ctx: Context):
    return [e for e in ctx.lineage.entities.values() if e["kind"] == "dataset"] if ctx.lineage else []


def _deployed_models(ctx: Context):
    """Registered models linked to a deployment, and those that answered live traffic."""
    graph = ctx.lineage
    if graph is None:
        return []
    linked = {e["source"] for e in graph.edges if e["target"].startswith("deployment/")}
    return [e for e in graph.entities.values()
            if e["kind"] == "model" and (e["id"] in linked or e["sha256"] in ctx.deployed_artifacts)]


@check(id="DAT-001", title="Data lineage recorded for the deployed model", severity="blocking",
       references={"OSFI E-23": "P3.2", "EU AI Act": "Art. 10(2)(b)", "ISO/IEC 42001": "A.7.5"},
       crosswalk="data_lineage_recorded")
def data_lineage_recorded(ctx: Context):
    """What it checks: every deployed model has at least one dataset linked to it, and every dataset
    records its source and licence.
    Why it matters: E-23 asks for documented lineage and provenance of the data behind a model.
    How to fix: govkit lineage dataset add FILE --source ... --license ..., then govkit lineage link."""
    models = _deployed_models(ctx)
    if not models:
        raise NoEvidence("no deployed model in the lineage: govkit lineage link MODEL deployment")
    fed = {e["target"] for e in ctx.graph.edges if e["source"].startswith("dataset/")}
    bare = [m["id"] for m in models if m["id"] not in fed]
    missing = {d["id"]: [f"{name} (--{key})" for key, name in (("source", "source"), ("license", "licence"))
                         if not d.get(key)] for d in _datasets(ctx)}
    problems = [f"no dataset linked to {m}" for m in bare] + [
        f"{d}: no {' and no '.join(names)} recorded" for d, names in missing.items() if names]
    return Result(not problems, "; ".join(problems) if problems else f"{len(models)} model(s) with lineage",
                  {"models": [m["id"] for m in models], "problems": problems})


@check(id="DAT-002", title="Data-quality findings reviewed", severity="warning",
       references={"OSFI E-23": "P3.2", "ISO/IEC 42001": "A.7.4", "EU AI Act": "Art. 10(3)"},
       crosswalk="data_quality_checks")
def data_quality_checks(ctx: Context):
    """What it checks: the latest version of each dataset has no warning-level quality finding (missing
    values over 5%, duplicate rows, constant columns, personal data).
    Why it matters: E-23 asks for regular checks for outliers, missing values and consistency.
    How to fix: clean the data (or document why the finding is acceptable) and add the new version."""
    latest = {}
    for dataset in _datasets(ctx):
        latest[dataset["name"]] = dataset
    if not latest:
        raise NoEvidence("no dataset registered: govkit lineage dataset add FILE")
    flagged = {d["id"]: [f"{f['check']}{':' + f['column'] if 'column' in f else ''}" for f in d.get("findings", [])
                         if f["severity"] == "warning"] for d in latest.values()}
    flagged = {k: v for k, v in flagged.items() if v}
    return Result(not flagged, "; ".join(f"{k}: {', '.join(v)}" for k, v in flagged.items()) if flagged else
                  f"{len(latest)} dataset(s) without warnings", {"findings": flagged})


@check(id="DAT-003", title="Synthetic data documented", severity="warning",
       references={"OSFI E-23": "P3.2"}, crosswalk="synthetic_data_documented")
def synthetic_data_documented(ctx: Context):
    """What it checks: every dataset marked synthetic states its source (how it was generated) or derives
    from a parent with a transform.
    Why it matters: E-23 asks that synthetic and proxy data be documented.
    How to fix: re-add the dataset with --source describing the generator, or --parent and --transform."""
    synthetic = [d for d in _datasets(ctx) if d.get("synthetic")]
    if not synthetic:
        raise Skip("no synthetic dataset")
    bare = [d["id"] for d in synthetic if not d.get("source") and not any(p.get("transform") for p in d.get("parents", []))]
    return Result(not bare, f"undocumented: {', '.join(bare)}" if bare else f"{len(synthetic)} documented",
                  {"undocumented": bare})


@check(id="DAT-004", title="Evaluation data examined for bias", severity="warning",
       references={"EU AI Act": "Art. 10(2)(f)-(g), 10(6)", "OSFI E-23": "P3.2"}, crosswalk="dataset_bias_examination")
def dataset_bias_examination(ctx: Context):
    """What it checks: each evaluation dataset in the lineage was the input of a bias run (same
    sha256), itself or through a dataset registered as derived from it (a sample or slice drawn
    with govkit lineage dataset sample); the message names the sample and how it was drawn.
    Why it matters: the AI Act asks for an examination of possible biases in the data sets.
    How to fix: govkit bias tabular (or llm) --data the evaluation file, or a sample of it drawn with
    govkit lineage dataset sample."""
    evaluation = [d for d in _datasets(ctx) if d.get("role") == "eval"]
    if not evaluation:
        raise NoEvidence("no evaluation dataset registered: govkit lineage dataset add FILE --role eval")
    examined = {(r.details.get("data") or {}).get("sha256") for r in ctx.records("bias_run")}
    children: dict[str, list[dict]] = {}
    for entity in _datasets(ctx):
        for parent in entity.get("parents", []):
            children.setdefault(parent["id"], []).append(entity)
    missing, items = [], []
    for dataset in evaluation:
        if dataset["sha256"] in examined:
            items.append(f"{dataset['id']}: examined itself")
            continue
        through = [d for d in _descendants(dataset["id"], children) if d["sha256"] in examined]
        if through:
            items.append(f"{dataset['id']}: examined through {', '.join(_drawn(d, dataset['id']) for d in through)}")
        else:
            missing.append(dataset["id"])
            items.append(f"{dataset['id']}: never examined")
    return Result(not missing, f"never examined: {', '.join(missing)}" if missing else "; ".join(items),
                  {"missing": missing, "items": items})


def _descendants(dataset_id: str, children: dict[str, list[dict]]) -> list[dict]:
    found, pending, seen = [], list(children.get(dataset_id, [])), {dataset_id}
    while pending:
        entity = pending.pop(0)
        if entity["id"] in seen:
            continue
        seen.add(entity["id"])
        found.append(entity)
        pending.extend(children.get(entity["id"], []))
    return found


def _drawn(entity: dict, source_id: str) -> str:
    how = next((p.get("transform") for p in entity.get("parents", []) if p["id"] == source_id), None)
    return f"{entity['id']} ({how})" if how else f"{entity['id']} (derived)"


@check(id="DAT-005", title="Personal data in datasets declared", severity="warning",
       references={"GDPR": "Art. 5(1)(c)", "OSFI E-23": "P3.2 (compliant data)"})
def pii_declared(ctx: Context):
    """What it checks: no dataset declared free of personal data, or whose declaration is unknown, has a
    column the profile flags as personal data.
    Why it matters: a wrong or missing declaration hides a privacy risk from the reviewers.
    How to fix: remove or pseudonymise the column, or declare it (--contains-pii yes) and handle it so."""
    if not _datasets(ctx):
        raise NoEvidence("no dataset registered: govkit lineage dataset add FILE")
    wrong = [f"{d['id']}:{f['column']} (declared {d.get('contains_pii') or 'unknown'})" for d in _datasets(ctx)
             if d.get("contains_pii") != "yes" for f in d.get("findings", []) if f["check"] == "pii_column"]
    return Result(not wrong, f"personal data in: {', '.join(wrong)}" if wrong else "declarations consistent",
                  {"columns": wrong})


@check(id="DAT-006", title="Deployed model file fingerprinted", severity="blocking",
       references={"OSFI E-23": "P2.1, P3.5", "ISO/IEC 42001": "A.7.5"})
def model_lineage_recorded(ctx: Context):
    """What it checks: a model is registered in the lineage and linked to this device's deployment.
    Why it matters: the inventory must point at the exact artifact in production.
    How to fix: govkit lineage model add FILE, then govkit lineage link FILE deployment."""
    graph = ctx.lineage
    linked = [e["source"] for e in (graph.edges if graph else []) if e["target"].startswith("deployment/")]
    return Result(bool(linked), f"deployed: {', '.join(linked)}" if linked else "no model linked to a deployment",
                  {"deployed": linked})


@check(id="DAT-007", title="Registered dataset files unchanged", severity="warning",
       references={"OSFI E-23": "P3.2 (traceable)", "EU AI Act": "Art. 10(2)(b)"})
def dataset_files_unchanged(ctx: Context):
    """What it checks: each dataset file still at its registered path has the registered sha256.
    Why it matters: a file edited after registration breaks the lineage silently.
    How to fix: govkit lineage dataset add the file again: it becomes a new version linked to the old."""
    from govkit.digests import sha256_file

    latest = {}
    for dataset in _datasets(ctx):
        latest[dataset["path"]] = dataset
    present = [d for path, d in latest.items() if Path(path).is_file()]
    if not present:
        raise NoEvidence("no registered dataset file is present on this machine to check again")
    changed = [d["id"] for d in present if sha256_file(Path(d["path"]))[0] != d["sha256"]]
    return Result(not changed, f"changed since registration: {', '.join(changed)}" if changed else
                  f"{len(present)} file(s) unchanged", {"changed": changed})
