"""MLflow tracking server and model registry: resolve, load, log, register, tag, alias."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from mlaas import logs
from mlaas.adapters.model_files import LoadedModel, ModelLoader, input_schema_of
from mlaas.adapters.runlog import RunLogger
from mlaas.errors import InvalidInput, MlaasError, NotFound, Unavailable
from mlaas.settings import Settings

PROD_ALIAS = "prod"
STAGE_TAG = "stage"
_ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")

VersionRef = int | str | None


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version as mlaas sees it."""

    name: str
    version: int
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created_at: datetime | None = None
    description: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def run_name(kind: str, now: datetime | None = None) -> str:
    """``{kind}_{UTC timestamp}``: sortable, and unique even for two runs in the same second."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{kind}_{stamp}_{secrets.token_hex(2)}"


class MlflowRegistry:
    """The project's only door to MLflow.

    Its client and downloads name the tracking server; the runs it opens (MLflow's fluent API) use the
    process's, which ``mlaas.process.configure_process`` sets from the same settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tracking_uri = settings.mlflow_tracking_uri
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.loader = ModelLoader(settings)

    # -- health -------------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise Unavailable unless the tracking server answers."""
        try:
            response = requests.get(f"{self.tracking_uri.rstrip('/')}/health", timeout=3)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise Unavailable("mlflow", f"mlflow does not answer ({type(exc).__name__})") from None

    # -- reading the registry -----------------------------------------------------------------------
    def resolve(self, name: str, ref: VersionRef = None) -> ModelVersion:
        """Turn a version reference (int, "latest", an alias, None or "prod" for production) into a version."""
        with translate_errors(f"model {name!r}"):
            if ref is None or ref == "" or ref == PROD_ALIAS:
                return self.production_version(name)
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                return self.get_version(name, int(ref))
            if ref == "latest":
                versions = self.list_versions(name)
                if not versions:
                    raise NotFound(f"model {name!r} has no versions")
                return versions[0]
            if not _ALIAS_RE.match(ref):
                raise InvalidInput(f"version: {ref!r} is not an integer, 'latest' or an alias")
            try:
                with translate_errors(f"model {name!r} alias {ref!r}"):
                    return self._convert(self.client.get_model_version_by_alias(name, ref))
            except NotFound:
                self.get_model(name)
                raise NotFound(f"model {name!r} has no alias {ref!r}") from None

    def production_version(self, name: str) -> ModelVersion:
        """The version the ``prod`` alias points to, else the newest tagged ``stage=prod``."""
        model = self.get_model(name)
        if PROD_ALIAS in model["aliases"]:
            return self.get_version(name, int(model["aliases"][PROD_ALIAS]))
        tagged = [v for v in self.list_versions(name) if v.tags.get(STAGE_TAG) == "prod"]
        if not tagged:
            raise NotFound(f"model {name!r} has no production version (no 'prod' alias, no stage=prod tag)")
        return tagged[0]

    def get_model(self, name: str) -> dict[str, Any]:
        """A registered model's name, aliases (alias → version) and tags."""
        with translate_errors(f"model {name!r}"):
            model = self.client.get_registered_model(name)
        return {
            "name": model.name,
            "aliases": {k: int(v) for k, v in (model.aliases or {}).items()},
            "tags": dict(model.tags or {}),
            "description": model.description or "",
        }

    def list_models(self, max_results: int = 1000) -> list[dict[str, Any]]:
        """Registered models."""
        with translate_errors("registered models"):
            models = self.client.search_registered_models(max_results=max_results)
        return [self.get_model(m.name) for m in models]

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version; NotFound names the model and version."""
        with translate_errors(f"model {name!r} version {version}"):
            return self._convert(self.client.get_model_version(name, str(version)))

    def list_versions(self, name: str) -> list[ModelVersion]:
        """All versions of a model, newest first; NotFound for an unknown model."""
        self.get_model(name)
        with translate_errors(f"model {name!r}"):
            found = self.client.search_model_versions(f"name = '{_quote(name)}'", max_results=10_000)
        return sorted((self._convert(v) for v in found), key=lambda v: v.version, reverse=True)

    def find_version_by_tag(self, name: str, key: str, value: str) -> ModelVersion | None:
        """The newest version of ``name`` carrying tag ``key=value``, if any."""
        with translate_errors(f"model {name!r}"):
            found = self.client.search_model_versions(
                f"name = '{_quote(name)}' and tags.`{key}` = '{_quote(value)}'", max_results=100
            )
        versions = sorted((self._convert(v) for v in found), key=lambda v: v.version, reverse=True)
        return versions[0] if versions else None

    def input_schema(self, version: ModelVersion) -> list[dict[str, Any]] | None:
        """The input columns of a version's signature (reads only its MLmodel file), if it has one."""
        with translate_errors(f"model {version.name!r} version {version.version}"):
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{version.uri}/MLmodel", dst_path=tempfile.mkdtemp(prefix="mlaas-meta-"),
                tracking_uri=self.tracking_uri,
            )
        try:
            return input_schema_of(path, f"{version.name} v{version.version}")
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    def run_params(self, run_id: str) -> dict[str, str]:
        """The parameters a run logged (empty when the run is gone)."""
        try:
            with translate_errors(f"run {run_id}"):
                return dict(self.client.get_run(run_id).data.params)
        except NotFound:
            return {}

    def load_model(self, version: ModelVersion) -> LoadedModel:
        """Load a version's scikit-learn object (or pyfunc model) through the trusted loader."""
        target = tempfile.mkdtemp(prefix="mlaas-model-")
        try:
            with translate_errors(f"model {version.name!r} version {version.version}"):
                local = mlflow.artifacts.download_artifacts(artifact_uri=version.uri, dst_path=target,
                                                            tracking_uri=self.tracking_uri)
            loaded = self.loader.load(local, label=f"{version.name} v{version.version}")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        if loaded.flavor != "pyfunc":  # fully in memory; pyfunc models may read their folder later
            shutil.rmtree(target, ignore_errors=True)
        return loaded

    # -- writing ------------------------------------------------------------------------------------
    def set_tags(self, name: str, version: int, tags: dict[str, Any]) -> None:
        """Set tags on a model version."""
        with translate_errors(f"model {name!r} version {version}"):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, str(version), key, str(value))

    def delete_version(self, name: str, version: int) -> None:
        """Delete a model version from the registry (its run and artifacts stay)."""
        with translate_errors(f"model {name!r} version {version}"):
            self.client.delete_model_version(name, str(version))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        with translate_errors(f"model {name!r}"):
            self.client.set_registered_model_tag(name, key, value)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point an alias at a version (atomic on the server)."""
        with translate_errors(f"model {name!r} version {version}"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def experiment_id(self, model_name: str) -> str:
        """The experiment for a model's runs: the configured one, else ``mlaas/<model>``."""
        exp_name = self.settings.mlflow_experiment or f"mlaas/{model_name}"
        with translate_errors(f"experiment {exp_name!r}"):
            exp = self.client.get_experiment_by_name(exp_name)
            if exp is not None:
                return str(exp.experiment_id)
            try:
                return str(self.client.create_experiment(exp_name))
            except MlflowException:
                exp = self.client.get_experiment_by_name(exp_name)  # created concurrently
                if exp is None:
                    raise
                return str(exp.experiment_id)

    @contextmanager
    def run(self, kind: str, model_name: str, *, tags: dict[str, str] | None = None) -> Iterator[RunLogger]:
        """Open a run named ``{kind}_{timestamp}`` in the model's experiment."""
        experiment_id = self.experiment_id(model_name)
        name = run_name(kind)
        all_tags = dict(tags or {})
        request_id = logs.current("request_id")
        if request_id:
            all_tags.setdefault("mlaas.request_id", request_id)
        with translate_errors(f"run {name}"):
            active = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=all_tags)
        try:
            with translate_errors(f"run {name}"):
                yield RunLogger(self, active.info.run_id, name)
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            with translate_errors(f"run {name}"):
                mlflow.end_run(status="FINISHED")

    def _convert(self, mv: Any) -> ModelVersion:
        return ModelVersion(
            name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id or None,
            source=mv.source or "",
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", None) or ()),
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC) if mv.creation_timestamp else None,
            description=mv.description or "",
        )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Translate MLflow and HTTP errors into the project's errors."""
    try:
        yield
    except MlaasError:
        raise
    except RestException as exc:
        not_found = exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc.message).lower()
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or not_found:
            raise NotFound(f"{what} does not exist") from None
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            raise InvalidInput(f"{what}: {exc.message}") from None
        if exc.error_code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "ENDPOINT_NOT_FOUND"):
            raise Unavailable("mlflow", f"mlflow failed on {what}: {exc.error_code}") from None
        raise
    except MlflowException as exc:
        text = str(exc)
        if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower():
            raise NotFound(f"{what} does not exist") from None
        if "Max retries exceeded" in text or "Connection" in text or "timed out" in text.lower():
            raise Unavailable("mlflow", f"mlflow does not answer ({what})") from None
        raise
    except (requests.ConnectionError, requests.Timeout, ConnectionError):
        raise Unavailable("mlflow", f"mlflow does not answer ({what})") from None
