"""The model families the inference benchmark serves: each one a titanic model registered as a notebook user would.

To add a family, add a ``Family`` to ``FAMILIES`` whose ``register`` logs the model the way its users do
(``mlflow.sklearn.log_model``, ``mlflow.xgboost.log_model`` …) and returns the fitted model whose own ``predict``
and ``predict_proba`` the answers must equal; ``compiled`` says whether mlaas is expected to compile it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import common  # noqa: F401  (puts the repository on sys.path)
import pandas as pd


@dataclass(frozen=True)
class Family:
    name: str
    describe: str
    register: Callable[[Any, str, pd.DataFrame, pd.Series], tuple[int, Any]]  # (settings, name, X, y) -> (version,
    # the fitted model)
    compiled: bool = True
    extra_variants: bool = False  # also run the capture variants (the linear family only: they cost time)


def _sklearn(final: Callable[[], Any]) -> Callable[[Any, str, pd.DataFrame, pd.Series], tuple[int, Any]]:
    """The titanic pipeline of the integration tests ending in ``final()``, logged with mlflow.sklearn (skops)."""

    def register_it(settings: Any, name: str, X: pd.DataFrame, y: pd.Series) -> tuple[int, Any]:
        from mlaas.adapters.model_files import DEFAULT_TRUSTED_TYPES
        from tests.integration.models import register, titanic_pipeline

        model = titanic_pipeline().set_params(clf=final())
        version = register(settings, name, model, X, y, trusted=list(DEFAULT_TRUSTED_TYPES))
        return version, model

    return register_it


def _logistic() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, C=0.5)


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)


def _hgb() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=100, random_state=0)


class _OwnAnswer:
    """A booster as its notebook calls it: the request's text columns as the categories it was trained on."""

    def __init__(self, model: Any, X: pd.DataFrame) -> None:
        from tests.integration.models import as_categories

        self.model, self.classes_ = model, model.classes_
        self.categories = {c: list(v.cat.categories) for c, v in as_categories(X).items() if v.dtype == "category"}

    def frame(self, X: pd.DataFrame) -> pd.DataFrame:
        return X.assign(**{c: pd.Categorical(X[c], categories=k) for c, k in self.categories.items()})

    def predict(self, X: pd.DataFrame) -> Any:
        return self.model.predict(self.frame(X))

    def predict_proba(self, X: pd.DataFrame) -> Any:
        return self.model.predict_proba(self.frame(X))


def _native(flavor: str, make: Callable[[], Any]) -> Callable[[Any, str, pd.DataFrame, pd.Series], tuple[int, Any]]:
    """An XGBoost or LightGBM classifier logged with its own MLflow flavour, as tests/integration does it."""

    def register_it(settings: Any, name: str, X: pd.DataFrame, y: pd.Series) -> tuple[int, Any]:
        from tests.integration.models import register_native

        model = make()
        version = register_native(settings, name, model, X, y, flavor=flavor)
        return version, _OwnAnswer(model, X)

    return register_it


def _xgboost(**categorical: Any) -> Callable[[], Any]:
    def make() -> Any:
        import xgboost as xgb

        return xgb.XGBClassifier(n_estimators=100, max_depth=6, **categorical)

    return make


def _lightgbm() -> Any:
    import lightgbm as lgb

    return lgb.LGBMClassifier(n_estimators=100, num_leaves=31, verbose=-1)


FAMILIES: dict[str, Family] = {
    "linear": Family("linear", "LogisticRegression", _sklearn(_logistic), extra_variants=True),
    "forest": Family("forest", "RandomForestClassifier(100 trees, depth 8)", _sklearn(_forest)),
    "hgb": Family("hgb", "HistGradientBoostingClassifier(100 iterations)", _sklearn(_hgb)),
    # The titanic pipeline (imputers, scaler, one-hot) ending in the booster, logged with mlflow.sklearn: every
    # peer serves it, so these two carry the boosters' ratios.
    "xgboost": Family("xgboost", "pipeline + XGBClassifier(100 trees, depth 6), mlflow.sklearn", _sklearn(_xgboost())),
    "lightgbm": Family("lightgbm", "pipeline + LGBMClassifier(100 trees, 31 leaves), mlflow.sklearn",
                       _sklearn(_lightgbm)),
    # The booster alone on the raw columns, text as pandas categories, logged with its own flavour: the peers'
    # pyfunc gets the text as str columns and answers HTTP 400 (the benchmark shows why), so mlaas runs alone.
    "xgboost-native": Family("xgboost-native", "XGBClassifier(100 trees, depth 6, categorical), mlflow.xgboost",
                             _native("xgboost", _xgboost(enable_categorical=True)), compiled=False),
    "lightgbm-native": Family("lightgbm-native", "LGBMClassifier(100 trees, 31 leaves, categorical), mlflow.lightgbm",
                              _native("lightgbm", _lightgbm), compiled=False),
}
