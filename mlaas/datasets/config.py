"""The data config: which columns are ids, target and features, and the task."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlaas.errors import InvalidInput

Task = Literal["classification", "regression"]


class DataConfig(BaseModel):
    """Column roles of a data set, read from a YAML or JSON file in storage."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    index_columns: list[str] = Field(default_factory=list)
    target_column: str
    numerical_features: list[str] = Field(default_factory=list)
    categorical_features: list[str] = Field(default_factory=list)
    task: Task | None = None

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        features = self.features
        if not features:
            raise ValueError("no numerical_features or categorical_features are listed")
        repeated = sorted({c for c in features if features.count(c) > 1})
        if repeated:
            raise ValueError(f"columns listed twice: {', '.join(repeated)}")
        if self.target_column in features or self.target_column in self.index_columns:
            raise ValueError(f"target_column {self.target_column!r} is also listed as a feature or index")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numerical_features, *self.categorical_features]

    @classmethod
    def parse(cls, raw: dict[str, Any], *, source: str = "data_config") -> DataConfig:
        """Validate a raw mapping, naming the file and field on error."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidInput(f"{source}: {problems}") from None

    def check_columns(self, frame: pd.DataFrame, *, source: str, need_target: bool = True) -> None:
        """Raise InvalidInput naming every configured column missing from the frame."""
        wanted = [*self.index_columns, *self.features] + ([self.target_column] if need_target else [])
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise InvalidInput(f"{source}: missing column(s) {', '.join(missing)}")

    def infer_task(self, target: pd.Series) -> Task:
        """The configured task, else classification for non-float or few-valued targets."""
        if self.task:
            return self.task
        if pd.api.types.is_float_dtype(target) and target.nunique(dropna=True) > 20:
            return "regression"
        return "classification"
