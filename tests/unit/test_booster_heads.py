"""Pipelines ending in XGBoost or LightGBM estimators take the compiled path and answer as the pipeline itself."""

from __future__ import annotations

import warnings
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from mlaas.inference import compiled
from mlaas.inference.steps import Unsupported

NUMERIC = ["age", "fare", "siblings"]
TEXT = ["sex", "port"]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame({
        "age": rng.normal(30, 10, n), "fare": rng.exponential(20, n), "siblings": rng.integers(0, 4, n),
        "sex": rng.choice(["f", "m"], n), "port": rng.choice(["C", "Q", "S"], n).astype(object),
    })
    frame.loc[::13, "age"] = np.nan
    frame.loc[::29, "port"] = np.nan
    binary = ((frame["sex"] == "f") ^ (frame["fare"] > 25) | (frame["age"] < 15)).astype(int)
    three = (binary + (frame["port"] == "C").astype(int) + (frame["siblings"] > 2)).clip(0, 2)
    return frame, binary, three


def pipeline(final: Any, *, impute_numbers: bool = True) -> Pipeline:
    numbers: Any = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    if not impute_numbers:  # the booster sees the missing values itself
        numbers = StandardScaler()
    return Pipeline([("prep", ColumnTransformer([
        ("num", numbers, NUMERIC),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), TEXT),
    ])), ("model", final)])


FINALS = {
    "xgb-binary": lambda: xgb.XGBClassifier(n_estimators=30, max_depth=4, n_jobs=1),
    "xgb-3-classes": lambda: xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1),
    "xgb-regressor": lambda: xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1),
    "lgb-binary": lambda: lgb.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1),
    "lgb-3-classes": lambda: lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1),
    "lgb-regressor": lambda: lgb.LGBMRegressor(n_estimators=20, num_leaves=7, verbose=-1),
}


def fitted(kind: str, data, **kwargs: Any) -> Pipeline:
    frame, binary, three = data
    target = three if "3-classes" in kind else frame["fare"] * 2 + frame["siblings"] if "regressor" in kind else binary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline(FINALS[kind](), **kwargs).fit(frame, target)


def unusual_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as the API builds them: missing numbers and text, unseen categories."""
    rows = frame.head(60).copy()
    rows.loc[rows.index[0], "sex"] = "unknown"
    rows.loc[rows.index[1], "port"] = "Z"
    rows.loc[rows.index[2], ["age", "fare"]] = np.nan
    rows.loc[rows.index[3], "sex"] = np.nan
    return rows


def answers(model: Pipeline, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proba = model.predict_proba(rows) if hasattr(model, "predict_proba") else None
        return np.asarray(model.predict(rows)), proba


@pytest.mark.parametrize("impute_numbers", [True, False])
@pytest.mark.parametrize("kind", list(FINALS))
def test_a_pipeline_ending_in_a_booster_compiles_and_answers_as_itself(kind: str, impute_numbers: bool,
                                                                        data) -> None:
    model = fitted(kind, data, impute_numbers=impute_numbers)
    predictor, why = compiled.build(model, list(data[0].columns), data[0].head())
    assert predictor is not None, why
    rows = unusual_rows(data[0])
    labels, proba = answers(model, rows)
    for batch in (rows, rows.head(1), rows.iloc[2:3]):  # many rows, one row, a row with missing numbers
        got, got_proba = predictor.predict(compiled.columns_of(batch, predictor.inputs))
        own, own_proba = answers(model, batch)
        if labels.dtype.kind == "f":
            np.testing.assert_allclose(got, own, rtol=1e-6)
        else:
            assert got.tolist() == own.tolist()
        if proba is None:
            assert got_proba is None
        else:
            assert got_proba is not None and got_proba.shape == own_proba.shape
            np.testing.assert_allclose(got_proba, own_proba, rtol=1e-6, atol=0)


def test_infinities_go_to_scikit_learn(data) -> None:
    model = fitted("xgb-binary", data, impute_numbers=False)
    predictor, _ = compiled.build(model, list(data[0].columns), data[0].head())
    assert predictor is not None
    row = data[0].head(1).assign(fare=np.inf)
    with pytest.raises(Unsupported):
        predictor.predict(compiled.columns_of(row, predictor.inputs))


def test_boosters_the_head_cannot_answer_exactly_stay_with_scikit_learn(data) -> None:
    frame, binary, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        margin = pipeline(xgb.XGBClassifier(n_estimators=5, objective="binary:logitraw")).fit(frame, binary)
        linear = pipeline(xgb.XGBClassifier(n_estimators=5, booster="gblinear")).fit(frame, binary)
        early = pipeline(lgb.LGBMClassifier(n_estimators=5, verbose=-1, pred_early_stop=True)).fit(frame, binary)
    for model, reason in ((margin, "binary:logitraw"), (linear, "gblinear"), (early, "pred_early_stop")):
        predictor, why = compiled.build(model, list(frame.columns), frame.head())
        assert predictor is None and reason in why


def test_the_booster_predicts_with_the_process_thread_count(data) -> None:
    model = fitted("lgb-binary", data)
    booster = model[-1].booster_
    seen: list[Any] = []
    booster.predict = lambda X, s=seen, f=booster.predict, **kw: s.append(kw.get("num_threads")) or f(X, **kw)
    with threadpool_limits(limits=1, user_api="openmp"):  # as limit_native_threads leaves a served process
        predictor, why = compiled.build(model, list(data[0].columns), data[0].head())
    assert predictor is not None, why
    seen.clear()
    predictor.predict(compiled.columns_of(data[0].head(3), predictor.inputs))
    assert seen == [1]  # LightGBM's scikit-learn wrapper would take every physical core
