"""What a rollout request says: the candidate, the mode, the canary share and the guard that may end it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlaas.quality.specs import Metric
from mlaas.specs import MAX_VERSION, Spec


class GuardSpec(Spec):
    """When the rollout ends by itself: judged once the candidate has scored ``min_requests`` requests."""

    min_requests: int = Field(default=50, ge=1, le=10_000_000)
    """Requests the candidate must have scored before the guard judges it"""
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    """Classification: end when the share of rows where candidate and production agree falls below this"""
    max_mean_abs_diff: float | None = Field(default=None, ge=0)
    """Regression: end when the mean absolute difference of the two answers rises above this"""
    max_extra_error_rate: float = Field(default=0.02, ge=0, le=1)
    """End when the candidate's error rate exceeds production's by more than this"""
    max_quality_drop: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """End when the candidate's live quality (``quality_metric`` from feedback on the compared ids) is worse than
    production's by more than this"""
    quality_metric: Metric | None = None
    """The metric ``max_quality_drop`` judges (omitted: accuracy for classification, rmse for regression)"""
    min_quality_rows: int = Field(default=50, ge=1, le=10_000_000)
    """Compared rows with feedback the quality guard needs before it judges"""


class RolloutSpec(Spec):
    """POST /models/<name>/rollout: start a rollout, or change the running one (its mode, weight or guard)."""

    version: int = Field(ge=1, le=MAX_VERSION, examples=[4])
    """The candidate version"""
    mode: Literal["shadow", "canary"] = Field(examples=["canary"])
    """shadow: production answers, the candidate scores the same rows off the request path;
    canary: the candidate answers ``weight`` of the requests that name no version"""
    weight: float | None = Field(default=None, gt=0, le=1, examples=[0.1])
    """Canary only: the share of requests the candidate answers (0 < weight <= 1)"""
    guard: GuardSpec = Field(default_factory=GuardSpec)
    """When the rollout ends by itself"""

    @model_validator(mode="after")
    def _weight_for_canary(self) -> RolloutSpec:
        if self.mode == "canary" and self.weight is None:
            raise ValueError("weight: a canary needs a weight (0 < weight <= 1)")
        if self.mode == "shadow" and self.weight is not None:
            raise ValueError("weight: a shadow answers no request, so it takes no weight")
        return self


class RolloutPromoteSpec(Spec):
    """POST /models/<name>/rollout/promote: make the candidate the production version and end the rollout."""

    require_better: bool = True
    """Apply the promotion gate (the candidate's recorded evaluation must be at least as good as production's)"""
