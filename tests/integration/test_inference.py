"""POST /inference against the real stack: answers, ids, validation, capture and drift off the request path."""

from __future__ import annotations

import json
import math
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.monitoring import housekeeping, monitors
from tests.integration.captured import count_captured, drain
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL


def records(frame: pd.DataFrame, *, with_ids: bool = True) -> list[dict]:
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        if with_ids:
            clean["id"] = f"p-{row['PassengerId']}"
        out.append(clean)
    return out


@pytest.fixture(scope="module")
def served(settings, titanic):
    """A notebook model (prod) that records its data config, as a version trained by mlaas would."""
    name = f"serve-{int(time.time() * 1000) % 10**8}"
    register(settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"],
             tags={"data_config": titanic["data_config"]})
    return name


def sklearn_model(settings, name, version=1):
    import os

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def test_predictions_equal_the_registered_models_own(api, settings, served):
    rows = TEST.head(60)
    response = api.post("/inference", json={"model": served, "data": records(rows)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == served and body["version"] == 1
    assert [p["id"] for p in body["predictions"]] == [f"p-{i}" for i in rows["PassengerId"]]
    assert "Name" in body["ignored_columns"] and "PassengerId" in body["ignored_columns"]
    model = sklearn_model(settings, served)
    expected = model.predict(rows[FEATURES])
    proba = model.predict_proba(rows[FEATURES])
    assert [p["prediction"] for p in body["predictions"]] == expected.tolist()
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in body["predictions"]])
    np.testing.assert_allclose(got, proba, rtol=1e-9)


def test_ids_default_to_position_and_index_column(api, served):
    rows = records(TEST.head(3), with_ids=False)
    body = api.post("/inference", json={"model": served, "data": rows}).json()
    assert [p["id"] for p in body["predictions"]] == TEST["PassengerId"].head(3).tolist()  # the index column
    for row in rows:
        row.pop("PassengerId")
    body = api.post("/inference", json={"model": served, "data": rows}).json()
    assert [p["id"] for p in body["predictions"]] == [0, 1, 2]


def test_integer_columns_as_floats_and_imputed_missing_values(api, settings, served):
    sent = [{"Pclass": 3.0, "Sex": "male", "Age": None, "SibSp": 1.0, "Parch": 0, "Fare": 7.25, "Embarked": None},
            {"Pclass": 1.0, "Sex": "female", "Age": None, "SibSp": 0.0, "Parch": 0, "Fare": 80.0, "Embarked": None}]
    response = api.post("/inference", json={"model": served, "data": sent})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    # what the model itself answers for the same rows as a notebook holds them: integers, NaN for missing
    frame = pd.DataFrame(sent).astype({"Pclass": int, "SibSp": int}).assign(Age=np.nan, Embarked=np.nan)
    model = sklearn_model(settings, served)
    expected, proba = model.predict(frame[FEATURES]), model.predict_proba(frame[FEATURES])
    assert expected.tolist() == [0, 1]  # rows the model tells apart: a constant answer cannot pass
    assert [p["prediction"] for p in predictions] == expected.tolist()
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in predictions])
    np.testing.assert_allclose(got, proba, rtol=1e-9)


def test_mlflow_scoring_payloads(api, settings, served):
    rows = TEST.head(4)[FEATURES]
    expected = sklearn_model(settings, served).predict(rows).tolist()
    split = {"dataframe_split": {"columns": FEATURES, "data": rows.astype(object).where(rows.notna(), None)
                                 .to_numpy().tolist()}}
    for payload in (
        split,
        {"dataframe_records": rows.astype(object).where(rows.notna(), None).to_dict(orient="records")},
        {"instances": rows.astype(object).where(rows.notna(), None).to_dict(orient="records")},
        {"inputs": {c: rows[c].astype(object).where(rows[c].notna(), None).tolist() for c in FEATURES}},
    ):
        response = api.post("/inference", params={"model": served, "version": 1}, json=payload)
        assert response.status_code == 200, (payload, response.text)
        body = response.json()
        assert body["predictions"] == expected and body["ids"] == [0, 1, 2, 3] and body["version"] == 1


@pytest.mark.parametrize(
    "mutate, status, fragment",
    [
        (lambda rows: [{k: v for k, v in r.items() if k != "Fare"} for r in rows], 400, "missing column(s) Fare"),
        (lambda rows: [dict(r, Age="old") if i == 2 else r for i, r in enumerate(rows)], 400,
         "row 2 (id 'p-894'), column 'Age': expected a number"),
        (lambda rows: [dict(r, id="same") for r in rows], 400, "repeats row 0"),
        (lambda rows: [], 400, "no rows"),
        (lambda rows: [dict(r, Fare={"nested": 1}) for r in rows], 400, "column 'Fare': expected a single value"),
        (lambda rows: [dict(r, id=1.5) for r in rows], 400, "id must be a string or an integer"),
        (lambda rows: rows * 4000, 413, "more than the limit"),
        (lambda rows: [dict(r, Sex="m" * 10_001) if i == 1 else r for i, r in enumerate(rows)], 413,
         "longer than 10000 characters"),
        (lambda rows: [dict(r, Sex='"' * 10_001) if i == 1 else r for i, r in enumerate(rows)], 413,
         "longer than 10000 characters"),  # sent as 10 001 escaped quotes
    ],
)
def test_bad_rows_are_4xx_naming_row_and_column(api, served, mutate, status, fragment):
    rows = mutate(records(TEST.head(3)))
    response = api.post("/inference", json={"model": served, "data": rows})
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]


