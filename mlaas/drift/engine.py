"""Data-drift report of a current data frame against a reference: the columns' verdicts and the dataset's.

Each column is tested on its own (``mlaas.drift.columns``: method rules, thresholds, missing values);
the optional domain classifier (``mlaas.drift.classifier``) looks at the columns jointly. The dataset
drifts when the share of drifted columns, among the columns with status "ok", is at least
``drift_share``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlaas.drift.classifier import ClassifierOptions, DomainClassifierResult
from mlaas.drift.classifier import domain_classifier as run_classifier
from mlaas.drift.columns import (
    CATEGORICAL,
    DEFAULT_MIN_ROWS,
    INSUFFICIENT_DATA,
    METHODS,
    NUMERICAL,
    OK,
    ColumnOptions,
    ColumnResult,
    ColumnSpec,
    Histogram,
    adjust_p_values,
    correct,
    default_method,
    evaluate,
    prepare,
)
from mlaas.errors import InvalidInput

PARALLEL_FROM_ROWS = 50_000  # from this many rows on a side, columns are compared on a thread per core

__all__ = [
    "CATEGORICAL", "DEFAULT_MIN_ROWS", "INSUFFICIENT_DATA", "METHODS", "NUMERICAL", "OK", "ClassifierOptions",
    "ColumnOptions", "ColumnResult", "ColumnSpec", "DomainClassifierResult", "DriftReport", "Histogram",
    "adjust_p_values", "compare", "default_method", "jsonable",
]


@dataclass(frozen=True)
class DriftReport:
    """Per-column results, the dataset verdict and the optional domain-classifier check."""

    columns: list[ColumnResult]
    drifted_columns: list[str]
    share_drifted: float
    drift_share: float
    dataset_drift: bool
    correction: str | None
    n_reference_rows: int
    n_current_rows: int
    domain_classifier: DomainClassifierResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data: Python scalars only, None for any non-finite number."""
        data: dict[str, Any] = jsonable(asdict(self))
        return data


def jsonable(value: Any) -> Any:
    """Nested dicts, lists and scalars as plain JSON data: numpy scalars unwrapped, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, str | int | float) else str(value)



def _check_inputs(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: ColumnSpec,
    overrides: Mapping[str, ColumnOptions],
    drift_share: float,
    min_rows: int,
) -> None:
    columns = [*spec.numerical, *spec.categorical]
    if not columns:
        raise InvalidInput("the column spec lists no column")
    duplicated = {c for frame in (reference, current) for c in frame.columns[frame.columns.duplicated()]}
    problems = {
        "columns listed more than once in the spec": {c for c in columns if columns.count(c) > 1},
        "columns missing from the reference data": set(columns) - set(reference.columns),
        "columns missing from the current data": set(columns) - set(current.columns),
        "columns duplicated in the data": set(columns) & duplicated,
        "overrides name columns that are not in the spec": set(overrides) - set(columns),
    }
    for problem, names in problems.items():
        if names:
            raise InvalidInput(f"{problem}: {sorted(names, key=str)}")
    for name, options in overrides.items():
        method = METHODS.get(options.method or "ks")
        if method is None:
            raise InvalidInput(
                f"unknown method {options.method!r} for {name!r}; use one of {sorted(METHODS)}"
            )
        if options.method and method.numerical_only and name not in spec.numerical:
            raise InvalidInput(f"method {options.method!r} needs a numerical column, {name!r} is categorical")
        if options.threshold is not None and not (np.isfinite(options.threshold) and options.threshold > 0):
            raise InvalidInput(f"threshold for column {name!r} must be a positive number")
    if not 0.0 < drift_share <= 1.0:
        raise InvalidInput("drift_share must be in (0, 1]")
    if min_rows < 1:
        raise InvalidInput("min_rows must be at least 1")



def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: ColumnSpec,
    *,
    overrides: Mapping[str, ColumnOptions] | None = None,
    drift_share: float = 0.5,
    correction: str | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
    domain_classifier: bool | ClassifierOptions = False,
    random_state: int = 0,
) -> DriftReport:
    """Compare ``current`` with ``reference`` on the columns of ``spec``; other columns are ignored."""
    overrides = dict(overrides or {})
    _check_inputs(reference, current, spec, overrides, drift_share, min_rows)
    if correction is not None:
        adjust_p_values([], correction)  # reject an unknown name before any work
    kinds = [(c, NUMERICAL) for c in spec.numerical] + [(c, CATEGORICAL) for c in spec.categorical]

    def one(column: tuple[str, str]) -> ColumnResult:
        name, kind = column
        prepared = prepare(name, kind, reference[name], current[name])
        return evaluate(prepared, overrides.get(name, ColumnOptions()), min_rows)

    threads = min(os.cpu_count() or 1, len(kinds))
    if threads > 1 and max(len(reference), len(current)) >= PARALLEL_FROM_ROWS:
        with ThreadPoolExecutor(threads, thread_name_prefix="drift") as pool:  # numpy sorts without the GIL
            results = list(pool.map(one, kinds))
    else:
        results = [one(column) for column in kinds]
    if correction is not None:
        results = correct(results, correction)
    tested = [r for r in results if r.status == OK]
    share = sum(r.drifted for r in tested) / len(tested) if tested else 0.0
    classifier = None
    if domain_classifier:
        options = (
            domain_classifier if isinstance(domain_classifier, ClassifierOptions) else ClassifierOptions()
        )
        classifier = run_classifier(
            reference, current, kinds, options=options, min_rows=min_rows, random_state=random_state
        )
    return DriftReport(
        columns=results,
        drifted_columns=[r.column for r in results if r.drifted],
        share_drifted=share,
        drift_share=drift_share,
        dataset_drift=bool(tested) and share >= drift_share,
        correction=correction,
        n_reference_rows=len(reference),
        n_current_rows=len(current),
        domain_classifier=classifier,
    )
