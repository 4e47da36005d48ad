"""Settings built once per entry point from ``MLAAS_*`` environment variables, validated strictly."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator, ConfigDict, GetCoreSchemaHandler, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import core_schema

from mlaas.errors import InvalidInput
from mlaas.uris import BlobUri

PREFIX = "MLAAS_"
# MLAAS_* variables that are not settings of the services: the client's, the local stack's, the tests'.
OTHER_VARIABLES = frozenset({"MLAAS_API_URL", "MLAAS_API_KEY", "MLAAS_FUZZ_EXAMPLES"})
OTHER_PREFIXES = ("MLAAS_STACK_", "MLAAS_TEST_")
log = logging.getLogger(__name__)


class Secret(str):
    """A string that never shows its value in repr/str formatting of containers or logs."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        """The secret's value, for the one call that needs it."""
        return str.__str__(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls, core_schema.str_schema())


def _csv(value: Any) -> Any:
    """A comma-separated variable as a tuple of its non-empty items; other values as they are."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Csv = Annotated[tuple[str, ...], BeforeValidator(_csv)]
Seconds = Annotated[float, Gt(0)]
WaitSeconds = Annotated[float, Ge(0)]
Count = Annotated[int, Gt(0)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class Settings:
    """Everything configurable about mlaas. Field ``foo_bar`` is read from ``MLAAS_FOO_BAR``."""

    # Redis: broker for Celery, job records, idempotency keys, inference capture buffer.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "mlaas"
    redis_socket_timeout: Seconds = 3.0
    # MLflow tracking server and registry.
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    mlflow_experiment: str = ""  # empty: one experiment per registered model, "mlaas/<model>"
    mlflow_timeout: Seconds = 30.0
    # S3-compatible blob storage (MinIO in production).
    s3_endpoint: str = "http://127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: Secret = Secret("")
    s3_region: str = "us-east-1"
    datasets_bucket: str = "datasets"
    drift_bucket: str = "drift"
    allowed_buckets: Csv = ()  # empty: the datasets and drift buckets
    # Jobs.
    job_ttl_seconds: Count = 7 * 24 * 3600
    visibility_timeout: Count = 12 * 3600
    broker_publish_timeout: Seconds = 3.0
    job_redis_wait_seconds: WaitSeconds = 3600.0  # a running job waits this long for Redis to come back
    job_max_attempts: Count = 3  # a job whose worker is lost this many times ends failed (worker_lost)
    job_lease_seconds: Annotated[int, Ge(3)] = 30  # a running job's lease; a worker silent this long is lost
    job_heartbeat_seconds: Seconds = 5.0  # how often the process running a job renews its lease
    job_reaper_seconds: Seconds = 10.0  # how often beat looks for jobs whose lease expired
    # HTTP API.
    auth_enabled: bool = True
    api_keys: Csv = ()  # name:scope+scope:sha256hex entries, see mlaas/auth.py
    rate_limit_per_minute: Annotated[int, Ge(0)] = 6000  # per API key; 0: no limit
    max_body_bytes: Count = 16 * 1024 * 1024
    max_inference_rows: Count = 10_000
    max_dataset_bytes: Count = 1024 * 1024 * 1024  # PUT /datasets uploads, and any dataset a job reads (decoded)
    max_dataset_rows: Count = 10_000_000  # rows of any dataset a job reads
    batch_max_rows: Count = 100_000_000  # rows one POST /batch-inference job may score (streamed, not held)
    batch_chunk_rows: Count = 50_000  # rows a batch job scores at a time (one Parquet part each), unless asked
    # Models.
    resolve_ttl_seconds: WaitSeconds = 10.0
    model_cache_size: Count = 8
    skops_trusted_types: Csv = ()  # added to DEFAULT_TRUSTED_TYPES in adapters/model_files.py
    allow_pickle_models: bool = False
    allow_sklearn_version_mismatch: bool = False
    tmp_dir: str = ""
    warm_models: bool = False
    fast_path: bool = True  # serve scikit-learn pipelines through checked compiled arithmetic (inference/compiled.py)
    native_threads: Annotated[int, Ge(0)] = 0  # OpenMP/BLAS threads per API or worker process (0: cores / processes)
    # Inference capture (drift checks of served traffic run off the request path).
    capture_enabled: bool = True
    capture_max_entries: Count = 100_000  # per model version; requests beyond are dropped and counted
    capture_max_bytes: Count = 64 * 1024 * 1024  # per model version, the entries' size; beyond, dropped and counted
    capture_timeout: Seconds = 0.25
    capture_batch_seconds: WaitSeconds = 0.1  # hold captured requests this long, then write them in one round trip
    capture_flush_seconds: Seconds = 30.0
    capture_flush_batch: Count = 5_000  # stream entries (requests) per Parquet file
    capture_flush_parallel: Count = 4  # flush tasks at once on a backlog (beat's, plus the helpers it queues)
    drift_min_rows: Count = 200  # captured rows needed before a drift check of inference traffic
    # Monitors.
    monitor_sweep_seconds: Seconds = 15.0
    monitor_default_seconds: Count = 3600  # schedule of the default monitor every production model gets
    retrain_cooldown_seconds: Annotated[int, Ge(0)] = 24 * 3600
    webhook_allowlist: Csv = ()  # host or host:port entries a monitor's webhook may call
    webhook_timeout: Seconds = 5.0
    # Training defaults (the same bounds as the request fields of POST /train).
    drift_fraction: Annotated[float, Gt(0), Lt(0.5)] = 0.1
    test_fraction: Annotated[float, Ge(0), Lt(0.5)] = 0.2
    default_test_dataset: str = ""
    log_level: LogLevel = "INFO"
    worker_metrics_port: Annotated[int, Ge(0), Le(65535)] = 0  # Celery workers serve Prometheus metrics here (0: off)
    worker_nice: Annotated[int, Ge(0), Le(19)] = 0  # a Celery worker lowers its CPU priority to this nice at start
    worker_sched_idle: bool = False  # a Celery worker runs under Linux's SCHED_IDLE: any other process preempts it
    # Rollouts (shadow and canary): requests to compare are held this long in the API process, then queued in Redis.
    rollout_batch_seconds: Seconds = 1.0
    rollout_queue_max: Count = 10_000  # per rollout, requests waiting to be scored; beyond, dropped and counted
    rollout_queue_max_bytes: Count = 64 * 1024 * 1024  # per rollout, the waiting requests' size; likewise
    rollout_quality_rows: Count = 100_000  # per rollout, compared rows with ids kept for live quality; beyond, counted
    # The console at /ui (mlaas/api/ui/).
    mlflow_ui_url: str = ""  # the MLflow UI as a browser reaches it, for links to runs (empty: no links)
    console_runs: Annotated[int, Ge(1), Le(500)] = 60  # drift and quality runs a model page reads, newest first
    console_traffic_files: Annotated[int, Ge(1), Le(2000)] = 200  # capture files a model page reads for traffic
    # Ground truth and live quality (mlaas/quality/).
    max_feedback_rows: Count = 10_000  # outcomes per POST /feedback (a bulk dataset: MLAAS_MAX_DATASET_ROWS)
    feedback_join_seconds: Seconds = 30.0  # how often beat joins outcomes to captured predictions
    performance_window_seconds: Annotated[int, Ge(60)] = 86_400  # the windows logged as perf_ runs
    max_performance_windows: Count = 1_000  # windows one GET /models/<name>/performance may ask for
    # Azure Blob Storage (az://container/path), beside or instead of S3: see adapters/storage/azure.py.
    storage_backend: Literal["s3", "azure"] = "s3"  # where mlaas's own buckets (datasets, drift) live
    azure_connection_string: Secret = Secret("")  # wins over the account URL when set
    azure_account_url: str = ""  # https://<account>.blob.core.windows.net; with a key, a SAS or neither
    azure_account_key: Secret = Secret("")
    azure_sas_token: Secret = Secret("")  # neither key nor SAS: DefaultAzureCredential (azure-identity)

    def __post_init__(self) -> None:
        if self.storage_backend == "azure" and not self.azure_configured:
            raise InvalidInput("MLAAS_STORAGE_BACKEND: azure needs MLAAS_AZURE_CONNECTION_STRING or "
                               "MLAAS_AZURE_ACCOUNT_URL")

    @property
    def azure_configured(self) -> bool:
        """Whether Azure Blob Storage is configured (az:// URIs are accepted)."""
        return bool(self.azure_connection_string or self.azure_account_url)

    @property
    def storage_scheme(self) -> str:
        """URI scheme of mlaas's own buckets: ``s3`` or ``az``."""
        return "az" if self.storage_backend == "azure" else "s3"

    @property
    def storage_schemes(self) -> tuple[str, ...]:
        """URI schemes mlaas reads and writes: its backend's, plus the other one when that is configured too."""
        other = ("az",) if self.azure_configured else ()
        if self.storage_backend == "azure":
            other = ("s3",) if self.s3_access_key else ()
        return (self.storage_scheme, *other)

    def drift_uri(self, key: str) -> BlobUri:
        """The URI of ``key`` in mlaas's drift bucket, on mlaas's own backend."""
        return BlobUri(self.drift_bucket, key, self.storage_scheme)

    @property
    def buckets(self) -> tuple[str, ...]:
        """Buckets mlaas may read and write."""
        base = self.allowed_buckets or ()
        return tuple(dict.fromkeys((self.datasets_bucket, self.drift_bucket, *base)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``MLAAS_*`` variables, then apply keyword overrides.

        An invalid value raises InvalidInput naming the variable and what it accepts; an ``MLAAS_*``
        variable that is no setting is logged as a warning naming the closest setting.
        """
        env = os.environ if environ is None else environ
        names = {PREFIX + f.name.upper(): f.name for f in dataclasses.fields(cls)}
        for key in sorted(env):
            if key.startswith(PREFIX) and key not in names:
                _warn_unknown(key, tuple(names))
        values: dict[str, Any] = {}
        for variable, name in names.items():
            raw = env.get(variable)
            if raw is not None:
                values[name] = raw if name in SECRET_FIELDS else raw.strip()
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            from_env = {name for name in values if name not in overrides}
            raise InvalidInput("; ".join(_problem(error, from_env) for error in exc.errors())) from None

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked, for logs and diagnostics."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if isinstance(value, Secret) and value else value
        return out


SECRET_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings) if f.type in (Secret, "Secret"))


def unknown_variable_message(variable: str, known: tuple[str, ...]) -> str | None:
    """Why ``variable`` is ignored (with the closest setting's name), or None when it is not a mistake."""
    if variable in known or variable in OTHER_VARIABLES or variable.startswith(OTHER_PREFIXES):
        return None
    close = difflib.get_close_matches(variable, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else " (see mlaas/settings.py)"
    return f"{variable} is not an mlaas setting and is ignored{hint}"


@lru_cache(maxsize=256)
def _warn_unknown(variable: str, known: tuple[str, ...]) -> None:
    """Log an unknown variable once per process (each entry point may read the settings more than once)."""
    message = unknown_variable_message(variable, known)
    if message:
        log.warning(message)


_ACCEPTS = {
    "bool_parsing": "is not a boolean (true/false, 1/0, yes/no, on/off)",
    "bool_type": "is not a boolean (true/false, 1/0, yes/no, on/off)",
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "int_type": "is not an integer",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "literal_error": "is not one of {expected}",
}


def _problem(error: Any, from_env: set[str]) -> str:
    """One validation error as ``MLAAS_NAME: 'value' <what is wrong>`` (a secret's value left out)."""
    name = str(error["loc"][0]) if error.get("loc") else "settings"
    label = PREFIX + name.upper() if name in from_env else name
    template = _ACCEPTS.get(error["type"])
    reason = template.format(**error.get("ctx", {})) if template else str(error["msg"]).lower()
    shown = "" if name in SECRET_FIELDS or error["type"] == "unexpected_keyword_argument" else f"{error['input']!r} "
    return f"{label}: {shown}{reason}"
