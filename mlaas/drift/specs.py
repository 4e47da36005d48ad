"""What a drift comparison is asked to compare (POST /data-drift, and each monitor's per-column options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlaas.drift.engine import ColumnOptions
from mlaas.specs import S3UriText, Spec, VersionRef, model_name, s3_uri

DriftMethod = Literal["ks", "chisquare", "z", "psi", "wasserstein", "jensenshannon", "hellinger", "anderson"]
Correction = Literal["bonferroni", "bh"]


class ModelData(Spec):
    """A model version's data: its drift baseline (as reference) or its captured inference rows (as current)."""

    model: str = model_name()
    version: VersionRef = Field(default=None, examples=[2])
    since: str | None = Field(default=None, max_length=40, description="Captured rows from (ISO 8601), current only")
    until: str | None = Field(default=None, max_length=40, description="Captured rows until (ISO 8601), current only")


class DriftColumns(Spec):
    numerical: list[str] = Field(default_factory=list, max_length=5000)
    categorical: list[str] = Field(default_factory=list, max_length=5000)


class DriftOverride(Spec):
    method: DriftMethod | None = None
    threshold: float | None = Field(default=None, gt=0)


class DriftSpec(Spec):
    """Compare a current data set with a reference, column by column."""

    reference: S3UriText | ModelData = Field(examples=["s3://datasets/titanic/train.csv"])
    """A dataset URI, or a model version whose drift-data baseline is the reference"""
    current: S3UriText | ModelData = Field(examples=["s3://datasets/titanic/test.csv"])
    """A dataset URI, or a model version whose captured inference rows are compared"""
    data_config: str | None = s3_uri(default=None)
    """Which columns to compare and as what (or give columns)"""
    columns: DriftColumns | None = None
    """Numerical and categorical columns to compare (instead of data_config)"""
    overrides: dict[str, DriftOverride] | None = None
    """Per column: method (ks, chisquare, z, psi, wasserstein, jensenshannon, hellinger, anderson) and threshold"""
    drift_share: float = Field(default=0.5, gt=0, le=1)
    """The data set drifts when at least this share of columns drifts"""
    correction: Correction | None = None
    """Multiple-testing correction of the p-value tests"""
    domain_classifier: bool = False
    """Also train a classifier to tell the two sides apart (cross-validated ROC AUC)"""
    min_rows: int = Field(default=30, ge=1, le=1_000_000)
    """Columns with fewer non-missing values on a side are reported insufficient_data"""


def column_options(overrides: dict[str, DriftOverride] | None) -> dict[str, ColumnOptions]:
    """The drift engine's per-column options from a spec's overrides."""
    return {name: ColumnOptions(method=o.method, threshold=o.threshold) for name, o in (overrides or {}).items()}
