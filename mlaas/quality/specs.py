"""What callers send about outcomes (POST /feedback) and ask about quality (GET /models/<name>/performance)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictInt, StringConstraints, model_validator

from mlaas.specs import Spec, VersionRef, model_name, s3_uri

COLUMN = Field(default=None, min_length=1, max_length=256)


Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]


class Outcome(Spec):
    """The true label or value of one row an earlier /inference answered, by the id it had there."""

    id: Text | StrictInt = Field(examples=["p-1"])
    """The row id sent to (or given back by) POST /inference"""
    actual: StrictBool | StrictInt | Annotated[float, Field(strict=True, allow_inf_nan=False)] | Text = Field(
        examples=[1])
    """The outcome: a class label or a number"""


class FeedbackSpec(Spec):
    """Outcomes of served predictions: inline rows, or a dataset in storage with an id and an outcome column."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["data"]}, {"required": ["dataset"]}]})

    model: str = model_name()
    data: list[Outcome] | None = Field(default=None, min_length=1)
    """Inline outcomes (at most MLAAS_MAX_FEEDBACK_ROWS), each id once"""
    dataset: str | None = s3_uri(default=None)
    """A CSV or Parquet dataset of outcomes (read by a job)"""
    id_column: str = Field(default="id", min_length=1, max_length=256)
    """The dataset's row id column"""
    actual_column: str = Field(default="actual", min_length=1, max_length=256)
    """The dataset's outcome column"""

    @model_validator(mode="after")
    def _one_source(self) -> FeedbackSpec:
        if (self.data is None) == (self.dataset is None):
            raise ValueError("give either data (inline outcomes) or dataset (a URI), not both or neither")
        return self


class FeedbackJob(Spec):
    """A bulk feedback job as queued: the model (checked) and the dataset with its two columns."""

    model: str
    dataset: str
    id_column: str
    actual_column: str


class PerformanceQuery(Spec):
    """Which served predictions to score: a version, a time range (ISO 8601, of the predictions) and windows."""

    version: VersionRef = Field(default=None, description="Omitted: the production version")
    since: str | None = Field(default=None, max_length=40, json_schema_extra={"format": "date-time"},
                              description="From (ISO 8601), of the predictions")
    until: str | None = Field(default=None, max_length=40, json_schema_extra={"format": "date-time"},
                              description="Until (ISO 8601), of the predictions")
    window: int | None = Field(default=None, ge=60, le=366 * 24 * 3600,
                               description="Window length in seconds (omitted: MLAAS_PERFORMANCE_WINDOW_SECONDS)")


Source = Literal["realized", "estimated"]


ESTIMATED_METRICS = ("accuracy", "roc_auc")
Metric = Literal["accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
                 "f1_weighted", "roc_auc", "log_loss", "rmse", "mae", "r2", "mape"]
# What the validators check, stated for the document: a bound is given, and an estimate is of accuracy or roc_auc.
_CONDITION_SCHEMA: dict[str, Any] = {"allOf": [
    {"anyOf": [{"required": ["floor"], "properties": {"floor": {"type": "number"}}},
               {"required": ["max_drop"], "properties": {"max_drop": {"type": "number"}}}]},
    {"anyOf": [{"properties": {"source": {"const": "realized"}}},
               {"properties": {"metric": {"enum": list(ESTIMATED_METRICS)}}}]},
]}


class QualityCondition(Spec):
    """A monitor's quality condition: a metric of the joined outcomes (or its estimate) against a bound."""

    model_config = ConfigDict(json_schema_extra=_CONDITION_SCHEMA)

    metric: Metric = Field(examples=["accuracy"])
    """A metric of evaluation (accuracy, f1_macro, roc_auc, rmse, ...); estimated: accuracy or roc_auc"""
    source: Source = "realized"
    """realized: from outcomes joined to predictions; estimated: confidence-based, before outcomes arrive"""
    floor: float | None = Field(default=None, allow_inf_nan=False)
    """Breached below this value (for metrics where larger is better; above it for errors such as rmse)"""
    max_drop: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Breached when the metric is worse than the version's evaluation on its test set by more than this"""
    min_rows: int = Field(default=50, ge=1, le=10_000_000)
    """Rows the window needs before the condition is judged"""

    @model_validator(mode="after")
    def _bound(self) -> QualityCondition:
        if self.floor is None and self.max_drop is None:
            raise ValueError("give floor or max_drop (or both)")
        return self
