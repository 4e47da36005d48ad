"""XGBoost and LightGBM estimators as the final step of a compiled pipeline: the head of a ``compiled.FastPredictor``.

A scikit-learn pipeline ending in ``XGBClassifier``/``XGBRegressor``/``LGBMClassifier``/``LGBMRegressor`` spends
nearly all of a small request in scikit-learn's per-step input handling and in the wrappers' own checks; the
boosting itself is a fraction of a millisecond. Behind the compiled preprocessing steps, this head hands the
float matrix (NaN for missing) straight to the library's own predict — XGBoost's ``inplace_predict``, LightGBM's
``Booster.predict`` — with the arguments the scikit-learn wrapper would pass (iteration range, missing value),
and builds the probabilities and labels as the wrapper does. ``compiled.verify`` holds it to the model's own
``predict``/``predict_proba`` on probe rows at load, as every other head.

The heads are found by class name, so importing this module imports neither library: a model holding such an
estimator has imported its library already. Predictions use the process's native thread count
(``process.openmp_threads``; LightGBM's wrapper would otherwise take every physical core).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlaas.inference.boosters import lightgbm_prediction_params
from mlaas.inference.steps import Unsupported
from mlaas.process import openmp_threads

_XGB_CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob")  # predict_proba is the predicted value itself


@dataclass(frozen=True)
class BoosterHead:
    """The library's own predict on the model's matrix input, then probabilities and labels as its wrapper makes
    them: ``[1 - p, p]`` for a binary classifier, ``classes_[argmax]`` for the label."""

    predict_value: Callable[[np.ndarray], np.ndarray]  # probability of class 1 / per class, or the regressed value
    width: int
    classes: np.ndarray | None

    @property
    def has_proba(self) -> bool:
        return self.classes is not None

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if np.isinf(X).any():
            raise Unsupported("the model's input holds infinities")
        value = np.asarray(self.predict_value(X))
        if self.classes is None:
            return value, None
        proba = np.stack([1 - value, value], axis=1) if value.ndim == 1 else value
        return self.classes[np.argmax(proba, axis=1)], proba.astype(np.float64, copy=False)


def xgboost_head(final: Any) -> BoosterHead:
    """An XGBClassifier/XGBRegressor: ``inplace_predict`` as its ``predict`` calls it on a numpy matrix."""
    objective = final.get_params().get("objective")
    classifier = hasattr(final, "predict_proba")
    if callable(objective):
        raise Unsupported("an XGBoost model with a custom objective is not compiled")
    if final.get_params().get("booster") == "gblinear":
        raise Unsupported("an XGBoost gblinear model is not compiled")
    if classifier and objective not in _XGB_CLASSIFIER_OBJECTIVES:
        raise Unsupported(f"an XGBoost classifier with objective {objective!r} is not compiled")
    booster = final.get_booster()
    if "c" in (booster.feature_types or []):
        raise Unsupported("an XGBoost model with categorical inputs after the pipeline's steps is not compiled")
    try:
        iterations = (0, final.best_iteration + 1)  # early stopping: the wrapper predicts with the best round
    except AttributeError:
        iterations = (0, 0)
    booster.set_param({"nthread": openmp_threads()})  # the booster's, not a hyperparameter to retrain with
    missing = final.missing

    def predict_value(X: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(X, iteration_range=iterations, predict_type="value",
                                                  missing=missing, validate_features=False))

    return BoosterHead(predict_value, booster.num_features(), np.asarray(final.classes_) if classifier else None)


def lightgbm_head(final: Any) -> BoosterHead:
    """An LGBMClassifier/LGBMRegressor: its ``Booster.predict`` as the wrapper calls it, on a numpy matrix."""
    params = final.get_params()
    if callable(params.get("objective")):
        raise Unsupported("a LightGBM model with a custom objective is not compiled")
    changed = lightgbm_prediction_params(params)  # the wrapper would pass them on to the booster
    if changed:
        raise Unsupported(f"a LightGBM model with prediction parameters ({', '.join(changed)}) is not compiled")
    booster = final.booster_
    if booster.pandas_categorical:
        raise Unsupported("a LightGBM model with pandas categories after the pipeline's steps is not compiled")
    threads = openmp_threads()

    def predict_value(X: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(X, num_threads=threads))

    classifier = hasattr(final, "predict_proba")
    return BoosterHead(predict_value, booster.num_feature(), np.asarray(final.classes_) if classifier else None)


# Final step class (module.name) -> its compiler, looked up by name so that neither library is imported here.
HEADS: dict[str, Callable[[Any], BoosterHead]] = {
    "xgboost.sklearn.XGBClassifier": xgboost_head, "xgboost.sklearn.XGBRegressor": xgboost_head,
    "lightgbm.sklearn.LGBMClassifier": lightgbm_head, "lightgbm.sklearn.LGBMRegressor": lightgbm_head,
}


def head_for(final: Any) -> Callable[[Any], BoosterHead] | None:
    """The compiler of ``final``'s exact class, if it is one of ``HEADS`` (subclasses may predict otherwise)."""
    return HEADS.get(f"{type(final).__module__}.{type(final).__qualname__}")
