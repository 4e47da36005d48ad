"""Loading a downloaded MLflow model folder with mlaas's own trust rules.

MLflow reads the skops allow-list from the model's own MLmodel file, so a crafted model can trust
anything. mlaas ignores that list: skops objects load only when every type in them is in
``DEFAULT_TRUSTED_TYPES`` plus ``MLAAS_SKOPS_TRUSTED_TYPES``; pickle and cloudpickle models
(arbitrary code on load) are refused unless ``MLAAS_ALLOW_PICKLE_MODELS`` is set. XGBoost and LightGBM
flavours load from their native formats (``booster_files``), under the same rules where MLflow used skops.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sklearn
import yaml

from mlaas.errors import InvalidInput
from mlaas.process import process_threads
from mlaas.settings import Settings

# Types that scikit-learn pipelines of the usual kinds hold beyond skops's own defaults.
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "collections.OrderedDict",
    "builtins.slice",
    # XGBoost and LightGBM estimators: their state is the library's own model format (UBJ bytes, LightGBM text)
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
)


@dataclass
class LoadedModel:
    """A model ready to predict, with what its MLmodel file says about it."""

    estimator: Any
    flavor: str  # "sklearn", "xgboost", "lightgbm" or "pyfunc"
    input_schema: list[dict[str, Any]] | None
    sklearn_version: str | None
    path: str
    input_example: pd.DataFrame | None = None  # the example rows saved with the model, when it has them


class ModelLoader:
    """Load model folders under the service's trust and version rules."""

    def __init__(self, settings: Settings) -> None:
        self.trusted = (*DEFAULT_TRUSTED_TYPES, *settings.skops_trusted_types)
        self.allow_pickle = settings.allow_pickle_models
        self.allow_version_mismatch = settings.allow_sklearn_version_mismatch
        self.settings = settings

    def load(self, path: str, *, label: str) -> LoadedModel:
        """Load the model in ``path`` or raise InvalidInput naming why it cannot be served here."""
        meta = _read_yaml(os.path.join(path, "MLmodel"), label)
        flavors = meta.get("flavors") or {}
        schema = _input_schema(meta)
        recorded = _recorded_sklearn_version(path, flavors)
        if "sklearn" in flavors:
            self._check_version(recorded, label)
            conf = flavors["sklearn"]
            model_file = inside(path, str(conf.get("pickled_model") or "model.skops"), label,
                                "flavors.sklearn.pickled_model")
            fmt = conf.get("serialization_format", "pickle")
            return LoadedModel(self._load_sklearn(model_file, fmt, label), "sklearn", schema, recorded, path,
                               _input_example(path, meta))
        for native in ("xgboost", "lightgbm"):
            if native in flavors:
                return LoadedModel(self._load_native(path, native, flavors[native] or {}, label), native, schema,
                                   recorded, path, _input_example(path, meta))
        if "python_function" in flavors:
            if not self.allow_pickle:
                raise InvalidInput(
                    f"model {label} has only the pyfunc flavour, whose loading runs code from the model; "
                    "set MLAAS_ALLOW_PICKLE_MODELS=true to serve it"
                )
            import mlflow.pyfunc

            return LoadedModel(mlflow.pyfunc.load_model(path), "pyfunc", schema, recorded, path)
        raise InvalidInput(f"model {label} has no sklearn, xgboost, lightgbm or python_function flavour")

    def _load_native(self, path: str, flavor: str, conf: dict[str, Any], label: str) -> Any:
        from mlaas.adapters import booster_files

        if not conf.get("data"):
            raise InvalidInput(f"model {label}: its MLmodel file names no flavors.{flavor}.data file")
        model_file = inside(path, str(conf["data"]), label, f"flavors.{flavor}.data")
        threads = process_threads(self.settings)
        if flavor == "xgboost":
            return booster_files.load_xgboost(model_file, conf, label, threads=threads)
        return booster_files.load_lightgbm(model_file, conf, label, self._load_sklearn, threads=threads)

    def _check_version(self, recorded: str | None, label: str) -> None:
        if recorded is None or self.allow_version_mismatch:
            return
        if recorded.split(".")[:2] != sklearn.__version__.split(".")[:2]:
            raise InvalidInput(
                f"model {label} was saved with scikit-learn {recorded}; this service runs "
                f"{sklearn.__version__} (set MLAAS_ALLOW_SKLEARN_VERSION_MISMATCH=true to load it anyway)"
            )

    def _load_sklearn(self, model_file: str, fmt: str, label: str) -> Any:
        if fmt == "skops":
            import skops.io

            try:
                found = skops.io.get_untrusted_types(file=model_file)
            except Exception as exc:  # not a skops file, truncated, or unreadable
                raise InvalidInput(f"model {label} is not a readable skops file: {type(exc).__name__}") from None
            untrusted = [t for t in found if t not in self.trusted]
            if untrusted:
                raise InvalidInput(
                    f"model {label} holds types this service does not trust: {', '.join(sorted(untrusted))} "
                    "(add them to MLAAS_SKOPS_TRUSTED_TYPES if you trust them)"
                )
            try:
                return skops.io.load(model_file, trusted=list(self.trusted))
            except Exception as exc:
                raise InvalidInput(f"model {label} could not be loaded: {type(exc).__name__}: {exc}") from None
        if fmt in ("pickle", "cloudpickle"):
            if not self.allow_pickle:
                raise InvalidInput(
                    f"model {label} is saved as {fmt}, whose loading runs code from the model; "
                    "set MLAAS_ALLOW_PICKLE_MODELS=true to serve it"
                )
            try:
                with open(model_file, "rb") as fh:
                    if fmt == "cloudpickle":
                        import cloudpickle

                        return cloudpickle.load(fh)
                    return pickle.load(fh)  # noqa: S301 - allowed explicitly by configuration
            except (OSError, pickle.UnpicklingError, EOFError) as exc:
                raise InvalidInput(f"model {label} could not be loaded: {type(exc).__name__}") from None
        raise InvalidInput(f"model {label} uses an unknown serialization format {fmt!r}")


