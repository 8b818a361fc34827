"""The Statlog German Credit data (shipped in data/, CC BY 4.0), decoded into readable columns."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "LICENSE", "SOURCE", "read_applicants", "write_csv"]

SOURCE = "UCI Statlog German Credit Data (Hofmann 1994), https://doi.org/10.24432/C5NC77"
LICENSE = "CC-BY-4.0"

CHECKING = {"A11": "overdrawn (below 0 DM)", "A12": "0 to 200 DM", "A13": "200 DM or more",
            "A14": "no checking account"}
HISTORY = {"A30": "no credits taken or all paid back duly", "A31": "all credits at this bank paid back duly",
           "A32": "existing credits paid back duly so far", "A33": "delays in paying off in the past",
           "A34": "critical account, other credits elsewhere"}
PURPOSE = {"A40": "a new car", "A41": "a used car", "A42": "furniture", "A43": "a radio or television",
           "A44": "domestic appliances", "A45": "repairs", "A46": "education", "A47": "a vacation",
           "A48": "retraining", "A49": "a business", "A410": "other needs"}
SAVINGS = {"A61": "under 100 DM", "A62": "100 to 500 DM", "A63": "500 to 1000 DM", "A64": "1000 DM or more",
           "A65": "none known"}
EMPLOYMENT = {"A71": "unemployed", "A72": "under 1 year", "A73": "1 to 4 years", "A74": "4 to 7 years",
              "A75": "7 years or more"}
SEX = {"A91": "male", "A92": "female", "A93": "male", "A94": "male", "A95": "female"}
HOUSING = {"A151": "rents", "A152": "owns a home", "A153": "lives for free"}
JOB = {"A171": "unskilled, non-resident", "A172": "unskilled", "A173": "skilled employee",
       "A174": "management or self-employed"}

COLUMNS = ("applicant", "checking_account", "duration_months", "credit_history", "purpose", "amount_dm",
           "savings", "employment", "sex", "age", "age_band", "housing", "job", "foreign_worker", "good_credit")


def _age_band(age: int) -> str:
    return "under 25" if age < 25 else "25 to 59" if age < 60 else "60 and over"


def read_applicants() -> list[dict[str, Any]]:
    """The 1,000 applicants, in file order, one dict per row with the COLUMNS."""
    text = resources.files("govkit.demo").joinpath("data/german.data").read_text(encoding="ascii")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        f = line.split()
        age = int(f[12])
        rows.append({"applicant": f"A{number:04d}", "checking_account": CHECKING[f[0]], "duration_months": int(f[1]),
                     "credit_history": HISTORY[f[2]], "purpose": PURPOSE[f[3]], "amount_dm": int(f[4]),
                     "savings": SAVINGS[f[5]], "employment": EMPLOYMENT[f[6]], "sex": SEX[f[8]], "age": age,
                     "age_band": _age_band(age), "housing": HOUSING[f[14]], "job": JOB[f[16]],
                     "foreign_worker": "yes" if f[19] == "A201" else "no", "good_credit": 1 if f[20] == "1" else 0})
    return rows


def write_csv(path: Path) -> int:
    rows = read_applicants()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
