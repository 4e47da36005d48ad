"""Synchronous inference: payload → validated features → one vectorised predict → predictions paired with ids.

Clean record payloads for a model with a compiled predictor (``fastpath``) are checked and scored on
plain arrays; anything else (and any row the compiled steps cannot take) goes through pandas and
scikit-learn, which also word every error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from mlaas.errors import InvalidInput
from mlaas.inference import compiled, payload
from mlaas.inference.cache import ServedModel
from mlaas.inference.payload import Rows


@dataclass
class Columns:
    """Checked model inputs built without pandas: one array per model column."""

    names: list[str]
    arrays: dict[str, np.ndarray]  # float64 (NaN for missing) or object (text, NaN for missing)


@dataclass
class Prediction:
    """The answer for a request, before serialisation."""

    ids: list[Any]
    labels: list[Any]
    probabilities: list[dict[str, float]] | None
    ignored_columns: list[str]
    features: pd.DataFrame | Columns
    proba: np.ndarray | None = None  # the probabilities as one matrix, columns in the order of the classes
    # "compiled", "fallback" (rows the compiled model could not take), else the model's own library by flavour:
    # "sklearn", "xgboost" or "lightgbm"
    path: str = "sklearn"


def prepare_features(rows: Rows, model: ServedModel) -> tuple[pd.DataFrame | Columns, list[str]]:
    """Check rows against the model's columns and types; returns (features in model order, ignored columns)."""
    fast = _fast_features(rows, model) if model.predictor is not None else None
    return fast if fast is not None else _frame_features(rows, model)


def _fast_features(rows: Rows, model: ServedModel) -> tuple[Columns, list[str]] | None:
    """The features of clean record payloads, without pandas; None sends the rows to ``_frame_features``,
    which accepts the same rows with the same values and words the errors."""
    records, columns = rows.records, model.columns
    if records is None or columns is None:
        return None
    first = records[0].keys() if records else {}.keys()
    same_keys = all(record.keys() == first for record in records)
    present = list(first) if same_keys else list(dict.fromkeys(k for record in records for k in record))
    if model.id_column and model.id_column in present and not all(rows.explicit_ids):
        index = [record.get(model.id_column) for record in records]
        if not all(type(v) is str or (type(v) is int and abs(v) < 2**63) for v in index):
            return None  # pandas would turn these ids into floats or missing values
        for i, value in enumerate(index):
            if not rows.explicit_ids[i]:
                rows.ids[i] = payload.check_id(value, f"row {i}: {model.id_column}")
    _check_unique(rows.ids)
    if not set(columns) <= set(present):
        return None
    arrays = {}
    for name in columns:
        array = _fast_column([record.get(name) for record in records], model.column_types.get(name, "any"))
        if array is None:
            return None
        arrays[name] = array
    return Columns(list(columns), arrays), [str(c) for c in present if c not in columns]


_NONE = type(None)


def _fast_column(values: list[Any], kind: str) -> np.ndarray | None:
    """One column as ``_convert`` would give it, when every value is plainly valid; else None."""
    types = set(map(type, values))
    if kind in ("number", "integer") or (kind == "any" and types <= {int, float, _NONE} and types != {_NONE}):
        if not types <= {int, float, _NONE} or (int in types and any(type(v) is int and abs(v) >= 2**63
                                                                         for v in values)):
            return None
        array = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        if np.isinf(array).any():
            return None
        if kind == "integer" and float in types and any(type(v) is float and v == v and not v.is_integer()
                                                        for v in values):
            return None  # a fractional number for an integer column: the frame path words the error
        return array
    if types == {bool} and kind in ("boolean", "any"):
        return np.array(values, dtype=object)  # True/False, as the frame path gives them to the model
    if types <= {str, float, _NONE} and (kind == "string" or (kind == "any" and str in types)):
        if float in types and any(type(v) is float and v == v for v in values):
            return None  # numbers in a text column: pandas turns them into text first
        return np.array([v if type(v) is str else math.nan for v in values], dtype=object)
    return None


