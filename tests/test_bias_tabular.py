"""`govkit bias tabular`: fairlearn's own numbers on real data (UCI Adult, German credit), intervals,
planted disparities, bad input, and the evidence it leaves (audit event, MLflow run, JSON file)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm
from sklearn.metrics import accuracy_score, precision_score

from govkit.audit import AuditLog
from govkit.config import FairnessPolicy, load_settings
from govkit.errors import InputError
from govkit.fairness.tabular import analyze, wilson

from .conftest import run
from .public_data import ADULT_COLUMNS, GERMAN_COLUMNS, adult_data, german_data


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run("init", "--yes", "--model-id", "credit-scorer").exit_code == 0
    return tmp_path


def adult() -> pd.DataFrame:
    frame = pd.read_csv(adult_data(), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True, na_values=["?"])
    frame["y_true"] = (frame.income == ">50K").astype(int)
    # a simple rule as "the model": degree or capital gains
    frame["y_pred"] = ((frame["education-num"] >= 13) | (frame["capital-gain"] > 5000)).astype(int)
    return frame


def test_numbers_equal_fairlearn_on_adult() -> None:
    frame = adult()
    result = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["sex", "race"], policy=FairnessPolicy())
    for attr in ("sex", "race"):
        plain = fm.MetricFrame(metrics={
            "selection_rate": fm.selection_rate, "true_positive_rate": fm.true_positive_rate,
            "false_positive_rate": fm.false_positive_rate, "false_negative_rate": fm.false_negative_rate,
            "precision": precision_score, "accuracy": accuracy_score, "count": fm.count},
            y_true=frame.y_true, y_pred=frame.y_pred, sensitive_features=frame[attr])
        rows = {row["group"]: row for row in result["views"][attr]["by_group"]}
        for group, expected in plain.by_group.iterrows():
            row = rows[f"{attr}={group}"]
            for name, value in expected.items():
                assert row[name] == value, (attr, group, name)  # identical, not approximately equal
        metrics = result["views"][attr]["metrics"]
        kwargs = dict(sensitive_features=frame[attr])
        assert metrics["demographic_parity_difference"]["value"] == fm.demographic_parity_difference(
            frame.y_true, frame.y_pred, **kwargs)
        assert metrics["demographic_parity_ratio"]["value"] == fm.demographic_parity_ratio(frame.y_true, frame.y_pred, **kwargs)
        assert metrics["equalized_odds_difference"]["value"] == fm.equalized_odds_difference(frame.y_true, frame.y_pred, **kwargs)
        rates = plain.by_group["selection_rate"]
        assert metrics["disparate_impact_ratio"]["value"] == pytest.approx(rates.min() / rates.max(), rel=1e-15)
    joint = result["views"]["sex x race"]["by_group"]
    plain = fm.MetricFrame(metrics=fm.selection_rate, y_true=frame.y_true, y_pred=frame.y_pred,
                           sensitive_features=frame[["sex", "race"]])
    assert [row["selection_rate"] for row in joint] == plain.by_group.tolist()


def test_known_adult_income_rates_by_sex(project: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(adult_data(), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True)
    frame["decision"] = frame.income  # the recorded outcome itself: selection rate = base rate
    frame.to_csv(tmp_path / "adult.csv", index=False)
    result = run("bias", "tabular", "--data", str(tmp_path / "adult.csv"), "--y-true", "income", "--y-pred", "decision",
                 "--positive-label", ">50K", "--sensitive", "sex", "--format", "json")
    assert result.exit_code == 1, result.output  # the base rates differ far beyond the four-fifths rule
    rows = {r["group"]: r for r in json.loads(result.output)["views"]["sex"]["by_group"]}
    # the UCI Adult training file: 6,662 of 21,790 men and 1,179 of 10,771 women earn >50K
    assert (rows["sex=Male"]["count"], rows["sex=Female"]["count"]) == (21790, 10771)
    assert rows["sex=Male"]["selection_rate"] == 6662 / 21790 and rows["sex=Female"]["selection_rate"] == 1179 / 10771
    assert rows["sex=Female"]["disparate_impact_ratio"] == pytest.approx((1179 / 10771) / (6662 / 21790))


def test_german_credit_rates_by_foreign_worker(project: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(german_data(), sep=" ", header=None, names=list(GERMAN_COLUMNS))
    frame["good"] = (frame.credit == 1).astype(int)
    frame["approved"] = (frame.duration <= 24).astype(int)
    frame.to_parquet(tmp_path / "german.parquet")
    result = run("bias", "tabular", "--data", str(tmp_path / "german.parquet"), "--y-true", "good",
                 "--y-pred", "approved", "--sensitive", "foreign_worker", "--format", "json")
    assert result.exit_code in (0, 1), result.output
    rows = {r["group"]: r for r in json.loads(result.output)["views"]["foreign_worker"]["by_group"]}
    for code, group in frame.groupby("foreign_worker"):
        row = rows[f"foreign_worker={code}"]
        assert row["count"] == len(group)
        assert row["selection_rate"] == pytest.approx(group.approved.mean(), rel=1e-12)
        assert row["true_positive_rate"] == pytest.approx(group[group.good == 1].approved.mean(), rel=1e-12)


def _planted(rates: dict[str, float], n: int = 4000) -> pd.DataFrame:
    """Exactly `rate` of each group selected, with the same true-positive structure in every group."""
    parts = []
    for group, rate in rates.items():
        y_true = np.tile([1, 0], n // 2)
        selected = int(rate * n)
        y_pred = np.zeros(n, dtype=int)
        y_pred[:selected] = 1
        parts.append(pd.DataFrame({"group": group, "y_true": y_true, "y_pred": y_pred}))
    return pd.concat(parts, ignore_index=True)


def test_planted_disparity_is_flagged_and_a_balanced_set_is_not() -> None:
    unfair = analyze(_planted({"a": 0.5, "b": 0.3}), y_true="y_true", y_pred="y_pred", sensitive=["group"],
                     policy=FairnessPolicy())
    metrics = unfair["views"]["group"]["metrics"]
    assert metrics["demographic_parity_difference"]["value"] == pytest.approx(0.2)
    assert metrics["disparate_impact_ratio"]["value"] == pytest.approx(0.6)
    assert metrics["disparate_impact_ratio"]["status"] == "fail" and not unfair["passed"]
    low, high = metrics["demographic_parity_difference"]["interval"]
    assert low < 0.2 < high and high - low < 0.1
    fair = analyze(_planted({"a": 0.4, "b": 0.4}), y_true="y_true", y_pred="y_pred", sensitive=["group"],
                   policy=FairnessPolicy())
    assert fair["passed"] and all(m["status"] == "pass" for m in fair["views"]["group"]["metrics"].values())
    assert fair["views"]["group"]["metrics"]["demographic_parity_difference"]["value"] == 0


def test_one_adequate_group_and_a_small_one_is_inconclusive_never_a_pass() -> None:
    frame = pd.concat([_planted({"big": 0.5}, 2000), _planted({"tiny": 0.1}, 10)], ignore_index=True)
    result = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["group"], policy=FairnessPolicy())
    assert result["warnings"] == ["group=tiny: only 10 rows (fewer than 30); too small to judge"]
    metric = result["views"]["group"]["metrics"]["demographic_parity_difference"]
    assert metric["status"] == "inconclusive" and "nothing to compare" in metric["reason"]
    assert metric["to_conclude"] == "20 more rows of group=tiny"
    assert result["status"] == "inconclusive" and not result["passed"]


def _confusion_rows(group: str, negatives: int, fp: int, positives: int, tp: int) -> pd.DataFrame:
    y_true = [0] * negatives + [1] * positives
    y_pred = [1] * fp + [0] * (negatives - fp) + [1] * tp + [0] * (positives - tp)
    return pd.DataFrame({"group": group, "y_true": y_true, "y_pred": y_pred})


def abc_case() -> pd.DataFrame:
    """A (3,000 rows, FPR 0.42), B (2,000 rows, FPR 0.22), and C: 11 rows whose rates are extreme."""
    return pd.concat([_confusion_rows("A", 1500, 630, 1500, 1050), _confusion_rows("B", 1000, 220, 1000, 700),
                      _confusion_rows("C", 6, 6, 5, 5)], ignore_index=True)


def test_a_breach_between_large_groups_stands_beside_a_small_group() -> None:
    """Today's break: C drove the gap over all groups, made it "inconclusive", and the run passed."""
    frame = abc_case()
    result = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["group"], policy=FairnessPolicy())
    metric = result["views"]["group"]["metrics"]["equalized_odds_difference"]
    large = frame[frame.group != "C"]
    expected = fm.equalized_odds_difference(large.y_true, large.y_pred, sensitive_features=large.group)
    assert metric["value"] == expected == pytest.approx(0.2)
    assert metric["status"] == "fail" and metric["between"] == ["group=A", "group=B"]
    assert metric["small_groups"] == [{"group": "group=C", "count": 11, "needs": 19}]
    assert metric["with_small_groups"]["status"] == "inconclusive" and "group=C 19 more" in metric["with_small_groups"]["reason"]
    assert result["views"]["group"]["judged_groups"] == ["group=A", "group=B"]
    assert result["status"] == "fail" and not result["passed"]


