"""The central store as govkit uses it: MLflow runs are the index, their artifacts the segments.

One experiment per inventory model. One sync run per (device, sync), tagged with the govkit
convention; its artifacts:

    segments/device_id=<device>/date=<UTC day>/<lo>-<hi>-<sha>.parquet   the records (Parquet)
    notes/<lo>-<hi>-<sha>.note      the device's signed segment note (uploaded after the file)
    head.note                       the device's signed head at the time of the sync
    oversight/records.json          overrides and incidents of the sync, uploaded first
    oversight/overrides.json        the same overrides as an MLflow table (the UI shows it)

Credentials are MLflow's own (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN). A refused login is
a TrackingError (exit 3) at once; an unreachable or failing server gets MLflow's retries with
backoff ([sync] retries), then a TrackingError saying nothing was lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ArtifactMissing, CentralUnreachable, InputError, StoreFull, TrackingError
from ..tracking import EXPERIMENT_TAGS

__all__ = ["Central", "SYNC_FILTER", "is_deleted"]

SYNC_FILTER = "tags.`govkit.operation` = 'sync'"


def check_uri(uri: str, parameter: str = "uri") -> None:
    """A central store govkit can use: an MLflow server (http, https) or a local SQLite store."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        port = parts.port if parts.scheme in ("http", "https") else None
    except ValueError as exc:
        raise InputError(f"{uri!r} is not a URI ({exc})", parameter=parameter) from None
    if parts.scheme in ("http", "https") and parts.hostname and port != 0:
        return
    if parts.scheme == "sqlite" and uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
        return
    raise InputError(f"{uri!r} is not a central store govkit can use: expected an MLflow server "
                     f"(http://HOST:PORT or https://...) or a local store (sqlite:///FILE)", parameter=parameter)


def is_deleted(run: Any) -> bool:
    """MLflow marks the run deleted (soft-deleted: its files are still there)."""
    return getattr(run.info, "lifecycle_stage", "active") == "deleted"
_AUTH_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED")


