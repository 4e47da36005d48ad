"""Typed request and response models: validation and the OpenAPI document come from these."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$"  # a registry name: never a URI, path or other reference
ModelName = Field(min_length=1, max_length=256, pattern=NAME_PATTERN,
                  description="Registered model name", examples=["titanic"])
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")
MAX_VERSION = 2**31 - 1  # the registry stores versions as 32-bit integers


def _version(value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_VERSION:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_VERSION:
        return int(value)
    if isinstance(value, str) and _ALIAS.match(value):
        return value
    raise ValueError("must be a version number (1 or more), 'latest' or an alias name")


VersionRef = Annotated[
    int | str | None,
    PlainValidator(_version),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_VERSION}, {"type": "string", "maxLength": 255},
                   {"type": "null"}]}
    ),
]
URI = Field(default=None, min_length=6, max_length=1100, pattern=r"^s3://", examples=["s3://datasets/titanic/train.csv"])


# Every route but /health and /ready takes an API key, as a bearer token or an X-API-Key header.
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


class Doc(BaseModel):
    """Field docstrings become the fields' descriptions in the OpenAPI document."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class Strict(Doc):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


_QUERY_SCHEMAS: dict[type, dict[str, Any]] = {}


class Query(Strict):
    """A query-string model. flask-openapi3 reads its JSON schema on every request, and building it costs
    ~0.3 ms, a quarter of a one-row prediction: the argument-less schema is built once (read it, never change it)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _QUERY_SCHEMAS:
            _QUERY_SCHEMAS[cls] = super().model_json_schema()
        return _QUERY_SCHEMAS[cls]


class ErrorBody(Doc):
    """Every error: a code, a human message, the HTTP status."""

    code: str = Field(examples=["not_found"])
    """Transport-neutral error code: invalid_input, unauthorized, forbidden, not_found, conflict, too_large,
    rate_limited, unavailable, internal"""
    message: str = Field(examples=["model 'titanic' does not exist"])
    """What went wrong, for a person: names the field, row, column or dependency"""
    status: int = Field(examples=[404])
    """The HTTP status"""
    title: str = Field(examples=["Not found"])
    """Short title of the status"""
    details: dict[str, Any] | None = None
    """Machine-readable extras (e.g. the failing field, the dependency that is down)"""


class TrainRequest(Strict):
    """Retrain a registered model version on data in blob storage."""

    model: str = ModelName
    """Registered model name"""
    version: VersionRef = Field(
        default=None, description="Integer version, 'latest', an alias, or omitted for the production version",
        examples=[1, "latest", "prod"],
    )
    dataset: str | None = URI
    """Training data (CSV or Parquet) in blob storage; default: the one recorded on the source version"""
    data_config: str | None = Field(default=None, min_length=6, max_length=1100, pattern=r"^s3://",
                                    examples=["s3://datasets/titanic/data_config.yaml"])
    """Data config (YAML or JSON) in blob storage; default: the one recorded on the source version"""
    test_dataset: str | None = Field(default=None, min_length=6, max_length=1100, pattern=r"^s3://")
    """Labelled test set; default: a stratified holdout of test_fraction"""
    drift_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Share of rows kept as drift baseline")
    test_fraction: float = Field(default=0.2, ge=0, lt=0.5, description="Share of rows held out when no test_dataset")
    random_state: int | None = Field(default=None, ge=0, le=2**32 - 1)
    """Seed of the splits"""
    promote: bool = Field(default=False, description="Promote when at least as good as production")


class IdempotencyHeader(Doc):
    idempotency_key: str | None = Field(
        default=None, alias="Idempotency-Key", max_length=255,
        description="The same key (with the same body) returns the same job",
    )


class JobAccepted(Doc):
    job_id: str
    """Poll it at status_url"""
    status_url: str
    """GET this for the job status"""
    state: str
    """queued when just created; the current state when an Idempotency-Key matched an existing job"""
    model: str | None = None
    """The model, as resolved"""
    version: int | None = None
    """The concrete version the job is pinned to"""


class JobProgress(Doc):
    step: str
    """Name of the current step (download_data, split, fit, evaluate, register, ...)"""
    percent: int
    """Rough completion, 0-100"""


class JobError(Doc):
    code: str
    message: str
    details: dict[str, Any] | None = None


class JobTransition(Doc):
    state: str
    at: str | None


class JobStatus(Doc):
    job_id: str
    type: str
    """train, evaluate or drift"""
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    """queued, running, succeeded, failed or cancelled"""
    progress: JobProgress
    params: dict[str, Any]
    """The job's parameters as pinned at submission"""
    result: dict[str, Any] | None = None
    """The result when succeeded"""
    error: JobError | None = None
    """code and message when failed"""
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    request_id: str | None = None
    """X-Request-ID of the request that created the job"""
    attempts: int = 0
    """How many times a worker started it (more than 1 after a redelivery)"""
    history: list[JobTransition] = []
    """Every recorded state transition with its time"""


