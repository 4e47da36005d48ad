"""Task-appropriate metrics, shared by training, evaluation and the promotion gate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

# Primary metric per task and whether larger is better.
PRIMARY = {"classification": "f1_macro", "regression": "rmse"}
GREATER_IS_BETTER = {
    "accuracy": True, "precision_macro": True, "recall_macro": True, "f1_macro": True, "precision_weighted": True,
    "recall_weighted": True, "f1_weighted": True,
    "roc_auc": True, "log_loss": False, "rmse": False, "mae": False, "r2": True, "mape": False,
}


def predict(estimator: Any, X: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None, list[Any]]:
    """One vectorised predict (and predict_proba for classifiers that have it)."""
    y_pred = np.asarray(estimator.predict(X))
    proba = None
    classes: list[Any] = []
    if task == "classification" and hasattr(estimator, "predict_proba"):
        try:
            proba = np.asarray(estimator.predict_proba(X), dtype=float)
            classes = list(getattr(estimator, "classes_", range(proba.shape[1])))
        except (AttributeError, NotImplementedError):
            proba = None
    return y_pred, proba, classes


class Metrics(dict[str, float]):
    """Finite metric values by name; ``undefined`` says, per metric left out, why it is undefined here."""

    def __init__(self, values: Mapping[str, float] | None = None, undefined: Mapping[str, str] | None = None):
        super().__init__(values or {})
        self.undefined: dict[str, str] = dict(undefined or {})


def compute(task: str, y_true: Any, y_pred: Any, proba: np.ndarray | None = None,
            classes: list[Any] | None = None) -> Metrics:
    """Metrics for ``task``, never NaN or infinite: a metric undefined for the data is left out, with its reason."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    undefined: dict[str, str] = {}
    if task == "regression":
        values = _regression(y_true.astype(float), y_pred.astype(float), undefined)
    else:
        values = _classification(y_true, y_pred, proba, classes or [], undefined)
    for name, value in list(values.items()):
        if not math.isfinite(value):
            del values[name]
            undefined[name] = "it is not a finite number on this data"
    return Metrics(values, undefined)


def _regression(y: np.ndarray, p: np.ndarray, undefined: dict[str, str]) -> dict[str, float]:
    out = {"rmse": float(np.sqrt(skm.mean_squared_error(y, p))), "mae": float(skm.mean_absolute_error(y, p))}
    if len(y) > 1:
        out["r2"] = float(skm.r2_score(y, p))
    else:
        undefined["r2"] = "it needs at least 2 rows"
    if np.all(y != 0):
        out["mape"] = float(skm.mean_absolute_percentage_error(y, p))
    else:
        undefined["mape"] = "the target is 0 in some rows"
    return out


def _classification(y: np.ndarray, p: np.ndarray, proba: np.ndarray | None, classes: list[Any],
                    undefined: dict[str, str]) -> dict[str, float]:
    out = {"accuracy": float(skm.accuracy_score(y, p))}
    for average in ("macro", "weighted"):
        out[f"precision_{average}"] = float(skm.precision_score(y, p, average=average, zero_division=0))
        out[f"recall_{average}"] = float(skm.recall_score(y, p, average=average, zero_division=0))
        out[f"f1_{average}"] = float(skm.f1_score(y, p, average=average, zero_division=0))
    seen = set(np.unique(y).tolist())
    unknown = seen - set(classes)
    if proba is None or not classes:
        reason = "the model gives no class probabilities"
    elif unknown:
        reason = f"the test set has classes the model does not know: {sorted(unknown, key=str)}"
    else:
        out["log_loss"] = float(skm.log_loss(y, proba, labels=classes))  # defined with one class too
        present = [i for i, cls in enumerate(classes) if cls in seen]
        if len(present) < 2:
            undefined["roc_auc"] = f"the test set has only class {classes[present[0]]}"
        else:  # one-vs-rest, macro over the classes in the test set (all of them for a binary model)
            positive = present[1:] if len(classes) == 2 else present
            out["roc_auc"] = float(np.mean([skm.roc_auc_score(y == classes[i], proba[:, i]) for i in positive]))
        return out
    undefined.update({"roc_auc": reason, "log_loss": reason})
    return out


def confusion(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Confusion matrix with its labels."""
    labels = sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()), key=str)
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels)
    return {"labels": [str(label) for label in labels], "matrix": matrix.tolist()}


def is_better_or_equal(metric: str, candidate: float, incumbent: float) -> bool:
    """Whether ``candidate`` is at least as good as ``incumbent`` on ``metric``."""
    if GREATER_IS_BETTER.get(metric, True):
        return candidate >= incumbent - 1e-12
    return candidate <= incumbent + 1e-12
