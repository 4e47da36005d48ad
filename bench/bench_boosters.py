"""XGBoost and LightGBM model calls in process: mlaas's native loading against MLflow's own pyfunc model.

Both sides load the same model folder, saved with ``mlflow.xgboost`` / ``mlflow.lightgbm`` (titanic, 20
trees, text columns as categories), and score the same rows in the same process: mlaas the way
``POST /inference`` does (the labels and probabilities of the estimator ``ModelLoader`` gives, in one pass when
the load-time check finds the labels follow from the probabilities), the peer
``mlflow.pyfunc.load_model(...).predict`` (labels only). The answers are checked equal before timing. This is
the model call alone, not HTTP: the server benchmarks are bench/bench_inference.py.

Run: flock /tmp/mlaas-integration.lock python bench/bench_boosters.py [--repeat 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import common
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

from mlaas.adapters.model_files import ModelLoader
from mlaas.inference.predict import model_outputs
from mlaas.inference.probes import labels_follow_proba
from mlaas.settings import Settings

FEATURES = ["Age", "SibSp", "Parch", "Fare", "Pclass", "Sex", "Embarked"]


def per_call(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of one call over ``repeat`` calls (after 10 warm-up calls)."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return common.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    train = pd.read_csv(common.ROOT / "examples/data/titanic/titanic.csv")
    test = pd.read_csv(common.ROOT / "examples/data/titanic/titanic_test.csv")
    as_cat = {c: train[c].astype("category") for c in ("Sex", "Embarked")}
    models = {
        "xgboost": xgb.XGBClassifier(n_estimators=20, max_depth=3, enable_categorical=True),
        "lightgbm": lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1),
    }
    rows_out = []
    for flavor, model in models.items():
        model.fit(train[FEATURES].assign(**as_cat), train["Survived"])
        folder = tempfile.mkdtemp(prefix=f"bench-{flavor}-")
        getattr(mlflow, flavor).save_model(model, folder, pip_requirements=[flavor])
        ours = ModelLoader(Settings()).load(folder, label=flavor).estimator
        one_pass = labels_follow_proba(ours, FEATURES, None)  # as the model cache checks it at load
        peer = mlflow.pyfunc.load_model(folder)
        for n in (1, 100):
            X = test[FEATURES].head(n).assign(**{c: test[c].head(n).astype("category") for c in ("Sex", "Embarked")})
            raw = test[FEATURES].head(n)  # what the API hands the model: text as objects

            def call(m: Any = ours, raw: pd.DataFrame = raw, one_pass: bool = one_pass) -> Any:
                return model_outputs(m, raw, classifier=True, one_pass=one_pass)

            if not np.array_equal(call()[0], np.asarray(peer.predict(X)).reshape(-1)):
                raise SystemExit(f"{flavor}, {n} rows: mlaas and MLflow's pyfunc disagree")
            common.wait_quiet(max_wait=20)
            mine = per_call(call, args.repeat)
            theirs = per_call(lambda p=peer, X=X: p.predict(X), args.repeat)
            rows_out.append([f"{flavor}, one pass: {one_pass}", n, f"{mine * 1e3:.3f}", f"{theirs * 1e3:.3f}",
                             f"{theirs / mine:.2f}x"])
    common.print_table("model call, median ms (lower is better)",
                       ["flavour", "rows", "mlaas labels+proba", "mlflow pyfunc predict", "peer / mlaas"], rows_out)


if __name__ == "__main__":
    main()
