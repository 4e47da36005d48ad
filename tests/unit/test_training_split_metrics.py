import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from mlaas.datasets.config import DataConfig
from mlaas.errors import InvalidInput
from mlaas.training import promotion, scoring
from mlaas.training.retrain import split

CONFIG = DataConfig.parse(
    {"index_columns": ["id"], "target_column": "y", "numerical_features": ["a", "b"], "categorical_features": ["c"]}
)


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n),
        "c": rng.choice(["x", "y", "z"], size=n), "y": (rng.random(n) < 0.3).astype(int), "extra": 1,
    })


def test_split_sizes_are_shares_of_the_whole_and_rows_stay_paired():
    data = frame(1000)
    train, baseline, holdout = split(data, CONFIG, "classification", drift_fraction=0.1, test_fraction=0.2,
                                     random_state=0)
    assert (len(train), len(baseline), len(holdout)) == (700, 100, 200)
    together = pd.concat([train, baseline, holdout])
    assert sorted(together["id"]) == list(range(1000))
    merged = together.merge(data, on="id", suffixes=("", "_orig"))
    assert (merged["y"] == merged["y_orig"]).all() and (merged["a"] == merged["a_orig"]).all()
    assert "extra" not in train.columns


def test_split_is_stratified():
    data = frame(2000)
    _, baseline, holdout = split(data, CONFIG, "classification", drift_fraction=0.1, test_fraction=0.2,
                                 random_state=1)
    overall = data["y"].mean()
    assert abs(baseline["y"].mean() - overall) < 0.01
    assert abs(holdout["y"].mean() - overall) < 0.01


def test_split_without_holdout():
    train, baseline, holdout = split(frame(100), CONFIG, "regression", drift_fraction=0.1, test_fraction=0.0,
                                     random_state=0)
    assert (len(train), len(baseline), len(holdout)) == (90, 10, 0)


def test_split_refuses_fractions_leaving_no_training_rows():
    with pytest.raises(InvalidInput, match="at least 10%"):
        split(frame(100), CONFIG, "classification", drift_fraction=0.45, test_fraction=0.45, random_state=0)


def test_classification_metrics_equal_sklearn():
    data = frame(500)
    X, y = data[["a", "b"]], data["y"]
    model = LogisticRegression().fit(X, y)
    y_pred, proba, classes = scoring.predict(model, X, "classification")
    out = scoring.compute("classification", y, y_pred, proba, classes)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, y_pred))
    assert out["f1_macro"] == pytest.approx(skm.f1_score(y, y_pred, average="macro"))
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert out["log_loss"] == pytest.approx(skm.log_loss(y, proba))


def test_regression_metrics_and_undefined_mape():
    y = np.array([0.0, 1.0, 2.0])
    p = np.array([0.5, 1.0, 2.5])
    out = scoring.compute("regression", y, p)
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert out["mae"] == pytest.approx(1 / 3)
    assert "mape" not in out and out.undefined == {"mape": "the target is 0 in some rows"}


def test_gate_direction():
    assert scoring.is_better_or_equal("f1_macro", 0.8, 0.8)
    assert not scoring.is_better_or_equal("f1_macro", 0.79, 0.8)
    assert scoring.is_better_or_equal("rmse", 1.0, 1.1)
    assert not scoring.is_better_or_equal("rmse", 1.2, 1.1)


def _three_class_model() -> tuple[LogisticRegression, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    y = np.digitize(X["a"] + 0.5 * rng.normal(size=600), [-0.5, 0.5])  # classes 0, 1, 2
    return LogisticRegression().fit(X, y), X, y


def test_weighted_precision_and_recall_equal_sklearn():
    model, X, y = _three_class_model()
    y_pred, proba, classes = scoring.predict(model, X, "classification")
    out = scoring.compute("classification", y, y_pred, proba, classes)
    for name in ("precision", "recall", "f1"):
        fn = getattr(skm, f"{name}_score")
        assert out[f"{name}_weighted"] == pytest.approx(fn(y, y_pred, average="weighted", zero_division=0))
        assert out[f"{name}_macro"] == pytest.approx(fn(y, y_pred, average="macro", zero_division=0))
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert out.undefined == {}


def test_a_test_set_missing_a_class_gives_finite_json_metrics_over_the_classes_present():
    model, X, y = _three_class_model()
    keep = y != 2
    y_pred, proba, classes = scoring.predict(model, X[keep], "classification")
    out = scoring.compute("classification", y[keep], y_pred, proba, classes)
    expected = np.mean([skm.roc_auc_score(y[keep] == c, proba[:, c]) for c in (0, 1)])
    assert out["roc_auc"] == pytest.approx(expected)
    assert out["log_loss"] == pytest.approx(skm.log_loss(y[keep], proba, labels=classes))
    assert "NaN" not in json.dumps(out) and all(np.isfinite(list(out.values())))


def test_a_test_set_of_one_class_says_why_roc_auc_is_undefined_and_still_has_log_loss():
    data = frame(500)
    model = LogisticRegression().fit(data[["a", "b"]], data["y"])
    ones = data[data["y"] == 1]
    y_pred, proba, classes = scoring.predict(model, ones[["a", "b"]], "classification")
    out = scoring.compute("classification", ones["y"], y_pred, proba, classes)
    assert "roc_auc" not in out and out.undefined == {"roc_auc": "the test set has only class 1"}
    assert out["log_loss"] == pytest.approx(skm.log_loss(ones["y"], proba, labels=[0, 1]))
    assert json.loads(json.dumps(out)) == dict(out)


def test_the_gate_calls_an_undefined_primary_metric_undefined_not_worse():
    candidate = scoring.Metrics({"f1_macro": 0.9}, {"roc_auc": "the test set has only class 1"})
    decision = promotion.decide("roc_auc", candidate, {"roc_auc": 0.8, "f1_macro": 0.7}, 3)
    assert not decision.passed and decision.candidate is None
    assert decision.reason == "roc_auc is undefined for the candidate: the test set has only class 1"
    recorded_nan = promotion.decide("roc_auc", {"roc_auc": 0.9}, {"roc_auc": float("nan")}, 3)
    assert not recorded_nan.passed and "undefined for production v3" in recorded_nan.reason
    assert promotion.decide("roc_auc", {"roc_auc": 0.9}, {"roc_auc": 0.8}, 3).passed
    assert "worse" in promotion.decide("roc_auc", {"roc_auc": 0.7}, {"roc_auc": 0.8}, 3).reason
