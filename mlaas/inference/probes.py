"""Probe rows for the load-time checks: values around what each column was fitted on, missing values, unseen
categories and (for tree models) the split points, so that a compiled model or a shortcut is compared with
the model itself where they could differ.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlaas.inference import trees
from mlaas.inference.boosters import NativeModel
from mlaas.inference.steps import is_nan

UNSEEN = "\x00unseen category"  # a category no model was fitted on


def probe_frame(inputs: list[str], estimator: Any, examples: pd.DataFrame | None,
                rows: int = 48, seed: int = 0) -> pd.DataFrame:
    """Rows to check a predictor on: the examples, then values around what each column was fitted on,
    missing values and unseen categories, drawn column by column."""
    rng = np.random.default_rng(seed)
    pools = _value_pools(estimator, inputs)
    data: dict[str, list[Any]] = {}
    for name in inputs:
        pool = pools.get(name) or [0.0, 1.0, -1.0, np.nan]
        data[name] = [pool[i % len(pool)] for i in range(len(pool))]
        data[name] += [pool[int(k)] for k in rng.integers(0, len(pool), rows)]
    width = max(len(v) for v in data.values())
    frame = pd.DataFrame({k: (v * (width // len(v) + 1))[:width] for k, v in data.items()})
    for name in inputs:
        values = frame[name].tolist()
        if all(isinstance(v, bool) for v in values):
            frame[name] = frame[name].astype(bool)
        elif all(isinstance(v, str) or is_nan(v) for v in values) or any(isinstance(v, bool) for v in values):
            frame[name] = frame[name].astype(object)
        else:
            frame[name] = pd.to_numeric(frame[name])
    if examples is not None and set(inputs) <= set(examples.columns):
        frame = pd.concat([examples[inputs], frame], ignore_index=True)
    return frame


def _value_pools(estimator: Any, inputs: list[str]) -> dict[str, list[Any]]:
    """Per input column, plausible values from the fitted steps that see it before it changes shape."""
    pools: dict[str, list[Any]] = {}

    def add(name: str, values: list[Any]) -> None:
        pool = pools.setdefault(name, [])
        pool.extend(v for v in values if not any(v is p or (type(v) is type(p) and v == p) for p in pool))

    def visit(step: Any, names: list[str]) -> None:
        if type(step) is Pipeline:
            for _, inner in step.steps:
                visit(inner, names)
                if type(inner) in (ColumnTransformer, OneHotEncoder, Pipeline):
                    break  # later steps see other columns
        elif type(step) is ColumnTransformer:
            for name, trans, _ in step.transformers_:
                indices = step._transformer_to_input_indices.get(name, [])
                visit(trans, [names[int(i)] for i in indices])
        elif hasattr(step, "categories_"):
            for name, cats in zip(names, step.categories_, strict=False):
                values = [c.item() if isinstance(c, np.generic) else c for c in cats]
                unseen = UNSEEN if any(isinstance(v, str) for v in values) else -999.0
                add(name, [*values, np.nan] + ([] if all(isinstance(v, bool) for v in values) else [unseen]))
        elif hasattr(step, "statistics_"):
            for name, value in zip(names, step.statistics_, strict=False):
                if isinstance(value, str):
                    add(name, [value, np.nan, UNSEEN])
                else:
                    v = float(value)
                    add(name, [v, np.nan, 0.0, v * 2 + 1, -v - 3.5, v * 10 + 0.25])
        elif type(step) in trees.HEADS:
            for i, values in trees.thresholds(step).items():
                if i < len(names):
                    add(names[i], [*values, np.nan])
        elif hasattr(step, "scale_") or hasattr(step, "mean_") or hasattr(step, "center_"):
            centre = getattr(step, "mean_", getattr(step, "center_", None))
            scale = getattr(step, "scale_", None)
            for i, name in enumerate(names):
                c = float(centre[i]) if centre is not None else 0.0
                s = float(scale[i]) if scale is not None else 1.0
                add(name, [c, c + s, c - 2 * s, c + 3.7 * s, 0.0])

    if isinstance(estimator, NativeModel):  # XGBoost and LightGBM: the categories they were trained on
        for i, levels in estimator.categories().items():
            if i < len(inputs):
                add(inputs[i], [*levels, np.nan, UNSEEN])
    else:
        visit(estimator, inputs)
    return pools


# Families whose predict is, by definition, the class of highest predict_proba (a support vector machine's is not).
ARGMAX_FAMILIES = ("sklearn.ensemble.", "sklearn.tree.", "sklearn.linear_model.", "sklearn.neighbors.",
                   "sklearn.naive_bayes.", "sklearn.neural_network.", "sklearn.discriminant_analysis.",
                   "xgboost.", "lightgbm.")


def labels_follow_proba(estimator: Any, inputs: list[str] | None, examples: pd.DataFrame | None) -> bool:
    """Whether ``classes_[argmax(predict_proba(X))]`` is ``predict(X)`` on probe rows: then one pass gives both."""
    final = estimator.steps[-1][1] if type(estimator) is Pipeline else estimator
    final = final.model if isinstance(final, NativeModel) else final  # the library's own estimator or Booster
    classes = getattr(estimator, "classes_", None)
    if classes is None or not hasattr(estimator, "predict_proba") or np.ndim(classes) != 1:
        return False
    if not type(final).__module__.startswith(ARGMAX_FAMILIES) or type(final).__module__.startswith(
            "sklearn.ensemble._voting"):
        return False
    names = getattr(estimator, "feature_names_in_", None)
    inputs = [str(c) for c in names] if names is not None else inputs
    frames = [examples] if examples is not None else []
    if inputs:
        frames.insert(0, probe_frame(inputs, estimator, examples))
    for frame in frames:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                labels = np.asarray(estimator.predict(frame))
                proba = np.asarray(estimator.predict_proba(frame))
        except (ValueError, TypeError, KeyError):
            continue  # probes this model cannot take: try the examples
        return len(labels) > 0 and classes.take(np.argmax(proba, axis=1)).tolist() == labels.tolist()
    return False