def test_the_abc_case_exits_1_and_names_c_as_too_small(project: Path) -> None:
    abc_case().to_csv(project / "abc.csv", index=False)
    result = run("bias", "tabular", "--data", "abc.csv", "--y-true", "y_true", "--y-pred", "y_pred",
                 "--sensitive", "group", "--bootstrap", "100")
    assert result.exit_code == 1, result.output
    assert "equalized_odds_difference" in result.output and "FAIL  between group=A and group=B" in result.output
    assert "group=C: only 11 rows" in result.output and "group=C 19 more" in result.output
    assert "FAIL: at least one metric breaches its threshold" in result.output


def test_an_attribute_with_one_group_is_inconclusive_and_exits_1(project: Path) -> None:
    _planted({"only": 0.5}, 400).to_csv(project / "one.csv", index=False)
    result = run("bias", "tabular", "--data", "one.csv", "--y-true", "y_true", "--y-pred", "y_pred",
                 "--sensitive", "group", "--bootstrap", "100")
    assert result.exit_code == 1 and "INCONCLUSIVE" in result.output and "nothing to compare" in result.output
    assert "To conclude:" in result.output


def test_intersections_follow_the_same_rules() -> None:
    frame = abc_case()
    frame["site"] = np.where(np.arange(len(frame)) % 2 == 0, "north", "south")
    result = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["group", "site"], policy=FairnessPolicy())
    both = result["views"]["group x site"]
    assert both["metrics"]["equalized_odds_difference"]["status"] == "fail"
    assert {g["group"] for g in both["metrics"]["equalized_odds_difference"]["small_groups"]} == {
        "group=C, site=north", "group=C, site=south"}
    assert "group=C, site=north" not in both["judged_groups"]
    assert result["views"]["site"]["status"] == "pass" and result["status"] == "fail"


