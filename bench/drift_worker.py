"""One drift comparison in a fresh process, for bench_drift.py: mlaas's engine or Evidently's DataDriftPreset.

Usage: drift_worker.py mlaas|evidently REFERENCE.parquet CURRENT.parquet SPEC_JSON

SPEC_JSON: {"numerical": [...], "categorical": [...], "num_method": str|null, "cat_method": str|null,
"num_threshold": float|null}. Both engines are timed warm: every module the comparison uses is imported,
and the same comparison is run once on the first WARM_ROWS rows of each frame, before the clock starts.
Prints one JSON line: seconds from the two frames in memory to the per-column verdicts, peak memory above
the process's size with the frames loaded (after the warm-up), and per column the method, score and
verdict. Runs in the project's environment (mlaas) or in bench/.venv-evidently.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

# Evidently's direction per method: p-value tests drift below the threshold, distances at or above it.
P_VALUE_METHODS = {"ks", "chisquare", "z", "anderson", "t_test", "mannw", "fisher_exact", "g_test", "cramer_von_mises"}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> int:
    """Reset the peak resident size to the current one (Linux: clear_refs 5); returns the current size in kB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


WARM_ROWS = 2000
Engine = Callable[[pd.DataFrame, pd.DataFrame, dict[str, Any]], dict[str, Any]]


def load_mlaas() -> Engine:
    """mlaas's engine, its modules imported."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mlaas.drift import ColumnOptions, ColumnSpec, compare

    def run_mlaas(ref: pd.DataFrame, cur: pd.DataFrame, spec: dict[str, Any]) -> dict[str, Any]:
        overrides = {}
        for kind, method_key in (("numerical", "num_method"), ("categorical", "cat_method")):
            if spec.get(method_key):
                threshold = spec.get("num_threshold") if kind == "numerical" else None
                overrides.update({c: ColumnOptions(method=spec[method_key], threshold=threshold) for c in spec[kind]})
        report = compare(ref, cur, ColumnSpec(spec["numerical"], spec["categorical"]), overrides=overrides).to_dict()
        return {c["column"]: {"method": c["method"], "drifted": c["drifted"],
                              "score": c["p_value"] if c["p_value"] is not None else c["statistic"]}
                for c in report["columns"]}

    return run_mlaas


def load_evidently() -> Engine:
    """Evidently's DataDriftPreset, its modules imported."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.presets import DataDriftPreset

    def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, spec: dict[str, Any]) -> dict[str, Any]:
        # a column left to the defaults reports its test's display name ("Wasserstein distance (normed)")
        names = {t.display_name: name for name, by_type in _registered_stat_tests.items() for t in by_type.values()}

        definition = DataDefinition(numerical_columns=spec["numerical"], categorical_columns=spec["categorical"])
        preset = DataDriftPreset(num_method=spec.get("num_method"), cat_method=spec.get("cat_method"),
                                 num_threshold=spec.get("num_threshold"))
        snapshot = Report([preset]).run(Dataset.from_pandas(cur, data_definition=definition),
                                        Dataset.from_pandas(ref, data_definition=definition))
        out = {}
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            if not config.get("type", "").endswith("ValueDrift"):
                continue
            method, threshold, score = names.get(config["method"], config["method"]), config["threshold"], \
                float(metric["value"])
            drifted = (score <= threshold if method == "ks" else score < threshold) if method in P_VALUE_METHODS \
                else score >= threshold
            out[config["column"]] = {"method": method, "score": score, "drifted": bool(drifted)}
        return out

    return run_evidently


def main(argv: list[str]) -> int:
    engine, ref_path, cur_path, raw = argv
    spec = json.loads(raw)
    run = load_evidently() if engine == "evidently" else load_mlaas()
    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    run(ref.head(WARM_ROWS), cur.head(WARM_ROWS), spec)  # warm: lazy imports, caches, first-call set-up
    gc.collect()
    baseline_kb = reset_peak()
    started = time.perf_counter()
    columns = run(ref, cur, spec)
    seconds = time.perf_counter() - started
    peak_kb = _status_kb("VmHWM")
    frames_mb = (ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()) / 2**20
    print(json.dumps({"engine": engine, "seconds": seconds, "peak_mb": (peak_kb - baseline_kb) / 1024,
                      "rss_before_mb": baseline_kb / 1024, "frames_mb": frames_mb, "columns": columns}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
