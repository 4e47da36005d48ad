"""Logging into one open MLflow run: params, metrics, artifacts, and a scikit-learn model version."""

from __future__ import annotations

import json
import os
import tempfile
import time
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from mlaas.adapters.model_files import DEFAULT_TRUSTED_TYPES

if TYPE_CHECKING:
    from mlaas.adapters.registry import MlflowRegistry, ModelVersion
    from mlaas.inference.boosters import NativeModel

MAX_PARAM_LENGTH = 6000


def pip_requirements() -> list[str]:
    """Pinned requirements of a scikit-learn model saved by mlaas (explicit: inference takes ~12 s)."""
    return [f"{pkg}=={package_version(pkg)}" for pkg in ("scikit-learn", "skops", "numpy", "pandas", "scipy")]


class RunLogger:
    """Write to one run; every call goes through the registry's error translation."""

    def __init__(self, registry: MlflowRegistry, run_id: str, name: str) -> None:
        self.registry = registry
        self.run_id = run_id
        self.name = name

    def log_params(self, params: dict[str, Any]) -> None:
        clean = {k: str(v)[:MAX_PARAM_LENGTH] for k, v in params.items() if v is not None}
        self.registry.client.log_batch(
            self.run_id, params=[mlflow.entities.Param(k, v) for k, v in clean.items()]
        )

    def log_metrics(self, metrics: dict[str, float]) -> None:
        finite = {k: float(v) for k, v in metrics.items() if v is not None and pd.notna(v)}
        now = int(time.time() * 1000)
        entries = [mlflow.entities.Metric(k, v, now, 0) for k, v in finite.items()]
        for start in range(0, len(entries), 1000):  # the server's batch limit
            self.registry.client.log_batch(self.run_id, metrics=entries[start:start + 1000])

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.registry.client.set_tag(self.run_id, key, str(value))

    def log_json(self, obj: Any, artifact_file: str) -> None:
        text = json.dumps(obj, indent=2, default=str, allow_nan=False)
        self.registry.client.log_text(self.run_id, text, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.registry.client.log_text(self.run_id, text, artifact_file)

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        folder, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory(prefix="mlaas-art-") as tmp:
            path = os.path.join(tmp, name)
            with open(path, "wb") as fh:
                fh.write(data)
            self.registry.client.log_artifact(self.run_id, path, folder or None)

    def artifact_uri(self, artifact_file: str) -> str:
        return f"runs:/{self.run_id}/{artifact_file}"

    def register_sklearn_model(
        self, model: Any, *, name: str, example: pd.DataFrame, tags: dict[str, str]
    ) -> ModelVersion:
        """Log ``model`` with signature and input example, and register it as a new version of ``name``."""
        head = example.head(5)
        try:
            output = model.predict(head)
        except Exception:  # a signature without outputs is still useful
            output = None
        signature = infer_signature(head, output)
        trusted = self._trusted_types(model)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=head,
            pip_requirements=pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=trusted,
        )
        mv = mlflow.register_model(info.model_uri, name, tags=tags)
        return self.registry.get_version(name, int(mv.version))

    def register_native_model(
        self, model: NativeModel, *, name: str, example: pd.DataFrame, tags: dict[str, str]
    ) -> ModelVersion:
        """Log an XGBoost or LightGBM model with its own MLflow flavour (native format) and register it."""
        from mlaas.inference.boosters import HYPERPARAMETERS_ATTR

        head = example.head(5)
        signature = infer_signature(head, model.predict(head))
        library = __import__(model.library)
        requirements = [f"{model.library}=={library.__version__}", *pip_requirements()]
        common: dict[str, Any] = {"name": "model", "signature": signature, "pip_requirements": requirements}
        if model.library == "xgboost":  # its file keeps no hyperparameters: keep them as a model attribute
            model.model.get_booster().set_attr(**{HYPERPARAMETERS_ATTR: json.dumps(model.hyperparameters())})
            info = mlflow.xgboost.log_model(model.model, model_format="ubj", **common)
        elif model.is_booster:
            info = mlflow.lightgbm.log_model(model.model, **common)
        else:
            info = mlflow.lightgbm.log_model(model.model, serialization_format="skops",
                                             skops_trusted_types=self._trusted_types(model.model), **common)
        mv = mlflow.register_model(info.model_uri, name, tags=tags)
        return self.registry.get_version(name, int(mv.version))

    def _trusted_types(self, model: Any) -> list[str]:
        import skops.io

        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        allowed = set(self.registry.loader.trusted)
        return [t for t in untrusted if t in allowed or t in DEFAULT_TRUSTED_TYPES]
