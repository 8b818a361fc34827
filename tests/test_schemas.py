"""pandera schemas: every problem at once, with row and column; real tables govkit writes validate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from govkit import schemas
from govkit.audit import AuditLog
from govkit.cli import cli
from govkit.errors import InputError

from .public_data import GERMAN_COLUMNS, german_data


def test_predictions_lists_every_problem_with_row_and_column() -> None:
    frame = pd.DataFrame({"y": [0, 1, 2, 1], "p": [1, None, 0, 1], "sex": ["m", "f", None, "f"],
                          "score": [0.2, 1.5, 0.1, 0.3]})
    schema = schemas.predictions(y_true="y", y_pred="p", sensitive=["sex", "race"], score="score")
    with pytest.raises(InputError) as caught:
        schemas.validate(frame, schema, source="preds.csv")
    message = str(caught.value)
    assert message.startswith("preds.csv: 5 problem(s) against the predictions schema")
    for expected in ("column 'race': missing", "row 3, column 'y': fails must be 0 or 1: value 2",
                     "row 2, column 'p': fails not_nullable", "row 3, column 'sex': fails not_nullable",
                     "row 2, column 'score': fails in_range(0, 1): value 1.5"):
        assert expected in message


def test_predictions_accepts_a_real_table() -> None:
    frame = pd.read_csv(german_data(), sep=" ", header=None, names=list(GERMAN_COLUMNS))
    frame["y_true"] = (frame.credit == 1).astype(int)
    frame["y_pred"] = (frame.duration < 24).astype(int)
    frame["score"] = frame.credit_amount / frame.credit_amount.max()
    schema = schemas.predictions(y_true="y_true", y_pred="y_pred", sensitive=["status_sex"], score="score")
    assert schemas.validate(frame, schema, source="german") is not None


def test_long_problem_lists_are_cut() -> None:
    frame = pd.DataFrame({"y": [5] * 100, "p": [0] * 100, "g": ["a"] * 100})
    with pytest.raises(InputError, match=r"(?s)100 problem\(s\).*and 75 more"):
        schemas.validate(frame, schemas.predictions(y_true="y", y_pred="p", sensitive=["g"]), source="x")


def test_evaluation_dataset_requires_template_fields() -> None:
    frame = pd.DataFrame({"applicant": ["Ann", None], "gender": ["f", "m"]})
    schema = schemas.evaluation_dataset(sensitive=["gender"], required=["applicant", "income"], label="label")
    with pytest.raises(InputError) as caught:
        schemas.validate(frame, schema, source="eval.csv")
    assert "column 'income': missing" in str(caught.value) and "column 'label': missing" in str(caught.value)
    assert "row 2, column 'applicant'" in str(caught.value)


def test_audit_export_validates_and_a_forged_row_does_not(tmp_path: Path, log: AuditLog) -> None:
    for i in range(5):
        log.append("inference", prompt=f"question {i}", response="answer", model_id="m")
    out = tmp_path / "audit.parquet"
    result = CliRunner().invoke(cli, ["audit", "export", "--db", str(log.path), "--format", "parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    schemas.validate(frame, schemas.audit_export(), source=str(out))
    frame.loc[2, "record_hash"] = "md5:abc"
    frame.loc[3, "event_type"] = "chat"
    with pytest.raises(InputError) as caught:
        schemas.validate(frame, schemas.audit_export(), source=str(out))
    assert "row 3, column 'record_hash'" in str(caught.value) and "row 4, column 'event_type'" in str(caught.value)


def test_lineage_export_validates(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "--yes"]).exit_code == 0
    config = Path("govkit.toml")
    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    assert runner.invoke(cli, ["lineage", "dataset", "add", str(german_data()), "--input-format", "csv", "--delimiter", " ",
                               "--columns", ",".join(GERMAN_COLUMNS), "--role", "eval"]).exit_code == 0
    exported = json.loads(runner.invoke(cli, ["lineage", "export", "--format", "json"]).output)
    frame = pd.DataFrame(exported["entities"])
    schemas.validate(frame, schemas.lineage_entities(), source="lineage.json")
    frame.loc[0, "sha256"] = "deadbeef"
    with pytest.raises(InputError, match="row 1, column 'sha256'"):
        schemas.validate(frame, schemas.lineage_entities(), source="lineage.json")
