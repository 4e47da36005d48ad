"""The model families the inference benchmark serves: each one a titanic model registered as a notebook user would.

To add a family (XGBoost, LightGBM), add a ``Family`` to ``FAMILIES`` whose ``register`` logs the model the
way its users do (``mlflow.xgboost.log_model`` …) and returns the fitted model whose own ``predict`` and
``predict_proba`` the answers must equal; ``compiled`` says whether mlaas is expected to compile it.
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


FAMILIES: dict[str, Family] = {
    "linear": Family("linear", "LogisticRegression", _sklearn(_logistic), extra_variants=True),
    "forest": Family("forest", "RandomForestClassifier(100 trees, depth 8)", _sklearn(_forest)),
    "hgb": Family("hgb", "HistGradientBoostingClassifier(100 iterations)", _sklearn(_hgb)),
    # "xgboost", "lightgbm": added with their native flavours.
}