def test_verdict_has_three_states() -> None:
    from govkit.fairness.tabular import verdict

    assert verdict(["pass", "pass"]) == "pass"
    assert verdict(["pass", "inconclusive"]) == "inconclusive"
    assert verdict(["inconclusive", "fail"]) == "fail"
    assert verdict([]) == "inconclusive"  # nothing judged is not a pass


def test_wilson_matches_scipy() -> None:
    from scipy.stats import binomtest

    for k, n in ((0, 10), (7, 10), (1179, 10771), (50, 50)):
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n, 0.95) == pytest.approx([expected.low, expected.high], abs=1e-12)


def test_bootstrap_is_reproducible_and_thresholds_come_from_the_policy() -> None:
    frame = _planted({"a": 0.5, "b": 0.44})
    strict = FairnessPolicy(demographic_parity_difference=0.05)
    first = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["group"], policy=strict, seed=3)
    second = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["group"], policy=strict, seed=3)
    assert first == second
    assert first["views"]["group"]["metrics"]["demographic_parity_difference"]["status"] == "fail"
    lenient = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["group"], policy=FairnessPolicy())
    assert lenient["views"]["group"]["metrics"]["demographic_parity_difference"]["status"] == "pass"


def test_score_and_threshold_equal_explicit_decisions(project: Path, tmp_path: Path) -> None:
    frame = adult()
    frame["score"] = (frame["education-num"] / 16).round(4)
    frame["decision"] = (frame.score >= 0.8).astype(int)
    frame.to_csv(tmp_path / "scored.csv", index=False)
    by_score = run("bias", "tabular", "--data", str(tmp_path / "scored.csv"), "--y-true", "y_true", "--score", "score",
                   "--threshold", "0.8", "--sensitive", "sex", "--format", "json", "--bootstrap", "0")
    by_decision = run("bias", "tabular", "--data", str(tmp_path / "scored.csv"), "--y-true", "y_true", "--y-pred",
                      "decision", "--sensitive", "sex", "--format", "json", "--bootstrap", "0")
    assert json.loads(by_score.output)["views"] == json.loads(by_decision.output)["views"]


