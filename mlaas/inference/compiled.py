"""Fitted scikit-learn pipelines compiled to plain numpy operations, checked against the model itself.

A one-row ``predict`` of a small ColumnTransformer pipeline spends nearly all its time validating its
input (feature names, dtypes, finiteness, pandas indexing) in every step; the arithmetic is a fraction
of a millisecond. ``build`` turns a fitted model made of the steps below into a ``FastPredictor`` that
does the same arithmetic on arrays, then checks it against the model's own ``predict`` and
``predict_proba`` on probe rows (labels equal, outputs within ``RTOL``). A model with any other step,
or that fails the check, gets no predictor and is served by scikit-learn as before.

Supported: ``Pipeline``, ``ColumnTransformer`` (any column selection, ``drop``/``passthrough``, no
weights), ``SimpleImputer`` (missing values NaN, no indicator), ``StandardScaler``, ``MinMaxScaler``,
``MaxAbsScaler``, ``RobustScaler``, ``OneHotEncoder`` (no infrequent categories), then a final step with a
``Head`` in ``HEADS``: ``LogisticRegression``, a linear classifier without ``predict_proba`` or a linear
regressor (``linear``), a decision tree, forest or gradient boosting model (``trees``), or an XGBoost or
LightGBM scikit-learn estimator, scored by its own library (``booster_heads``).

Inputs are one array per input column: float64 (NaN for missing) or object (str, number or bool, NaN for
missing). Rows the compiled steps cannot treat exactly as scikit-learn would (an unknown category
under ``handle_unknown="error"``, a string where numbers are needed, a missing value that reaches the
model) raise ``Unsupported``, and the caller answers them with scikit-learn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlaas.inference import booster_heads, linear, probes, trees
from mlaas.inference.steps import Step, Unsupported, as_float, kind, transformer

RTOL = 1e-6  # outputs must agree with scikit-learn's within this relative tolerance


class Head(Protocol):
    """A compiled final step: the model's matrix input (float64, NaN for missing) to (labels or values, proba).

    It raises Unsupported for rows it cannot answer exactly as the model would (scikit-learn then does).
    """

    @property
    def width(self) -> int: ...
    @property
    def classes(self) -> np.ndarray | None: ...
    @property
    def has_proba(self) -> bool: ...
    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


# Final step type -> its compiler. Another engine adds its estimators here (``HEADS[Type] = compile_it``).
HEADS: dict[type, Callable[[Any], Head]] = {**linear.HEADS, **trees.HEADS}


@dataclass(frozen=True)
class FastPredictor:
    """A compiled model: input column names, the transforming steps and the compiled final step."""

    inputs: list[str]
    steps: list[Step]
    head: Head

    @property
    def classes(self) -> np.ndarray | None:
        return self.head.classes

    def predict(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and, for models with ``predict_proba``, the class probabilities."""
        block = [columns[name] for name in self.inputs]
        for step in self.steps:
            block = step(block)
        X = np.column_stack([as_float(column) for column in block]) if block else np.empty((0, 0))
        if X.shape[1] != self.head.width:
            raise Unsupported("the model's input has another width")
        return self.head(X)


def build(estimator: Any, columns: Sequence[str] | None,
          examples: pd.DataFrame | None = None) -> tuple[FastPredictor | None, str]:
    """A checked predictor for ``estimator``, or None and the reason scikit-learn serves it."""
    try:
        predictor = compile_model(estimator, columns)
        if columns is not None and not set(predictor.inputs) <= set(columns):
            raise Unsupported("the model reads columns its signature does not list")
        verify(predictor, estimator, probes.probe_frame(predictor.inputs, estimator, examples))
    except Unsupported as exc:
        return None, str(exc)
    return predictor, "compiled"


