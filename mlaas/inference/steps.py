"""Fitted scikit-learn preprocessing steps compiled to numpy operations on one array per column.

Each compiled step does what the fitted step's ``transform`` does, on a ``Block`` (a list of 1-D arrays);
values it cannot treat exactly as scikit-learn would raise ``Unsupported`` (see ``compiled``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    RobustScaler,
    StandardScaler,
)

Block = list[np.ndarray]  # one 1-D array per column
Step = Callable[[Block], Block]


class Unsupported(Exception):
    """The model (when compiling) or these rows (when predicting) need plain scikit-learn."""


def transformer(step: Any) -> Step:
    if step is None or (isinstance(step, str) and step == "passthrough") or (
        type(step) is FunctionTransformer and step.func is None  # a fitted "passthrough"
    ):
        return lambda block: block
    compilers: dict[type, Callable[[Any], Step]] = {
        Pipeline: _pipeline, ColumnTransformer: _column_transformer, SimpleImputer: _imputer,
        StandardScaler: _standard, MinMaxScaler: _minmax, MaxAbsScaler: _maxabs, RobustScaler: _robust,
        OneHotEncoder: _onehot,
    }
    compiler = compilers.get(type(step))
    if compiler is None:
        raise Unsupported(f"step {type(step).__name__} is not compiled")
    return compiler(step)


def _pipeline(pipe: Pipeline) -> Step:
    steps = [transformer(s) for _, s in pipe.steps]

    def run(block: Block) -> Block:
        for step in steps:
            block = step(block)
        return block

    return run


def _column_transformer(ct: ColumnTransformer) -> Step:
    if ct.transformer_weights:
        raise Unsupported("ColumnTransformer weights are not compiled")
    parts: list[tuple[list[int], Step]] = []
    for name, trans, _ in ct.transformers_:
        indices = [int(i) for i in ct._transformer_to_input_indices.get(name, [])]
        if (isinstance(trans, str) and trans == "drop") or not indices:
            continue
        parts.append((indices, transformer(trans)))

    def run(block: Block) -> Block:
        return [out for indices, step in parts for out in step([block[i] for i in indices])]

    return run


def _imputer(imputer: SimpleImputer) -> Step:
    if not is_nan(imputer.missing_values) or imputer.add_indicator:
        raise Unsupported("SimpleImputer with missing values other than NaN or an indicator is not compiled")
    fills = list(imputer.statistics_)
    if any(is_nan(v) or v is None for v in fills):
        raise Unsupported("SimpleImputer with an all-missing column is not compiled")
    numeric = imputer.strategy in ("mean", "median")

    def run(block: Block) -> Block:
        return [_fill(as_float(c) if numeric else c, v) for c, v in zip(block, fills, strict=True)]

    return run


def _fill(column: np.ndarray, value: Any) -> np.ndarray:
    if column.dtype == np.float64:
        if isinstance(value, str):
            raise Unsupported("a text fill value for a numeric column")
        missing = np.isnan(column)
    else:
        missing = _missing_objects(column)
    if not missing.any():
        return column
    filled = column.copy()
    filled[missing] = value
    return filled


def _missing_objects(column: np.ndarray) -> np.ndarray:
    """``v != v`` for each value of an object column (NaN is the only missing value), vectorised for text and floats."""
    if set(map(type, column.tolist())) <= {str, float}:
        return np.not_equal(column, column)  # the same comparisons, in numpy's loop
    return np.fromiter((v != v for v in column), bool, len(column))


def _affine(subtract: Any, divide: Any, multiply: Any = None, add: Any = None,
            clip: tuple[float, float] | None = None) -> Step:
    """x -> ((x - subtract) / divide) * multiply + add per column, each term optional, as scikit-learn orders it."""
    def run(block: Block) -> Block:
        X = np.column_stack([as_float(c) for c in block]) if block else np.empty((0, 0))
        if subtract is not None:
            X = X - subtract
        if divide is not None:
            X = X / divide
        if multiply is not None:
            X = X * multiply
        if add is not None:
            X = X + add
        if clip is not None:
            X = np.clip(X, clip[0], clip[1])
        return list(X.T)

    return run


def _standard(s: StandardScaler) -> Step:
    return _affine(s.mean_ if s.with_mean else None, s.scale_ if s.with_std else None)


def _robust(s: RobustScaler) -> Step:
    return _affine(s.center_ if s.with_centering else None, s.scale_ if s.with_scaling else None)


def _maxabs(s: MaxAbsScaler) -> Step:
    return _affine(None, s.scale_)


def _minmax(s: MinMaxScaler) -> Step:
    return _affine(None, None, s.scale_, s.min_, tuple(s.feature_range) if s.clip else None)


def _onehot(encoder: OneHotEncoder) -> Step:
    if getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with infrequent categories is not compiled")
    strict = encoder.handle_unknown == "error"
    drops = encoder.drop_idx_ if encoder.drop_idx_ is not None else [None] * len(encoder.categories_)
    features = [_Categories(list(cats), drop) for cats, drop in zip(encoder.categories_, drops, strict=True)]

    def run(block: Block) -> Block:
        out: Block = []
        for column, feature in zip(block, features, strict=True):
            codes = feature.codes(column)
            if strict and (codes == _UNKNOWN).any():
                raise Unsupported("an unknown category under handle_unknown='error'")
            hit = np.flatnonzero(codes >= 0)
            encoded = np.zeros((feature.width, len(column)))  # one contiguous row per output column
            encoded[codes[hit], hit] = 1.0
            out.extend(encoded)
        return out

    return run


_UNKNOWN = -2  # the code of a value that is no category (-1: a dropped category)
FACTORIZE_FROM = 256  # rows from which a column is factorized before its lookups (batch chunks, large requests)


class _Categories:
    """One encoded feature: category -> output column (-1: dropped), the slot of NaN, the value kinds, the width."""

    def __init__(self, categories: list[Any], drop: Any) -> None:
        self.table: dict[Any, int] = {}
        self.nan_slot, self.width = _UNKNOWN, 0
        for i, category in enumerate(categories):
            if category is None:
                raise Unsupported("a None category is not compiled")
            slot = -1 if drop is not None and i == int(drop) else self.width
            self.width += slot >= 0
            if is_nan(category):
                self.nan_slot = slot
            else:
                self.table[category.item() if isinstance(category, np.generic) else category] = slot
        self.kinds = {kind(c) for c in self.table}

    def codes(self, column: np.ndarray) -> np.ndarray:
        """Each value's output column (-1: dropped, -2: unknown); Unsupported for values of another kind.

        Numbers, and text with NaN for missing, are factorized and only their distinct values looked up in the
        table (the same dict lookups as value by value: 1.0 finds the category 1). Other object columns (where
        factorizing would merge True with 1) are looked up value by value.
        """
        if len(column) < FACTORIZE_FROM:
            return self._codes_one_by_one(column)  # a request's few rows: dict lookups cost less than factorizing
        if column.dtype == np.float64:
            if "number" not in self.kinds and not np.isnan(column).all():
                raise Unsupported("a value of another type than the encoder's categories")
        elif not set(map(type, column.tolist())) <= {str, float}:
            return self._codes_one_by_one(column)
        codes, distinct = pd.factorize(column)  # NaN: -1
        values = distinct.tolist()
        if column.dtype != np.float64 and not {kind(v) for v in values} <= self.kinds:
            raise Unsupported("a value of another type than the encoder's categories")
        lookup = np.array([self.table.get(v, _UNKNOWN) for v in values] + [self.nan_slot], dtype=np.intp)
        return lookup[codes]

    def _codes_one_by_one(self, column: np.ndarray) -> np.ndarray:
        values = column.tolist()
        present = {kind(v) for v in values if v == v}
        if not present <= self.kinds:
            raise Unsupported("a value of another type than the encoder's categories")  # True == 1 in a dict
        slots = [self.table.get(value, _UNKNOWN) for value in values]
        for row in [i for i, slot in enumerate(slots) if slot == _UNKNOWN]:  # NaN or unknown
            if values[row] != values[row]:
                slots[row] = self.nan_slot
        return np.asarray(slots, dtype=np.intp)


def kind(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | np.bool_):
        return "bool"
    if not isinstance(value, int | float | np.number):
        return "other"
    return "number"


def as_float(column: np.ndarray) -> np.ndarray:
    if column.dtype == np.float64:
        return column
    if column.dtype.kind in "iuf":
        return column.astype(np.float64)
    if not all(kind(v) in ("number", "bool") for v in column.tolist()):  # scikit-learn reads True as 1.0
        raise Unsupported("a non-numeric value where numbers are needed")
    return column.astype(np.float64)


def is_nan(value: Any) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


# -- checking ---------------------------------------------------------------------------------------
