"""XGBoost and LightGBM models saved by MLflow's own flavours load natively and predict as the model itself does."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from mlaas.adapters.model_files import ModelLoader
from mlaas.errors import InvalidInput
from mlaas.inference.boosters import HYPERPARAMETERS_ATTR, NativeModel, parse_param
from mlaas.inference.predict import model_outputs
from mlaas.inference.probes import labels_follow_proba
from mlaas.process import process_threads
from mlaas.settings import Settings

NUMERIC = ["age", "fare"]
TEXT = ["sex", "port"]
REQS = ["xgboost", "lightgbm", "scikit-learn", "skops"]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({
        "age": rng.normal(30, 10, n), "fare": rng.exponential(20, n),
        "sex": rng.choice(["f", "m"], n), "port": rng.choice(["C", "Q", "S"], n),
    })
    frame.loc[::17, "age"] = np.nan
    frame.loc[::23, "port"] = np.nan
    target = ((frame["sex"] == "f") ^ (frame["fare"] > 25) | (frame["age"] < 15)).astype(int)
    return frame, target


def categories(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{c: frame[c].astype("category") for c in TEXT})


def probe(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as the API builds them (text as objects), with a missing value and unseen categories."""
    rows = frame.head(40).copy()
    rows.loc[rows.index[0], "sex"] = "unknown"
    rows.loc[rows.index[1], "port"] = "Z"
    rows.loc[rows.index[2], "fare"] = np.nan
    return rows.astype({c: object for c in TEXT})


def loader(**overrides: Any) -> ModelLoader:
    return ModelLoader(Settings(**overrides))


def save(flavor: str, model: Any, path: Path, **kwargs: Any) -> str:
    getattr(mlflow, flavor).save_model(model, str(path), pip_requirements=REQS, **kwargs)
    return str(path)


@pytest.fixture(scope="module")
def models(data) -> dict[str, tuple[str, Any]]:
    """Each kind of native model, fitted once for the module."""
    frame, y = data
    cat = categories(frame)
    return {
        "xgb-classifier": ("xgboost", xgb.XGBClassifier(n_estimators=15, max_depth=3, learning_rate=0.2,
                                                         enable_categorical=True).fit(cat, y)),
        "xgb-regressor": ("xgboost", xgb.XGBRegressor(n_estimators=15, max_depth=2, enable_categorical=True
                                                       ).fit(cat, frame["fare"])),
        "xgb-booster": ("xgboost", xgb.train({"objective": "binary:logistic", "max_depth": 3},
                                             xgb.DMatrix(cat, y, enable_categorical=True), 15)),
        "lgb-classifier": ("lightgbm", lgb.LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1).fit(cat, y)),
        "lgb-regressor": ("lightgbm", lgb.LGBMRegressor(n_estimators=15, verbose=-1).fit(cat, frame["fare"])),
        "lgb-booster": ("lightgbm", lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1},
                                              lgb.Dataset(cat, y), 15)),
    }