def _frame_features(rows: Rows, model: ServedModel) -> tuple[pd.DataFrame, list[str]]:
    frame = rows.frame
    if model.id_column and model.id_column in frame.columns and not all(rows.explicit_ids):
        index_values = frame[model.id_column].tolist()
        for i, value in enumerate(index_values):
            if not rows.explicit_ids[i] and value is not None and not _is_nan(value):
                rows.ids[i] = payload.check_id(value, f"row {i}: {model.id_column}")
    _check_unique(rows.ids)
    if model.columns is None:
        return frame, []
    missing = [c for c in model.columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"missing column(s) {', '.join(missing)}: every row lacks them",
                           details={"missing_columns": missing})
    ignored = [c for c in frame.columns if c not in model.columns]
    features = frame[model.columns]
    converted = {c: _convert(features[c], model.column_types.get(c, "any"), rows.ids) for c in model.columns}
    return pd.DataFrame(converted, index=features.index), [str(c) for c in ignored]


def _check_unique(ids: list[Any]) -> None:
    if len(set(map(type, ids))) <= 1 and len(set(ids)) == len(ids):
        return  # one type of id, all distinct: the common case, checked at C speed
    seen: dict[Any, int] = {}
    for i, value in enumerate(ids):
        key = (type(value).__name__, value)
        if key in seen:
            raise InvalidInput(f"row {i}: id {value!r} repeats row {seen[key]}; ids must be unique")
        seen[key] = i


def _convert(column: pd.Series, kind: str, ids: list[Any]) -> pd.Series:
    values = column.to_numpy(dtype=object) if column.dtype == object else None
    if values is not None:
        for i, value in enumerate(values):
            if isinstance(value, dict | list):
                raise InvalidInput(f"row {i} (id {ids[i]!r}), column {column.name!r}: expected a single value",
                                   details={"row": i, "column": column.name})
    if kind in ("number", "integer") and isinstance(column.dtype, np.dtype) and column.dtype.kind in "if":
        # numbers already (numpy dtypes): only infinities to refuse
        array = column.to_numpy()
        infinite = np.isinf(array) if column.dtype.kind == "f" else None
        if infinite is not None and infinite.any():
            _bad(column, int(np.flatnonzero(infinite)[0]), ids, "expected a finite number")
        if kind == "integer" and column.dtype.kind == "f" and (at := _fractional(array)) is not None:
            _bad(column, at, ids, f"expected an integer, got {float(array[at])!r}")
        return column.astype(float) if kind == "number" or column.dtype.kind == "f" else column
    if kind in ("number", "integer"):
        if pd.api.types.is_bool_dtype(column):
            _bad(column, 0, ids, "expected a number, got a boolean")
        numeric = pd.to_numeric(column, errors="coerce")
        bad = numeric.isna() & column.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            _bad(column, i, ids, f"expected a number, got {column.iloc[i]!r}")
        as_float = numeric.to_numpy(dtype=float, na_value=np.nan)
        infinite = np.isinf(as_float)
        if infinite.any():
            _bad(column, int(np.flatnonzero(infinite)[0]), ids, "expected a finite number")
        if kind == "integer" and (at := _fractional(as_float)) is not None:
            _bad(column, at, ids, f"expected an integer, got {column.iloc[at]!r}")
        return numeric.astype(float) if kind == "number" or numeric.isna().any() else numeric
    if kind == "string":  # missing is NaN, as pandas makes it when a column holds text too
        if isinstance(column.dtype, pd.StringDtype) and _is_nan(column.dtype.na_value):
            return column.astype(object)  # text or NaN already (pandas' default text dtype)
        return column.map(lambda v: v if isinstance(v, str) else math.nan if v is None or _is_nan(v) else str(v)
                          ).astype(object)
    if kind == "boolean" and not pd.api.types.is_bool_dtype(column):
        bad_values = ~column.map(lambda v: isinstance(v, bool) or v is None)
        if bad_values.any():
            _bad(column, int(np.flatnonzero(bad_values.to_numpy())[0]), ids, "expected true or false")
    return column


def _fractional(array: np.ndarray) -> int | None:
    """The first position of a number with a fractional part (an integer column's wrong value), or None.

    Integers sent as floats (3.0) are integers; missing values are not numbers here."""
    fractional = np.isfinite(array) & (array != np.floor(array))
    return int(np.flatnonzero(fractional)[0]) if fractional.any() else None


