"""Read a dataset file (CSV, Parquet, JSONL) into a pandas DataFrame, or say exactly what is wrong.

Every failure names the file and, where there is one, the line: a ragged CSV row, a JSONL line
that is not a JSON object, binary junk, an empty file. Nothing is read twice on the happy path
except a CSV, whose field counts are checked first with the csv module (pandas fills short rows
with NaN silently, which would hide a ragged file).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._lazy import require
from ..errors import InputError

__all__ = ["FORMATS", "ReadOptions", "detect_format", "read_table"]

FORMATS = ("csv", "parquet", "jsonl")
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
             ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReadOptions:
    """How the file was read; stored with the lineage record so the profile can be reproduced."""

    format: str = "csv"
    delimiter: str = ","
    columns: tuple[str, ...] = ()  # names for a CSV without a header row
    na_values: tuple[str, ...] = ()  # extra missing-value markers, e.g. "?"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["columns"], out["na_values"] = list(self.columns), list(self.na_values)
        return out


def detect_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unsupported file type '{path.suffix or '(none)'}'; expected "
                         f"{', '.join(sorted(_SUFFIXES))} (or pass --input-format csv|parquet|jsonl)")
    return fmt


def read_table(path: Path, options: ReadOptions) -> Any:
    """The file as a DataFrame with at least one row and one column."""
    pd = require("pandas", "lineage")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if options.format == "parquet":
        frame = _read_parquet(path)
    else:
        _require_text(path, head)
        frame = _read_csv(pd, path, options) if options.format == "csv" else _read_jsonl(pd, path)
    if frame.shape[1] == 0:
        raise InputError(f"{path}: no columns")
    if frame.shape[0] == 0:
        raise InputError(f"{path}: no data rows (only a header)")
    return frame


def _require_text(path: Path, head: bytes) -> None:
    nul = head.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{path}: binary data (NUL byte at offset {nul}), not a text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut by the sniff window is fine
            raise InputError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _read_csv(pd: Any, path: Path, options: ReadOptions) -> Any:
    expected = _check_field_counts(path, options)
    kwargs: dict[str, Any] = dict(sep=options.delimiter, skipinitialspace=True, encoding="utf-8",
                                  na_values=list(options.na_values) or None, low_memory=False)
    if options.columns:
        kwargs.update(header=None, names=list(options.columns))
    elif expected and len(set(expected)) != len(expected):
        dupes = sorted({c for c in expected if expected.count(c) > 1})
        raise InputError(f"{path}, line 1: duplicate column names {', '.join(dupes)}")
    try:
        return pd.read_csv(path, **kwargs)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _check_field_counts(path: Path, options: ReadOptions) -> list[str]:
    """Every row has as many fields as the header (or --columns); returns the header names."""
    delimiter = options.delimiter
    if len(delimiter) != 1:
        raise InputError(f"{path}: the delimiter must be one character, got {delimiter!r}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True, strict=False)
            header: list[str] = []
            width = len(options.columns) or None
            for row in reader:
                if not row:
                    continue  # blank lines are skipped by pandas too
                if width is None:
                    header, width = row, len(row)
                    continue
                if len(row) != width:
                    what = "--columns" if options.columns else "the header"
                    raise InputError(f"{path}, line {reader.line_num}: {len(row)} fields, but {what} "
                                     f"has {width} (a ragged CSV; check the delimiter and quoting)")
            return [h.strip() for h in header]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None


def _read_parquet(path: Path) -> Any:
    pq = require("pyarrow.parquet", "lineage")
    pa = require("pyarrow", "lineage")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def _read_jsonl(pd: Any, path: Path) -> Any:
    rows: list[dict[str, Any]] = []
    number = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    rows.append(_json_object(path, number, line))
    except UnicodeDecodeError:
        raise InputError(f"{path}, line {number + 1}: not UTF-8 text") from None
    return pd.DataFrame.from_records(rows)


def _json_object(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}, line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(row, dict):
        raise InputError(f"{path}, line {number}: expected a JSON object per line, got {type(row).__name__}")
    return row
