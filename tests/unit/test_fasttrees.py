"""Compiled tree models answer exactly as the scikit-learn model they were built from, per family and estimator."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from mlaas.inference import compiled, probes, trees


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One OpenMP thread, as each API worker runs: scikit-learn's HGB is slow to spread one row over busy cores."""
    with threadpool_limits(1):
        yield


NUMERIC = ["x1", "x2", "n"]
CATEGORICAL = ["colour", "is_first", "code"]


def notebook_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """What a notebook frame holds: floats with NaN, a nullable integer, text, a boolean, integer-coded categories."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x1": rng.normal(10, 3, n), "x2": rng.exponential(2, n),
        "n": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        "colour": pd.Series(rng.choice(["red", "green", "blue"], n), dtype=object),
        "is_first": rng.random(n) < 0.4, "code": rng.integers(1, 4, n),
    })
    frame.loc[rng.random(n) < 0.1, "x1"] = np.nan
    frame.loc[rng.random(n) < 0.1, "n"] = pd.NA
    frame.loc[rng.random(n) < 0.1, "colour"] = np.nan
    return frame


def labels_for(frame: pd.DataFrame, classes: int) -> np.ndarray:
    score = frame["x1"].fillna(10) / 3 + frame["x2"] - (frame["colour"] == "red") * 2 + frame["is_first"]
    return np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


def prep() -> ColumnTransformer:
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         CATEGORICAL),
    ])


SMALL = {"random_state": 0}
ESTIMATORS = {
    "tree-c": DecisionTreeClassifier(max_depth=6, **SMALL), "tree-r": DecisionTreeRegressor(**SMALL),
    "forest-c": RandomForestClassifier(n_estimators=20, **SMALL), "forest-r": RandomForestRegressor(20, **SMALL),
    "extra-c": ExtraTreesClassifier(n_estimators=20, **SMALL), "extra-r": ExtraTreesRegressor(20, **SMALL),
    "gb-c": GradientBoostingClassifier(n_estimators=30, **SMALL), "gb-r": GradientBoostingRegressor(**SMALL),
    "hgb-c": HistGradientBoostingClassifier(max_iter=30, **SMALL),
    "hgb-r": HistGradientBoostingRegressor(max_iter=30, **SMALL),
}


def target(frame: pd.DataFrame, estimator: Any, classes: int) -> np.ndarray:
    if is_classifier(estimator):
        return np.array(["no", "yes", "maybe", "later"])[labels_for(frame, classes)]
    return (frame["x2"] * 3 + frame["code"] - frame["x1"].fillna(0)).to_numpy()


def unusual(frame: pd.DataFrame) -> pd.DataFrame:
    """Unseen categories, missing values everywhere, far-away numbers, values at the model's split points."""
    odd = frame.head(8).copy()
    odd["colour"] = ["never seen", np.nan, "red", "green", np.nan, "blue", "violet", "red"]
    odd["code"] = [9, 1, 2, 3, 1, 2, 3, 7]
    odd["x1"] = [np.nan, 1e6, -1e6, 10.0, np.nan, 0.0, 9.5, np.nan]
    odd.loc[odd.index[:3], "n"] = pd.NA
    return odd


def assert_same(model: Any, predictor: compiled.FastPredictor, frame: pd.DataFrame) -> None:
    got, got_proba = predictor.predict(compiled.columns_of(frame, predictor.inputs))
    expected = np.asarray(model.predict(frame))
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    else:
        assert got.tolist() == expected.tolist()
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(got_proba, model.predict_proba(frame), rtol=1e-9, atol=1e-15)
    else:
        assert got_proba is None


CASES = [(name, classes) for name in sorted(ESTIMATORS)
         for classes in ((2, 3) if is_classifier(ESTIMATORS[name]) else (0,))]