class JobPath(Doc):
    job_id: str = Field(max_length=64)


class JobListQuery(Query):
    type: Literal["train", "evaluate", "drift"] | None = None
    """Only jobs of this type"""
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    """Only jobs in this state"""
    limit: int = Field(default=50, ge=1, le=500)
    """Page size"""
    offset: int = Field(default=0, ge=0)
    """Jobs to skip (newest first)"""


class JobList(Doc):
    jobs: list[JobStatus]
    total: int
    limit: int
    offset: int


class Health(Doc):
    status: str = "ok"


class Readiness(Doc):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    """redis, mlflow, s3: ok or why not"""


class InferenceQuery(Query):
    model: str | None = Field(default=None, max_length=256, pattern=NAME_PATTERN,
                              description="Model name (or in the body)")
    version: VersionRef = Field(default=None, description="As in the body")


class InferenceRequest(Strict):
    """Rows to score: ``data`` (records, each with an optional ``id``) or one of MLflow's scoring payloads."""

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


class EvaluateRequest(Strict):
    """Evaluate a model version on a labelled test set in blob storage."""

    model: str = ModelName
    version: VersionRef = Field(default=None, examples=[2, "latest"])
    dataset: str | None = Field(default=None, min_length=6, max_length=1100, pattern=r"^s3://",
                                examples=["s3://datasets/titanic/test.csv"])
    """Labelled test set; default: the version's test_dataset tag, then MLAAS_DEFAULT_TEST_DATASET"""
    data_config: str | None = Field(default=None, min_length=6, max_length=1100, pattern=r"^s3://")
    """Default: the version's data_config tag"""
    compare_with: VersionRef = Field(default=None, description="Another version (or 'prod') on the same rows",
                                     examples=["prod"])
    promote: bool = Field(default=False, description="Promote when at least as good as production")


class ModelPath(Doc):
    name: str = Field(max_length=256)


class ModelVersionPath(Doc):
    name: str = Field(max_length=256)
    version: int = Field(ge=1, le=MAX_VERSION)


class PromoteRequest(Strict):
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


class ModelData(Strict):
    """A model version's data: its drift baseline (as reference) or its captured inference rows (as current)."""

    model: str = ModelName
    version: VersionRef = Field(default=None, examples=[2])
    since: str | None = Field(default=None, max_length=40, description="Captured rows from (ISO 8601), current only")
    until: str | None = Field(default=None, max_length=40, description="Captured rows until (ISO 8601), current only")


class DriftColumns(Strict):
    numerical: list[str] = Field(default_factory=list, max_length=5000)
    categorical: list[str] = Field(default_factory=list, max_length=5000)


DriftMethod = Literal["ks", "chisquare", "z", "psi", "wasserstein", "jensenshannon", "hellinger", "anderson"]


class DriftOverride(Strict):
    method: DriftMethod | None = None
    threshold: float | None = Field(default=None, gt=0)


