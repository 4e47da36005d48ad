"""The models API: paths, promotion, and what a model and its versions look like."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mlaas.specs import MAX_VERSION, NAME_PATTERN, Doc, Spec


class ModelPath(Doc):
    name: str = Field(max_length=256, json_schema_extra={"pattern": NAME_PATTERN})


class ModelVersionPath(Doc):
    name: str = Field(max_length=256, json_schema_extra={"pattern": NAME_PATTERN})
    version: int = Field(ge=1, le=MAX_VERSION)


class PromoteRequest(Spec):
    version: int = Field(ge=1, le=MAX_VERSION, examples=[3])
    require_better: bool = Field(default=False, description="Apply the promotion gate to recorded evaluations")


class ModelSummary(Doc):
    name: str
    description: str
    aliases: dict[str, int]
    production_version: int | None
    latest_version: int | None
    versions: int


class ModelList(Doc):
    models: list[ModelSummary]


class VersionDetail(Doc):
    version: int
    stage: str | None
    aliases: list[str]
    created_at: str | None
    run_id: str | None
    drift_data: str | None
    dataset: str | None
    test_dataset: str | None
    evaluation: dict[str, Any] | None
    input_schema: list[dict[str, Any]] | None
    tags: dict[str, str] | None = None
    source: str | None = None
    description: str | None = None
    servable: dict[str, Any] | None = None


class ModelDetail(Doc):
    name: str
    description: str
    aliases: dict[str, int]
    production_version: int | None
    promotions: list[dict[str, Any]]
    versions: list[VersionDetail]


class PromotionRecord(Doc):
    at: str
    from_: int | None = Field(alias="from")
    to: int
    by: str
    reason: str