@pytest.mark.parametrize(("name", "classes"), CASES)
def test_a_pipeline_ending_in_a_tree_model_is_compiled_and_answers_as_sklearn(name, classes):
    estimator = ESTIMATORS[name]
    frame = notebook_frame()
    model = Pipeline([("prep", prep()), ("model", estimator)]).fit(frame, target(frame, estimator, classes))
    predictor, reason = compiled.build(model, list(frame.columns), frame.head(5))
    assert predictor is not None, reason
    assert_same(model, predictor, frame)
    for i in range(30):  # one row at a time, as most requests come
        assert_same(model, predictor, frame.iloc[i:i + 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns of the unknown categories
        assert_same(model, predictor, unusual(frame))


@pytest.mark.parametrize("name", ["tree-c", "forest-r", "extra-c", "hgb-c", "hgb-r"])
def test_missing_values_reaching_a_tree_model_follow_its_own_branches(name):
    frame = notebook_frame()[NUMERIC].astype(float)
    estimator = ESTIMATORS[name]
    model = type(estimator)(**estimator.get_params()).fit(frame, target(notebook_frame(), estimator, 2))
    predictor, reason = compiled.build(model, NUMERIC, frame.head(5))
    assert predictor is not None, reason
    assert np.isnan(frame.to_numpy()).any(axis=1).sum() > 20
    assert_same(model, predictor, frame)
    split = trees.thresholds(model)
    at_splits = pd.DataFrame({c: [split[i][k % len(split[i])] for k in range(12)] for i, c in enumerate(NUMERIC)})
    assert_same(model, predictor, at_splits)


def test_a_model_that_refuses_missing_values_leaves_such_rows_to_sklearn():
    frame = notebook_frame()[NUMERIC].astype(float)
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(frame.fillna(0),
                                                                         labels_for(notebook_frame(), 2))
    predictor, reason = compiled.build(model, NUMERIC)
    assert predictor is not None, reason
    assert_same(model, predictor, frame.fillna(0).head(20))
    with pytest.raises(compiled.Unsupported):
        predictor.predict(compiled.columns_of(frame[frame["x1"].isna()].head(1), NUMERIC))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(frame[frame["x1"].isna()].head(1))


def numeric_boolean_prep() -> ColumnTransformer:
    """The boolean among the numbers: imputed by its median and scaled, as 0.0 and 1.0."""
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), [*NUMERIC, "is_first"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["code"]),
    ])


@pytest.mark.parametrize("make_prep", [prep, numeric_boolean_prep])
def test_a_boolean_column_takes_the_compiled_path(make_prep):
    """The notebook case: pandas reads a True/False CSV column as bool; the linear path compiled it but fell back."""
    frame = notebook_frame()
    for final in (HistGradientBoostingClassifier(max_iter=10), compiled.linear.LogisticRegression()):
        model = Pipeline([("prep", make_prep()), ("model", final)]).fit(frame, labels_for(frame, 2))
        predictor, reason = compiled.build(model, list(frame.columns), frame.head(5))
        assert predictor is not None, reason
        assert frame["is_first"].dtype == bool
        assert_same(model, predictor, frame.head(1))
        assert_same(model, predictor, frame)


def test_categorical_splits_and_multi_output_stay_with_sklearn():
    frame = notebook_frame()[NUMERIC].astype(float).fillna(0)
    frame["code"] = notebook_frame()["code"]
    y = labels_for(notebook_frame(), 2)
    native = HistGradientBoostingClassifier(max_iter=5, categorical_features=["code"]).fit(frame, y)
    assert compiled.build(native, list(frame.columns))[0] is None
    two = np.stack([y, labels_for(notebook_frame(), 3)], axis=1)
    assert compiled.build(RandomForestClassifier(5).fit(frame, two), list(frame.columns))[0] is None


def test_a_tampered_tree_fails_the_load_check():
    frame = notebook_frame()
    model = Pipeline([("prep", prep()), ("model", RandomForestClassifier(10, random_state=0))])
    model.fit(frame, labels_for(frame, 2))
    predictor = compiled.compile_model(model, None)
    head = predictor.head
    assert isinstance(head, trees.TreeHead)
    head.nodes.threshold[head.nodes.roots] += 0.3  # every tree's first split moves
    with pytest.raises(compiled.Unsupported, match="differ"):
        compiled.verify(predictor, model, probes.probe_frame(predictor.inputs, model, frame.head(20)))


def test_boolean_and_integer_records_take_the_array_path_through_inference():
    from tests.unit.test_fastpath import answer, served

    frame = notebook_frame()
    model = Pipeline([("prep", prep()), ("model", RandomForestClassifier(10, random_state=0))])
    model.fit(frame, labels_for(frame, 2))
    types = {"x1": "number", "x2": "number", "n": "integer", "colour": "string", "is_first": "boolean",
             "code": "integer"}
    head = frame.head(25)
    records = head.astype(object).where(head.notna(), None).to_dict(orient="records")
    assert {type(r["is_first"]) for r in records} == {bool} and any(r["n"] is None for r in records)
    body, _, path = answer(served(model, list(frame.columns), types, fast=True), {"dataframe_records": records})
    assert path == "arrays"
    assert body["predictions"] == model.predict(head).tolist()
    np.testing.assert_allclose([[p[str(c)] for c in model.classes_] for p in body["probabilities"]],
                               model.predict_proba(head), rtol=1e-9)