def own_prediction(model: Any, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """What the library itself answers for ``rows`` given as the model was trained (pandas categories; an
    unseen category as a missing value, which XGBoost would refuse and LightGBM does by itself)."""
    known = {"sex": ["f", "m"], "port": ["C", "Q", "S"]}
    cat = rows.assign(**{c: pd.Categorical(rows[c], categories=known[c]) for c in TEXT})
    if isinstance(model, xgb.Booster):
        p = model.inplace_predict(cat)
        return (p > 0.5).astype(int), np.stack([1 - p, p], axis=1)
    if isinstance(model, lgb.Booster):
        p = model.predict(cat)
        return (p > 0.5).astype(int), np.stack([1 - p, p], axis=1)
    proba = model.predict_proba(cat) if hasattr(model, "predict_proba") else None
    return model.predict(cat), proba


@pytest.mark.parametrize("kind", ["xgb-classifier", "xgb-regressor", "xgb-booster", "lgb-classifier",
                                  "lgb-regressor", "lgb-booster"])
def test_native_flavour_predicts_as_the_model_itself(kind: str, data, models, tmp_path: Path) -> None:
    frame, y = data
    flavor, model = models[kind]
    loaded = loader().load(save(flavor, model, tmp_path / kind), label=kind)
    assert loaded.flavor == flavor and isinstance(loaded.estimator, NativeModel)
    rows = probe(frame)
    labels, proba = own_prediction(model, rows)
    np.testing.assert_array_equal(loaded.estimator.predict(rows), labels)
    if proba is None:
        with pytest.raises(AttributeError):
            loaded.estimator.predict_proba(rows)
    else:
        assert list(loaded.estimator.classes_) == [0, 1]
        np.testing.assert_allclose(loaded.estimator.predict_proba(rows), proba, rtol=1e-6)
    assert list(loaded.estimator.feature_names_in_) == list(frame.columns)
    shuffled = rows[list(reversed(rows.columns))]  # as a data config may list them
    np.testing.assert_array_equal(loaded.estimator.predict(shuffled), labels)


def test_native_files_are_the_libraries_formats_not_pickle(models, tmp_path: Path) -> None:
    xgb_dir = save(*models["xgb-classifier"], tmp_path / "x")
    lgb_dir = save(*models["lgb-booster"], tmp_path / "l")
    assert sorted(f for f in os.listdir(xgb_dir) if f.startswith("model.")) == ["model.ubj"]
    assert Path(lgb_dir, "model.lgb").read_text().splitlines()[0] == "tree"  # LightGBM's text format


@pytest.mark.parametrize("final", ["xgb-classifier", "xgb-regressor", "lgb-classifier", "lgb-regressor"])
def test_pipeline_ending_in_a_booster_loads_through_skops_with_the_default_trust(final: str, data,
                                                                                 tmp_path: Path) -> None:
    frame, y = data
    estimator = {"xgb-classifier": xgb.XGBClassifier(n_estimators=10),
                 "xgb-regressor": xgb.XGBRegressor(n_estimators=10),
                 "lgb-classifier": lgb.LGBMClassifier(n_estimators=10, verbose=-1),
                 "lgb-regressor": lgb.LGBMRegressor(n_estimators=10, verbose=-1)}[final]
    pipeline = Pipeline([("prep", ColumnTransformer([
        ("num", SimpleImputer(), NUMERIC),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), TEXT),
    ])), ("model", estimator)]).fit(frame, y)
    import skops.io

    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    path = save("sklearn", pipeline, tmp_path / final, serialization_format="skops", skops_trusted_types=trusted)
    loaded = loader().load(path, label=final)
    rows = probe(frame)
    np.testing.assert_array_equal(loaded.estimator.predict(rows), pipeline.predict(rows))
    assert str(loaded.estimator[-1].get_params()) == str(estimator.get_params())


def test_retraining_keeps_the_hyperparameters(data, models, tmp_path: Path) -> None:
    frame, y = data
    for kind in ("lgb-classifier", "lgb-booster"):
        loaded = loader().load(save(*models[kind], tmp_path / kind), label=kind).estimator
        fresh = loaded.fresh().fit(frame, y)
        assert fresh.hyperparameters()["num_leaves"] == 7, kind
        assert fresh.predict(frame).shape == (len(frame),)
    xgb_loaded = loader().load(save(*models["xgb-classifier"], tmp_path / "x"), label="x").estimator
    # XGBoost's file keeps the rounds, not max_depth or learning_rate: those come from the source run's params
    fresh = xgb_loaded.fresh({"max_depth": "3", "learning_rate": "0.2", "dataset": "s3://d/x.csv"}).fit(frame, y)
    params = fresh.model.get_params()
    assert (params["n_estimators"], params["max_depth"], params["learning_rate"]) == (15, 3, 0.2)
    assert fresh.model.get_booster().num_boosted_rounds() == 15


def test_xgboost_hyperparameters_stored_by_mlaas_survive_the_model_file(data, tmp_path: Path) -> None:
    frame, y = data
    model = xgb.XGBClassifier(n_estimators=12, max_depth=2, learning_rate=0.4, enable_categorical=True)
    model.fit(categories(frame), y)
    model.get_booster().set_attr(**{HYPERPARAMETERS_ATTR: '{"max_depth": 2, "learning_rate": 0.4}'})
    loaded = loader().load(save("xgboost", model, tmp_path / "m"), label="m").estimator
    params = loaded.fresh().model.get_params()
    assert (params["n_estimators"], params["max_depth"], params["learning_rate"]) == (12, 2, 0.4)


