"""Fitted scikit-learn preprocessing steps compiled to numpy operations on one array per column.

Each compiled step does what the fitted step's ``transform`` does, on a ``Block`` (a list of 1-D arrays);
values it cannot treat exactly as scikit-learn would raise ``Unsupported`` (see ``compiled``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
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
        missing = np.fromiter((v != v for v in column), bool, len(column))  # NaN is the only missing value
    if not missing.any():
        return column
    filled = column.copy()
    filled[missing] = value
    return filled


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
    features = [_categories(list(cats), drop) for cats, drop in zip(encoder.categories_, drops, strict=True)]

    def run(block: Block) -> Block:
        out: Block = []
        for column, (table, nan_slot, kinds, width) in zip(block, features, strict=True):
            values = column.tolist()
            present = {"number"} if column.dtype == np.float64 else {kind(v) for v in values if v == v}
            if not present <= kinds and (column.dtype != np.float64 or not np.isnan(column).all()):
                raise Unsupported("a value of another type than the encoder's categories")  # True == 1 in a dict
            slots = [table.get(value, -2) for value in values]
            for row in [i for i, slot in enumerate(slots) if slot == -2]:  # NaN or unknown
                if values[row] != values[row]:
                    slots[row] = nan_slot
                if slots[row] == -2 and strict:
                    raise Unsupported("an unknown category under handle_unknown='error'")
            codes = np.asarray(slots, dtype=np.intp)
            hit = np.flatnonzero(codes >= 0)
            encoded = np.zeros((len(values), width))
            encoded[hit, codes[hit]] = 1.0
            out.extend(encoded.T)
        return out

    return run


def _categories(categories: list[Any], drop: Any) -> tuple[dict[Any, int], int, set[str], int]:
    """Category -> output column (-1: dropped), the slot of NaN (-2: unknown), the value kinds, the width."""
    table: dict[Any, int] = {}
    nan_slot, width = -2, 0
    for i, category in enumerate(categories):
        if category is None:
            raise Unsupported("a None category is not compiled")
        slot = -1 if drop is not None and i == int(drop) else width
        width += slot >= 0
        if is_nan(category):
            nan_slot = slot
        else:
            table[category.item() if isinstance(category, np.generic) else category] = slot
    return table, nan_slot, {kind(c) for c in table}, width


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