def _bad(column: pd.Series, i: int, ids: list[Any], problem: str) -> None:
    raise InvalidInput(f"row {i} (id {ids[i]!r}), column {column.name!r}: {problem}",
                       details={"row": i, "id": ids[i], "column": column.name})


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def predict(model: ServedModel, features: pd.DataFrame | Columns, rows: Rows, ignored: list[str]) -> Prediction:
    """One vectorised predict (and predict_proba for classifiers); model errors on missing values are 400s."""
    answer = _fast_predict(model.predictor, features) if model.predictor is not None else None
    path = ("compiled" if answer is not None else "fallback" if model.predictor is not None
            else str(model.extra.get("flavor") or "sklearn"))
    if answer is None:
        if isinstance(features, Columns):
            features = _frame_features(rows, model)[0]
        answer = _sklearn_predict(model, features, rows)
    labels, proba = answer
    probabilities = None
    if proba is not None:
        names = [str(c) for c in model.classes or range(proba.shape[1])]
        probabilities = [dict(zip(names, row, strict=True)) for row in proba.tolist()]
    return Prediction(rows.ids, labels.tolist(), probabilities, ignored, features, proba, path)


def _fast_predict(predictor: compiled.FastPredictor, features: pd.DataFrame | Columns
                  ) -> tuple[np.ndarray, np.ndarray | None] | None:
    try:
        arrays = features.arrays if isinstance(features, Columns) else compiled.columns_of(features, predictor.inputs)
        return predictor.predict(arrays)
    except compiled.Unsupported:
        return None


def _sklearn_predict(model: ServedModel, features: pd.DataFrame, rows: Rows) -> tuple[np.ndarray, np.ndarray | None]:
    """One pass where the labels follow from the probabilities (checked at load), else predict and predict_proba.

    The API has checked the values (no infinities, no nested values): scikit-learn skips its finiteness scan
    when no value is missing, and its parameter validation.
    """
    try:
        return model_outputs(model.estimator, features, classifier=model.classes is not None, one_pass=model.one_pass)
    except ValueError as exc:
        raise _explain(exc, features, rows) from None


def model_outputs(estimator: Any, features: pd.DataFrame, *, classifier: bool, one_pass: bool
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels and (classifiers) probabilities of a loaded model; with ``one_pass``, labels from the probabilities."""
    finite = not features.isna().to_numpy().any()
    with sklearn.config_context(assume_finite=finite, skip_parameter_validation=True):
        proba = None
        if classifier and hasattr(estimator, "predict_proba"):
            proba = np.asarray(estimator.predict_proba(features), dtype=float)
        if proba is not None and one_pass:
            return np.asarray(estimator.classes_).take(np.argmax(proba, axis=1)), proba
        return np.asarray(estimator.predict(features)), proba


def feature_names(features: pd.DataFrame | Columns) -> list[str]:
    """The names of the columns the model was given."""
    return features.names if isinstance(features, Columns) else [str(c) for c in features.columns]


def _explain(exc: ValueError, features: pd.DataFrame, rows: Rows) -> InvalidInput:
    text = str(exc)
    if "NaN" in text or "missing" in text.lower():
        nan = features.isna()
        if nan.to_numpy().any():
            r, c = np.argwhere(nan.to_numpy())[0]
            column = features.columns[c]
            return InvalidInput(
                f"row {r} (id {rows.ids[r]!r}), column {column!r}: missing value, which this model cannot take",
                details={"row": int(r), "column": column},
            )
    return InvalidInput(f"the model rejected the rows: {text[:300]}")


def response_body(model: ServedModel, rows: Rows, result: Prediction) -> dict[str, Any]:
    """mlaas's answer; MLflow-style payloads get MLflow's ``predictions`` list with the extras beside it."""
    body: dict[str, Any] = {"model": model.name, "version": model.version}
    if rows.style == "mlflow":
        body["predictions"] = result.labels
        body["ids"] = result.ids
        if result.probabilities is not None:
            body["probabilities"] = result.probabilities
    else:
        items = []
        for i, (row_id, label) in enumerate(zip(result.ids, result.labels, strict=True)):
            item: dict[str, Any] = {"id": row_id, "prediction": label}
            if result.probabilities is not None:
                item["probabilities"] = result.probabilities[i]
            items.append(item)
        body["predictions"] = items
    if result.ignored_columns:
        body["ignored_columns"] = result.ignored_columns
    return body
