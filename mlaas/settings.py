"""Settings built once per entry point from ``MLAAS_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlaas.errors import InvalidInput

PREFIX = "MLAAS_"


class Secret(str):
    """A string that never shows its value in repr/str formatting of containers or logs."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return str.__str__(self)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Everything configurable about mlaas. Field ``foo_bar`` is read from ``MLAAS_FOO_BAR``."""

    # Redis: broker for Celery, job records, idempotency keys, inference capture buffer.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "mlaas"
    redis_socket_timeout: float = 3.0
    # MLflow tracking server and registry.
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    mlflow_experiment: str = ""  # empty: one experiment per registered model, "mlaas/<model>"
    mlflow_timeout: float = 30.0
    # S3-compatible blob storage (MinIO in production).
    s3_endpoint: str = "http://127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: Secret = Secret("")
    s3_region: str = "us-east-1"
    datasets_bucket: str = "datasets"
    drift_bucket: str = "drift"
    allowed_buckets: tuple[str, ...] = ()  # empty: the datasets and drift buckets
    # Jobs.
    job_ttl_seconds: int = 7 * 24 * 3600
    visibility_timeout: int = 12 * 3600
    broker_publish_timeout: float = 3.0
    job_redis_wait_seconds: float = 3600.0  # a running job waits this long for Redis to come back before giving up
    # HTTP API.
    auth_enabled: bool = True
    api_keys: tuple[str, ...] = ()  # name:scope+scope:sha256hex entries, see mlaas/auth.py
    rate_limit_per_minute: int = 0  # per API key; 0: no limit
    max_body_bytes: int = 16 * 1024 * 1024
    max_inference_rows: int = 10_000
    max_dataset_bytes: int = 1024 * 1024 * 1024  # PUT /datasets uploads
    # Models.
    resolve_ttl_seconds: float = 10.0
    model_cache_size: int = 8
    skops_trusted_types: tuple[str, ...] = ()  # added to DEFAULT_TRUSTED_TYPES in adapters/model_files.py
    allow_pickle_models: bool = False
    allow_sklearn_version_mismatch: bool = False
    tmp_dir: str = ""
    warm_models: bool = False
    fast_path: bool = True  # serve scikit-learn pipelines through checked compiled arithmetic (inference/compiled.py)
    # Inference capture (drift checks of served traffic run off the request path).
    capture_enabled: bool = True
    capture_max_entries: int = 100_000  # per model version; requests beyond are dropped and counted
    capture_timeout: float = 0.25
    capture_batch_seconds: float = 0.1  # hold captured requests this long, then write them in one round trip
    capture_flush_seconds: float = 30.0
    capture_flush_batch: int = 5_000  # stream entries (requests) per Parquet file
    drift_min_rows: int = 200  # captured rows needed before a drift check of inference traffic
    # Monitors.
    monitor_sweep_seconds: float = 15.0
    monitor_default_seconds: int = 3600  # schedule of the default monitor every production model gets
    retrain_cooldown_seconds: int = 24 * 3600
    webhook_allowlist: tuple[str, ...] = ()  # host or host:port entries a monitor's webhook may call
    webhook_timeout: float = 5.0
    # Training defaults.
    drift_fraction: float = 0.1
    test_fraction: float = 0.2
    default_test_dataset: str = ""
    log_level: str = "INFO"
    worker_metrics_port: int = 0  # Celery workers serve Prometheus metrics here (0: off)

    @property
    def buckets(self) -> tuple[str, ...]:
        """Buckets mlaas may read and write."""
        base = self.allowed_buckets or ()
        return tuple(dict.fromkeys((self.datasets_bucket, self.drift_bucket, *base)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``MLAAS_*`` variables, then apply keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked, for logs and diagnostics."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if isinstance(value, Secret) and value else value
        return out


def _convert(name: str, type_name: Any, raw: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind.startswith("tuple"):
            return _csv(raw)
        if kind == "Secret":
            return Secret(raw)
    except ValueError as exc:
        raise InvalidInput(f"{PREFIX}{name.upper()}: {exc}") from None
    return raw
