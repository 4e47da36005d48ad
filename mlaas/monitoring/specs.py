"""Monitors: what a user asks for (create, change) and the record kept for each, with its last outcomes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from mlaas.adapters.webhooks import MIN_SECRET_LENGTH
from mlaas.drift.specs import Correction, DriftOverride
from mlaas.quality.specs import QualityCondition
from mlaas.specs import Doc, Spec, VersionRef, model_name, s3_uri

WEBHOOK_URL_PATTERN = r"^https?://[^\s/?#@]+(?:[/?#][\x21-\x7e]*)?$"  # the live document: the allowlist
MONITOR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"  # checked by monitors._settled, whose message names it


class Schedule(Doc):
    """A monitor's schedule as stored: every so many seconds, or a five-field crontab expression (UTC)."""

    model_config = ConfigDict(frozen=True)

    every_seconds: int | None = None
    cron: str | None = None


class MonitorSchedule(Spec):
    every_seconds: int | None = Field(default=None, ge=10, le=366 * 24 * 3600)
    cron: str | None = Field(default=None, max_length=100, examples=["*/30 * * * *"])


class WebhookAction(Spec):
    url: str = Field(max_length=2000, examples=["https://hooks.example.com/mlaas"],
                     json_schema_extra={"pattern": WEBHOOK_URL_PATTERN})  # checked by adapters.webhooks.check_url
    secret: str = Field(min_length=MIN_SECRET_LENGTH, max_length=256,
                        description="HMAC-SHA256 key; the body's signature is sent as X-Mlaas-Signature: sha256=<hex>")


class RetrainAction(Spec):
    dataset: str = s3_uri()
    data_config: str = s3_uri()
    promote: bool = False
    cooldown_seconds: int | None = Field(default=None, ge=0, le=366 * 24 * 3600)


class OnDrift(Spec):
    webhook: WebhookAction | None = None
    retrain: RetrainAction | None = None


class StoredWebhook(BaseModel):
    """A webhook as stored: monitors made before secrets were required keep an empty one and still load."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str
    secret: str = ""


class StoredOnDrift(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    webhook: StoredWebhook | None = None
    retrain: RetrainAction | None = None


class MonitorChanges(Spec):
    """Settings of a monitor; on a change, only the fields given are changed."""

    version: VersionRef = Field(default=None, description="Omitted: the production version at each check")
    schedule: MonitorSchedule | None = None
    window_seconds: int | None = Field(default=None, ge=60, description="Omitted: the rows not checked yet")
    min_rows: int | None = Field(default=None, ge=1, le=10_000_000)
    overrides: dict[str, DriftOverride] | None = None
    drift_share: float | None = Field(default=None, gt=0, le=1)
    correction: Correction | None = None
    prediction_drift: bool | None = None
    on_drift: OnDrift | None = None
    enabled: bool | None = None
    quality: QualityCondition | None = None
    """A quality condition instead of a drift check: its breach runs the on_drift actions"""


class MonitorSpec(MonitorChanges):
    """A new monitor of a model's served traffic."""

    id: str | None = Field(default=None, max_length=128, json_schema_extra={"pattern": MONITOR_ID_PATTERN})
    model: str = model_name()


class Dependencies(Doc):
    """What a check of a monitor ran against: the model version it resolved to and that version's baseline."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    version: int | None = None
    """The version number (none when the model or version could not be resolved)"""
    baseline: str | None = None
    """The version's drift-data tag"""
    data_config: str | None = None
    """The version's data_config tag"""


class CheckError(Doc):
    """Why the last check failed, and what it depended on (it is not retried while those stay the same)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    code: str
    """Transport-neutral error code, as in the API's errors"""
    message: str
    at: str
    """When the check failed (ISO 8601)"""
    depends_on: Dependencies
    retry: str = ""
    """What makes the check run again"""


class MonitorRecord(BaseModel):
    """A monitor as stored: its effective settings plus the state its checks leave behind."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    model: str
    version: VersionRef = None
    schedule: Schedule
    window_seconds: int | None = None
    min_rows: int
    overrides: dict[str, DriftOverride] = {}
    drift_share: float = 0.5
    correction: Correction | None = None
    prediction_drift: bool = False
    on_drift: StoredOnDrift = StoredOnDrift()
    enabled: bool = True
    quality: QualityCondition | None = None
    created_at: str
    owner: str | None = None  # the name of the key that created it; None: mlaas (a default monitor)
    last_run_at: str | None = None
    last_due: str | None = None
    last_result: dict[str, Any] | None = None
    last_skip: dict[str, Any] | None = None
    last_error: CheckError | None = None
    last_retrain_at: str | None = None
    watermark: dict[str, str] = {}

    @field_serializer("schedule", "on_drift")
    def _compact(self, value: BaseModel) -> dict[str, Any]:
        return value.model_dump(mode="json", exclude_none=True)

    @field_serializer("overrides")
    def _compact_overrides(self, value: dict[str, DriftOverride]) -> dict[str, Any]:
        return {column: options.model_dump(mode="json", exclude_none=True) for column, options in value.items()}

    def stored(self) -> dict[str, Any]:
        """The JSON record kept in the monitor store."""
        return self.model_dump(mode="json")