class DriftRequest(Strict):
    """Compare a current data set with a reference, column by column."""

    reference: str | ModelData = Field(examples=["s3://datasets/titanic/train.csv"])
    """A dataset URI, or a model version whose drift-data baseline is the reference"""
    current: str | ModelData = Field(examples=["s3://datasets/titanic/test.csv"])
    """A dataset URI, or a model version whose captured inference rows are compared"""
    data_config: str | None = Field(default=None, min_length=6, max_length=1100, pattern=r"^s3://")
    """Which columns to compare and as what (or give columns)"""
    columns: DriftColumns | None = None
    """Numerical and categorical columns to compare (instead of data_config)"""
    overrides: dict[str, DriftOverride] | None = None
    """Per column: method (ks, chisquare, z, psi, wasserstein, jensenshannon, hellinger, anderson) and threshold"""
    drift_share: float = Field(default=0.5, gt=0, le=1)
    """The data set drifts when at least this share of columns drifts"""
    correction: Literal["bonferroni", "bh"] | None = None
    """Multiple-testing correction of the p-value tests"""
    domain_classifier: bool = False
    """Also train a classifier to tell the two sides apart (cross-validated ROC AUC)"""
    min_rows: int = Field(default=30, ge=1, le=1_000_000)
    """Columns with fewer non-missing values on a side are reported insufficient_data"""


class DatasetPath(Doc):
    key: str = Field(min_length=1, max_length=1024)


class DatasetPutQuery(Query):
    overwrite: bool = False


class DatasetListQuery(Query):
    prefix: str = Field(default="", max_length=1024)
    limit: int = Field(default=1000, ge=1, le=10_000)


class DatasetStored(Doc):
    uri: str
    size: int
    sha256: str


class DatasetInfo(Doc):
    uri: str
    size: int
    last_modified: str | None


class DatasetList(Doc):
    datasets: list[DatasetInfo]


class MonitorSchedule(Strict):
    every_seconds: int | None = Field(default=None, ge=10, le=366 * 24 * 3600)
    cron: str | None = Field(default=None, max_length=100, examples=["*/30 * * * *"])


class WebhookAction(Strict):
    url: str = Field(max_length=2000, examples=["https://hooks.example.com/mlaas"])
    secret: str = Field(default="", max_length=256, description="HMAC-SHA256 key; the body's signature is sent "
                                                                  "as X-Mlaas-Signature: sha256=<hex>")


class RetrainAction(Strict):
    dataset: str = Field(min_length=6, max_length=1100, pattern=r"^s3://")
    data_config: str = Field(min_length=6, max_length=1100, pattern=r"^s3://")
    promote: bool = False
    cooldown_seconds: int | None = Field(default=None, ge=0, le=366 * 24 * 3600)


class OnDrift(Strict):
    webhook: WebhookAction | None = None
    retrain: RetrainAction | None = None


class MonitorFields(Strict):
    version: VersionRef = Field(default=None, description="Omitted: the production version at each check")
    schedule: MonitorSchedule | None = None
    window_seconds: int | None = Field(default=None, ge=60, description="Omitted: the rows not checked yet")
    min_rows: int | None = Field(default=None, ge=1, le=10_000_000)
    overrides: dict[str, DriftOverride] | None = None
    drift_share: float | None = Field(default=None, gt=0, le=1)
    correction: Literal["bonferroni", "bh"] | None = None
    prediction_drift: bool | None = None
    on_drift: OnDrift | None = None
    enabled: bool | None = None


class MonitorCreate(MonitorFields):
    id: str | None = Field(default=None, max_length=128)
    model: str = ModelName


class MonitorPath(Doc):
    monitor_id: str = Field(max_length=128)


class Monitor(Doc):
    id: str
    model: str
    version: int | str | None
    schedule: dict[str, Any]
    window_seconds: int | None
    min_rows: int
    overrides: dict[str, Any]
    drift_share: float
    correction: str | None
    prediction_drift: bool
    on_drift: dict[str, Any]
    enabled: bool
    created_at: str
    last_run_at: str | None = None
    last_due: str | None = None
    last_result: dict[str, Any] | None = Field(default=None, description="The last check that ran")
    last_skip: dict[str, Any] | None = Field(default=None, description="The last check skipped (too few rows)")
    last_retrain_at: str | None = None


class MonitorList(Doc):
    monitors: list[Monitor]


class MonitorRunAccepted(Doc):
    monitor: str
    queued: bool