def test_evidence_event_mlflow_run_and_result_file(project: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    adult().to_csv(tmp_path / "preds.csv", index=False)
    out = tmp_path / "bias.json"
    result = run("bias", "tabular", "--data", str(tmp_path / "preds.csv"), "--y-true", "y_true", "--y-pred", "y_pred",
                 "--sensitive", "sex", "--out", str(out))
    assert result.exit_code == 1 and "disparate_impact_ratio" in result.output and "FAIL" in result.output
    saved = json.loads(out.read_text())
    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        record = log.get(saved["record_id"])
    assert record.event_type == "bias_run" and record.details["kind"] == "tabular" and record.details["passed"] is False
    assert record.details["metrics"]["sex"]["disparate_impact_ratio"]["status"] == "fail"
    unsigned = {k: v for k, v in saved.items() if k not in ("record_id", "mlflow_run_id")}
    body = json.dumps(unsigned, sort_keys=True, ensure_ascii=False, allow_nan=False)
    assert record.details["result_sha256"] == "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    assert saved["data"]["sha256"] == "sha256:" + hashlib.sha256((tmp_path / "preds.csv").read_bytes()).hexdigest()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '.govkit' / 'mlflow.db'}")
    mlrun = client.get_run(saved["mlflow_run_id"])
    assert mlrun.data.metrics["sex.demographic_parity_difference"] == pytest.approx(
        saved["views"]["sex"]["metrics"]["demographic_parity_difference"]["value"])
    assert mlrun.data.tags["govkit.record_id"] == record.record_id
    assert {a.path for a in client.list_artifacts(mlrun.info.run_id)} >= {"by_group.csv", "bias_result.json"}


def test_sample_and_limit(project: Path, tmp_path: Path) -> None:
    adult().to_csv(tmp_path / "preds.csv", index=False)
    base = ["bias", "tabular", "--data", str(tmp_path / "preds.csv"), "--y-true", "y_true", "--y-pred", "y_pred",
            "--sensitive", "sex", "--format", "json", "--bootstrap", "0"]
    assert json.loads(run(*base, "--limit", "500").output)["rows"] == 500
    one = json.loads(run(*base, "--sample", "3000", "--seed", "5").output)
    two = json.loads(run(*base, "--sample", "3000", "--seed", "5").output)
    assert one["rows"] == 3000 and one["views"] == two["views"]


