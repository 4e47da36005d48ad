"""Synchronous inference: payload → validated features → one vectorised predict → predictions paired with ids.

Clean record payloads for a model with a compiled predictor (``fastpath``) are checked and scored on
plain arrays; anything else (and any row the compiled steps cannot take) goes through pandas and
scikit-learn, which also word every error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlaas.errors import InvalidInput, TooLarge
from mlaas.inference import compiled
from mlaas.inference.cache import ServedModel

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
ID_KEY = "id"


@dataclass
class Rows:
    """Rows to score, as sent: ids in request order and the sent columns (records, or a frame)."""

    ids: list[Any]
    style: str  # "mlaas" (data) or "mlflow" (one of MLflow's scoring payloads)
    explicit_ids: list[bool] = field(default_factory=list)
    records: list[dict[str, Any]] | None = None  # record payloads, ids removed
    _frame: pd.DataFrame | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """The sent columns as a data frame (built on first use for record payloads)."""
        if self._frame is None:
            self._frame = pd.DataFrame.from_records(self.records) if self.records else pd.DataFrame()
        return self._frame


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


def parse_rows(body: dict[str, Any], *, max_rows: int) -> Rows:
    """Read ``data`` or one MLflow scoring payload into rows; shape errors name the field."""
    present = [k for k in ("data", *MLFLOW_KEYS) if body.get(k) is not None]
    if not present:
        formats = ", ".join(MLFLOW_KEYS)
        raise InvalidInput(f"data: missing (send a list of records, or an MLflow payload: {formats})")
    if len(present) > 1:
        raise InvalidInput(f"send only one of {', '.join(present)}")
    key = present[0]
    value = body[key]
    if key == "dataframe_split":
        frame, index = _split_frame(value)
        rows = _with_ids(frame, key, index, style="mlflow")
    elif key in ("inputs", "instances") and isinstance(value, dict):
        rows = _with_ids(_columns_frame(value, key), key, None, style="mlflow")
    else:
        records = _records(value, key)
        rows = _records_rows(records, key, style="mlaas" if key == "data" else "mlflow")
    if len(rows.ids) == 0:
        raise InvalidInput(f"{key}: no rows to score")
    if len(rows.ids) > max_rows:
        raise TooLarge(f"{key}: {len(rows.ids)} rows is more than the limit of {max_rows} per request")
    return rows


def _records(value: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidInput(f"{key}: expected a list of records")
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise InvalidInput(f"{key}[{i}]: expected an object of column: value")
    return value


def _records_rows(records: list[dict[str, Any]], key: str, *, style: str) -> Rows:
    ids: list[Any] = []
    explicit: list[bool] = []
    cleaned = []
    for i, record in enumerate(records):
        if ID_KEY in record:
            record = dict(record)
            ids.append(_check_id(record.pop(ID_KEY), f"{key}[{i}].id"))
            explicit.append(True)
        else:
            ids.append(i)
            explicit.append(False)
        cleaned.append(record)
    return Rows(ids, style, explicit, records=cleaned)


def _split_frame(value: Any) -> tuple[pd.DataFrame, list[Any] | None]:
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or not isinstance(
        value.get("data"), list
    ):
        raise InvalidInput("dataframe_split: expected {\"columns\": [...], \"data\": [[...], ...]}")
    columns = value["columns"]
    if not all(isinstance(c, str) for c in columns):
        raise InvalidInput("dataframe_split.columns: expected a list of column names")
    for i, row in enumerate(value["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidInput(f"dataframe_split.data[{i}]: expected a list of {len(columns)} values")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(value["data"])):
        raise InvalidInput("dataframe_split.index: expected one id per row")
    return pd.DataFrame(value["data"], columns=columns), index


def _columns_frame(value: dict[str, Any], key: str) -> pd.DataFrame:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise InvalidInput(f"{key}: expected column: [values] lists of equal length")
    return pd.DataFrame(value)


def _with_ids(frame: pd.DataFrame, key: str, index: list[Any] | None, *, style: str) -> Rows:
    if index is not None:
        ids = [_check_id(v, f"{key}.index[{i}]") for i, v in enumerate(index)]
        return Rows(ids, style, [True] * len(ids), _frame=frame)
    if ID_KEY in frame.columns:
        ids = [_check_id(v, f"{key}.id[{i}]") for i, v in enumerate(frame.pop(ID_KEY).tolist())]
        return Rows(ids, style, [True] * len(ids), _frame=frame)
    return Rows(list(range(len(frame))), style, [False] * len(frame), _frame=frame)


def _check_id(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"{where}: an id must be a string or an integer")
    if isinstance(value, str) and len(value) > 256:
        raise InvalidInput(f"{where}: an id must be at most 256 characters")
    return value


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
                rows.ids[i] = _check_id(value, f"row {i}: {model.id_column}")
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
        return None if np.isinf(array).any() else array
    if types <= {str, float, _NONE} and (kind == "string" or (kind == "any" and str in types)):
        if float in types and any(type(v) is float and v == v for v in values):
            return None  # numbers in a text column: pandas turns them into text first
        return np.array([v if type(v) is str else math.nan for v in values], dtype=object)
    return None


def _frame_features(rows: Rows, model: ServedModel) -> tuple[pd.DataFrame, list[str]]:
    frame = rows.frame
    if model.id_column and model.id_column in frame.columns:
        index_values = frame[model.id_column].tolist()
        for i, value in enumerate(index_values):
            if not rows.explicit_ids[i] and value is not None and not _is_nan(value):
                rows.ids[i] = _check_id(value, f"row {i}: {model.id_column}")
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
    if kind in ("number", "integer"):
        if pd.api.types.is_bool_dtype(column):
            _bad(column, 0, ids, "expected a number, got a boolean")
        numeric = pd.to_numeric(column, errors="coerce")
        bad = numeric.isna() & column.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            _bad(column, i, ids, f"expected a number, got {column.iloc[i]!r}")
        infinite = np.isinf(numeric.to_numpy(dtype=float, na_value=np.nan))
        if infinite.any():
            _bad(column, int(np.flatnonzero(infinite)[0]), ids, "expected a finite number")
        return numeric.astype(float) if kind == "number" or numeric.isna().any() else numeric
    if kind == "string":  # missing is NaN, as pandas makes it when a column holds text too
        return column.map(lambda v: v if isinstance(v, str) else math.nan if v is None or _is_nan(v) else str(v)
                          ).astype(object)
    if kind == "boolean" and not pd.api.types.is_bool_dtype(column):
        bad_values = ~column.map(lambda v: isinstance(v, bool) or v is None)
        if bad_values.any():
            _bad(column, int(np.flatnonzero(bad_values.to_numpy())[0]), ids, "expected true or false")
    return column


def _bad(column: pd.Series, i: int, ids: list[Any], problem: str) -> None:
    raise InvalidInput(f"row {i} (id {ids[i]!r}), column {column.name!r}: {problem}",
                       details={"row": i, "id": ids[i], "column": column.name})


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def predict(model: ServedModel, features: pd.DataFrame | Columns, rows: Rows, ignored: list[str]) -> Prediction:
    """One vectorised predict (and predict_proba for classifiers); model errors on missing values are 400s."""
    answer = _fast_predict(model.predictor, features) if model.predictor is not None else None
    if answer is None:
        if isinstance(features, Columns):
            features = _frame_features(rows, model)[0]
        answer = _sklearn_predict(model, features, rows)
    labels, proba = answer
    probabilities = None
    if proba is not None:
        names = [str(c) for c in model.classes or range(proba.shape[1])]
        probabilities = [dict(zip(names, row, strict=True)) for row in proba.tolist()]
    return Prediction(rows.ids, labels.tolist(), probabilities, ignored, features, proba)


def _fast_predict(predictor: compiled.FastPredictor, features: pd.DataFrame | Columns
                  ) -> tuple[np.ndarray, np.ndarray | None] | None:
    try:
        arrays = features.arrays if isinstance(features, Columns) else compiled.columns_of(features, predictor.inputs)
        return predictor.predict(arrays)
    except compiled.Unsupported:
        return None


def _sklearn_predict(model: ServedModel, features: pd.DataFrame, rows: Rows) -> tuple[np.ndarray, np.ndarray | None]:
    estimator = model.estimator
    try:
        labels = np.asarray(estimator.predict(features))
        proba = None
        if model.classes is not None and hasattr(estimator, "predict_proba"):
            proba = np.asarray(estimator.predict_proba(features), dtype=float)
    except ValueError as exc:
        raise _explain(exc, features, rows) from None
    return labels, proba


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
