"""Quality before outcomes arrive: confidence-based performance estimation (CBPE, as NannyML's).

A calibrated classifier's probability of its predicted class is the chance that the prediction is right,
so the mean of those probabilities over unlabelled rows is the expected accuracy. The expected ROC AUC
counts each row as a positive with weight p and as a negative with weight 1 - p. Probabilities are first
calibrated (isotonic regression per class, one-vs-rest) on a labelled reference of the version: the rows
of its drift baseline, held out from its training. The estimate holds while only the inputs shift (P(y|x)
unchanged); a change of the concept itself needs outcomes to be seen. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

MIN_REFERENCE_ROWS = 100  # fewer labelled reference rows: the probabilities are used as the model gives them
ESTIMATED = ("accuracy", "roc_auc")  # the metrics CBPE estimates (quality.specs.ESTIMATED_METRICS)


def label(value: Any) -> str:
    """A class label as text, the same for 1, 1.0 and "1" (outcomes, predictions and classes compare as this)."""
    if isinstance(value, bool):
        return str(value)
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def fit_calibration(proba: np.ndarray, classes: list[str], actual: list[str]) -> dict[str, Any]:
    """Per class, the isotonic map from the model's probability to the observed frequency (JSON-ready)."""
    y = np.asarray(actual, dtype=object)
    if len(y) < MIN_REFERENCE_ROWS:
        return {"calibrated": False, "reason": f"{len(y)} reference rows, fewer than {MIN_REFERENCE_ROWS}",
                "classes": classes}
    maps = {}
    for i, cls in enumerate(classes):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba[:, i], y == cls)
        maps[cls] = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    return {"calibrated": True, "classes": classes, "maps": maps, "rows": len(y)}


def calibrate(proba: np.ndarray, classes: list[str], calibration: dict[str, Any] | None) -> np.ndarray:
    """Probabilities through a fitted calibration (rows renormalised); as given without one."""
    if not calibration or not calibration.get("calibrated"):
        return proba
    out = np.column_stack([
        np.interp(proba[:, i], calibration["maps"][cls]["x"], calibration["maps"][cls]["y"])
        if cls in calibration["maps"] else proba[:, i] for i, cls in enumerate(classes)])
    total = out.sum(axis=1, keepdims=True)
    return np.divide(out, total, out=np.full_like(out, 1.0 / len(classes)), where=total > 0)


def expected(proba: np.ndarray, classes: list[str], predicted: list[str] | None = None) -> dict[str, float]:
    """Expected accuracy and ROC AUC (one-vs-rest, macro) of rows with these calibrated probabilities."""
    if len(proba) == 0 or len(classes) < 2:
        return {}
    if predicted is None:
        picked = proba.max(axis=1)
    else:
        index = {cls: i for i, cls in enumerate(classes)}
        columns = np.array([index.get(str(p), -1) for p in predicted])
        picked = np.where(columns >= 0, proba[np.arange(len(proba)), np.maximum(columns, 0)], 0.0)
    out = {"accuracy": float(np.mean(picked))}
    positives = [1] if len(classes) == 2 else range(len(classes))
    aucs = [_expected_auc(proba[:, i]) for i in positives]
    if all(math.isfinite(a) for a in aucs):
        out["roc_auc"] = float(np.mean(aucs))
    return out


def _expected_auc(p: np.ndarray) -> float:
    """ROC AUC when each row is a positive with weight p and a negative with weight 1 - p."""
    if p.sum() <= 0 or (1 - p).sum() <= 0:
        return math.nan
    scores = np.concatenate([p, p])
    truth = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
    return float(skm.roc_auc_score(truth, scores, sample_weight=np.concatenate([p, 1 - p])))


def standard_error(accuracy: float, rows: int) -> float:
    """The sampling error of a realized accuracy on ``rows`` rows around an expected one (binomial)."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / rows) if rows else math.inf
