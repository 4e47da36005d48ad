"""Linear final steps compiled to one matrix product: the head of a ``compiled.FastPredictor``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDRegressor,
)
from sklearn.svm import LinearSVC

from mlaas.inference.steps import Unsupported


@dataclass(frozen=True)
class LinearHead:
    """``X @ coef.T + intercept``, then labels and (logistic regression) probabilities as scikit-learn makes them."""

    coef: np.ndarray
    intercept: np.ndarray | float
    classes: np.ndarray | None
    proba: str | None  # "binary", "softmax" or None

    @property
    def width(self) -> int:
        return int(self.coef.shape[-1])

    @property
    def has_proba(self) -> bool:
        return self.proba is not None

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not np.isfinite(X).all():
            raise Unsupported("the model's input holds missing values")
        scores = X @ self.coef.T + self.intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        if self.classes is None:
            return scores, None
        indices = (scores > 0).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        labels = self.classes[indices]
        if self.proba == "binary":
            positive = expit(scores)
            return labels, np.stack([1 - positive, positive], axis=1)
        if self.proba == "softmax":
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            return labels, shifted / shifted.sum(axis=1, keepdims=True)
        return labels, None


def logistic(final: Any) -> LinearHead:
    proba = "binary" if len(final.classes_) <= 2 else "softmax"
    return LinearHead(final.coef_, final.intercept_, final.classes_, proba)


def linear_classifier(final: Any) -> LinearHead:
    return LinearHead(final.coef_, final.intercept_, final.classes_, None)


def linear_regressor(final: Any) -> LinearHead:
    return LinearHead(np.asarray(final.coef_), final.intercept_, None, None)


HEADS: dict[type, Any] = {
    LogisticRegression: logistic, RidgeClassifier: linear_classifier, LinearSVC: linear_classifier,
    **{t: linear_regressor for t in (LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor)},
}
