"""mlaas's drift engine against Evidently's DataDriftPreset on the same synthetic frames and methods.

20 columns (15 numerical, 5 categorical; 5 of them drift), 10k, 100k and 1M rows per side. Each
engine runs in a fresh process (bench/drift_worker.py) that reads the same Parquet files, then times
the comparison from the frames in memory to the per-column verdicts and records its peak memory above
the size it had with the frames loaded. Evidently 0.7 needs pandas 2, so it runs in its own virtual
environment, bench/.venv-evidently, which this script creates with pip (benchmark only, not a
dependency of mlaas). Evidently is skipped where the previous size predicts more than 5 minutes.

Run: python bench/bench_drift.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pandas as pd

EVIDENTLY_VENV = common.ROOT / "bench" / ".venv-evidently"
EVIDENTLY_PINS = ["evidently==0.7.23", "pandas==2.3.3"]
LIMIT_SECONDS = 300.0
NUMERICAL = [f"num_{i:02d}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
DRIFTED = {"num_00", "num_01", "num_02", "cat_0", "cat_3"}
# (numerical method, categorical method); None: each engine's defaults (the same rules).
# Where a method of the same name is defined differently in the two engines (column kind, method): why.
DIFFERENT_DEFINITIONS = {
    ("categorical", "chisquare"): "Evidently: goodness of fit of the current counts against the reference "
                                  "proportions; mlaas: two-sample test of homogeneity (chi2_contingency)",
    ("numerical", "chisquare"): "as for categorical columns",
    ("numerical", "psi"): "empty bins: Evidently puts min(non-empty share) / 1e6 there when that minimum is "
                          "<= 1e-4, mlaas floors every share at 1e-4",
    ("numerical", "hellinger"): "Evidently bins numbers by Sturges' rule over the distinct values (and per "
                                "value only on categorical columns); mlaas counts per value up to 20 distinct "
                                "values, else Sturges' bins over the pooled sample",
}
METHOD_SETS: list[tuple[str | None, str | None]] = [
    (None, None), ("ks", "chisquare"), ("anderson", "psi"), ("psi", "hellinger"), ("hellinger", "jensenshannon"),
]


def make_frame(n: int, seed: int, drifted: bool) -> pd.DataFrame:
    """Synthetic data; with ``drifted`` the columns in DRIFTED change, the others are fresh draws."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    shift = 1.0 if drifted else 0.0
    cols["num_00"] = rng.normal(0.3 * shift, 1.0, n)  # mean shift of 0.3 sd
    cols["num_01"] = rng.normal(5.0, 1.0 + 0.3 * shift, n)  # wider
    cols["num_02"] = rng.lognormal(0.2 * shift, 0.6, n)
    cols["num_03"] = rng.normal(100, 15, n)
    cols["num_04"] = rng.exponential(3.0, n)
    cols["num_05"] = rng.uniform(-1, 1, n)
    cols["num_06"] = rng.poisson(4, n).astype(float)  # ~15 distinct values: counted per value
    cols["num_07"] = rng.integers(0, 4, n).astype(float)  # 4 distinct values: tested as a category
    cols["num_08"] = rng.gamma(2.0, 2.0, n)
    cols["num_09"] = rng.standard_t(5, n)
    cols["num_10"] = rng.normal(0, 1, n).round(2)
    cols["num_11"] = rng.beta(2, 5, n)
    cols["num_12"] = rng.normal(-3, 0.5, n)
    cols["num_13"] = rng.lognormal(3, 1, n)
    cols["num_14"] = rng.normal(0, 10, n)
    for name in ("num_03", "num_08", "num_13"):  # some missing values
        cols[name][rng.random(n) < 0.03] = np.nan
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz") + [f"z{i}" for i in range(20)])
    p0 = np.array([0.5, 0.3, 0.2]) if not drifted else np.array([0.35, 0.35, 0.3])
    cols["cat_0"] = rng.choice(letters[:3], n, p=p0)
    cols["cat_1"] = rng.choice(letters[:5], n)
    cols["cat_2"] = rng.choice(letters[:10], n, p=np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())
    p3 = np.r_[np.full(30, 1 / 30), 0.0] if not drifted else np.r_[np.full(30, 0.8 / 30), 0.2]
    cols["cat_3"] = rng.choice(letters[:31], n, p=p3)  # a new category takes 20% of the current rows
    cols["cat_4"] = rng.choice(np.array(["yes", "no"]), n, p=[0.7, 0.3])
    frame = pd.DataFrame(cols)
    frame.loc[rng.random(n) < 0.02, "cat_1"] = None
    return frame


