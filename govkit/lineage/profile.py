"""What a dataset holds and whether it is fit for use (OSFI E-23 P3.2, EU AI Act Art. 10(3)).

`profile_frame` gives a column profile (type, missing, distinct, min/max), the data-quality
findings E-23 names (missing values, duplicates, constant columns, outliers) plus columns that
look like personal data to the audit log's own recognizers, and the pandera schema inferred from
the data. Raw values never leave this module except numeric and date extremes: string columns
report lengths, not values, because the profile is kept in the audit chain for years; and a
column that looks like personal data (whole numbers included) reports no value at all, its
extremes and the schema's range checks left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .._lazy import require
from ..audit.redact import Redactor

__all__ = ["DataProfile", "profile_frame"]

OUTLIER_FENCE = 3.0  # Tukey's "far out" fence: beyond Q1 - 3·IQR or Q3 + 3·IQR
MISSING_WARNING = 0.05  # a column missing more than this share is a warning, below it a note
PII_SAMPLE = 200  # non-null values per string column scanned by the recognizers
PII_SHARE = 0.2  # share of sampled values with personal data that marks a column


@dataclass(frozen=True)
class DataProfile:
    rows: int
    columns: int
    missing_cells: int
    duplicate_rows: int
    column_profiles: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    schema: dict[str, Any]  # pandera DataFrameSchema.to_json(), inferred from the data

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": self.columns, "missing_cells": self.missing_cells,
                "duplicate_rows": self.duplicate_rows}


def profile_frame(frame: Any, *, redactor: Redactor | None = None,
                  declared_pii: str = "unknown") -> DataProfile:
    pd = require("pandas", "lineage")
    redactor = redactor or Redactor()
    hashable = frame.apply(_hashable_column)
    columns = [_profile_column(pd, str(name), hashable[name]) for name in frame.columns]
    duplicates = int(hashable.duplicated().sum())
    findings = _findings(columns, duplicates, len(frame))
    findings += _pii_findings(hashable, columns, redactor, declared_pii)
    flagged = {c["name"] for c in columns if c.get("pii")}
    for column in columns:  # no value of a column of personal data leaves: not even its extremes
        if column["name"] in flagged:
            for key in _VALUE_STATS:
                column.pop(key, None)
    return DataProfile(rows=len(frame), columns=frame.shape[1],
                       missing_cells=sum(c["missing"] for c in columns), duplicate_rows=duplicates,
                       column_profiles=columns, findings=findings, schema=_without_values(infer_schema(frame), flagged))


_VALUE_STATS = ("min", "max", "mean", "std")


def _without_values(schema: dict[str, Any], flagged: set[str]) -> dict[str, Any]:
    """The inferred schema without the checks that carry a flagged column's values (its range)."""
    columns = schema.get("columns") or {}
    for name in flagged & set(columns):
        if isinstance(columns[name], dict):  # pandera writes a range as keys beside "checks": keep no check at all
            columns[name] = {k: v for k, v in columns[name].items() if k in _STRUCTURE_KEYS}
            columns[name]["checks"] = None
    return schema


_STRUCTURE_KEYS = ("dtype", "nullable", "unique", "coerce", "required", "regex", "title", "description")


def infer_schema(frame: Any) -> dict[str, Any]:
    pa = require("pandera.pandas", "lineage")
    safe = frame.apply(_hashable_column)
    safe.columns = [str(c) for c in safe.columns]
    return json.loads(pa.infer_schema(safe).to_json())


def _hashable_column(series: Any) -> Any:
    """Lists and dicts (from JSONL) as canonical JSON text, so they can be counted and compared."""
    if series.dtype != object:
        return series
    if not series.map(lambda v: isinstance(v, (list, dict))).any():
        return series
    return series.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v)


def _profile_column(pd: Any, name: str, series: Any) -> dict[str, Any]:
    types = pd.api.types
    missing = int(series.isna().sum())
    out: dict[str, Any] = {"name": name, "dtype": str(series.dtype), "count": int(len(series) - missing),
                           "missing": missing, "distinct": int(series.nunique(dropna=True))}
    values = series.dropna()
    if types.is_bool_dtype(series):
        out.update(kind="boolean", true=int(values.astype(bool).sum()))
    elif types.is_numeric_dtype(series):
        out["kind"] = "numeric"
        if len(values):
            q1, q3 = values.quantile(0.25), values.quantile(0.75)
            iqr = q3 - q1
            low, high = q1 - OUTLIER_FENCE * iqr, q3 + OUTLIER_FENCE * iqr
            out.update(min=_number(values.min()), max=_number(values.max()), mean=_number(values.mean()),
                       std=_number(values.std()) if len(values) > 1 else None,
                       outliers=int(((values < low) | (values > high)).sum()) if iqr > 0 else 0)
    elif types.is_datetime64_any_dtype(series):
        out["kind"] = "datetime"
        if len(values):
            out.update(min=values.min().isoformat(), max=values.max().isoformat())
    else:
        out["kind"] = "string"
        lengths = values.astype(str).str.len()
        if len(lengths):
            out.update(min_length=int(lengths.min()), max_length=int(lengths.max()))
    return out


def _number(value: Any) -> int | float | None:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _findings(columns: list[dict[str, Any]], duplicates: int, rows: int) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = []
    for column in columns:
        name, missing = column["name"], column["missing"]
        if missing:
            share = missing / rows
            findings.append({"check": "missing_values", "column": name, "count": missing,
                             "severity": "warning" if share > MISSING_WARNING else "info",
                             "message": f"{missing} of {rows} values missing ({share:.1%})"})
        if column["distinct"] + (1 if missing else 0) <= 1:
            findings.append({"check": "constant_column", "column": name, "severity": "warning",
                             "message": "the column holds a single value"})
        if column.get("outliers"):
            findings.append({"check": "outliers", "column": name, "count": column["outliers"],
                             "severity": "info",
                             "message": f"{column['outliers']} values beyond the 3×IQR fences"})
    if duplicates:
        findings.append({"check": "duplicate_rows", "count": duplicates, "severity": "warning",
                         "message": f"{duplicates} rows repeat an earlier row exactly"})
    return findings


def _pii_findings(frame: Any, columns: list[dict[str, Any]], redactor: Redactor,
                  declared: str) -> list[dict[str, Any]]:
    findings = []
    for column in columns:
        # Strings, and whole numbers: a card number, SIN or SSN stored as an integer is personal data too.
        if column["kind"] != "string" and not (column["kind"] == "numeric" and "int" in column["dtype"].lower()):
            continue
        sample = frame[column["name"]].dropna().astype(str)
        sample = sample.drop_duplicates().head(PII_SAMPLE)
        if sample.empty:
            continue
        hits: dict[str, int] = {}
        flagged = 0
        for value in sample:
            counts = redactor.redact(value).counts
            if counts:
                flagged += 1
                for entity, count in counts.items():
                    hits[entity] = hits.get(entity, 0) + count
        share = flagged / len(sample)
        if share >= PII_SHARE:
            column["pii"] = sorted(hits)
            message = (f"{share:.0%} of {len(sample)} sampled values look like personal data "
                       f"({', '.join(sorted(hits))})")
            if declared == "no":
                message += "; the dataset was declared to contain no personal data"
            findings.append({"check": "pii_column", "column": column["name"], "entities": sorted(hits),
                             "severity": "warning", "message": message})
    return findings