class Central:
    """An MLflow tracking server (or local store) seen as the fleet's central store."""

    def __init__(self, uri: str, *, retries: int = 3, timeout_s: float = 30.0, parameter: str = "uri"):
        check_uri(uri, parameter)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout is for our output (--format json)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(timeout_s)))
        from ..tracking import _mlflow

        self.mlflow = _mlflow()
        self.uri = uri
        self.client = self.mlflow.MlflowClient(tracking_uri=uri)
        self._scratch = tempfile.TemporaryDirectory(prefix="govkit-sync-")
        self._repos: dict[str, Any] = {}  # run id -> its artifact repository, resolved once
        self._artifact_uris: dict[str, str] = {}  # run id -> artifact URI, from the runs already read

    def close(self) -> None:
        self._scratch.cleanup()

    @contextlib.contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """MLflow's failures as TrackingError naming the server and what was being done."""
        try:
            yield
        except self.mlflow.exceptions.MlflowException as exc:
            code = str(getattr(exc, "error_code", ""))
            status = getattr(exc, "get_http_status_code", lambda: None)()
            if code in _AUTH_CODES or status in (401, 403) or "401" in str(exc)[:200]:
                raise self._refused(what) from None
            if "Max retries exceeded" in str(exc) or "Failed to establish a new connection" in str(exc):
                raise CentralUnreachable(f"MLflow at {self.uri} is unreachable while {what}, after retries with "
                                         f"backoff") from None
            if code == "RESOURCE_DOES_NOT_EXIST" or str(exc).startswith("No such artifact"):
                raise ArtifactMissing(f"MLflow at {self.uri}: {what} failed: {_first_line(exc)}") from None
            raise TrackingError(f"MLflow at {self.uri}: {what} failed: {_first_line(exc)}") from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("requests", "urllib3"):  # after MLflow's own retries
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status in (401, 403):
                    raise self._refused(what) from None
                if status == 404:  # the server answered: the file is not there
                    raise ArtifactMissing(f"MLflow at {self.uri}: {what} failed: HTTP 404 (not there)") from None
                if status is not None:  # the server answered, with an error
                    raise TrackingError(f"MLflow at {self.uri}: {what} failed: HTTP {status}") from None
                raise CentralUnreachable(f"MLflow at {self.uri} is unreachable while {what} ({type(exc).__name__}) "
                                         f"after retries with backoff") from None
            if not isinstance(exc, OSError):
                raise
            if exc.errno == errno.ENOSPC:
                raise TrackingError(f"MLflow at {self.uri}: the central store's disk is full while {what}; nothing "
                                    f"was lost on the device, and the next sync resumes this one") from None
            if exc.errno == errno.ENOENT:
                raise ArtifactMissing(f"MLflow at {self.uri}: {what} failed: the file is not there") from None
            raise TrackingError(f"MLflow at {self.uri}: {what} failed: {exc.strerror or exc}") from None

    def _refused(self, what: str) -> TrackingError:
        return TrackingError(f"MLflow at {self.uri} refused the credentials while {what} (set MLFLOW_TRACKING_USERNAME "
                             f"and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN); nothing was lost, nothing retried")

    def experiment(self, name: str, *, create: bool = True) -> str | None:
        with self.calling(f"finding experiment {name}"):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            if not create:
                return None
            try:
                return str(self.client.create_experiment(name, artifact_location=self._local_artifacts(name),
                                                         tags=EXPERIMENT_TAGS))
            except self.mlflow.exceptions.MlflowException:  # another device created it first
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                return str(found.experiment_id)

    def _local_artifacts(self, name: str) -> str | None:
        """A local store (sqlite:///FILE) keeps its artifacts beside its database, wherever the
        sync runs from; a server decides for itself (--artifacts-destination)."""
        if not self.uri.startswith("sqlite:///"):
            return None
        import re

        folder = Path(self.uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts" / re.sub(r"[^\w.-]", "_", name)
        return folder.as_uri()

    def experiments(self) -> list[str]:
        with self.calling("listing experiments"):
            return [e.experiment_id for e in self.client.search_experiments()]

    def runs(self, experiment_ids: list[str], filter_string: str = SYNC_FILTER, *, deleted: bool = False) -> list[Any]:
        """Every run matching the filter, all pages, oldest first; with `deleted`, the runs MLflow
        marks deleted too (their files stay until MLflow's garbage collection): what reads the
        evidence reads those, since a deletion is a finding, not an erasure."""
        from mlflow.entities import ViewType

        found: list[Any] = []
        token = None
        view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
        with self.calling("searching runs"):
            while experiment_ids:
                page = self.client.search_runs(experiment_ids, filter_string, run_view_type=view, max_results=1000,
                                               order_by=["attributes.start_time ASC"], page_token=token)
                found.extend(page)
                self._artifact_uris.update((run.info.run_id, run.info.artifact_uri) for run in page)
                token = page.token
                if not token:
                    break
        return found

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str:
        with self.calling("opening a sync run"):
            info = self.client.create_run(experiment_id, run_name=name, tags=tags).info
        self._artifact_uris[info.run_id] = info.artifact_uri
        return str(info.run_id)

    def set_tags(self, run_id: str, tags: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        """Tags (None values left out), and metrics at step 0 now, in one request."""
        import time

        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        with self.calling("tagging a run"):
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None],
                                  metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()])

    def _repo(self, run_id: str) -> Any:
        """The run's artifact repository itself (proxied `mlflow-artifacts:`, S3, a folder): one
        request per file, where the client's run-level calls resolve the run again each time."""
        if run_id not in self._repos:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            with self.calling("finding the run's artifact store"):
                uri = self._artifact_uris.get(run_id) or self.client.get_run(run_id).info.artifact_uri
                self._repos[run_id] = get_artifact_repository(uri, tracking_uri=self.uri)
        return self._repos[run_id]

    def upload(self, run_id: str, artifact_path: str, data: bytes) -> None:
        """`data` as the run's artifact at `artifact_path` (folders included)."""
        try:
            folder = Path(tempfile.mkdtemp(dir=self._scratch.name))
            path = folder / Path(artifact_path).name
            path.write_bytes(data)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise StoreFull(f"this device's disk is full ({self._scratch.name}, TMPDIR) while staging {artifact_path} "
                            f"for upload; nothing was lost, and 'govkit sync' resumes once there is space") from None
        try:
            self.upload_file(run_id, artifact_path, path)
        finally:
            for item in folder.iterdir():
                item.unlink()
            folder.rmdir()

    def upload_file(self, run_id: str, artifact_path: str, path: Path) -> None:
        """The file at `path` as the run's artifact at `artifact_path`; both end in the same name."""
        if path.name != Path(artifact_path).name:
            raise ValueError(f"{path} cannot be uploaded as {artifact_path}: the names differ")
        parent = str(Path(artifact_path).parent)
        with self.calling(f"uploading {artifact_path}"):
            self._repo(run_id).log_artifact(str(path), None if parent == "." else parent)

    def download(self, run_id: str, artifact_path: str) -> bytes:
        folder = tempfile.mkdtemp(dir=self._scratch.name)
        try:
            repo = self._repo(run_id)
            with self.calling(f"downloading {artifact_path}"):
                if hasattr(repo, "_download_file"):  # one GET; the public call lists the path first, in a pool
                    local = str(Path(folder) / Path(artifact_path).name)
                    repo._download_file(artifact_path, local)
                else:
                    local = repo.download_artifacts(artifact_path, folder)
            return Path(local).read_bytes()
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    def list(self, run_id: str, folder: str | None, *, dirs: bool = False) -> list[str]:
        """The files (or, with `dirs`, the folders) directly in a run's artifact folder."""
        with self.calling(f"listing {folder or 'the run'}"):
            return [item.path for item in self._repo(run_id).list_artifacts(folder) if item.is_dir == dirs]

    def log_table(self, run_id: str, table: Mapping[str, Iterable[str]], artifact_path: str) -> None:
        with self.calling(f"logging the table {artifact_path}"):
            self.client.log_table(run_id, table, artifact_path)

    def delete(self, run: Any, artifact_path: str) -> None:
        with self.calling(f"removing the unfinished upload {artifact_path}"):
            self._repo(run.info.run_id).delete_artifacts(artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        with self.calling("closing the sync run"):
            self.client.set_terminated(run_id, status)


def _first_line(exc: Any) -> str:
    text = str(getattr(exc, "message", "") or exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
