"""POST /inference: the rows to score and the predictions."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from mlaas.api.schemas.common import Query
from mlaas.specs import NAME_PATTERN, Doc, Spec, VersionRef


class InferenceQuery(Query):
    model: str | None = Field(default=None, max_length=256, pattern=NAME_PATTERN,
                              description="Model name (or in the body)")
    version: VersionRef = Field(default=None, description="As in the body")


_RECORDS = {"type": "array", "minItems": 1, "items": {"type": "object"}}
_COLUMNS = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "array", "minItems": 1}}
_SPLIT = {"type": "object", "required": ["columns", "data"],
          "properties": {"columns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                         "data": {"type": "array", "minItems": 1, "items": {"type": "array"}}}}
# Exactly one payload, not null, with at least one row: what inference.payload.parse_rows accepts.
_ONE_PAYLOAD = [{"required": [key], "properties": {key: shape}} for key, shape in (
    ("data", _RECORDS), ("dataframe_records", _RECORDS), ("dataframe_split", _SPLIT),
    ("instances", {"anyOf": [_RECORDS, _COLUMNS]}), ("inputs", {"anyOf": [_RECORDS, _COLUMNS]}))]


class InferenceRequest(Spec):
    """Rows to score: ``data`` (records, each with an optional ``id``) or one of MLflow's scoring payloads."""

    model_config = ConfigDict(**Spec.model_config, json_schema_extra={"oneOf": _ONE_PAYLOAD})  # type: ignore[dict-item]

    model: str | None = Field(default=None, max_length=256, pattern=NAME_PATTERN, examples=["titanic"])
    version: VersionRef = Field(default=None, examples=["latest"])
    data: list[dict[str, Any]] | None = Field(
        default=None, examples=[[{"id": "p-1", "Pclass": 3, "Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0,
                                  "Fare": 7.25, "Embarked": "S"}]],
    )
    """Records to score; each may carry an id (string or integer)"""
    dataframe_split: dict[str, Any] | None = None
    """MLflow payload: columns, data (rows of values) and optionally index (ids)"""
    dataframe_records: list[dict[str, Any]] | None = None
    """MLflow payload: a list of records"""
    instances: list[Any] | dict[str, Any] | None = None
    """MLflow payload: records, or column -> values"""
    inputs: list[Any] | dict[str, Any] | None = None
    """MLflow payload: records, or column -> values"""
    params: dict[str, Any] | None = Field(default=None, description="Accepted for MLflow compatibility; unused")


class PredictionItem(Doc):
    id: int | str
    """The row's id as sent (or its position)"""
    prediction: Any
    """The model's output for the row"""
    probabilities: dict[str, float] | None = None
    """Class -> probability, for classifiers that have them"""


class InferenceResponse(Doc):
    model: str
    version: int
    """The concrete version that answered"""
    predictions: list[PredictionItem] | list[Any]
    """In request order: id, prediction, probabilities items (a plain list for MLflow payloads)"""
    ids: list[int | str] | None = Field(default=None, description="With MLflow-style payloads")
    probabilities: list[dict[str, float]] | None = Field(default=None, description="With MLflow-style payloads")
    ignored_columns: list[str] | None = Field(default=None, description="Columns the model does not use")
