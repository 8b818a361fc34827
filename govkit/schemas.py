"""pandera schemas for every table govkit reads or writes, and one way to check them.

Tables read: evaluation datasets (bias and explanation runs), prediction tables (tabular bias).
Tables written: the audit export, the lineage entities. `validate` checks lazily, so a user sees
every problem at once, each with its row (1-based, header excluded) and column, and gets one
InputError (exit 2) instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._lazy import require
from .errors import InputError

__all__ = ["audit_export", "evaluation_dataset", "lineage_entities", "predictions", "validate"]

SHA256 = r"^sha256:[0-9a-f]{64}$"
ULID = r"^[0-9A-HJKMNP-TV-Z]{26}$"
MAX_LISTED = 25


def _pa() -> Any:
    return require("pandera.pandas", "lineage")


def audit_export() -> Any:
    """The Parquet/JSON Lines export of the audit log (`govkit audit export`)."""
    from .audit.records import EVENT_TYPES

    pa = _pa()
    text = dict(nullable=True, required=False)
    return pa.DataFrameSchema({
        "seq": pa.Column(int, pa.Check.ge(1), unique=True),
        "record_id": pa.Column(str, pa.Check.str_matches(ULID), unique=True),
        "event_type": pa.Column(str, pa.Check.isin(EVENT_TYPES)),
        "ts_start": pa.Column(str, pa.Check.str_matches(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")),
        "prev_hash": pa.Column(str, pa.Check.str_matches(SHA256)),
        "record_hash": pa.Column(str, pa.Check.str_matches(SHA256)),
        "artifact_sha256": pa.Column(str, pa.Check.str_matches(SHA256), **text),
        "input_sha256": pa.Column(str, pa.Check.str_matches(SHA256), **text),
        "output_sha256": pa.Column(str, pa.Check.str_matches(SHA256), **text),
        "body": pa.Column(str, required=False),
    }, name="audit export", strict=False, coerce=False)


def lineage_entities() -> Any:
    """One row per lineage entity (`govkit lineage export --format json`, the 'entities' list)."""
    pa = _pa()
    return pa.DataFrameSchema({
        "id": pa.Column(str, pa.Check.str_matches(r"^(dataset|model)/[^@/]+@v\d+$"), unique=True),
        "kind": pa.Column(str, pa.Check.isin(["dataset", "model"])),
        "name": pa.Column(str),
        "version": pa.Column(int, pa.Check.ge(1)),
        "sha256": pa.Column(str, pa.Check.str_matches(SHA256)),
        "bytes": pa.Column(int, pa.Check.gt(0)),
        "path": pa.Column(str),
        "format": pa.Column(str, pa.Check.isin(["csv", "parquet", "jsonl", "gguf", "onnx", "safetensors"])),
        "record_id": pa.Column(str, pa.Check.str_matches(ULID), unique=True),
    }, name="lineage entities", strict=False)


def predictions(*, y_true: str, y_pred: str, sensitive: Sequence[str], score: str | None = None) -> Any:
    """A tabular prediction table for bias tests: binary labels, groups present, scores in [0, 1]."""
    pa = _pa()
    binary = pa.Check.isin([0, 1, True, False], error="must be 0 or 1")
    columns = {y_true: pa.Column(None, binary, nullable=False), y_pred: pa.Column(None, binary, nullable=False)}
    for name in sensitive:
        columns[name] = pa.Column(None, nullable=False)
    if score:
        columns[score] = pa.Column(float, pa.Check.in_range(0, 1), nullable=False, coerce=True)
    return pa.DataFrameSchema(columns, name="predictions", strict=False)


def evaluation_dataset(*, sensitive: Sequence[str], required: Sequence[str] = (), label: str | None = None) -> Any:
    """Rows to prompt a model with: the template's fields and the sensitive attribute(s) present."""
    pa = _pa()
    columns = {name: pa.Column(None, nullable=False) for name in [*sensitive, *required]}
    if label:
        columns[label] = pa.Column(None, nullable=False)
    return pa.DataFrameSchema(columns, name="evaluation dataset", strict=False)


def validate(frame: Any, schema: Any, *, source: str) -> Any:
    """`frame` checked against `schema`; every problem reported at once, naming row and column."""
    errors = require("pandera.errors", "lineage")
    try:
        return schema.validate(frame, lazy=True)
    except errors.SchemaErrors as exc:
        lines = _describe(exc.failure_cases)
    except errors.SchemaError as exc:  # raised eagerly for problems lazy mode cannot defer
        lines = [str(exc)]
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    raise InputError(f"{source}: {len(lines)} problem(s) against the {schema.name} schema:\n  "
                     + "\n  ".join(lines[:MAX_LISTED]) + more)


def _describe(cases: Any) -> list[str]:
    lines = []
    for case in cases.itertuples(index=False):
        column = case.column if isinstance(case.column, str) else None
        where = []
        if case.index is not None and case.index == case.index:  # NaN when the problem is the whole column
            where.append(f"row {int(case.index) + 1}")
        if column:
            where.append(f"column '{column}'")
        check = str(case.check)
        value = "" if case.failure_case is None or case.index is None else f": value {case.failure_case!r}"
        if check == "column_in_dataframe":
            lines.append(f"column '{case.failure_case}': missing")
            continue
        lines.append(f"{', '.join(where) or 'table'}: fails {check}{value}")
    return lines
