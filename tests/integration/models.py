"""Register models the way notebook users do, for integration tests."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlaas.settings import Settings

NUMERIC = ["Age", "SibSp", "Parch", "Fare"]
CATEGORICAL = ["Pclass", "Sex", "Embarked"]
# One SGD epoch over ~620 titanic rows on this machine kind. With tol=None SGD runs exactly max_iter epochs
# (saga with tol=0 sometimes lands on an exact fixed point and stops after a tenth of them).
SGD_SECONDS_PER_EPOCH = 55e-6


def titanic_pipeline(C: float = 0.5) -> Pipeline:
    return Pipeline([
        ("prep", ColumnTransformer([
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), NUMERIC),
            ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                              ("onehot", OneHotEncoder(handle_unknown="ignore"))]), CATEGORICAL),
        ])),
        ("clf", LogisticRegression(max_iter=1000, C=C)),
    ])


def slow_pipeline(X: pd.DataFrame, y: pd.Series, fit_seconds: float) -> Pipeline:
    """A fitted titanic pipeline whose retraining spends about ``fit_seconds`` in its fit (SGD, no early stop)."""
    pipeline = titanic_pipeline()
    pipeline.set_params(clf=SGDClassifier(loss="log_loss", tol=None, max_iter=200, random_state=0))
    pipeline.fit(X, y)
    pipeline.set_params(clf__max_iter=int(fit_seconds / SGD_SECONDS_PER_EPOCH))  # what a retraining uses
    return pipeline


def register(
    settings: Settings, name: str, estimator: Any, X: pd.DataFrame, y: pd.Series, *, stage: str | None = "prod",
    signature: bool = True, serialization_format: str = "skops", trusted: list[str] | None = None,
    tags: dict[str, str] | None = None, fitted: bool = False,
) -> int:
    """Fit (unless ``fitted``), log and register ``estimator`` like a notebook user; returns the new version."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    if not fitted:
        estimator.fit(X, y)
    mlflow.set_experiment(f"notebooks/{name}")
    kwargs: dict[str, Any] = {}
    if serialization_format == "skops":
        kwargs["skops_trusted_types"] = trusted if trusted is not None else ["numpy.dtype"]
    with mlflow.start_run(run_name="notebook"):
        info = mlflow.sklearn.log_model(
            estimator, name="model", registered_model_name=name,
            signature=infer_signature(X.head(), estimator.predict(X.head())) if signature else None,
            input_example=X.head() if signature else None,
            pip_requirements=["scikit-learn", "skops", "pandas"], serialization_format=serialization_format,
            **kwargs,
        )
    version = int(info.registered_model_version)
    client = MlflowClient(settings.mlflow_tracking_uri)
    for key, value in {**({"stage": stage} if stage else {}), **(tags or {})}.items():
        client.set_model_version_tag(name, str(version), key, value)
    return version


def as_categories(X: pd.DataFrame) -> pd.DataFrame:
    """The titanic frame as a notebook hands it to XGBoost or LightGBM: text columns as pandas categories."""
    return X.assign(**{c: X[c].astype("category") for c in X.columns if X[c].dtype == object
                       or pd.api.types.is_string_dtype(X[c].dtype)})


def register_native(settings: Settings, name: str, estimator: Any, X: pd.DataFrame, y: pd.Series, *,
                    flavor: str, stage: str = "prod") -> int:
    """Fit an XGBoost or LightGBM estimator on ``X`` (text as categories) and log it with its own MLflow
    flavour (``mlflow.xgboost`` / ``mlflow.lightgbm``), its parameters logged as autologging does."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    estimator.fit(as_categories(X), y)
    mlflow.set_experiment(f"notebooks/{name}")
    with mlflow.start_run(run_name="notebook"):
        mlflow.log_params({k: v for k, v in estimator.get_params().items() if v is not None})
        info = getattr(mlflow, flavor).log_model(
            estimator, name="model", registered_model_name=name,
            signature=infer_signature(X.head(), estimator.predict(as_categories(X.head()))),
            pip_requirements=[flavor, "pandas"],
        )
    version = int(info.registered_model_version)
    MlflowClient(settings.mlflow_tracking_uri).set_model_version_tag(name, str(version), "stage", stage)
    return version