def inside(folder: str, relative: str, label: str, field: str) -> str:
    """``relative`` joined to the model's folder, refused when it leads outside it (``..``, absolute, links)."""
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, target]) != root:
        raise InvalidInput(f"model {label}: {field} points outside the model's folder")
    return target


def input_schema_of(mlmodel_path: str, label: str) -> list[dict[str, Any]] | None:
    """The signature's input columns from an MLmodel file."""
    return _input_schema(_read_yaml(mlmodel_path, label))


def _read_yaml(path: str, label: str) -> dict[str, Any]:
    try:
        with open(path) as fh:
            loaded = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        raise InvalidInput(f"model {label} has no readable MLmodel file") from None
    return loaded if isinstance(loaded, dict) else {}


def _input_schema(meta: dict[str, Any]) -> list[dict[str, Any]] | None:
    raw = (meta.get("signature") or {}).get("inputs")
    if not raw:
        return None
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    return parsed if isinstance(parsed, list) else None


def _input_example(path: str, meta: dict[str, Any], max_rows: int = 100) -> pd.DataFrame | None:
    """The model's saved input example (MLflow's split-oriented data frame), or None."""
    info = meta.get("saved_input_example_info") or {}
    if not isinstance(info, dict) or info.get("type") != "dataframe" or info.get("pandas_orient", "split") != "split":
        return None
    try:
        example = inside(path, str(info.get("artifact_path") or "input_example.json"), "",
                         "saved_input_example_info.artifact_path")
        with open(example) as fh:
            raw = json.load(fh)
        return pd.DataFrame(raw["data"][:max_rows], columns=raw["columns"])
    except (OSError, ValueError, KeyError, TypeError, InvalidInput):
        return None  # an example outside the folder is ignored like a missing one


def _recorded_sklearn_version(path: str, flavors: dict[str, Any]) -> str | None:
    version = (flavors.get("sklearn") or {}).get("sklearn_version")
    if version:
        return str(version)
    try:
        with open(os.path.join(path, "requirements.txt")) as fh:
            match = re.search(r"^scikit-learn==([\w.]+)", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1) if match else None
