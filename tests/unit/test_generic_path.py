"""The scikit-learn path: one pass through the pipeline where the labels follow from the probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from mlaas.inference import payload, predict, probes
from mlaas.inference.cache import ServedModel
from tests.unit.test_fasttrees import labels_for, notebook_frame, prep


def fitted(final: Any) -> tuple[Any, pd.DataFrame]:
    frame = notebook_frame()
    return Pipeline([("prep", prep()), ("model", final)]).fit(frame, labels_for(frame, 3)), frame


@pytest.mark.parametrize(("final", "one_pass"), [
    (RandomForestClassifier(10, random_state=0), True),
    (LogisticRegression(), True),
    (SVC(probability=True, random_state=0), False),  # its predict is not its predict_proba's argmax
])
def test_one_pass_is_taken_only_where_the_labels_follow_from_the_probabilities(final, one_pass):
    model, frame = fitted(final)
    assert probes.labels_follow_proba(model, list(frame.columns), frame.head(5)) is one_pass


def test_the_one_pass_answer_equals_the_models_own_predict_and_predict_proba():
    # an uncompiled step keeps the model on scikit-learn's path
    model = Pipeline([("prep", prep()), ("odd", FunctionTransformer(np.tanh)), ("scale", StandardScaler()),
                      ("model", RandomForestClassifier(10, random_state=0))])
    frame = notebook_frame()
    model.fit(frame, labels_for(frame, 3))
    types = {"x1": "number", "x2": "number", "n": "integer", "colour": "string", "is_first": "boolean",
             "code": "integer"}
    served = ServedModel("m", 1, model, list(frame.columns), types, None, model.classes_.tolist(), "classification",
                         0.0, None, one_pass=probes.labels_follow_proba(model, list(frame.columns), frame.head(5)))
    assert served.one_pass and served.predictor is None
    records = frame.head(40).astype(object).where(frame.head(40).notna(), None).to_dict(orient="records")
    rows = payload.parse_rows({"dataframe_records": records}, max_rows=1000)
    features, ignored = predict.prepare_features(rows, served)
    result = predict.predict(served, features, rows, ignored)
    expected = pd.DataFrame.from_records(records).astype({"x1": float, "x2": float, "n": float})
    assert result.labels == model.predict(expected).tolist()
    assert result.proba is not None
    np.testing.assert_allclose(result.proba, model.predict_proba(expected), rtol=1e-12)
