"""Data-drift statistics: pure functions of a reference and a current data frame and a column spec."""

from mlaas.drift.engine import (
    CATEGORICAL,
    DEFAULT_MIN_ROWS,
    INSUFFICIENT_DATA,
    METHODS,
    NUMERICAL,
    OK,
    ClassifierOptions,
    ColumnOptions,
    ColumnResult,
    ColumnSpec,
    DomainClassifierResult,
    DriftReport,
    Histogram,
    adjust_p_values,
    compare,
    default_method,
)
from mlaas.drift.stats import benjamini_hochberg, bonferroni

__all__ = [
    "CATEGORICAL",
    "DEFAULT_MIN_ROWS",
    "INSUFFICIENT_DATA",
    "METHODS",
    "NUMERICAL",
    "OK",
    "ClassifierOptions",
    "ColumnOptions",
    "ColumnResult",
    "ColumnSpec",
    "DomainClassifierResult",
    "DriftReport",
    "Histogram",
    "adjust_p_values",
    "benjamini_hochberg",
    "bonferroni",
    "compare",
    "default_method",
]
