"""The compiled fast path answers exactly as the scikit-learn model it was built from, or not at all."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)

from mlaas.errors import InvalidInput
from mlaas.inference import compiled, linear, payload, predict, probes, steps
from mlaas.inference.cache import ServedModel
from tests.integration.models import CATEGORICAL, NUMERIC, titanic_pipeline

TITANIC = pd.read_csv("examples/data/titanic/titanic.csv")
TITANIC_TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
TYPES = {"Age": "number", "Fare": "number", "SibSp": "integer", "Parch": "integer", "Pclass": "integer",
         "Sex": "string", "Embarked": "string"}


def mixed_data(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x1": rng.normal(10, 3, n), "x2": rng.exponential(2, n), "n": rng.integers(0, 5, n),
        "colour": rng.choice(["red", "green", "blue"], n), "size": rng.choice(["S", "M", "L", "XL"], n),
    })
    frame.loc[rng.random(n) < 0.1, "x1"] = np.nan
    frame["colour"] = frame["colour"].astype(object)
    frame.loc[rng.random(n) < 0.1, "colour"] = np.nan
    return frame


def mixed_prep(**onehot: Any) -> ColumnTransformer:
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), ["x1", "x2", "n"]),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore", **onehot)), ["colour", "size"]),
    ])


def target(frame: pd.DataFrame, classes: int = 2) -> np.ndarray:
    score = frame["x1"].fillna(10) / 3 + frame["x2"] - (frame["colour"] == "red") * 2
    return np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


def fitted(case: str) -> tuple[Any, pd.DataFrame]:
    data = mixed_data()
    if case == "titanic":
        features = TITANIC[NUMERIC + CATEGORICAL]
        return titanic_pipeline().fit(features, TITANIC["Survived"]), features
    if case == "numeric":
        numeric = data[["x2", "n"]]
        return make_pipeline(StandardScaler(), LogisticRegression()).fit(numeric, target(data)), numeric
    if case == "scalers":
        numeric = data[["x1", "x2", "n"]].fillna(0)
        prep = ColumnTransformer([("a", MinMaxScaler(clip=True), ["x1"]), ("b", RobustScaler(), ["x2"]),
                                  ("c", MaxAbsScaler(), ["n"])])
        return Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(numeric, target(data)), numeric
    if case == "mixed":
        return Pipeline([("prep", mixed_prep()), ("clf", LogisticRegression())]).fit(data, target(data)), data
    if case == "multiclass":
        y = np.array(["low", "mid", "high", "top"])[target(data, 4)]
        return Pipeline([("prep", mixed_prep(drop="first")), ("clf", LogisticRegression())]).fit(data, y), data
    if case == "regression":
        y = data["x2"] * 3 + data["n"]
        return Pipeline([("prep", mixed_prep()), ("reg", Ridge())]).fit(data, y), data
    if case == "linear-no-proba":
        return Pipeline([("prep", mixed_prep()), ("clf", RidgeClassifier())]).fit(data, target(data, 3)), data
    if case == "passthrough":
        prep = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["size"])], remainder="passthrough")
        frame = data[["x2", "n", "size"]]
        return Pipeline([("prep", prep), ("reg", LinearRegression())]).fit(frame, data["x1"].fillna(0)), frame
    raise AssertionError(case)


IMPUTED = {"titanic", "mixed", "multiclass", "regression", "linear-no-proba"}
CASES = ["titanic", "numeric", "scalers", "mixed", "multiclass", "regression", "linear-no-proba", "passthrough"]


def assert_same_as_sklearn(model: Any, predictor: compiled.FastPredictor, frame: pd.DataFrame) -> None:
    labels, proba = predictor.predict(compiled.columns_of(frame, predictor.inputs))
    expected = np.asarray(model.predict(frame))
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(labels, expected, rtol=1e-9)
    else:
        assert labels.tolist() == expected.tolist()
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(proba, model.predict_proba(frame), rtol=1e-9, atol=0)
    else:
        assert proba is None


@pytest.mark.parametrize("case", CASES)
def test_compiled_models_answer_as_sklearn_on_fitted_and_unusual_rows(case):
    model, frame = fitted(case)
    predictor, reason = compiled.build(model, list(frame.columns), frame.head(5))
    assert predictor is not None, reason
    assert_same_as_sklearn(model, predictor, frame)
    for i in range(0, 40):  # one row at a time, as most requests come
        assert_same_as_sklearn(model, predictor, frame.iloc[i:i + 1])
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    unusual = frame.head(6).astype(dict.fromkeys(numeric, float))
    for column in unusual.columns:
        if column not in numeric:
            unusual.loc[unusual.index[:2], column] = ["never seen", np.nan]
        elif case in IMPUTED:
            unusual.loc[unusual.index[:3], column] = [np.nan, 1e6, -1e6]
        else:  # no imputer: a missing value would reach the model
            unusual.loc[unusual.index[:2], column] = [1e9, -1e9]
    assert_same_as_sklearn(model, predictor, unusual)


def test_an_unknown_category_under_handle_unknown_error_goes_to_sklearn():
    data = mixed_data()
    prep = ColumnTransformer([("cat", OneHotEncoder(), ["size"]), ("num", StandardScaler(), ["x2"])])
    model = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(data, target(data))
    predictor, reason = compiled.build(model, None)
    assert predictor is not None, reason
    assert_same_as_sklearn(model, predictor, data.head(20))
    with pytest.raises(compiled.Unsupported):
        predictor.predict(compiled.columns_of(data.head(1).assign(size="XXL"), predictor.inputs))
    with pytest.raises(ValueError, match="unknown categor"):
        model.predict(data.head(1).assign(size="XXL"))


def test_missing_values_reaching_the_model_go_to_sklearn():
    model, frame = fitted("numeric")
    predictor, _ = compiled.build(model, None)
    with pytest.raises(compiled.Unsupported):
        predictor.predict({"x2": np.array([np.nan]), "n": np.array([1.0])})


@pytest.mark.parametrize("model", [
    make_pipeline(PolynomialFeatures(), LogisticRegression()),
    make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=3, categorical_features=[1])),
    make_pipeline(SimpleImputer(strategy="mean", add_indicator=True), LogisticRegression()),
])
def test_models_with_other_steps_are_left_to_sklearn(model):
    data = mixed_data()[["x2", "n"]]
    model.fit(data, target(mixed_data()))
    predictor, reason = compiled.build(model, None)
    assert predictor is None and reason


def test_a_compiled_model_that_differs_from_its_model_fails_the_check():
    model, frame = fitted("mixed")
    predictor = compiled.compile_model(model, None)
    head = predictor.head
    assert isinstance(head, linear.LinearHead)
    tampered = compiled.FastPredictor(predictor.inputs, predictor.steps,
                                      dataclasses.replace(head, coef=head.coef * (1 + 1e-5)))
    with pytest.raises(compiled.Unsupported, match="probabilities differ"):
        compiled.verify(tampered, model, probes.probe_frame(tampered.inputs, model, frame.head(5)))
    flipped = compiled.FastPredictor(predictor.inputs, predictor.steps,
                                     dataclasses.replace(head, classes=head.classes[::-1]))
    with pytest.raises(compiled.Unsupported, match="predictions differ"):
        compiled.verify(flipped, model, probes.probe_frame(flipped.inputs, model, None))


# -- through inference: clean record payloads take the array path and answer as the frame path ------
def served(model: Any, columns: list[str], types: dict[str, str], *, fast: bool, id_column: str | None = None
           ) -> ServedModel:
    predictor = compiled.build(model, columns)[0] if fast else None
    assert predictor is not None or not fast
    classes = [c.item() for c in model.classes_] if hasattr(model, "classes_") else None
    return ServedModel("m", 1, model, columns, types, id_column, classes, "classification", 0.0, None,
                       predictor=predictor)


def answer(model: ServedModel, body: dict[str, Any]) -> tuple[dict[str, Any], list[list[Any]], str]:
    rows = payload.parse_rows(body, max_rows=10_000)
    features, ignored = predict.prepare_features(rows, model)
    result = predict.predict(model, features, rows, ignored)
    path = "arrays" if isinstance(result.features, predict.Columns) else "frame"
    return predict.response_body(model, rows, result), model_inputs(result.features), path


def model_inputs(features: predict.Columns | pd.DataFrame) -> list[list[Any]]:
    """The values the model was given, a list per column, None for missing (either path's form)."""
    if isinstance(features, predict.Columns):
        columns = [features.arrays[name].tolist() for name in features.names]
    else:
        columns = [features[c].to_numpy(dtype=object).tolist() for c in features.columns]
    return [[None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in column]
            for column in columns]


def titanic_records(n: int) -> list[dict[str, Any]]:
    out = []
    for row in TITANIC_TEST.head(n).to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return out


PAYLOAD_VARIANTS: list[tuple[str, Any]] = [
    ("as sent", lambda rows: rows),
    ("integers as floats", lambda rows: [dict(r, Pclass=float(r["Pclass"]), SibSp=1.0) for r in rows]),
    ("missing text in every row", lambda rows: [dict(r, Embarked=None, Sex=None) for r in rows]),
    ("keys left out", lambda rows: [{k: v for k, v in r.items() if i % 2 == 0 or k not in ("Age", "Embarked")}
                                    for i, r in enumerate(rows)]),
    ("keys left out everywhere", lambda rows: [{k: v for k, v in r.items() if k != "Age"} for r in rows]),
    ("unknown categories", lambda rows: [dict(r, Embarked="Z", Sex="other") for r in rows]),
    ("explicit ids", lambda rows: [dict(r, id=f"r{i}") for i, r in enumerate(rows)]),
    ("numbers as text", lambda rows: [dict(r, Age="31") for r in rows]),
    ("numbers in a text column", lambda rows: [dict(r, Sex=1) for r in rows]),
    ("ids with a gap", lambda rows: [dict(r, PassengerId=None) if i == 0 else r for i, r in enumerate(rows)]),
    ("a NaN literal", lambda rows: [dict(r, Fare=float("nan")) for r in rows]),
    ("huge numbers", lambda rows: [dict(r, Fare=1e300, Age=10**20) for r in rows]),
]


@pytest.mark.parametrize("n", [1, 7, 60])
@pytest.mark.parametrize("name, mutate", PAYLOAD_VARIANTS, ids=[v[0] for v in PAYLOAD_VARIANTS])
def test_inference_answers_and_feeds_the_model_the_same_with_and_without_the_fast_path(name, mutate, n):
    model = titanic_pipeline().fit(TITANIC[NUMERIC + CATEGORICAL], TITANIC["Survived"])
    columns = NUMERIC + CATEGORICAL
    fast = served(model, columns, TYPES, fast=True, id_column="PassengerId")
    plain = served(model, columns, TYPES, fast=False, id_column="PassengerId")
    body = {"data": mutate(titanic_records(n))}
    try:
        expected, expected_rows, _ = answer(plain, body)
    except InvalidInput as exc:
        with pytest.raises(InvalidInput) as raised:
            answer(fast, body)
        assert raised.value.message == exc.message
        return
    got, got_rows, path = answer(fast, body)
    assert [(p["id"], p["prediction"]) for p in got["predictions"]] == [
        (p["id"], p["prediction"]) for p in expected["predictions"]]
    for mine, theirs in zip(got["predictions"], expected["predictions"], strict=True):
        assert mine["prediction"] == theirs["prediction"]
        np.testing.assert_allclose(list(mine["probabilities"].values()), list(theirs["probabilities"].values()),
                                   rtol=1e-9)
    assert got.get("ignored_columns") == expected.get("ignored_columns")
    assert got_rows == expected_rows
    if name in ("as sent", "integers as floats", "missing text in every row", "unknown categories"):
        assert path == "arrays"


def test_a_row_with_missing_text_is_imputed_whatever_the_other_rows_hold():
    model = titanic_pipeline().fit(TITANIC[NUMERIC + CATEGORICAL], TITANIC["Survived"])
    plain = served(model, NUMERIC + CATEGORICAL, TYPES, fast=False)
    row = {"Pclass": 3, "Sex": None, "Age": 30.0, "SibSp": 0, "Parch": 0, "Fare": 8.0, "Embarked": None}
    other = {"Pclass": 1, "Sex": "female", "Age": 40.0, "SibSp": 0, "Parch": 0, "Fare": 80.0, "Embarked": "C"}
    alone = answer(plain, {"data": [row]})[0]["predictions"][0]
    beside = answer(plain, {"data": [row, other]})[0]["predictions"][0]
    assert alone == beside
    frame = pd.DataFrame([row]).astype({"Sex": object, "Embarked": object}).fillna(np.nan)
    assert alone["probabilities"]["1"] == pytest.approx(model.predict_proba(frame)[0, 1], rel=1e-12)


def test_errors_are_worded_by_the_frame_path():
    model = titanic_pipeline().fit(TITANIC[NUMERIC + CATEGORICAL], TITANIC["Survived"])
    fast = served(model, NUMERIC + CATEGORICAL, TYPES, fast=True)
    rows = titanic_records(3)
    with pytest.raises(InvalidInput, match=r"row 1 \(id 1\), column 'Age': expected a number"):
        answer(fast, {"data": [r if i != 1 else dict(r, Age="old") for i, r in enumerate(rows)]})
    with pytest.raises(InvalidInput, match="missing column"):
        answer(fast, {"data": [{k: v for k, v in r.items() if k != "Fare"} for r in rows]})
    with pytest.raises(InvalidInput, match="expected a finite number"):
        answer(fast, {"data": [dict(r, Fare=math.inf) for r in rows]})


@pytest.mark.parametrize("fast", [True, False])
def test_a_fractional_number_in_an_integer_column_is_refused_and_integers_as_floats_are_not(fast):
    model = titanic_pipeline().fit(TITANIC[NUMERIC + CATEGORICAL], TITANIC["Survived"])
    server = served(model, NUMERIC + CATEGORICAL, TYPES, fast=fast)
    rows = titanic_records(3)
    for bad in (3.5, "2.5"):
        with pytest.raises(InvalidInput, match=rf"row 2 \(id 2\), column 'Pclass': expected an integer, got {bad!r}"):
            answer(server, {"data": [r if i != 2 else dict(r, Pclass=bad) for i, r in enumerate(rows)]})
    as_floats = answer(server, {"data": [dict(r, Pclass=float(r["Pclass"])) for r in rows]})[0]
    assert as_floats["predictions"] == answer(server, {"data": rows})[0]["predictions"]


def test_mlflow_payloads_answer_the_same_with_and_without_the_fast_path():
    model = titanic_pipeline().fit(TITANIC[NUMERIC + CATEGORICAL], TITANIC["Survived"])
    fast = served(model, NUMERIC + CATEGORICAL, TYPES, fast=True)
    plain = served(model, NUMERIC + CATEGORICAL, TYPES, fast=False)
    records = [{k: r[k] for k in NUMERIC + CATEGORICAL} for r in titanic_records(9)]
    split = {"columns": NUMERIC + CATEGORICAL, "data": [list(r.values()) for r in records]}
    for body in ({"dataframe_records": records}, {"instances": records}, {"dataframe_split": split},
                 {"inputs": {c: [r[c] for r in records] for c in NUMERIC + CATEGORICAL}}):
        got, expected = answer(fast, body), answer(plain, body)
        assert got[0]["predictions"] == expected[0]["predictions"]
        np.testing.assert_allclose([list(p.values()) for p in got[0]["probabilities"]],
                                   [list(p.values()) for p in expected[0]["probabilities"]], rtol=1e-9)
        assert got[1] == expected[1]


# -- whole columns at once: the vectorised one-hot and imputer paths give what value-by-value lookups give ----------
def onehot_step(categories: list[list[Any]], **options: Any) -> Any:
    """A fitted encoder over one column per category list, compiled."""
    frame = pd.DataFrame({f"c{i}": cats for i, cats in enumerate(categories)})
    return steps.transformer(OneHotEncoder(**options).fit(frame))


COLUMN_CASES: list[tuple[list[Any], np.ndarray]] = [  # each at least steps.FACTORIZE_FROM rows: factorized
    (["female", "male"], np.array(["male", np.nan, "female", "other", "male"] * 60, dtype=object)),
    (["C", "Q", "S", np.nan], np.array(["S", np.nan, "Q", "Z", "C"] * 60, dtype=object)),
    ([1, 2, 3], np.array([1.0, 2.0, 3.0, np.nan, 7.0, -0.0, 2.5] * 40)),
    ([0, 1], np.array([0.0, -0.0, 1.0, np.nan] * 70)),
    ([1.5, 2.5, np.nan], np.array([1.5, np.nan, 2.5, 3.5] * 70)),
    (["a", "b"], np.array([np.nan] * 300, dtype=object)),
    (["a", "b", np.nan], np.array(["b", "a"] * 150, dtype=object)),
]



@pytest.mark.parametrize("drop", [None, "first"])
@pytest.mark.parametrize("categories, column", COLUMN_CASES)
def test_vectorised_one_hot_encoding_matches_scikit_learn(categories, column, drop):
    encoder = OneHotEncoder(handle_unknown="ignore", drop=drop).fit(pd.DataFrame({"c": categories}))
    step = steps.transformer(encoder)
    expected = encoder.transform(pd.DataFrame({"c": pd.Series(column, dtype=column.dtype)})).toarray()
    got = np.column_stack(step([column]))
    np.testing.assert_array_equal(got, expected)
    feature = steps._Categories(list(encoder.categories_[0]), None if drop is None else encoder.drop_idx_[0])
    assert len(column) >= steps.FACTORIZE_FROM
    np.testing.assert_array_equal(feature.codes(column), feature._codes_one_by_one(column))
    few = column[:7]  # a request's few rows take the lookups one by one, with the same answers
    np.testing.assert_array_equal(np.column_stack(step([few])), expected[:7])


@pytest.mark.parametrize("column", [
    np.array(["red", 1.5, "blue"], dtype=object),  # a number in a text column
    np.array(["red", "green", True], dtype=object),  # a boolean
])
@pytest.mark.parametrize("repeat", [1, 100])
def test_values_of_another_kind_than_the_categories_go_to_scikit_learn(column, repeat):
    with pytest.raises(compiled.Unsupported, match="another type"):
        onehot_step([["blue", "green", "red"]], handle_unknown="ignore")([np.tile(column, repeat)])


def test_unknown_or_missing_values_under_handle_unknown_error_go_to_scikit_learn():
    step = onehot_step([["blue", "red"]])
    assert np.column_stack(step([np.array(["red", "blue"] * 100, dtype=object)])).sum() == 200
    for column in (np.array(["red", "pink"] * 100, dtype=object), np.array(["red", np.nan], dtype=object),
                   np.array([1.0, 2.0])):
        with pytest.raises(compiled.Unsupported):
            step([column])


def test_vectorised_imputation_of_text_matches_scikit_learn():
    column = np.array(["S", np.nan, "Q", "C", np.nan] * 40, dtype=object)
    imputer = SimpleImputer(strategy="most_frequent").fit(pd.DataFrame({"c": column}))
    (filled,) = steps.transformer(imputer)([column])
    assert filled.tolist() == imputer.transform(pd.DataFrame({"c": column}))[:, 0].tolist()
    assert column[1] != column[1]  # the input is left as it was
    mixed = np.array(["S", np.nan, None], dtype=object)  # None is not NaN here: left to the model's check
    assert steps.transformer(imputer)([mixed])[0].tolist() == ["S", imputer.statistics_[0], None]


def test_a_large_chunk_answers_as_scikit_learn_with_missing_and_unknown_values():
    model, frame = fitted("titanic")
    predictor = compiled.compile_model(model, None)
    rng = np.random.default_rng(1)
    big = frame.sample(20_000, replace=True, random_state=1).reset_index(drop=True)
    big["Sex"] = big["Sex"].astype(object)
    big["Embarked"] = big["Embarked"].astype(object)
    big.loc[rng.random(len(big)) < 0.05, "Sex"] = np.nan
    big.loc[rng.random(len(big)) < 0.05, "Embarked"] = "Z"
    big.loc[rng.random(len(big)) < 0.05, "Pclass"] = 4
    assert_same_as_sklearn(model, predictor, big)
    as_text = big.astype({"Sex": "str", "Embarked": "str"})  # pandas' own text dtype, as Parquet reads give
    assert_same_as_sklearn(model, predictor, as_text)
