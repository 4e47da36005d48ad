"""Task-appropriate metrics, shared by training, evaluation and the promotion gate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

# Primary metric per task and whether larger is better.
PRIMARY = {"classification": "f1_macro", "regression": "rmse"}
GREATER_IS_BETTER = {
    "accuracy": True, "precision_macro": True, "recall_macro": True, "f1_macro": True, "f1_weighted": True,
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


def compute(task: str, y_true: Any, y_pred: Any, proba: np.ndarray | None = None,
            classes: list[Any] | None = None) -> dict[str, float]:
    """Metrics for ``task``; metrics that are undefined for the data are left out."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if task == "regression":
        return _regression(y_true.astype(float), y_pred.astype(float))
    return _classification(y_true, y_pred, proba, classes or [])


def _regression(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    out = {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, p))),
        "mae": float(skm.mean_absolute_error(y, p)),
        "r2": float(skm.r2_score(y, p)) if len(y) > 1 else float("nan"),
    }
    if np.all(y != 0):
        out["mape"] = float(skm.mean_absolute_percentage_error(y, p))
    return {k: v for k, v in out.items() if np.isfinite(v)}


def _classification(y: np.ndarray, p: np.ndarray, proba: np.ndarray | None, classes: list[Any]) -> dict[str, float]:
    out = {
        "accuracy": float(skm.accuracy_score(y, p)),
        "precision_macro": float(skm.precision_score(y, p, average="macro", zero_division=0)),
        "recall_macro": float(skm.recall_score(y, p, average="macro", zero_division=0)),
        "f1_macro": float(skm.f1_score(y, p, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(y, p, average="weighted", zero_division=0)),
    }
    if proba is not None and classes and len(np.unique(y)) > 1 and set(np.unique(y)) <= set(classes):
        try:
            if len(classes) == 2:
                out["roc_auc"] = float(skm.roc_auc_score(y, proba[:, 1], labels=classes))
            else:
                out["roc_auc"] = float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
            out["log_loss"] = float(skm.log_loss(y, proba, labels=classes))
        except ValueError:
            pass
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
