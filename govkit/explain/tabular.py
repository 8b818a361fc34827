"""shap attributions for the edge's classic classifiers (scikit-learn pickles / joblib, ONNX).

shap's exact explainers where they exist: TreeExplainer for tree ensembles, LinearExplainer for
linear models (both explain the model's margin: log-odds for a classifier); the Permutation
explainer on the positive-class probability otherwise. The background is the data itself,
summarised by shap's Independent masker (100 rows, shap's own fixed sampling), so the same inputs
give the same numbers.

Loading a pickle runs code from the file: only explain models you trust, as you would only
deploy them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._lazy import require
from ..errors import InputError

__all__ = ["TabularModel", "explain_rows", "load_model"]

TREES = ("RandomForest", "ExtraTrees", "GradientBoosting", "HistGradientBoosting", "DecisionTree", "XGB", "LGBM")
LINEAR = ("LogisticRegression", "LinearRegression", "Ridge", "Lasso", "ElasticNet", "SGDClassifier",
          "SGDRegressor", "LinearSVC", "LinearSVR")
BACKGROUND_ROWS = 100


@dataclass
class TabularModel:
    model: Any
    path: Path
    features: list[str] | None  # the feature names the model was fitted with, when it knows them
    kind: str  # tree | linear | other | onnx

    def predict_positive(self, frame: Any) -> Any:
        """The positive-class probability (or the prediction of a regressor), one value per row."""
        np = require("numpy", "explain")
        if self.kind == "onnx":
            session = self.model
            name = session.get_inputs()[0].name
            outputs = session.run(None, {name: np.asarray(frame, dtype=np.float32)})
            probabilities = outputs[-1]
            if isinstance(probabilities, list):  # skl2onnx's ZipMap: a dict per row
                return np.array([row[max(row)] for row in probabilities])
            return np.asarray(probabilities)[:, -1] if np.ndim(probabilities) == 2 else np.asarray(probabilities)
        if hasattr(self.model, "predict_proba"):
            return self.model.predict_proba(frame)[:, -1]
        return self.model.predict(frame)


def load_model(path: Path) -> TabularModel:
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        ort = require("onnxruntime", "onnx")
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise InputError(f"{path}: not a loadable ONNX model ({exc})") from None
        return TabularModel(session, path, None, "onnx")
    if suffix not in (".joblib", ".pkl", ".pickle"):
        raise InputError(f"{path}: unsupported model file '{suffix}'; expected .joblib, .pkl, .pickle or .onnx")
    joblib = require("joblib", "explain")
    try:
        model = joblib.load(path)
    except Exception as exc:  # unpickling junk raises anything from EOFError to UnpicklingError
        raise InputError(f"{path}: not a loadable scikit-learn model ({type(exc).__name__}: {exc})") from None
    if not hasattr(model, "predict"):
        raise InputError(f"{path}: the object inside ({type(model).__name__}) has no predict method")
    name = type(model).__name__
    kind = "tree" if name.startswith(TREES) else "linear" if name in LINEAR else "other"
    features = [str(f) for f in getattr(model, "feature_names_in_", [])] or None
    return TabularModel(model, path, features, kind)


def explain_rows(model: TabularModel, frame: Any, rows: list[int] | None) -> dict[str, Any]:
    """Attributions for `rows` (0-based positions; None: every row) and the global importance."""
    shap = require("shap", "explain")
    np = require("numpy", "explain")
    features = model.features or [str(c) for c in frame.columns]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise InputError(f"the data lacks the model's feature column(s) {', '.join(missing[:10])}")
    data = frame[features]
    non_numeric = [c for c in features if not np.issubdtype(data[c].dtype, np.number)]
    if non_numeric:
        raise InputError(f"feature column(s) {', '.join(non_numeric[:10])} are not numeric; encode them as "
                         "the model was trained")
    chosen = list(range(len(data))) if rows is None else rows
    for row in chosen:
        if not 0 <= row < len(data):
            raise InputError(f"the data has rows 1 to {len(data)}", parameter="row", value=row + 1)
    background = shap.maskers.Independent(data, max_samples=BACKGROUND_ROWS)
    subject = data.iloc[chosen]
    if model.kind == "tree":
        explainer = shap.TreeExplainer(model.model)
        explanation = explainer(subject)
        method, output = "shap.TreeExplainer", "margin"
    elif model.kind == "linear":
        explainer = shap.LinearExplainer(model.model, background)
        explanation = explainer(subject)
        method, output = "shap.LinearExplainer", "margin"
    else:
        def positive(x: Any) -> Any:
            return model.predict_positive(x if model.kind == "onnx" else _frame(x, features))

        explainer = shap.Explainer(positive, background, algorithm="permutation", seed=0)
        explanation = explainer(subject, max_evals=max(2 * len(features) + 1, 500), silent=True)
        method, output = "shap.PermutationExplainer", "probability"
    values = np.asarray(explanation.values)
    bases = np.asarray(explanation.base_values)
    if values.ndim == 3:  # one column per class: explain the positive (last) class
        values, bases = values[:, :, -1], bases[:, -1]
    bases = np.broadcast_to(bases, (len(chosen),))
    explained = []
    for i, row in enumerate(chosen):
        attributions: list[dict[str, Any]] = [{"feature": f, "value": float(v)} for f, v in zip(features, values[i])]
        explained.append({"row": row + 1, "value": float(bases[i] + values[i].sum()), "base_value": float(bases[i]),
                          "attributions": attributions,
                          "top": sorted(attributions, key=lambda a: -abs(a["value"]))[:5]})
    importance = np.abs(values).mean(axis=0)
    return {"method": method, "output": output, "features": features, "rows": explained,
            "global_importance": sorted(({"feature": f, "mean_abs": float(v)} for f, v in zip(features, importance)),
                                        key=lambda item: -item["mean_abs"])}


def _frame(x: Any, features: list[str]) -> Any:
    pd = require("pandas", "explain")
    return x if isinstance(x, pd.DataFrame) else pd.DataFrame(x, columns=features)
