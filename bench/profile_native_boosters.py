"""Where a one-row and a 100-row request to a native-flavour XGBoost/LightGBM model spend their time, in process:
the server's own steps (parse, features, predict, response body) on a model loaded as the cache loads it, timed
(median of 200 after 20 warm-up requests) and then profiled with cProfile (100 requests).

Run: flock /tmp/mlaas-integration.lock env PYTHONPATH=$PWD python bench/profile_native_boosters.py
"""

import cProfile
import io
import json
import pstats
import tempfile
import time
import warnings

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

from mlaas.adapters.model_files import ModelLoader
from mlaas.inference import payload, predict, probes
from mlaas.inference.cache import ServedModel
from mlaas.settings import Settings
from tests.integration.models import CATEGORICAL, NUMERIC, as_categories

warnings.filterwarnings("ignore")
F = NUMERIC + CATEGORICAL
train = pd.read_csv("examples/data/titanic/titanic.csv")
test = pd.read_csv("examples/data/titanic/titanic_test.csv")
for flavor, model in (("xgboost", xgb.XGBClassifier(n_estimators=100, max_depth=6, enable_categorical=True)),
                      ("lightgbm", lgb.LGBMClassifier(n_estimators=100, num_leaves=31, verbose=-1))):
    model.fit(as_categories(train[F]), train["Survived"])
    folder = tempfile.mkdtemp() + "/m"
    getattr(mlflow, flavor).save_model(model, folder, pip_requirements=[flavor])
    est = ModelLoader(Settings()).load(folder, label=flavor).estimator
    served = ServedModel(name="m", version=1, estimator=est, columns=F, column_types={}, id_column=None,
                         classes=[0, 1], task="classification", load_seconds=0, source=None,  # type: ignore[arg-type]
                         one_pass=probes.labels_follow_proba(est, F, None))
    for n in (1, 100):
        body = json.loads(json.dumps({"dataframe_records": json.loads(test[F].head(n).to_json(orient="records"))}))
        def request(body: dict = body, served: ServedModel = served) -> dict:
            rows = payload.parse_rows(body, max_rows=10000)
            features, ignored = predict.prepare_features(rows, served)
            result = predict.predict(served, features, rows, ignored)
            return predict.response_body(served, rows, result)
        frame = predict.prepare_features(payload.parse_rows(body, max_rows=10000), served)[0]
        for _ in range(20):
            request()
        t, m = [], []
        for _ in range(200):
            s = time.perf_counter()
            request()
            t.append(time.perf_counter() - s)
        for _ in range(200):
            s = time.perf_counter()
            predict.model_outputs(est, frame, classifier=True, one_pass=served.one_pass)
            m.append(time.perf_counter() - s)
        print(f"{flavor} {n} rows: request {np.median(t) * 1e3:.3f} ms, "
              f"of which the model call {np.median(m) * 1e3:.3f} ms")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(100):
            request()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(14)
        print(out.getvalue()[-2600:])
