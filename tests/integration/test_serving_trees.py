"""Gradient boosting served through the real API to concurrent clients: every answer is the model's own.

Each API worker's native thread pools are sized for its share of the cores (``mlaas/process.py``), so a
HistGradientBoosting model that scikit-learn scores (OpenMP) answers concurrent clients without collapsing;
the compiled one answers them without scikit-learn at all.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlaas.adapters.model_files import DEFAULT_TRUSTED_TYPES
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL
CLIENTS, REQUESTS_EACH = 8, 6


def compiled_hgb() -> Pipeline:
    return titanic_pipeline().set_params(clf=HistGradientBoostingClassifier(max_iter=100, random_state=0))


def uncompiled_hgb() -> Pipeline:
    """An OrdinalEncoder (no compiled step) before it: scikit-learn scores it, with its OpenMP threads."""
    prep = ColumnTransformer([
        ("num", SimpleImputer(strategy="median"), NUMERIC),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)), CATEGORICAL),
    ])
    return Pipeline([("prep", prep), ("clf", HistGradientBoostingClassifier(max_iter=100, random_state=0))])


@pytest.fixture(scope="module")
def models(settings) -> dict[str, tuple[str, Any]]:
    out = {}
    for kind, pipeline in (("compiled", compiled_hgb()), ("sklearn", uncompiled_hgb())):
        name = f"hgb-{kind}-{int(time.time() * 1000) % 10**8}"
        register(settings, name, pipeline, TRAIN[FEATURES], TRAIN["Survived"], trusted=list(DEFAULT_TRUSTED_TYPES))
        out[kind] = (name, pipeline)
    return out


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def paths_counted(api: Any, name: str) -> dict[str, float]:
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "mlaas_inference_path_total" and sample.labels.get("model") == name:
                counts[sample.labels["path"]] = counts.get(sample.labels["path"], 0) + sample.value
    return counts


@pytest.mark.parametrize("kind", ["compiled", "sklearn"])
def test_concurrent_clients_get_the_models_own_answers(api, models, kind):
    name, model = models[kind]
    bodies = [TEST[FEATURES].iloc[i:i + 1] for i in range(REQUESTS_EACH)] + [TEST[FEATURES].head(100)]
    expected = [(model.predict(rows).tolist(), model.predict_proba(rows)) for rows in bodies]

    def client(k: int) -> list[tuple[int, int, Any]]:
        out = []
        for j in range(len(bodies)):
            i = (j + k) % len(bodies)  # the clients send the bodies in different orders
            response = api.post("/inference", json={"model": name, "version": 1,
                                                    "dataframe_records": records(bodies[i])})
            out.append((i, response.status_code, response.json()))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for batch in pool.map(client, range(CLIENTS)) for a in batch]
    assert len(answers) == CLIENTS * len(bodies)
    for i, status, body in answers:
        assert status == 200, body
        labels, proba = expected[i]
        assert body["predictions"] == labels
        got = np.array([[p["0"], p["1"]] for p in body["probabilities"]])
        np.testing.assert_allclose(got, proba, rtol=1e-6, atol=0)
    counted = paths_counted(api, name)
    assert counted.get(kind) == len(answers), counted  # every request took the path this model is built for