def test_parse_param_reads_what_mlflow_logged() -> None:
    assert [parse_param(v) for v in ("None", "True", "3", "0.25", "hist", 7)] == [None, True, 3, 0.25, "hist", 7]


def _edit_flavour(path: str, flavor: str, **changes: Any) -> None:
    mlmodel = Path(path) / "MLmodel"
    meta = yaml.safe_load(mlmodel.read_text())
    meta["flavors"][flavor].update(changes)
    mlmodel.write_text(yaml.safe_dump(meta))


def test_unservable_native_models_name_the_real_cause(models, tmp_path: Path, monkeypatch) -> None:
    cases = []
    path = save(*models["xgb-classifier"], tmp_path / "cls")
    _edit_flavour(path, "xgboost", model_class="os.system")
    cases.append((path, "class 'os.system'"))
    path = save(*models["xgb-classifier"], tmp_path / "fmt")
    _edit_flavour(path, "xgboost", model_format="deprecated")
    cases.append((path, "'deprecated' format"))
    path = save(*models["xgb-classifier"], tmp_path / "bad")
    Path(path, "model.ubj").write_bytes(b"not a model")
    cases.append((path, "not a readable XGBoost ubj file"))
    path = save(*models["lgb-classifier"], tmp_path / "pkl", serialization_format="cloudpickle")
    cases.append((path, "saved as cloudpickle, whose loading runs code from the model; set MLAAS_ALLOW_PICKLE_MODELS"))
    path = save(*models["lgb-booster"], tmp_path / "out")
    _edit_flavour(path, "lightgbm", data="../../etc/passwd")
    cases.append((path, "flavors.lightgbm.data points outside the model's folder"))
    for path, reason in cases:
        with pytest.raises(InvalidInput) as caught:
            loader().load(path, label="m v1")
        assert reason in caught.value.message and "pyfunc" not in caught.value.message, caught.value.message
    path = save(*models["lgb-booster"], tmp_path / "nolib")
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # as in an image without lightgbm
    with pytest.raises(InvalidInput, match="m v1 is a lightgbm model and this service has no lightgbm installed"):
        loader().load(path, label="m v1")


def test_pickled_lightgbm_estimator_loads_only_when_pickle_is_allowed(data, models, tmp_path: Path) -> None:
    frame, _ = data
    _, model = models["lgb-classifier"]
    path = save("lightgbm", model, tmp_path / "pkl", serialization_format="cloudpickle")
    loaded = loader(allow_pickle_models=True).load(path, label="m")
    np.testing.assert_array_equal(loaded.estimator.predict(probe(frame)), own_prediction(model, probe(frame))[0])


@pytest.mark.parametrize("kind", ["xgb-classifier", "xgb-booster", "lgb-classifier", "lgb-booster"])
def test_native_classifiers_are_served_in_one_pass_with_the_models_own_labels(kind: str, data, models,
                                                                              tmp_path: Path) -> None:
    frame, _ = data
    flavor, model = models[kind]
    estimator = loader().load(save(flavor, model, tmp_path / kind), label=kind).estimator
    assert labels_follow_proba(estimator, list(frame.columns), None)  # the load-time check, without examples
    calls = []
    original = estimator.predict
    estimator.predict = lambda X: calls.append(X) or original(X)  # type: ignore[method-assign]
    rows = probe(frame)
    labels, proba = model_outputs(estimator, rows, classifier=True, one_pass=True)
    assert calls == []  # one library call: the labels follow from the probabilities
    own_labels, own_proba = own_prediction(model, rows)
    np.testing.assert_array_equal(labels, own_labels)
    np.testing.assert_allclose(proba, own_proba, rtol=1e-6)


def test_native_categories_are_those_the_model_was_trained_on(models, tmp_path: Path) -> None:
    for kind in ("xgb-classifier", "lgb-classifier", "lgb-booster"):
        estimator = loader().load(save(*models[kind], tmp_path / kind), label=kind).estimator
        assert estimator.categories() == {2: ["f", "m"], 3: ["C", "Q", "S"]}, kind


