"""XGBoost and LightGBM models in MLflow's native flavours, loaded from their own formats, never pickle.

What MLflow 3.17 writes: ``mlflow.xgboost`` saves ``model.ubj`` (or ``model.json``) with the estimator's class
(``xgboost.sklearn.XGBClassifier``, ``…XGBRegressor`` or ``xgboost.core.Booster``); ``mlflow.lightgbm`` saves
a ``Booster`` as LightGBM's text format (``model.lgb``) and an ``LGBMClassifier``/``LGBMRegressor`` with skops
by default (its booster state is LightGBM's text), or pickle/cloudpickle when asked, which the pickle policy
refuses. Only the classes below load; the class named in the MLmodel file is never imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlaas.errors import InvalidInput
from mlaas.inference.boosters import NativeModel

XGBOOST_FORMATS = ("ubj", "json")
_XGB_CLASSES = ("XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor")
_LGB_CLASSES = ("LGBMClassifier", "LGBMRegressor")


def load_xgboost(model_file: str, conf: dict[str, Any], label: str, *, threads: int | None = None) -> NativeModel:
    """An XGBoost flavour's model from its JSON/UBJ file, as a scikit-learn estimator."""
    fmt = str(conf.get("model_format") or model_file.rsplit(".", 1)[-1])
    if fmt not in XGBOOST_FORMATS:
        raise InvalidInput(f"model {label} is an XGBoost model saved in the {fmt!r} format; this service loads "
                           f"XGBoost's {' and '.join(XGBOOST_FORMATS)} formats (save with model_format='ubj')")
    xgboost = _library("xgboost", label)
    model_class = str(conf.get("model_class") or "xgboost.core.Booster")
    module, _, name = model_class.rpartition(".")
    try:
        if model_class == "xgboost.core.Booster":
            booster = xgboost.Booster()
            booster.load_model(model_file)
            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
            classifier = objective in ("binary:logistic", "multi:softprob", "multi:softmax")
            name = "XGBClassifier" if classifier else "XGBRegressor"
        elif module != "xgboost.sklearn" or name not in _XGB_CLASSES:
            raise InvalidInput(f"model {label} is an XGBoost model of class {model_class!r}, which this service "
                               f"does not serve (it serves Booster, {', '.join(_XGB_CLASSES)})")
        estimator = getattr(xgboost, name)()
        estimator.load_model(model_file)
    except InvalidInput:
        raise
    except Exception as exc:  # XGBoostError, a truncated or foreign file
        raise InvalidInput(f"model {label} is not a readable XGBoost {fmt} file: {_first_line(exc)}") from None
    return NativeModel(estimator, "xgboost", threads=threads)


def load_lightgbm(model_file: str, conf: dict[str, Any], label: str,
                  load_sklearn: Callable[[str, str, str], Any], *, threads: int | None = None) -> NativeModel:
    """A LightGBM flavour's model: a Booster from LightGBM's text, or a scikit-learn estimator via skops."""
    lightgbm = _library("lightgbm", label)
    model_class = str(conf.get("model_class") or "lightgbm.basic.Booster")
    if model_class == "lightgbm.basic.Booster":
        try:
            booster = lightgbm.Booster(model_file=model_file)
        except Exception as exc:  # LightGBMError: not a LightGBM text model
            raise InvalidInput(f"model {label} is not a readable LightGBM model file: {_first_line(exc)}") from None
        return NativeModel(booster, "lightgbm", rounds=booster.current_iteration(), params=dict(booster.params),
                           threads=threads)
    module, _, name = model_class.rpartition(".")
    if module != "lightgbm.sklearn" or name not in _LGB_CLASSES:
        raise InvalidInput(f"model {label} is a LightGBM model of class {model_class!r}, which this service does "
                           f"not serve (it serves Booster, {', '.join(_LGB_CLASSES)})")
    estimator = load_sklearn(model_file, str(conf.get("serialization_format") or "cloudpickle"), label)
    if not isinstance(estimator, lightgbm.LGBMModel):
        raise InvalidInput(f"model {label} says it is a {name} but its file holds a {type(estimator).__name__}")
    return NativeModel(estimator, "lightgbm", threads=threads)


def _library(name: str, label: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise InvalidInput(f"model {label} is a {name} model and this service has no {name} installed "
                           "(install the pinned requirements.txt)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
