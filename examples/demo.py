"""The main job, end to end, against the local stack: upload data, register a model, retrain it.

Run by ``make demo`` after ``make up``; reads the stack's addresses from .stack/stack.env.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlaas.adapters.storage import open_store  # noqa: E402
from mlaas.errors import NotFound  # noqa: E402
from mlaas.settings import Settings  # noqa: E402
from mlaas.uris import S3Uri  # noqa: E402

DATA = ROOT / "examples" / "data" / "titanic"
PREFIX = "demo/titanic"


def load_stack_env() -> None:
    env_file = Path(os.environ.get("MLAAS_STACK_DIR", ROOT / ".stack")) / "stack.env"
    if not env_file.exists():
        sys.exit(f"{env_file} not found: run `make up` first")
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            os.environ.setdefault(key.strip().removeprefix("export "), value.strip().strip("'\""))


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def call(method: str, path: str, **kwargs: Any) -> requests.Response:
    url = os.environ["MLAAS_API_URL"].rstrip("/") + path
    headers = {"Authorization": f"Bearer {os.environ['MLAAS_API_KEY']}"} if os.environ.get("MLAAS_API_KEY") else {}
    return requests.request(method, url, timeout=60, headers=headers, **kwargs)


def wait_for_job(job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        job = call("GET", f"/jobs/{job_id}").json()
        shown = (job["state"], job["progress"].get("step"))
        if shown != last:
            progress = job["progress"]
            print(f"   {job['state']:<10} {progress.get('step', ''):<15} {progress.get('percent', 0):>3}%")
            last = shown
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    sys.exit(f"job {job_id} did not finish in {timeout} s")


def run_job(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit a job, follow its steps, and return its result (or stop with its error)."""
    response = call("POST", path, json=body)
    print(f"   {response.status_code} job {response.json().get('job_id', response.json())}")
    response.raise_for_status()
    job = wait_for_job(response.json()["job_id"])
    if job["state"] != "succeeded":
        sys.exit(f"{path} failed: {json.dumps(job['error'])}")
    return dict(job["result"])


def main() -> None:
    load_stack_env()
    settings = Settings.from_env()
    store = open_store(settings)

    step("Upload the demo data set and its data config to blob storage")
    uris = {}
    for local, name in (("titanic.csv", "train.csv"), ("titanic_test.csv", "test.csv"),
                        ("data_config.yaml", "data_config.yaml")):
        uri = S3Uri(settings.datasets_bucket, f"{PREFIX}/{name}", settings.storage_scheme)
        store.put_bytes(uri, (DATA / local).read_bytes())
        uris[name] = str(uri)
        print(f"   {uri}")

    step("A data scientist registers a first model from a notebook (tagged stage=prod)")
    from mlaas.adapters.registry import MlflowRegistry

    registry = MlflowRegistry(settings)
    try:
        prod = registry.resolve("titanic")
        print(f"   titanic already has a production version: v{prod.version}")
    except NotFound:
        subprocess.run([sys.executable, str(ROOT / "examples" / "train_notebook_model.py"), uris["train.csv"],
                        uris["data_config.yaml"]], check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
                           "PYTHONPATH")]))})

    step("POST /train: retrain the production model on the data in storage, promote if at least as good")
    body = {"model": "titanic", "dataset": uris["train.csv"], "data_config": uris["data_config.yaml"],
            "test_dataset": uris["test.csv"], "promote": True, "random_state": 42}
    result = run_job("/train", body)
    print(f"   new version: {result['model']} v{result['version']} (from v{result['source_version']}), "
          f"run {result['run_name']}")
    scores = ", ".join(f"{k}={v:.3f}" for k, v in result["metrics"].items())
    print(f"   metrics on the {result['test_set']}: {scores}")
    print(f"   drift baseline: {result['drift_data']}")
    promotion = result["promotion"]
    print(f"   promoted: {promotion['promoted']} ({promotion.get('reason', '')})")

    new_version = result["version"]
    test = pd.read_csv(DATA / "titanic_test.csv").head(5)
    step(f"POST /inference: score {len(test)} passengers with v{new_version} (ids paired with predictions)")
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} | {"id": f"passenger-{row['PassengerId']}"}
               for row in test.drop(columns=["Survived"]).to_dict(orient="records")]
    response = call("POST", "/inference", json={"model": "titanic", "version": new_version, "data": records})
    response.raise_for_status()
    for item in response.json()["predictions"]:
        print(f"   {item['id']:<16} survived={item['prediction']}  p={item['probabilities']['1']:.3f}")
    print(f"   columns the model does not use were ignored: {response.json().get('ignored_columns')}")

    step(f"POST /evaluate: v{new_version} against v{result['source_version']}, the version it was retrained from")
    evaluation = run_job("/evaluate", {"model": "titanic", "version": new_version, "dataset": uris["test.csv"],
                                       "data_config": uris["data_config.yaml"],
                                       "compare_with": result["source_version"]})
    print("   " + ", ".join(f"{k}={v:.3f}" for k, v in evaluation["metrics"].items()))
    if "comparison" in evaluation:
        print(f"   against v{evaluation['comparison']['challenger_version']}: {evaluation['comparison']['reason']}")
    print(f"   run {evaluation['run_name']}: confusion matrix and ROC curve are artifacts in MLflow")

    step("POST /data-drift: the test set against the training set, column by column")
    drift = run_job("/data-drift", {"reference": uris["train.csv"], "current": uris["test.csv"],
                                    "data_config": uris["data_config.yaml"]})
    print(f"   verdict: {drift['verdict']} ({drift['share_drifted']:.0%} of columns drifted: "
          f"{', '.join(drift['drifted_columns']) or 'none'})")
    report = call("GET", drift["report_url"])
    report.raise_for_status()
    saved = Path(os.environ.get("MLAAS_STACK_DIR", ROOT / ".stack")) / "reports" / f"{drift['run_name']}.html"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(report.content)
    print(f"   HTML report: {saved}  (also GET {drift['report_url']} and the MLflow run {drift['run_name']})")

    step("GET /jobs: recent jobs")
    listing = call("GET", "/jobs?limit=5").json()
    for item in listing["jobs"]:
        print(f"   {item['job_id']} {item['type']:<8} {item['state']:<10} {item['created_at']}")
    print("\nDemo finished.")
    print(f"   API docs:  {os.environ['MLAAS_API_URL']}/docs")
    print(f"   MLflow UI: {os.environ.get('MLAAS_MLFLOW_TRACKING_URI', '')}")
    print("   The API key is MLAAS_API_KEY in .stack/stack.env; stop everything with `make down`.")


if __name__ == "__main__":
    main()
