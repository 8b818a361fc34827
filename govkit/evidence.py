"""Evidence: an MLflow run and the chained audit record it produced, each pointing at the other.

Every governance action (a bias run, an explanation, a gate run, a lineage change, a risk
rating) is written through `evidence_run`: the run is opened, filled, and the record appended
with the run's id; then the run is tagged with the record's id, seq and hash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .audit import AuditLog, AuditRecord
from .tracking import TrackedRun, Tracker

__all__ = ["EvidenceRun", "evidence_run", "safe_name", "safe_path"]


def safe_name(text: str, *, parameter: str, patterns: Any = ()) -> str:
    """A name that reaches the evidence (a data file's name or path, a dataset's name): the chained
    records, MLflow's runs and artifacts, the reports. No purge reaches those, so a name holding
    personal data (as the audit log's recognizers and the policy's patterns find it) is refused."""
    from .audit.redact import Redactor
    from .errors import InputError

    found = Redactor(patterns).redact(text)
    if found.counts:
        raise InputError(f"{found.text!r} holds personal data ({', '.join(sorted(found.counts))}); names reach the "
                         f"chained evidence, MLflow and the reports, where no erasure reaches them: rename the file",
                         parameter=parameter)
    return text


def safe_path(path: Any, *, parameter: str, patterns: Any = ()) -> None:
    """A file whose path reaches the evidence: the whole resolved path (its name included) by the
    same rule as safe_name."""
    from pathlib import Path

    safe_name(str(Path(path).resolve()), parameter=parameter, patterns=patterns)


@dataclass
class EvidenceRun:
    log: AuditLog
    run: TrackedRun
    record: AuditRecord | None = None

    def append(self, event_type: str, **fields: Any) -> AuditRecord:
        """Chain the record of this run (it carries `mlflow_run_id`), and tag the run with it."""
        self.record = self.log.append(event_type, mlflow_run_id=self.run.id, **fields)
        self.run.link(self.record, None if self.record.fields.get("artifact_sha256") else current_artifact(self.log))
        return self.record


def current_artifact(log: AuditLog) -> str | None:
    """The sha256 of the model artifact the log's lineage registered last, if any."""
    for record in log.query(event_type="lineage", newest_first=True, limit=200):
        if record.fields.get("artifact_sha256"):
            return str(record.fields["artifact_sha256"])
    return None


@contextlib.contextmanager
def evidence_run(log: AuditLog, tracker: Tracker, name: str, tags: dict[str, str]) -> Iterator[EvidenceRun]:
    """An MLflow run (FAILED if the block raises) whose block chains its record with `append`."""
    with tracker.run(name, tags) as run:
        yield EvidenceRun(log, run)