def test_a_long_text_is_413_in_any_encoding_json_reads(api, served):
    body = json.dumps({"model": served, "data": [dict(records(TEST.head(1))[0], Sex='"' * 10_001)]})
    for encoding in ("utf-8", "utf-16", "utf-32"):
        response = api.post("/inference", data=body.encode(encoding), headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and "longer than" in response.json()["message"], (encoding, response.text)


def test_non_finite_numbers_are_rejected(api, served):
    row = '{"Pclass": 1, "Sex": "male", "Age": Infinity, "SibSp": 0, "Parch": 0, "Fare": 1, "Embarked": "S"}'
    raw = f'{{"model": "{served}", "data": [{row}]}}'
    response = api.post("/inference", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "finite" in response.json()["message"]


def test_unknown_model_or_version_is_404(api, served):
    assert api.post("/inference", json={"model": "nobody-has-this", "data": [{"a": 1}]}).status_code == 404
    response = api.post("/inference", json={"model": served, "version": 42, "data": [{"a": 1}]})
    assert response.status_code == 404 and "42" in response.json()["message"]
    assert api.post("/inference", json={"data": [{"a": 1}]}).status_code == 400


def test_a_model_that_cannot_load_says_why_every_time(api, settings, unique):
    frame = TRAIN[["Age", "Fare"]].fillna(0)
    register(settings, unique, LogisticRegression(), frame, TRAIN["Survived"], serialization_format="cloudpickle")
    for _ in range(2):
        response = api.post("/inference", json={"model": unique, "data": [{"Age": 1, "Fare": 2}]})
        assert response.status_code == 400
        assert "cloudpickle" in response.json()["message"]


def test_capture_writes_every_answered_row_once(api, ctx, settings, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    answered = 0
    for start in range(0, 150, 5):
        response = api.post("/inference", json={"model": unique, "data": records(TEST.iloc[start:start + 5])})
        assert response.status_code == 200
        answered += len(response.json()["predictions"])
    buffer = CaptureBuffer(settings)
    key = buffer.stream_key(unique, 1)
    drain(ctx, buffer, key, 150)
    assert count_captured(ctx, unique, 1) == answered == 150
    housekeeping.flush_all(ctx, buffer)
    assert count_captured(ctx, unique, 1) == 150  # a flush with nothing left writes nothing more
    # (a flush that dies after writing its files is redone into the same files: tests/integration/test_capture_flush.py)


def test_drift_of_inference_traffic_is_checked_off_the_request_path(api, ctx, settings, titanic, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    job = api.wait_job(api.post("/train", json={"model": unique, "dataset": titanic["train"],
                                                "data_config": titanic["data_config"], "drift_fraction": 0.3,
                                                "random_state": 0}).json()["job_id"])
    assert job["state"] == "succeeded", job
    version = job["result"]["version"]
    # disabled at first: the worker leaves it alone while this test checks the calm window itself
    created = api.post("/monitors", json={"id": f"m-{unique}", "model": unique, "version": version, "min_rows": 300,
                                          "enabled": False})
    assert created.status_code == 201, created.text
    buffer = CaptureBuffer(settings)
    key = buffer.stream_key(unique, version)

    # a window drawn from the baseline's distribution, checked here
    for start in range(0, 400, 50):
        assert api.post("/inference", json={"model": unique, "version": version,
                                            "data": records(TEST.iloc[start:start + 50])}).status_code == 200
    drain(ctx, buffer, key, 400)
    calm = monitors.run_check(f"m-{unique}", None, ctx=ctx, buffer=buffer)
    assert calm["checked"] and calm["dataset_drift"] is False, calm
    assert calm["window"]["rows"] == 400

    # a shifted window, checked by the worker: the flush queues the check once enough rows wait
    assert api.request("PATCH", f"/monitors/m-{unique}", json={"enabled": True}).status_code == 200
    shifted = TEST.iloc[:300].assign(Age=lambda f: f["Age"] + 40, Fare=lambda f: f["Fare"] * 8 + 100,
                                     Sex="female", Pclass=1, Embarked="Q")
    for start in range(0, 300, 50):
        assert api.post("/inference", json={"model": unique, "version": version,
                                            "data": records(shifted.iloc[start:start + 50])}).status_code == 200
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(f"mlaas/{unique}")
    deadline = time.monotonic() + 120
    while True:
        housekeeping.flush_all(ctx, buffer, ctx.monitors)
        runs = client.search_runs([experiment.experiment_id], "attributes.run_name LIKE 'infer_%'",
                                  order_by=["attributes.start_time ASC"])
        if (len(runs) >= 2 and all(r.info.status == "FINISHED" for r in runs)) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(runs) == 2, [r.info.run_name for r in runs]
    first, second = runs
    assert first.data.tags["drift.verdict"] == "no drift" and first.data.tags["mlaas.monitor"] == f"m-{unique}"
    assert second.data.tags["drift.verdict"] == "drift"
    assert second.data.params["rows_current"] == "300"
    assert second.data.metrics["dataset_drift"] == 1.0
    assert second.data.metrics["Age.drifted"] == 1.0 and second.data.metrics["Sex.drifted"] == 1.0
    assert "drift_report.json" in [a.path for a in client.list_artifacts(second.info.run_id)]
    shown = api.get(f"/monitors/m-{unique}").json()
    assert shown["last_result"]["checked"] and shown["last_result"]["dataset_drift"] is True