def ensure_evidently() -> Path:
    """bench/.venv-evidently with Evidently and pandas 2 (created once with pip)."""
    python = EVIDENTLY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import evidently, pandas; assert pandas.__version__.startswith('2.')"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {EVIDENTLY_VENV.relative_to(common.ROOT)} ({', '.join(EVIDENTLY_PINS)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *EVIDENTLY_PINS],
                   check=True, timeout=1200)
    subprocess.run(probe, check=True)
    return python


def run_worker(python: Path | str, engine: str, ref: Path, cur: Path, spec: dict[str, Any],
               timeout: float) -> dict[str, Any] | None:
    argv = [str(python), str(common.ROOT / "bench" / "drift_worker.py"), engine, str(ref), str(cur), json.dumps(spec)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{engine} failed: {exc.stderr[-3000:]}") from None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def definition(column: str, method: str) -> str | None:
    """Why the two engines compute ``method`` differently on this column, or None when they agree."""
    return DIFFERENT_DEFINITIONS.get(("numerical" if column in NUMERICAL else "categorical", method))


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    same_method = [c for c in ours if c in theirs and ours[c]["method"] == theirs[c]["method"]]
    differ = [c for c in same_method if ours[c]["drifted"] != theirs[c]["drifted"]]
    identical = [c for c in same_method if definition(c, ours[c]["method"]) is None]
    score_gaps = []
    for c in identical:
        a, b = ours[c]["score"], theirs[c]["score"]
        if a is not None and b is not None:
            score_gaps.append(abs(a - b) / max(abs(a), abs(b), 1e-300))
    return {"columns": len(ours), "same_method": len(same_method), "verdicts_equal": len(same_method) - len(differ),
            "identical_definition": len(identical),
            "identical_verdicts_equal": len([c for c in identical if c not in differ]),
            "differ": {c: {"mlaas": ours[c], "evidently": theirs[c]} for c in differ},
            "max_relative_score_gap": max(score_gaps) if score_gaps else None,
            "other_definition_scores": {c: [ours[c]["method"], ours[c]["score"], theirs[c]["score"]]
                                        for c in same_method if c not in identical},
            "other_method": {c: [ours[c]["method"], theirs.get(c, {}).get("method")] for c in ours
                             if c not in same_method}}


def label(method_set: tuple[str | None, str | None]) -> str:
    num, cat = method_set
    return "defaults" if num is None and cat is None else f"{num} / {cat}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--method-sizes", default="10000,100000", help="sizes at which every method set runs")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    method_sizes = {int(s) for s in args.method_sizes.split(",")}

    info = common.machine()
    print(f"machine: {info['cores']} cores, {info['cpu']}, load {info['load_at_start']}", flush=True)
    evidently = ensure_evidently()
    folder = common.RESULTS / "drift-data"
    folder.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    previous: tuple[int, float] | None = None  # (rows, Evidently seconds) of the last size it ran
    for n in sizes:
        ref_path, cur_path = folder / f"{n}-reference.parquet", folder / f"{n}-current.parquet"
        ref, cur = make_frame(n, 1, drifted=False), make_frame(n, 2, drifted=True)
        frames_mb = (ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()) / 2**20
        ref.to_parquet(ref_path)
        cur.to_parquet(cur_path)
        del ref, cur
        for method_set in METHOD_SETS if n in method_sizes else METHOD_SETS[:1]:
            spec = {"numerical": NUMERICAL, "categorical": CATEGORICAL, "num_method": method_set[0],
                    "cat_method": method_set[1], "num_threshold": 0.05 if method_set[0] == "anderson" else None}
            load = common.wait_quiet(max_wait=30)
            ours = run_worker(sys.executable, "mlaas", ref_path, cur_path, spec, timeout=LIMIT_SECONDS)
            assert ours is not None, "mlaas's engine took more than 5 minutes"
            predicted = previous[1] * n / previous[0] * 1.2 if previous else 0.0
            theirs = None
            skipped = None
            if predicted > LIMIT_SECONDS:
                skipped = f"predicted {predicted:.0f} s from {previous[1]:.0f} s at {previous[0]:,} rows"
            else:
                theirs = run_worker(evidently, "evidently", ref_path, cur_path, spec, timeout=LIMIT_SECONDS + 60)
                if theirs is None:
                    skipped = "stopped after 6 minutes"
                elif method_set == (None, None):
                    previous = (n, theirs["seconds"])
            run = {"rows": n, "methods": label(method_set), "frames_mb": frames_mb, "load": round(load, 2),
                   "mlaas": ours, "evidently": theirs, "evidently_skipped": skipped,
                   "agreement": agreement(ours["columns"], theirs["columns"]) if theirs else None}
            runs.append(run)
            print(f"  {n:>9,} rows {label(method_set):26s} mlaas {ours['seconds']:7.2f} s "
                  f"{ours['peak_mb']:7.0f} MB | evidently "
                  + (f"{theirs['seconds']:7.2f} s {theirs['peak_mb']:7.0f} MB" if theirs else f"skipped: {skipped}")
                  + f" | load {load:.2f}", flush=True)

    tables, checks = report(runs)
    common.save("drift", {"machine": info, "runs": runs, "targets": checks, "tables": tables,
                          "drifted_by_construction": sorted(DRIFTED)})
    return 0


