"""What a client of the stack needs: the ``MLAAS_*`` variables, ``stack.env`` and the local admin API key."""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
from pathlib import Path

from . import azurite
from .config import StackConfig
from .processes import write_private


def client_env(config: StackConfig) -> dict[str, str]:
    """The ``MLAAS_*`` variables a client of this stack needs."""
    c = config
    return {
        "MLAAS_REDIS_URL": c.url("redis"),
        "MLAAS_MLFLOW_TRACKING_URI": c.url("mlflow"),
        "MLAAS_MLFLOW_UI_URL": c.url("mlflow"),  # the console links runs here (the same server serves the UI)
        **_storage_env(config),
        "MLAAS_TMP_DIR": str(c.path("tmp")),
        "MLAAS_DATASETS_BUCKET": c.datasets_bucket,
        "MLAAS_DRIFT_BUCKET": c.drift_bucket,
        "MLAAS_API_URL": c.url("api"),
        **_api_key(config),
    }


def _storage_env(config: StackConfig) -> dict[str, str]:
    """How mlaas reaches the stack's blob store: the S3 server, or Azurite with MLAAS_STORAGE_BACKEND=azure."""
    c = config
    if c.storage == "azure":
        return {"MLAAS_STORAGE_BACKEND": "azure", "MLAAS_AZURE_CONNECTION_STRING": azurite.connection_string(c)}
    return {"MLAAS_S3_ENDPOINT": c.url("s3"), "MLAAS_S3_ACCESS_KEY": c.s3_access_key,
            "MLAAS_S3_SECRET_KEY": c.s3_secret_key, "MLAAS_S3_REGION": c.s3_region}


def ensure_api_key(config: StackConfig) -> bool:
    """Make the local admin key on the first start (unless MLAAS_API_KEYS is configured); whether it is new."""
    path = config.path("api-key")
    if os.environ.get("MLAAS_API_KEYS") or path.exists():
        return False
    write_private(path, "mlaas_" + secrets.token_urlsafe(32) + "\n")
    return True


def _api_key(config: StackConfig) -> dict[str, str]:
    """An admin API key for the local stack, made once and kept in the state directory.

    When the caller configures MLAAS_API_KEYS itself, that configuration is used unchanged.
    """
    path = config.path("api-key")
    if os.environ.get("MLAAS_API_KEYS") or not path.exists():
        return {}
    key = path.read_text().strip()
    entry = f"local-admin:predict+jobs+admin:{hashlib.sha256(key.encode()).hexdigest()}"
    return {"MLAAS_API_KEY": key, "MLAAS_API_KEYS": entry}


def write_env_file(config: StackConfig) -> Path:
    """Write ``stack.env`` (shell-sourceable KEY=VALUE lines) into the state directory."""
    path = config.path("stack.env")
    write_private(path, "".join(f"{k}={shlex.quote(v)}\n" for k, v in client_env(config).items()))
    return path