def compile_model(estimator: Any, columns: Sequence[str] | None) -> FastPredictor:
    """Compile a fitted model; raises Unsupported naming the first step it cannot take."""
    names = getattr(estimator, "feature_names_in_", None)
    inputs = [str(c) for c in names] if names is not None else list(columns or [])
    if not inputs or len(inputs) != getattr(estimator, "n_features_in_", -1):
        raise Unsupported("the model's input columns are not known")
    steps: list[Any] = [s for _, s in estimator.steps] if type(estimator) is Pipeline else [estimator]
    compiled = [transformer(s) for s in steps[:-1]]
    compile_head = HEADS.get(type(steps[-1])) or booster_heads.head_for(steps[-1])
    if compile_head is None:
        raise Unsupported(f"final step {type(steps[-1]).__name__} is not compiled")
    return FastPredictor(inputs, compiled, compile_head(steps[-1]))


def columns_of(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """A feature frame as predictor inputs; Unsupported for columns scikit-learn would see differently."""
    out = {}
    for name in names:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            if column.isna().any():
                raise Unsupported(f"column {name!r} is boolean with missing values")
            out[name] = column.to_numpy(dtype=object)  # True/False, as scikit-learn sees them
            continue
        if pd.api.types.is_numeric_dtype(column):
            out[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        values = column.to_numpy(dtype=object)
        if set(map(type, values.tolist())) <= {str, float}:
            out[name] = values  # text and numbers (NaN for missing): no value to look at one by one
            continue
        if not all(isinstance(v, str) or kind(v) in ("number", "bool") for v in values.tolist()):
            raise Unsupported(f"column {name!r} holds values other than text, numbers, booleans and NaN")
        out[name] = values
    return out


def verify(predictor: FastPredictor, estimator: Any, frame: pd.DataFrame) -> None:
    """Compare with the model's own outputs on every probe row the predictor takes; Unsupported on a difference."""
    has_proba = predictor.classes is not None and hasattr(estimator, "predict_proba")
    if has_proba != predictor.head.has_proba:
        raise Unsupported("the model's predict_proba is not compiled")
    taken: list[int] = []
    labels: list[np.ndarray] = []
    probas: list[np.ndarray] = []
    for i in range(len(frame)):
        try:
            got, got_proba = predictor.predict(columns_of(frame.iloc[i:i + 1], predictor.inputs))
        except Unsupported:
            continue  # such rows go to scikit-learn
        taken.append(i)
        labels.append(got)
        if got_proba is not None:
            probas.append(got_proba)
    if not taken:
        raise Unsupported("no probe row took the compiled path")
    rows = frame.iloc[taken]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the probes hold unknown categories on purpose
            expected = np.asarray(estimator.predict(rows))
            expected_proba = np.asarray(estimator.predict_proba(rows), float) if has_proba else None
    except ValueError as exc:
        raise Unsupported(f"the compiled model answers rows that scikit-learn refuses: {exc}") from None
    one_by_one = np.concatenate(probas) if has_proba and len(probas) == len(taken) else None
    _same(expected, np.concatenate(labels), expected_proba, one_by_one)
    batch, batch_proba = predictor.predict(columns_of(rows, predictor.inputs))  # and as one request
    _same(expected, batch, expected_proba, batch_proba)


def _same(expected: np.ndarray, got: np.ndarray, expected_proba: np.ndarray | None,
          got_proba: np.ndarray | None) -> None:
    if expected.dtype.kind == "f":
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
        same = expected.shape == got.shape and np.allclose(got, expected, rtol=RTOL, atol=RTOL * 1e-3 * scale)
    else:
        same = expected.tolist() == got.tolist()
    if not same:
        raise Unsupported("the compiled model's predictions differ from scikit-learn's")
    if expected_proba is not None and (
        got_proba is None or got_proba.shape != expected_proba.shape
        or not np.allclose(got_proba, expected_proba, rtol=RTOL, atol=0.0)
    ):
        raise Unsupported("the compiled model's probabilities differ from scikit-learn's")
