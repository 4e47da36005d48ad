"""Models loaded once per (name, version) per process, and version references resolved with a short TTL."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlaas.adapters import telemetry
from mlaas.adapters.registry import ModelVersion
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import checked_uri, read_config
from mlaas.errors import InvalidInput, MlaasError, NotFound, Unavailable
from mlaas.inference import compiled, probes

log = logging.getLogger(__name__)
FAILED_LOAD_RETRY_SECONDS = 30.0
STALE_RETRY_SECONDS = 15.0  # while the registry is down, ask it again this often per reference and process
# A resolution used in the last fifth of its TTL is renewed in the background, so that a model with steady
# traffic never waits on the registry on the request path; one left unused past its TTL is resolved in line.
REFRESH_AHEAD = 0.2


@dataclass
class ServedModel:
    """A loaded model with what inference needs to validate rows and label outputs."""

    name: str
    version: int
    estimator: Any
    columns: list[str] | None  # expected input columns, in order, when known
    column_types: dict[str, str]  # column -> "number" | "integer" | "string" | "boolean"
    id_column: str | None  # the data config's index column, accepted as the row id
    classes: list[Any] | None
    task: str
    load_seconds: float
    source: ModelVersion
    extra: dict[str, Any] = field(default_factory=dict)
    predictor: compiled.FastPredictor | None = None  # compiled and checked; None: plain scikit-learn
    one_pass: bool = False  # labels are the classes of highest probability (checked at load): one model pass


@dataclass
class _Failure:
    error: MlaasError
    at: float


class ModelCache:
    """A bounded LRU of loaded models and a TTL cache of version resolutions (stale on registry outage)."""

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.size = max(1, ctx.settings.model_cache_size)
        self.ttl = ctx.settings.resolve_ttl_seconds
        self.clock = clock
        self._models: OrderedDict[tuple[str, int], ServedModel] = OrderedDict()
        self._failures: dict[tuple[str, int], _Failure] = {}
        self._resolved: dict[tuple[str, str], tuple[ModelVersion, float]] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self._lock = threading.RLock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self.stats = {"hits": 0, "misses": 0, "loads": 0, "load_failures": 0}

    # -- resolution ---------------------------------------------------------------------------------
    def resolve(self, name: str, ref: int | str | None) -> ModelVersion:
        """Concrete version for a reference; integer versions are not re-checked once loaded."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            key = (name, int(ref))
            with self._lock:
                if key in self._models:
                    return self._models[key].source
            return self.ctx.registry.get_version(name, int(ref))
        cache_key = (name, str(ref) if ref is not None else "")
        now = self.clock()
        with self._lock:
            hit = self._resolved.get(cache_key)
        if hit and hit[1] > now:
            if hit[1] - now <= self.ttl * REFRESH_AHEAD:
                self._refresh_ahead(cache_key, ref)
            return hit[0]
        try:
            version = self.ctx.registry.resolve(name, ref)
        except Unavailable:
            if hit:  # serve the last known answer while the registry is down, without asking again for a while
                log.warning("mlflow unavailable; using cached resolution of %s@%s", name, ref)
                with self._lock:
                    self._resolved[cache_key] = (hit[0], self.clock() + max(self.ttl, STALE_RETRY_SECONDS))
                return hit[0]
            raise
        with self._lock:
            self._resolved[cache_key] = (version, now + self.ttl)
        return version

    def _refresh_ahead(self, cache_key: tuple[str, str], ref: int | str | None) -> None:
        """Renew a resolution about to expire in a thread of its own (one per reference at a time). Its answer
        counts from when it was asked, as an answer in line would; a failure leaves the entry to expire, and the
        request after that resolves in line (and reports a NotFound, or serves the last answer while the
        registry is down)."""
        with self._lock:
            if cache_key in self._refreshing:
                return
            self._refreshing.add(cache_key)

        def renew() -> None:
            asked = self.clock()
            try:
                version = self.ctx.registry.resolve(cache_key[0], ref)
            except Exception as exc:  # in line, at expiry, it is reported to the request that needs it
                log.debug("renewing the resolution of %s@%s failed: %r", cache_key[0], ref, exc)
            else:
                with self._lock:
                    self._resolved[cache_key] = (version, asked + self.ttl)
            finally:
                with self._lock:
                    self._refreshing.discard(cache_key)

        threading.Thread(target=renew, name="resolve-ahead", daemon=True).start()

    # -- loading ------------------------------------------------------------------------------------
    def get(self, version: ModelVersion) -> ServedModel:
        """The loaded model for a concrete version, loading it on a miss (one load at a time per key)."""
        key = (version.name, version.version)
        with self._lock:
            served = self._models.get(key)
            if served is not None:
                self._models.move_to_end(key)
                self.stats["hits"] += 1
                telemetry.cache_lookup(hit=True)
                return served
            failure = self._failures.get(key)
            if failure and self.clock() - failure.at < FAILED_LOAD_RETRY_SECONDS:
                raise failure.error
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            self.stats["misses"] += 1
            telemetry.cache_lookup(hit=False)
            try:
                served = self._load(version)
            except (InvalidInput, NotFound) as exc:
                with self._lock:
                    self._failures[key] = _Failure(exc, self.clock())
                    self.stats["load_failures"] += 1
                raise
            with self._lock:
                self._failures.pop(key, None)
                self._models[key] = served
                self.stats["loads"] += 1
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            telemetry.model_loaded(version.name, version.version, served.load_seconds)
            return served

    def loaded(self) -> list[dict[str, Any]]:
        """What this process holds, for diagnostics."""
        with self._lock:
            out = [{"model": n, "version": v, "state": "loaded", "load_seconds": round(m.load_seconds, 3)}
                   for (n, v), m in self._models.items()]
            out += [{"model": n, "version": v, "state": "failed", "error": f.error.message}
                    for (n, v), f in self._failures.items()]
        return out

    def _load(self, version: ModelVersion) -> ServedModel:
        started = time.perf_counter()
        loaded = self.ctx.registry.load_model(version)
        estimator = loaded.estimator
        columns, types = _schema_columns(loaded.input_schema)
        config = self._data_config(version)
        if columns is None and hasattr(estimator, "feature_names_in_"):
            columns = [str(c) for c in estimator.feature_names_in_]
        if columns is None and config is not None:
            columns = config.features
        classes = [c.item() if hasattr(c, "item") else c for c in getattr(estimator, "classes_", [])] or None
        task = version.tags.get("task") or ("classification" if classes is not None else "regression")
        predictor, fast_path = None, "off"
        if self.ctx.settings.fast_path and loaded.flavor == "sklearn":
            predictor, fast_path = compiled.build(estimator, columns, loaded.input_example)
            log.info("model %s v%s: fast path %s", version.name, version.version, fast_path)
        one_pass = loaded.flavor in ("sklearn", "xgboost", "lightgbm") and probes.labels_follow_proba(
            estimator, columns, loaded.input_example)
        return ServedModel(
            name=version.name, version=version.version, estimator=estimator, columns=columns, column_types=types,
            id_column=config.index_columns[0] if config and config.index_columns else None, classes=classes,
            task=task, load_seconds=time.perf_counter() - started, source=version,
            extra={"flavor": loaded.flavor, "config": config, "fast_path": fast_path}, predictor=predictor,
            one_pass=one_pass,
        )

    def _data_config(self, version: ModelVersion) -> DataConfig | None:
        uri = version.tags.get("data_config")
        if not uri:
            return None
        try:
            raw = read_config(self.ctx.storage, checked_uri(uri, settings=self.ctx.settings, field="data_config"))
            return DataConfig.parse(raw, source=uri)
        except MlaasError as exc:
            log.warning("data config %s of %s v%s unreadable: %s", uri, version.name, version.version, exc.message)
            return None


_MLFLOW_TYPES = {"double": "number", "float": "number", "long": "integer", "integer": "integer",
                 "boolean": "boolean", "string": "string", "datetime": "string"}


def _schema_columns(schema: list[dict[str, Any]] | None) -> tuple[list[str] | None, dict[str, str]]:
    if not schema or not all(isinstance(c, dict) and c.get("name") for c in schema):
        return None, {}
    columns = [str(c["name"]) for c in schema]
    types = {str(c["name"]): _MLFLOW_TYPES.get(str(c.get("type")), "any") for c in schema}
    return columns, types
