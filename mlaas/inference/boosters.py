"""XGBoost and LightGBM models from their native formats, behind scikit-learn's predict interface.

A ``NativeModel`` wraps an XGBoost scikit-learn estimator (loaded from JSON/UBJ), a LightGBM scikit-learn
estimator (loaded from skops, whose booster state is LightGBM's own text) or a LightGBM ``Booster`` (text).
Predictions use the libraries' own predict (XGBoost's in-place predict), after turning the columns the model
treats as categorical into pandas categories, as the model was trained on. ``fresh`` gives an unfitted copy
with the same hyperparameters, which retraining fits.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd

HYPERPARAMETERS_ATTR = "mlaas_params"  # XGBoost model attribute: the hyperparameters mlaas trained with
_LGB_DATA_PARAMS = {"categorical_feature", "categorical_column", "cat_feature", "cat_column"}  # from the frame
# Words of LightGBM's prediction parameters and their aliases (predict_raw_score, pred_early_stop, is_predict_contrib …)
_LGB_PREDICT_WORDS = ("pred", "raw_score", "rawscore", "leaf_index", "contrib", "output_result")
_LGB_CLASSIFIERS = {"binary", "multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"}


class NativeModel:
    """A gradient-boosting model with ``predict``/``predict_proba``/``classes_``, fitted or not."""

    def __init__(self, model: Any, library: str, *, rounds: int | None = None, params: dict[str, Any] | None = None,
                 threads: int | None = None):
        self.model = model  # XGBModel / LGBMModel (fitted or not) or lightgbm.Booster (None: unfitted booster)
        self.library = library  # "xgboost" or "lightgbm"
        self.rounds = rounds  # lightgbm.Booster only: boosting rounds to train
        self.params = dict(params or {})  # lightgbm.Booster only: its training parameters
        self.threads = threads  # native threads per predict (None: the library's default)
        if threads and library == "xgboost" and model is not None:
            model.get_booster().set_param({"nthread": threads})  # the booster's, not a hyperparameter to retrain with
        self._categorical: list[tuple[int, pd.CategoricalDtype | None]] | None = None  # categorical inputs, found once
        self._lightgbm_own_params: bool | None = None  # LightGBM: whether it sets prediction parameters, found once

    # -- what the service reads ---------------------------------------------------------------------
    @property
    def is_booster(self) -> bool:
        """Whether this wraps LightGBM's training API (a ``Booster``) rather than a scikit-learn estimator."""
        return self.library == "lightgbm" and not hasattr(self.model, "get_params")

    @property
    def task(self) -> str:
        if self.is_booster:
            return "classification" if str(self.params.get("objective", "")) in _LGB_CLASSIFIERS else "regression"
        return "classification" if hasattr(self.model, "predict_proba") else "regression"

    @property
    def classes_(self) -> np.ndarray:
        if self.task != "classification":
            raise AttributeError("a regressor has no classes_")
        if self.is_booster:
            return np.arange(max(2, int(self.params.get("num_class", 1))))
        return np.asarray(self.model.classes_)

    @property
    def feature_names_in_(self) -> np.ndarray:
        if self.is_booster:
            return np.asarray(self.model.feature_name(), dtype=object)
        return np.asarray(self.model.feature_names_in_, dtype=object)

    @property
    def n_features_in_(self) -> int:
        return len(self.feature_names_in_)

    # -- predicting ---------------------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        """Labels (classifiers) or values, from the library's own predict."""
        if self.library == "lightgbm" and self.task == "classification":  # LightGBM's labels: argmax of proba
            return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])
        if self.library == "lightgbm" and (matrix := self._lightgbm_matrix(X)) is not None:
            return np.asarray(self._booster().predict(matrix, **self._predict_kwargs()))
        return np.asarray(self.model.predict(self._inputs(X), **self._predict_kwargs()))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per class in the order of ``classes_`` (classifiers only)."""
        if self.task != "classification":
            raise AttributeError("a regressor has no predict_proba")
        if self.library == "lightgbm" and (matrix := self._lightgbm_matrix(X)) is not None:
            raw = np.asarray(self._booster().predict(matrix, **self._predict_kwargs()), dtype=float)
        elif not self.is_booster:
            return np.asarray(self.model.predict_proba(self._inputs(X), **self._predict_kwargs()), dtype=float)
        else:
            raw = np.asarray(self.model.predict(self.frame(X), **self._predict_kwargs()), dtype=float)
        return np.stack([1 - raw, raw], axis=1) if raw.ndim == 1 else raw

    def _booster(self) -> Any:
        return self.model if self.is_booster else self.model.booster_

    def _lightgbm_matrix(self, X: Any) -> np.ndarray | None:
        """For LightGBM, the matrix of ``_matrix`` where its ``Booster.predict`` answers on it as the scikit-learn
        wrapper would on the frame: LightGBM recodes a pandas category to its training codes, missing and unseen as
        NaN, exactly as ``_matrix`` does, and skipping its pandas handling is most of a 100-row call. The
        booster is called directly (the wrapper would warn that a matrix has no feature names); an estimator
        with prediction parameters of its own keeps the wrapper, which passes them on."""
        if self._lightgbm_own_params is None:
            params = self.params if self.is_booster else self.model.get_params()
            self._lightgbm_own_params = bool(lightgbm_prediction_params(params))
        return None if self._lightgbm_own_params else self._matrix(X)

    def _predict_kwargs(self) -> dict[str, Any]:
        # LightGBM's scikit-learn wrapper uses every physical core unless told (it ignores the OpenMP limit)
        return {"num_threads": self.threads} if self.threads and self.library == "lightgbm" else {}

    def categories(self) -> dict[int, list[Any]]:
        """The categories the model knows, by input position, for the categorical inputs that record them."""
        return {i: list(dtype.categories) for i, dtype in self._categoricals() if dtype is not None}

    def _categoricals(self) -> list[tuple[int, pd.CategoricalDtype | None]]:
        """The categorical inputs, found once per fitted model (``fit`` forgets them)."""
        if self._categorical is None:
            self._categorical = self._categorical_inputs()
        return self._categorical

    def _inputs(self, X: Any) -> Any:
        """What the library predicts on: for XGBoost, the matrix of ``_matrix`` where there is one (its in-place
        predict on numpy takes half the time of its pandas path, same answers); otherwise ``frame(X)``, whose errors
        the library words."""
        if self.library == "xgboost" and (matrix := self._matrix(X)) is not None:
            return matrix
        return self.frame(X)

    def _matrix(self, X: Any) -> np.ndarray | None:
        """When every input of ``X`` is numeric or a category with known categories, a float matrix in the model's
        column order with the categories' codes (unseen or missing: NaN); else None."""
        if not isinstance(X, pd.DataFrame) or not X.columns.is_unique:
            return None
        position = {str(c): i for i, c in enumerate(X.columns)}
        names = [str(c) for c in self.feature_names_in_]
        dtypes = dict(self._categoricals())
        if not all(n in position for n in names) or any(d is None for d in dtypes.values()):
            return None
        matrix = np.empty((len(X), len(names)), dtype=np.float64)
        for i, name in enumerate(names):
            column = X.iloc[:, position[name]]
            dtype = dtypes.get(i)
            if dtype is not None:
                codes = dtype.categories.get_indexer(np.asarray(column, dtype=object))
                matrix[:, i] = np.where(codes < 0, np.nan, codes)  # unseen or missing: missing
            elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
                matrix[:, i] = column.to_numpy(dtype=np.float64)
            else:
                return None
        return matrix

    def frame(self, X: Any) -> Any:
        """``X`` with the columns the model takes as categorical turned into pandas categories.

        XGBoost refuses a category it was not trained on; it becomes a missing value here, as LightGBM makes it.
        """
        if not isinstance(X, pd.DataFrame):
            return X
        names = [str(c) for c in self.feature_names_in_]
        if [str(c) for c in X.columns] != names and set(names) <= {str(c) for c in X.columns}:
            X = X[names]  # LightGBM reads columns by position, XGBoost refuses another order: give its own
        categorical = self._categoricals()
        if not categorical:
            return X
        changed = {}
        for i, dtype in categorical:
            if i >= X.shape[1]:
                continue
            column = X.iloc[:, i]
            if dtype is not None:
                changed[str(X.columns[i])] = pd.Categorical(column, dtype=dtype)
            elif not isinstance(column.dtype, pd.CategoricalDtype):
                changed[str(X.columns[i])] = column.astype("category")
        return X.assign(**changed) if changed else X

    def _categorical_inputs(self) -> list[tuple[int, pd.CategoricalDtype | None]]:
        """(position, the categories the model knows, if it records them) of each categorical input.

        The categories are made a dtype once: building one per call (checking its categories) was a third of a
        call's time. LightGBM's come from its ``pandas_categorical``, to which it would recode the column itself.
        """
        if self.library == "xgboost":
            types = getattr(self.model, "feature_types", None) or _booster_types(self.model)
            levels = _xgboost_levels(self.model)
            return [(i, _dtype(levels.get(i))) for i, t in enumerate(types or []) if t == "c"]
        booster = self.model if self.is_booster else self.model.booster_
        if not booster.pandas_categorical:
            return []
        found = re.search(r"^\[categorical_feature: ([\d,]*)\]$", booster.model_to_string(), re.MULTILINE)
        positions = sorted(int(i) for i in found.group(1).split(",") if i) if found else []
        known = booster.pandas_categorical if len(booster.pandas_categorical) == len(positions) else []
        return [(i, _dtype(known[k]) if known else None) for k, i in enumerate(positions)]

    # -- retraining ---------------------------------------------------------------------------------
    def fresh(self, known: dict[str, Any] | None = None) -> NativeModel:
        """An unfitted copy with this model's hyperparameters (``known``: logged ones, for XGBoost's gaps)."""
        if self.is_booster:
            return NativeModel(None, self.library, rounds=self.rounds, params=self.params)
        from sklearn.base import clone

        estimator = clone(self.model)
        if self.library == "xgboost":
            estimator.set_params(**xgboost_hyperparameters(self.model, known or {}))
        return NativeModel(estimator, self.library)

    def fit(self, X: pd.DataFrame, y: Any) -> NativeModel:
        """Train the underlying model with its hyperparameters on ``X``, ``y``."""
        frame = X.assign(**{str(c): X[c].astype("category") for c in X.columns if _is_text(X[c])})
        self._categorical = None
        try:
            if not self.is_booster:
                self.model.fit(frame, y)
                return self
            import lightgbm

            params = {k: v for k, v in self.params.items() if k not in _LGB_DATA_PARAMS}
            self.model = lightgbm.train(params, lightgbm.Dataset(frame, label=np.asarray(y)),
                                        num_boost_round=int(self.rounds or params.get("num_iterations", 100)))
        except ValueError:
            raise
        except Exception as exc:  # XGBoostError, LightGBMError: the data cannot train this model
            raise ValueError(f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """The training parameters, JSON-serialisable (for logging and for XGBoost's model attribute)."""
        raw = self.params if self.is_booster else self.model.get_params()
        return {k: v for k, v in raw.items() if v is None or isinstance(v, str | int | float | bool)}


def xgboost_hyperparameters(model: Any, known: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters of a fitted XGBoost estimator that its model file alone does not keep.

    The file keeps the trees, objective and categorical handling, not max_depth or learning_rate: those come
    from ``known`` (the source run's logged parameters), then from what mlaas stored in the model's attribute.
    """
    accepted = set(model.get_params())
    out: dict[str, Any] = {"base_score": None, "feature_types": None}  # loading fills them in; a fit infers them
    out |= {k: parse_param(v) for k, v in known.items() if k in accepted and k not in ("n_estimators", "missing")}
    booster = model.get_booster()
    stored = booster.attr(HYPERPARAMETERS_ATTR)
    if stored:
        out.update({k: v for k, v in json.loads(stored).items() if k in accepted})
    out["n_estimators"] = booster.num_boosted_rounds()
    return out


def lightgbm_prediction_params(params: dict[str, Any]) -> list[str]:
    """The LightGBM parameters (or aliases) set in ``params`` that change what its predict answers."""
    return sorted(k for k, v in params.items() if v is not None and any(w in k for w in _LGB_PREDICT_WORDS))


def parse_param(text: Any) -> Any:
    """A parameter as MLflow logs it (``str(value)``) back to its value: None, booleans, numbers, else text."""
    if not isinstance(text, str):
        return text
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _booster_types(model: Any) -> list[str] | None:
    try:
        return list(model.get_booster().feature_types or [])
    except Exception:  # an unfitted estimator
        return None


def _xgboost_levels(model: Any) -> dict[int, list[Any]]:
    """The training categories XGBoost (≥ 3.1) keeps per input column, by position."""
    try:
        columns = model.get_booster().get_categories(export_to_arrow=True).to_arrow()
    except Exception:  # an older model or library: no recorded categories
        return {}
    return {i: levels.to_pylist() for i, (_, levels) in enumerate(columns or []) if levels is not None}


def _dtype(levels: list[Any] | None) -> pd.CategoricalDtype | None:
    return None if levels is None else pd.CategoricalDtype(levels)


def _is_text(column: pd.Series) -> bool:
    return column.dtype == object or pd.api.types.is_string_dtype(column.dtype)
