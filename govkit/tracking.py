"""The MLflow mirror: every evidence-producing action is also a run auditors can browse.

The audit log is the record; MLflow is where people look. A run is opened before the audit event
is appended (so the event can name the run) and tagged with the event's record id afterwards, so
each points at the other. The embedded default is a SQLite store beside the audit log
(`.govkit/mlflow.db`, artifacts in `.govkit/mlartifacts/`); `[tracking] tracking_uri` points
elsewhere.
MLflow's own telemetry is switched off: govkit talks to no one the user did not configure.

Every run carries the same tags (CONVENTION), so one search finds a model's, a device's or an
operation's whole trail: `govkit.model_id`, `govkit.artifact_sha256`, `govkit.operation`,
`govkit.principle` (EDGE), `govkit.device_id`, `govkit.store_id`, `govkit.seq_range` and
`govkit.chain_head` (the audit records the run produced) and `govkit.version`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._lazy import require
from .config import Settings
from .errors import TrackingError

# govkit's evidence is runs, not GenAI traces: the tag says so to MLflow, whose UI reads it where its
# GenAI / model-training toggle is off (with the toggle, the URL's workflowType=machine_learning does).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}

__all__ = ["CONVENTION", "EXPERIMENT_TAGS", "PRINCIPLES", "TrackedRun", "Tracker", "TrackingError"]

CONVENTION = ("govkit.model_id", "govkit.artifact_sha256", "govkit.operation", "govkit.principle",
              "govkit.device_id", "govkit.store_id", "govkit.seq_range", "govkit.chain_head", "govkit.version")
# The EDGE principle each kind of governance action is evidence for.
PRINCIPLES = {"explanation": "Explainability", "lineage": "Data", "bias_run": "Ethics", "override": "Ethics",
              "purge": "Ethics", "check_run": "Governance", "risk_rating": "Governance", "report": "Governance",
              "sync": "Governance", "incident": "Governance"}


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow = require("mlflow", "mlflow")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return mlflow


class TrackedRun:
    """One open MLflow run. With tracking disabled every method does nothing and `id` is None."""

    def __init__(self, client: Any = None, run_id: str | None = None):
        self.client, self.id = client, run_id

    def link(self, record: Any, artifact_sha256: str | None = None) -> None:
        """Tag the run with the audit record it produced, so each points at the other."""
        self.set_tags({"govkit.record_id": record.record_id, "govkit.seq": record.seq,
                       "govkit.record_hash": record.record_hash, "govkit.seq_range": f"{record.seq}-{record.seq}",
                       "govkit.chain_head": record.record_hash,
                       "govkit.artifact_sha256": record.fields.get("artifact_sha256") or artifact_sha256})

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            if self.client and value is not None:
                self.client.set_tag(self.id, key, str(value))

    def log_params(self, params: dict[str, Any]) -> None:
        for key, value in params.items():
            if self.client and value is not None:
                self.client.log_param(self.id, key, str(value)[:6000])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if self.client and value is not None:
                self.client.log_metric(self.id, key, float(value))

    def log_dict(self, value: Any, artifact_file: str) -> None:
        if self.client:
            self.client.log_dict(self.id, value, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.client:
            self.client.log_text(self.id, text, artifact_file)

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        """A file of these bytes as the run's artifact `artifact_file`."""
        if self.client:
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / Path(artifact_file).name
                path.write_bytes(data)
                parent = str(Path(artifact_file).parent)
                self.client.log_artifact(self.id, str(path), None if parent == "." else parent)

    def log_dataset(self, *, name: str, source: str, digest: str, context: str,
                    frame: Any = None, profile: dict[str, Any] | None = None) -> None:
        """An MLflow dataset input: from the DataFrame itself, or from what lineage stored about it.

        MLflow caps digests at 36 characters, so the run gets the first 32 hex digits of the
        sha256; the full digest is in the dataset's source and the audit record.
        """
        if not self.client:
            return
        mlflow = _mlflow()
        from mlflow.entities import Dataset, DatasetInput, InputTag

        short = digest.removeprefix("sha256:")[:32]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if frame is not None:
                described = mlflow.data.from_pandas(frame, source=source, name=name, digest=short).to_dict()
            else:
                from mlflow.data.dataset_source_registry import resolve_dataset_source
                from mlflow.data.meta_dataset import MetaDataset

                described = MetaDataset(resolve_dataset_source(source), name=name,  # type: ignore[abstract]
                                        digest=short).to_dict()
        if profile is not None:
            described["profile"] = json.dumps(profile)
        dataset = Dataset(name=described["name"], digest=described["digest"],
                          source_type=described["source_type"], source=described["source"],
                          schema=described.get("schema"), profile=described.get("profile"))
        self.client.log_inputs(self.id, datasets=[DatasetInput(dataset, tags=[
            InputTag("mlflow.data.context", context)])])