def gap_text(agree: dict[str, Any] | None) -> str:
    gap = agree["max_relative_score_gap"] if agree else None
    return "-" if gap is None else f"{gap:.0e}"


def report(runs: list[dict[str, Any]]) -> tuple[list[str], dict[str, bool]]:
    rows = []
    for r in runs:
        ours, theirs, agree = r["mlaas"], r["evidently"], r["agreement"]
        rows.append([f"{r['rows']:,}", r["methods"], common.fmt(ours["seconds"], 3),
                     common.fmt(theirs["seconds"]) if theirs else "skipped",
                     common.fmt(theirs["seconds"] / ours["seconds"], 1) + "x" if theirs else "-",
                     common.fmt(ours["peak_mb"], 0), common.fmt(theirs["peak_mb"], 0) if theirs else "-",
                     common.fmt(r["frames_mb"], 0),
                     f"{agree['identical_verdicts_equal']}/{agree['identical_definition']}" if agree else "-",
                     gap_text(agree),
                     f"{agree['verdicts_equal'] - agree['identical_verdicts_equal']}/"
                     f"{agree['same_method'] - agree['identical_definition']}" if agree else "-",
                     r["load"]])
    tables = [common.print_table(
        "Drift: mlaas engine vs Evidently DataDriftPreset (time from frames in memory to verdicts; peak memory "
        "above the loaded frames)",
        ["rows/side", "methods (num / cat)", "mlaas s", "Evidently s", "speed-up", "mlaas peak MB",
         "Evidently peak MB", "both frames MB", "same verdicts (same definition)", "max score gap there",
         "same verdicts (same name, other definition)", "load"], rows)]
    differ_rows = []
    for r in runs:
        for column, d in ((r["agreement"] or {}).get("differ") or {}).items():
            differ_rows.append([f"{r['rows']:,}", r["methods"], column, d["mlaas"]["method"],
                                f"{d['mlaas']['score']:.3g} ({'drift' if d['mlaas']['drifted'] else 'no drift'})",
                                f"{d['evidently']['score']:.3g} "
                                f"({'drift' if d['evidently']['drifted'] else 'no drift'})",
                                "yes" if column in DRIFTED else "no",
                                definition(column, d["mlaas"]["method"]) or "same definition"])
    tables.append(common.print_table("Columns whose verdicts differ", ["rows/side", "methods", "column", "method",
                                     "mlaas", "Evidently", "drifted by construction", "why"], differ_rows))
    gap_rows = []
    for (kind, method), why in DIFFERENT_DEFINITIONS.items():
        gaps = [abs(ours - theirs) / max(abs(ours), abs(theirs), 1e-300)
                for r in runs for c, (m, ours, theirs) in ((r["agreement"] or {}).get("other_definition_scores")
                                                            or {}).items()
                if m == method and (c in NUMERICAL) == (kind == "numerical") and ours is not None]
        if gaps:
            gap_rows.append([method, kind, len(gaps), f"{max(gaps):.2g}", why])
    tables.append(common.print_table("Methods of the same name defined differently (scores compared anyway)",
                                     ["method", "columns", "comparisons", "max relative score gap", "difference"],
                                     gap_rows))
    checks: dict[str, bool] = {}
    for r in runs:
        if r["methods"] != "defaults":
            continue
        n = r["rows"]
        if r["evidently"] and n >= 100_000:
            faster = r["evidently"]["seconds"] >= 20 * r["mlaas"]["seconds"]
            checks[f"{n:,} rows: >= 20x faster than Evidently"] = faster
        checks[f"{n:,} rows: peak memory <= 2x the two frames"] = r["mlaas"]["peak_mb"] <= 2 * r["frames_mb"]
    for r in runs:
        agree = r["agreement"]
        if agree is None:
            continue
        key = f"{r['rows']:,} rows, {r['methods']}: identical verdicts where the method is defined the same"
        checks[key] = agree["identical_verdicts_equal"] == agree["identical_definition"]
    tables.append(common.print_table("Targets", ["target", "result"],
                                     [[k, common.verdict(v)] for k, v in checks.items()]))
    return tables, checks


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"\nbench_drift took {time.monotonic() - started:.0f} s")
    sys.exit(code)
