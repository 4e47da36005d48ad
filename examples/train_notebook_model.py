"""What a data scientist does in a notebook: train a titanic pipeline, log it to MLflow, register it.

Reads its data from blob storage by URI (as the service does) and tags the new version ``stage=prod``.
Usage: python examples/train_notebook_model.py s3://datasets/titanic/train.csv s3://datasets/titanic/data_config.yaml
"""

from __future__ import annotations

import io
import os
import sys

import mlflow
import pandas as pd
import yaml
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlaas.adapters.storage import open_store
from mlaas.settings import Settings
from mlaas.uris import parse_uri


def read_object(uri: str) -> bytes:
    """An object of the blob storage mlaas is configured for (``MLAAS_*``: S3 or Azure), by URI."""
    settings = Settings.from_env()
    return open_store(settings).get_bytes(parse_uri(uri, schemes=settings.storage_schemes))


def main(dataset_uri: str, config_uri: str, model_name: str = "titanic") -> None:
    frame = pd.read_csv(io.BytesIO(read_object(dataset_uri)))
    config = yaml.safe_load(read_object(config_uri))
    numeric, categorical = config["numerical_features"], config["categorical_features"]
    X, y = frame[numeric + categorical], frame[config["target_column"]]

    pipeline = Pipeline([
        ("prep", ColumnTransformer([
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                              ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
        ])),
        ("clf", LogisticRegression(max_iter=1000, C=0.5)),
    ])
    pipeline.fit(X, y)

    mlflow.set_tracking_uri(os.environ["MLAAS_MLFLOW_TRACKING_URI"])
    mlflow.set_experiment(f"notebooks/{model_name}")
    with mlflow.start_run(run_name="notebook_training"):
        mlflow.log_params({"C": 0.5, "dataset": dataset_uri})
        mlflow.log_metric("train_accuracy", float(pipeline.score(X, y)))
        info = mlflow.sklearn.log_model(
            pipeline, name="model", registered_model_name=model_name,
            signature=infer_signature(X.head(), pipeline.predict(X.head())), input_example=X.head(),
            pip_requirements=["scikit-learn", "skops", "pandas", "numpy"],
            skops_trusted_types=["numpy.dtype"],
        )
    version = info.registered_model_version
    MlflowClient().set_model_version_tag(model_name, str(version), "stage", "prod")
    print(f"registered {model_name} version {version}, tagged stage=prod")


if __name__ == "__main__":
    main(*sys.argv[1:])
