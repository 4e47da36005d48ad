"""XGBoost and LightGBM models logged with their own MLflow flavours: served, evaluated and retrained; pipelines
ending in them (mlflow.sklearn) served on the compiled path."""

from __future__ import annotations

import io
import math
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from sklearn import metrics as skm

from mlaas.adapters.model_files import DEFAULT_TRUSTED_TYPES
from mlaas.uris import parse_uri
from tests.integration.models import CATEGORICAL, NUMERIC, as_categories, register, register_native, titanic_pipeline
from tests.integration.test_serving_trees import paths_counted

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL
NOTEBOOK = {  # ~20 trees each, as a notebook user sets them
    "xgboost": lambda: xgb.XGBClassifier(n_estimators=20, max_depth=3, learning_rate=0.2, enable_categorical=True),
    "lightgbm": lambda: lgb.LGBMClassifier(n_estimators=20, num_leaves=7, learning_rate=0.2, verbose=-1),
}


def own_model(settings, flavor: str, name: str, version: int):
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return getattr(mlflow, flavor).load_model(f"models:/{name}/{version}")


def own_answer(model, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The model's own predict on the rows as the notebook held them (an unseen category as missing)."""
    X = as_categories(rows[FEATURES])
    known = {"Sex": ["female", "male"], "Embarked": ["C", "Q", "S"]}
    X = X.assign(**{c: pd.Categorical(rows[c], categories=known[c]) for c in known})
    return model.predict(X), model.predict_proba(X)


def records(rows: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows[["PassengerId", *FEATURES]].to_dict("records")]


def check_served(api, settings, flavor: str, name: str, version: int) -> None:
    rows = TEST.head(30).copy()
    rows.loc[rows.index[0], "Embarked"] = "Z"  # a port the model never saw
    rows.loc[rows.index[1], "Age"] = np.nan
    response = api.post("/inference", json={"model": name, "version": version, "data": records(rows)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == version and len(body["predictions"]) == len(rows)
    labels, proba = own_answer(own_model(settings, flavor, name, version), rows)
    assert [p["prediction"] for p in body["predictions"]] == labels.tolist()
    served = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in body["predictions"]])
    np.testing.assert_allclose(served, proba, rtol=1e-6)


@pytest.mark.parametrize("flavor", ["xgboost", "lightgbm"])
def test_native_flavour_is_served_evaluated_and_retrained(flavor, api, settings, ctx, unique, titanic):
    register_native(settings, unique, NOTEBOOK[flavor](), TRAIN[FEATURES], TRAIN["Survived"], flavor=flavor)
    detail = api.get(f"/models/{unique}/versions/1")
    assert detail.status_code == 200 and detail.json()["servable"]["ok"] is True, detail.text
    assert detail.json()["servable"]["classes"] == [0, 1]
    check_served(api, settings, flavor, unique, 1)
    assert set(paths_counted(api, unique)) == {flavor}  # the model's own library, counted by its name

    response = api.post("/evaluate", json={"model": unique, "version": 1, "dataset": titanic["test"],
                                           "data_config": titanic["data_config"]})
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["job_id"])
    assert job["state"] == "succeeded", job
    labels, proba = own_answer(own_model(settings, flavor, unique, 1), TEST)
    metrics = job["result"]["metrics"]
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(TEST["Survived"], labels), rel=1e-9)
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(TEST["Survived"], proba[:, 1]), rel=1e-6)

    response = api.post("/train", json={"model": unique, "version": 1, "dataset": titanic["train"],
                                        "data_config": titanic["data_config"], "promote": False})
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["job_id"])
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["version"] == 2 and result["metrics"]["accuracy"] > 0.7
    baseline = parse_uri(result["drift_data"], allowed_buckets=settings.buckets, field="drift_data")
    assert list(pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(baseline))).columns)[:1] == ["PassengerId"]

    mlmodel = mlflow.artifacts.download_artifacts(f"models:/{unique}/2/MLmodel",
                                                  tracking_uri=settings.mlflow_tracking_uri)
    meta = yaml.safe_load(Path(mlmodel).read_text())
    assert flavor in meta["flavors"] and "sklearn" not in meta["flavors"]  # retrained in its own flavour
    retrained = own_model(settings, flavor, unique, 2)
    if flavor == "xgboost":  # the file keeps the rounds; mlaas keeps the rest beside the trees
        assert meta["flavors"]["xgboost"]["model_format"] == "ubj"
        assert retrained.get_booster().num_boosted_rounds() == 20
        assert '"max_depth": 3' in retrained.get_booster().attr("mlaas_params")
        assert '"learning_rate": 0.2' in retrained.get_booster().attr("mlaas_params")
    else:
        assert meta["flavors"]["lightgbm"]["serialization_format"] == "skops"
        params = retrained.get_params()
        assert (params["n_estimators"], params["num_leaves"], params["learning_rate"]) == (20, 7, 0.2)
    check_served(api, settings, flavor, unique, 2)


@pytest.mark.parametrize("flavor", ["xgboost", "lightgbm"])
def test_a_pipeline_ending_in_a_booster_is_served_compiled_with_its_own_answers(flavor, api, settings, unique):
    final = {"xgboost": lambda: xgb.XGBClassifier(n_estimators=30, max_depth=4),
             "lightgbm": lambda: lgb.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1)}[flavor]()
    pipeline = titanic_pipeline().set_params(clf=final)
    register(settings, unique, pipeline, TRAIN[FEATURES], TRAIN["Survived"], trusted=list(DEFAULT_TRUSTED_TYPES))
    rows = TEST.head(30).copy()
    rows.loc[rows.index[0], "Embarked"] = "Z"  # a port the model never saw
    rows.loc[rows.index[1], "Age"] = np.nan
    for batch in (rows, rows.head(1), rows.iloc[1:2]):
        response = api.post("/inference", json={"model": unique, "version": 1, "data": records(batch)})
        assert response.status_code == 200, response.text
        served = response.json()["predictions"]
        assert [p["prediction"] for p in served] == pipeline.predict(batch[FEATURES]).tolist()
        np.testing.assert_allclose([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in served],
                                   pipeline.predict_proba(batch[FEATURES]), rtol=1e-6, atol=0)
    counted = paths_counted(api, unique)
    assert counted.get("compiled") == 3 and not counted.get("fallback") and not counted.get("sklearn"), counted