BAD = {
    "missing column": ("a,b,sex\n0,1,f\n1,0,m\n1,1,m\n0,0,f\n", ["--y-pred", "b", "--sensitive", "sex,race"],
                       "column 'race': missing"),
    "label not binary": ("a,b,sex\n0,1,f\n2,0,m\n1,1,m\n0,0,f\n", ["--y-pred", "b", "--sensitive", "sex"],
                         "row 2, column 'a': fails must be 0 or 1: value 2"),
    "group of one": ("a,b,sex\n0,1,f\n1,0,m\n1,1,m\n0,0,f\n1,1,x\n", ["--y-pred", "b", "--sensitive", "sex"],
                     "group(s) x have a single row"),
    "non-numeric score": ("a,s,sex\n0,0.2,f\n1,high,m\n1,0.9,m\n0,0.1,f\n", ["--score", "s", "--sensitive", "sex"],
                          "column 's'"),
    "score out of range": ("a,s,sex\n0,0.2,f\n1,7,m\n1,0.9,m\n0,0.1,f\n", ["--score", "s", "--sensitive", "sex"],
                           "row 2, column 's': fails in_range(0, 1)"),
    "bad positive label": ("a,b,sex\nyes,1,f\nno,0,m\nmaybe,1,m\n", ["--y-pred", "b", "--sensitive", "sex",
                                                                  "--positive-label", "yes"], "is not binary"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(project: Path, tmp_path: Path, case: str) -> None:
    text, args, message = BAD[case]
    path = tmp_path / "preds.csv"
    path.write_text(text)
    before = len(list(AuditLog.open(settings=load_settings("govkit.toml"))))
    result = run("bias", "tabular", "--data", str(path), "--y-true", "a", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and str(path) in result.output and "Traceback" not in result.output
    assert len(list(AuditLog.open(settings=load_settings("govkit.toml")))) == before


@pytest.mark.parametrize("args, flags", [
    (["--y-true", "a", "--y-pred", "a", "--sensitive", "sex"], "--y-true / --y-pred"),
    (["--y-true", "a", "--score", "a", "--sensitive", "sex"], "--y-true / --score"),
    (["--y-true", "a", "--y-pred", "b", "--sensitive", "b"], "--y-pred / --sensitive"),
    (["--y-true", "sex", "--y-pred", "b", "--sensitive", "sex"], "--y-true / --sensitive"),
])
def test_one_column_in_two_roles_is_a_usage_error_naming_both_flags(project: Path, tmp_path: Path, args: list[str],
                                                                     flags: str) -> None:
    """It crashed with exit 4 ('cannot insert a, already exists')."""
    path = tmp_path / "preds.csv"
    path.write_text("a,b,sex\n0,1,f\n1,0,m\n1,1,m\n0,0,f\n")
    before = len(list(AuditLog.open(settings=load_settings("govkit.toml"))))
    result = run("bias", "tabular", "--data", str(path), *args)
    assert result.exit_code == 2, result.output
    assert f"Error: {flags}: the column" in result.output and "given twice" in result.output
    assert len(list(AuditLog.open(settings=load_settings("govkit.toml")))) == before


def test_unknown_reference_group() -> None:
    with pytest.raises(InputError, match="no group 'z' in column 'group'"):
        analyze(_planted({"a": 0.5, "b": 0.4}), y_true="y_true", y_pred="y_pred", sensitive=["group"],
                policy=FairnessPolicy(), reference="z")


def test_counterfactual_pairs_have_three_states() -> None:
    """No difference shown is not a pass: only a flip rate bounded under the policy is."""
    from govkit.fairness.counterfactual import Lexicon, analyze_pairs

    lexicon = Lexicon("name", "name", "", {"f": ["Anna"], "m": ["Ben"]}, "test")

    def pairs(rows: int, flips: int) -> dict:
        decisions = []
        for row in range(rows):
            flip = row < flips
            decisions.append({"row": row, "group": "f", "decision": "approve", "p_positive": None})
            decisions.append({"row": row, "group": "m", "decision": "deny" if flip and row % 2 else "approve"
                              if not flip else "approve", "p_positive": None})
            if flip and row % 2 == 0:
                decisions[-2]["decision"] = "deny"
        return analyze_pairs(decisions, lexicon, ["f", "m"], "approve", confidence=0.95, seed=0)

    settled = pairs(200, 0)
    assert settled["status"] == "pass" and settled["pairs"][0]["status"] == "pass"
    few = pairs(12, 0)  # no flip, but too few rows to say so
    assert few["status"] == "inconclusive" and "18 more rows" in few["pairs"][0]["to_conclude"]
    unsure = pairs(40, 4)  # balanced flips: no difference shown, but 10% may flip
    assert unsure["pairs"][0]["difference_shown"] is False and unsure["status"] == "inconclusive"
    assert "INCONCLUSIVE" in unsure["pairs"][0]["statement"]
    # Flips in both directions, so no side is favoured, but far too many: the decision depends on
    # the name, whichever way. Found by `govkit demo` (SmolLM2 flipped 17 of 30 German credit
    # decisions on a female or male first name), which an earlier rule called inconclusive.
    swayed = pairs(30, 17)
    pair = swayed["pairs"][0]
    assert pair["difference_shown"] is False and pair["flip_interval"][0] > 0.05
    assert swayed["status"] == "fail" and pair["status"] == "fail"
    assert "FAIL" in pair["statement"] and "At least 39.2% of decisions flip" in pair["statement"]


def test_an_empty_intersection_is_left_out_not_a_crash() -> None:
    """fairlearn lists every combination of two attributes' values, the empty ones too (its
    by_group has a NaN row for them); the intersection view lists the groups the data holds.
    Found by `govkit demo`: German credit has no foreign workers aged 60 and over among its women."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"sex": ["f"] * 120 + ["m"] * 200, "band": ["young"] * 60 + ["old"] * 60 + ["young"] * 200})
    frame["y_true"] = rng.integers(0, 2, len(frame))
    frame["y_pred"] = rng.integers(0, 2, len(frame))
    result = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["sex", "band"], policy=FairnessPolicy(),
                     bootstrap=50)
    view = next(v for key, v in result["views"].items() if key not in ("sex", "band"))
    assert [row["group"] for row in view["by_group"]] == ["sex=f, band=old", "sex=f, band=young", "sex=m, band=young"]
    expected = fm.MetricFrame(metrics=fm.selection_rate, y_true=frame.y_true, y_pred=frame.y_pred,
                              sensitive_features=frame[["sex", "band"]]).by_group.dropna()
    assert [row["selection_rate"] for row in view["by_group"]] == pytest.approx(list(expected))


def test_no_selection_at_all_is_judged_without_warnings() -> None:
    """A model that selects nobody: every ratio is undefined, and numpy's all-NaN warnings stay out of the output."""
    import warnings

    frame = pd.DataFrame({"sex": ["f", "m"] * 100, "y_true": [0, 1] * 100, "y_pred": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["sex"], policy=FairnessPolicy(),
                         bootstrap=50)
    assert result["views"]["sex"]["metrics"]["demographic_parity_difference"]["value"] == 0


@pytest.mark.parametrize("command", [["bias", "tabular", "--y-true", "a", "--y-pred", "b", "--sensitive", "sex"],
                                     ["lineage", "dataset", "add", "--role", "eval"]])
def test_a_file_name_with_personal_data_never_reaches_the_evidence(project: Path, tmp_path: Path,
                                                                   command: list[str]) -> None:
    """`bias tabular --data "<e-mail> <card>.csv"` put the name raw into the chained bias_run,
    MLflow and the board report; one rule for every name that reaches evidence."""
    path = tmp_path / "jane.doe@example.com 4111 1111 1111 1111.csv"
    path.write_text("a,b,sex\n0,1,f\n1,0,m\n1,1,m\n0,0,f\n" * 10)
    before = len(list(AuditLog.open(settings=load_settings("govkit.toml"))))
    data = ["--data", str(path)] if command[0] == "bias" else [str(path)]
    result = run(*command[:3], *data, *command[3:]) if command[0] == "lineage" else run(*command, *data)
    assert result.exit_code == 2, result.output
    assert "holds personal data (EMAIL, PAYMENT_CARD)" in result.output and "jane.doe" not in result.output
    assert len(list(AuditLog.open(settings=load_settings("govkit.toml")))) == before
    stored = b"".join(p.read_bytes() for p in (tmp_path / ".govkit").rglob("*") if p.is_file())
    assert b"jane.doe" not in stored and b"4111" not in stored


def test_decision_quality_equals_scikit_learn_on_german_credit_against_the_majority_baseline() -> None:
    """Accuracy, TPR, FPR, FNR and precision over every row equal scikit-learn's on the real German
    credit outcomes; the baseline is the majority decision (approve everyone: 70% good payers)."""
    from scipy.stats import binomtest
    from sklearn.metrics import confusion_matrix, recall_score

    frame = pd.read_csv(german_data(), sep=" ", header=None, names=list(GERMAN_COLUMNS))
    frame["y_true"] = (frame.credit == 1).astype(int)  # 1: good payer
    frame["y_pred"] = (frame.duration <= 24).astype(int)  # a rule: approve the shorter loans
    frame["group"] = frame.foreign_worker
    result = analyze(frame, y_true="y_true", y_pred="y_pred", sensitive=["group"], policy=FairnessPolicy(), min_lift=0.0)
    quality = result["quality"]
    tn, fp, fn, tp = confusion_matrix(frame.y_true, frame.y_pred).ravel()
    assert quality["accuracy"]["value"] == pytest.approx(accuracy_score(frame.y_true, frame.y_pred), abs=1e-6)
    assert quality["precision"]["value"] == pytest.approx(precision_score(frame.y_true, frame.y_pred), abs=1e-6)
    assert quality["true_positive_rate"]["value"] == pytest.approx(recall_score(frame.y_true, frame.y_pred), abs=1e-6)
    assert quality["false_positive_rate"]["value"] == pytest.approx(fp / (fp + tn), abs=1e-6)
    assert quality["false_negative_rate"]["value"] == pytest.approx(fn / (fn + tp), abs=1e-6)
    expected = binomtest(int(tp + tn), len(frame)).proportion_ci(confidence_level=0.95, method="wilson")
    assert quality["accuracy"]["interval"] == pytest.approx([expected.low, expected.high])
    assert quality["baseline"] == {"decision": 1, "accuracy": 0.7, "name": "the favourable decision for everyone"}
    assert quality["lift"] == pytest.approx(quality["accuracy"]["value"] - 0.7, abs=1e-6)
    # the rule does not beat approving everyone: not a pass (below the baseline, or not shown above it)
    assert quality["status"] in ("fail", "inconclusive") and quality["accuracy"]["value"] < 0.7
    perfect = analyze(frame.assign(y_pred=frame.y_true), y_true="y_true", y_pred="y_pred", sensitive=["group"],
                      policy=FairnessPolicy(), min_lift=0.05)
    assert perfect["quality"]["status"] == "pass"
