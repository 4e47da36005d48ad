"""Which engine scores tree models fastest for a request's few rows, with the same answers: measured in-process.

For the titanic pipeline ending in a RandomForest (100 trees, depth 8) and in a HistGradientBoosting model
(100 iterations), the final estimator alone on its preprocessed input (the steps before it are the same for
every engine), 1 and 100 rows, microseconds per call (best of 5 batches):

- scikit-learn, the whole pipeline on a DataFrame (what a plain server does);
- scikit-learn, the final estimator's predict_proba on the matrix (its input checks, then Cython, OpenMP for HGB);
- each tree's own Cython ``tree_.predict`` in a loop, no input checks (forests only);
- mlaas's numpy traversal (``mlaas/inference/trees.py``): all trees, all rows, one level per step;
- ONNX Runtime on the skl2onnx conversion (float32, as it converts by default), when importable.

Parity: largest relative difference of the probabilities from scikit-learn's, and whether the labels agree.
Run: python bench/bench_trees.py. ONNX Runtime is no dependency of mlaas: the first run installs it with pip into
bench/.venv-onnx (``pip install --target bench/.venv-onnx --no-deps`` of ONNX_PACKAGES below) and imports it from
there; ``--no-onnx`` leaves it out (said in the table's title).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import common
import numpy as np
from threadpoolctl import threadpool_limits


def per_call_us(fn: Callable[[], Any], calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


ONNX_PACKAGES = ["onnxruntime==1.32.0", "skl2onnx==1.20.0", "onnx==1.23.2", "protobuf==7.36.2",
                 "flatbuffers==25.12.19", "ml_dtypes==0.7.0"]
ONNX_DIR = common.ROOT / "bench" / ".venv-onnx"


def import_onnx() -> None:
    """Make onnxruntime and skl2onnx importable from bench/.venv-onnx, installing them there on the first run."""
    if not (ONNX_DIR / "skl2onnx").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", str(ONNX_DIR), "--no-deps", *ONNX_PACKAGES], check=True)
    sys.path.insert(0, str(ONNX_DIR))


def onnx_session(final: Any, width: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort
    from skl2onnx import to_onnx

    model = to_onnx(final, np.zeros((1, width), dtype=np.float32), options={id(final): {"zipmap": False}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(X: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([names[-1]], {session.get_inputs()[0].name: X.astype(np.float32)})[0])

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-onnx", action="store_true", help="leave ONNX Runtime out")
    args = parser.parse_args(argv)
    if not args.no_onnx:
        import_onnx()
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    from mlaas.inference import compiled
    from tests.integration.models import CATEGORICAL, NUMERIC, titanic_pipeline

    info = common.announce()
    train, test = common.titanic()
    features = NUMERIC + CATEGORICAL
    finals = {"RandomForest(100, depth 8)": RandomForestClassifier(100, max_depth=8, random_state=0),
              "HistGradientBoosting(100)": HistGradientBoostingClassifier(max_iter=100, random_state=0)}
    rows_out = []
    with threadpool_limits(1):  # one thread per process, as the API's workers run on 2 cores
        for label, final in finals.items():
            pipeline = titanic_pipeline().set_params(clf=final).fit(train[features], train["Survived"])
            predictor, why = compiled.build(pipeline, features)
            assert predictor is not None, why
            head = predictor.head
            onnx, onnx_failure = None, ""
            if not args.no_onnx:
                try:
                    onnx = onnx_session(final, head.width)
                except Exception as exc:  # the converter refuses this model: that is a result, shown in the table
                    onnx_failure = f"conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            for n in (1, 100):
                frame = test[features].head(n)
                X = np.asarray(pipeline[:-1].transform(frame), dtype=np.float64)
                expected = final.predict_proba(X)
                engines: dict[str, Callable[[], Any]] = {
                    "sklearn pipeline (DataFrame)": lambda f=frame, p=pipeline: p.predict_proba(f),
                    "sklearn estimator (matrix)": lambda x=X, e=final: e.predict_proba(x),
                    "numpy traversal (mlaas)": lambda x=X, h=head: h(x),
                }
                if hasattr(final, "estimators_"):
                    X32 = X.astype(np.float32)

                    def loop(x: np.ndarray = X32, trees: Any = final.estimators_) -> np.ndarray:
                        return sum(t.tree_.predict(x).reshape(len(x), -1) for t in trees) / len(trees)

                    engines["Cython tree_.predict loop"] = loop
                if onnx is not None:
                    engines["ONNX Runtime (float32)"] = lambda x=X, o=onnx: o(x)
                elif onnx_failure:
                    rows_out.append([label, n, "ONNX Runtime (float32)", onnx_failure, "-", "-"])
                calls = 200 if n == 1 else 50
                for engine, fn in engines.items():
                    got = fn()
                    got = got[1] if isinstance(got, tuple) else got
                    rel = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)))
                    same = np.argmax(got, axis=1).tolist() == np.argmax(expected, axis=1).tolist()
                    rows_out.append([label, n, engine, common.fmt(per_call_us(fn, calls), 1), f"{rel:.1e}",
                                     "yes" if same else "NO"])
                    print(rows_out[-1], flush=True)
    title = "Tree engines, in-process, one thread: microseconds per call" + (
        " (ONNX Runtime left out: --no-onnx)" if args.no_onnx else "")
    table = common.print_table(title,
                               ["model", "rows", "engine", "us/call", "max rel. diff of proba", "labels equal"],
                               rows_out)
    common.save("trees", {"machine": info, "rows": rows_out, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