def test_native_models_predict_with_the_process_thread_count(data, models, tmp_path: Path) -> None:
    frame, _ = data
    xgb_model = loader(native_threads=3).load(save(*models["xgb-classifier"], tmp_path / "x"), label="x").estimator
    config = json.loads(xgb_model.model.get_booster().save_config())
    assert config["learner"]["generic_param"]["nthread"] == "3"
    for kind in ("lgb-classifier", "lgb-booster"):
        lgb_model = loader(native_threads=3).load(save(*models[kind], tmp_path / kind), label=kind).estimator
        booster = lgb_model.model if lgb_model.is_booster else lgb_model.model.booster_
        seen: list[Any] = []
        booster.predict = lambda X, s=seen, f=booster.predict, **kw: s.append(kw.get("num_threads")) or f(X, **kw)
        lgb_model.predict_proba(probe(frame))
        assert seen == [3], kind  # LightGBM's scikit-learn wrapper would take every physical core
    with threadpool_limits(limits=1, user_api="openmp"):  # as limit_native_threads leaves a served process
        assert process_threads(Settings()) == 1
    assert process_threads(Settings(native_threads=2)) == 2


@pytest.mark.parametrize("kind", ["xgb-classifier", "xgb-regressor", "xgb-booster"])
def test_xgboost_predicts_on_a_code_matrix_with_the_answers_of_its_pandas_path(kind: str, data, models,
                                                                             tmp_path: Path) -> None:
    frame, _ = data
    estimator = loader().load(save(*models[kind], tmp_path / kind), label=kind).estimator
    rows = probe(frame)[list(reversed(frame.columns))]  # unseen categories, missing values, another column order
    assert isinstance(estimator._inputs(rows), np.ndarray)
    method = "predict_proba" if estimator.task == "classification" else "predict"
    pandas_answer = getattr(estimator.model, method)(estimator.frame(rows))
    np.testing.assert_array_equal(getattr(estimator, method)(rows), pandas_answer)
    text_in_a_number = rows.astype({"fare": object})
    text_in_a_number.loc[text_in_a_number.index[3], "fare"] = "cheap"
    assert not isinstance(estimator._inputs(text_in_a_number), np.ndarray)  # the library words the error


@pytest.mark.parametrize("kind", ["lgb-classifier", "lgb-regressor", "lgb-booster"])
def test_lightgbm_predicts_on_a_code_matrix_with_the_answers_of_its_pandas_path(kind: str, data, models,
                                                                              tmp_path: Path) -> None:
    frame, _ = data
    estimator = loader().load(save(*models[kind], tmp_path / kind), label=kind).estimator
    own_labels, own_proba = own_prediction(models[kind][1], probe(frame))  # LightGBM reads columns by position
    rows = probe(frame)[list(reversed(frame.columns))]  # unseen categories, missing values, another column order
    seen = spy_on_booster(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names" from the wrapper
        labels = estimator.predict(rows)
        proba = estimator.predict_proba(rows) if own_proba is not None else None
    assert set(seen) == {np.ndarray}  # LightGBM's own pandas handling skipped
    if own_proba is None:
        np.testing.assert_allclose(labels, own_labels, rtol=1e-6)
    else:
        np.testing.assert_array_equal(labels, own_labels)
        np.testing.assert_allclose(proba, own_proba, rtol=1e-6, atol=0)
    seen.clear()
    text_in_a_number = rows.astype({"fare": object})
    text_in_a_number.loc[text_in_a_number.index[3], "fare"] = "cheap"
    with pytest.raises(ValueError):
        estimator.predict(text_in_a_number)
    assert np.ndarray not in seen  # the frame went to the library, which words the error


def spy_on_booster(estimator: NativeModel) -> list[type]:
    """The types of what the LightGBM booster's predict is given from now on."""
    booster = estimator.model if estimator.is_booster else estimator.model.booster_
    seen: list[type] = []
    booster.predict = lambda X, s=seen, f=booster.predict, **kw: s.append(type(X)) or f(X, **kw)
    return seen


def test_lightgbm_with_prediction_parameters_of_its_own_keeps_its_wrapper(data, tmp_path: Path) -> None:
    frame, y = data
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1, pred_early_stop=True).fit(categories(frame), y)
    estimator = loader().load(save("lightgbm", model, tmp_path / "m"), label="m").estimator
    rows = probe(frame)
    seen = spy_on_booster(estimator)
    np.testing.assert_allclose(estimator.predict_proba(rows), own_prediction(model, rows)[1], rtol=1e-6)
    assert seen == [pd.DataFrame]  # the wrapper passes pred_early_stop on