class Tracker:
    def __init__(self, *, uri: str, experiment: str, artifact_root: Path | None = None, enabled: bool = True,
                 identity: dict[str, str] | None = None):
        self.uri, self.experiment, self.artifact_root, self.enabled = uri, experiment, artifact_root, enabled
        self.identity = identity or {}  # the convention's model, device and store tags

    @classmethod
    def disabled(cls) -> Tracker:
        """A tracker that mirrors nothing (a reading, or a run the caller keeps out of MLflow)."""
        return cls(uri="", experiment="", enabled=False)

    @classmethod
    def from_settings(cls, settings: Settings | None, db_path: Path) -> Tracker:
        state = Path(db_path).resolve().parent
        tracking = settings.tracking if settings else None
        uri = (tracking.tracking_uri if tracking else "") or f"sqlite:///{state / 'mlflow.db'}"
        experiment = (tracking.experiment if tracking else "") or (settings.model.id if settings else "") or "govkit"
        local = not (tracking and tracking.tracking_uri)
        identity = {"govkit.model_id": settings.model.id, "govkit.device_id": settings.audit.device_id,
                    "govkit.store_id": settings.audit.store_id} if settings else {}
        return cls(uri=uri, experiment=experiment, artifact_root=state / "mlartifacts" if local else None,
                   enabled=tracking.enabled if tracking else True, identity={k: v for k, v in identity.items() if v})

    @contextlib.contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None) -> Iterator[TrackedRun]:
        """An MLflow run that ends FINISHED, or FAILED if the block raises."""
        if not self.enabled:
            yield TrackedRun()
            return
        self.relocate()
        mlflow = _mlflow()
        try:
            client = mlflow.MlflowClient(tracking_uri=self.uri)
            run = client.create_run(self._experiment_id(client), run_name=name, tags=self.tags(tags or {}))
        except mlflow.exceptions.MlflowException as exc:
            raise TrackingError(f"MLflow at {self.uri}: {exc.message}") from None
        tracked = TrackedRun(client, run.info.run_id)
        try:
            yield tracked
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(tracked.id, "FAILED")
            raise
        client.set_terminated(tracked.id, "FINISHED")

    def tags(self, tags: dict[str, str]) -> dict[str, str]:
        """The convention's tags a run opens with: what is known before its record is chained."""
        operation = tags.get("govkit.operation") or tags.get("govkit.event") or ""
        event = tags.get("govkit.event") or operation
        return {"govkit.version": _version(), **self.identity, "govkit.operation": operation,
                "govkit.principle": PRINCIPLES.get(event, "Governance"), **tags}

    def relocate(self) -> None:
        """The embedded store's artifact locations, moved to this project's folder if it moved."""
        if self.artifact_root is not None:
            relocate_local_store(self.artifact_root.parent / "mlflow.db", self.artifact_root)

    def _experiment_id(self, client: Any) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            for key, value in EXPERIMENT_TAGS.items():  # an experiment made before govkit set the tag
                if key not in (found.tags or {}):
                    client.set_experiment_tag(found.experiment_id, key, value)
            return found.experiment_id
        location = self.artifact_root.as_uri() if self.artifact_root else None
        try:
            return client.create_experiment(self.experiment, artifact_location=location, tags=EXPERIMENT_TAGS)
        except Exception:  # another process created it first
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id


def erase_subject_artifacts(log: Any, settings: Settings | None, subject_ref: str) -> list[str]:
    """An erasure request reaches MLflow too: every run linked from a record about this subject (an
    explanation of one of its decisions holds its words) loses its artifacts, and is tagged with
    when. Returns the run ids erased. Idempotent: run it again after a failure."""
    runs = sorted({r.mlflow_run_id for r in log.query(subject_ref=subject_ref) if r.mlflow_run_id})
    tracker = Tracker.from_settings(settings, log.path)
    if not runs or not tracker.enabled:
        return []
    tracker.relocate()
    mlflow = _mlflow()
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = mlflow.MlflowClient(tracking_uri=tracker.uri)
    for run_id in runs:
        try:
            run = client.get_run(run_id)
            repository = get_artifact_repository(run.info.artifact_uri)
            for item in repository.list_artifacts():
                repository.delete_artifacts(item.path)
            client.set_tag(run_id, "govkit.erased", "artifacts erased by an erasure request")
        except mlflow.exceptions.MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")):
                continue  # the run is gone: nothing of it to erase
            raise TrackingError(f"MLflow at {tracker.uri}: cannot erase run {run_id}'s artifacts ({exc.message}); "
                                f"the purge is recorded: run it again to finish") from None
        except OSError as exc:
            raise TrackingError(f"MLflow at {tracker.uri}: cannot erase run {run_id}'s artifacts ({exc.strerror}); "
                                f"the purge is recorded: run it again to finish") from None
    return runs


def relocate_local_store(db_file: Path, artifact_root: Path) -> int:
    """Keep the embedded MLflow store with its project: MLflow writes absolute artifact locations
    into its database, so a copied or moved project would lose its artifacts and write new ones
    into the original's folder. When the recorded locations name another folder's
    `.govkit/mlartifacts`, they are rewritten to this one (one transaction). Returns the rows changed."""
    import sqlite3

    if not db_file.is_file():
        return 0
    wanted = artifact_root.resolve().as_uri()
    try:
        db = sqlite3.connect(db_file, timeout=10, isolation_level=None)
    except sqlite3.Error:
        return 0
    try:
        rows = db.execute("SELECT artifact_location FROM experiments WHERE artifact_location LIKE 'file://%/mlartifacts'"
                          ).fetchall()
        old_roots = {location for (location,) in rows if location != wanted}
        if not old_roots:
            return 0
        changed = 0
        db.execute("BEGIN IMMEDIATE")
        for old in old_roots:
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                                  ("logged_models", "artifact_location")):
                try:
                    changed += db.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                          f"WHERE {column} = ? OR {column} LIKE ?",
                                          (wanted, len(old) + 1, old, old + "/%")).rowcount
                except sqlite3.OperationalError:  # a table this MLflow version does not have
                    continue
        db.execute("COMMIT")
        return changed
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise TrackingError(f"{db_file}: cannot move the MLflow store's artifact locations here ({exc})") from None
    finally:
        db.close()


def _version() -> str:
    from ._version import __version__

    return __version__
