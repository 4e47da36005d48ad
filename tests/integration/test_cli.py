"""The ``mlaas`` command against the real stack: a user's train → result → predict cycle, and its exit codes."""

from __future__ import annotations

import io
import json
import math
import re
import socket

import numpy as np
import pandas as pd
import pytest

from mlaas.client.cli import main
from mlaas.uris import S3Uri
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
@pytest.fixture
def model(settings, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[NUMERIC + CATEGORICAL], TRAIN["Survived"])
    return unique


def api_key(api) -> str | None:
    """The key the test stack's own client sends, if the stack requires keys."""
    bearer = api.session.headers.get("Authorization", "")
    return bearer.removeprefix("Bearer ") or None


@pytest.fixture
def mlaas(api, capsys, monkeypatch):
    """Run ``mlaas --url <stack> ARGS`` in-process, with the stack's key in MLAAS_API_KEY; (exit code, out, err)."""
    if api_key(api):
        monkeypatch.setenv("MLAAS_API_KEY", api_key(api))
    else:
        monkeypatch.delenv("MLAAS_API_KEY", raising=False)

    def run(*args: str, url: str = api.base_url) -> tuple[int, str, str]:
        capsys.readouterr()  # drop what fixtures printed (MLflow's run links)
        code = main(["--url", url, *args])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return run


def records(frame: pd.DataFrame) -> list[dict]:
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def test_train_wait_then_show_predict_and_list(mlaas, api, model, titanic, tmp_path):
    code, out, err = mlaas("train", "--model", model, "--dataset", titanic["train"],
                           "--data-config", titanic["data_config"], "--random-state", "7", "--wait")
    assert code == 0, err
    result = json.loads(out)
    assert (result["model"], result["version"], result["source_version"]) == (model, 2, 1)
    assert 0.5 < result["metrics"]["accuracy"] <= 1
    job_id = re.search(r"^submitted train job (\w+)$", err, re.MULTILINE).group(1)
    assert err.splitlines()[-1] == f"train {job_id[:8]}: succeeded done 100%"

    code, out, _ = mlaas("jobs", "show", job_id)
    shown = json.loads(out)
    assert code == 0 and shown["state"] == "succeeded" and shown["result"] == result
    code, out, _ = mlaas("jobs", "list", "--type", "train", "--limit", "50")
    assert code == 0 and any(line.split()[:3] == [job_id, "train", "succeeded"] for line in out.splitlines())

    rows = TEST.head(25).assign(id=lambda f: "p-" + f["PassengerId"].astype(str))
    rows.to_csv(tmp_path / "rows.csv", index=False)
    code, out, err = mlaas("predict", "--model", model, "--version", "2", str(tmp_path / "rows.csv"))
    assert code == 0, err
    got = pd.read_csv(io.StringIO(out))
    assert got["id"].tolist() == rows["id"].tolist()
    # The CLI's typed CSV rows score exactly as the same rows read by pandas and posted as JSON.
    direct = api.post("/inference", json={"model": model, "version": 2, "data": records(rows)}).json()
    assert got["prediction"].tolist() == [p["prediction"] for p in direct["predictions"]]
    np.testing.assert_allclose(got["probability_1"], [p["probabilities"]["1"] for p in direct["predictions"]])
    code, _, err = mlaas("predict", "--model", model, "--version", "2", str(tmp_path / "rows.csv"),
                         "--output", str(tmp_path / "out.csv"))
    assert code == 0 and f"wrote 25 predictions of {model} v2" in err
    assert pd.read_csv(tmp_path / "out.csv").equals(got)

    code, out, _ = mlaas("models", "list")
    assert code == 0
    assert [model, "1", "2", "2"] in [line.split()[:4] for line in out.splitlines()]


def test_evaluate_wait_prints_metrics(mlaas, model, titanic):
    code, out, err = mlaas("evaluate", "--model", model, "--version", "1", "--dataset", titanic["test"],
                           "--data-config", titanic["data_config"], "--wait")
    assert code == 0, err
    assert 0.5 < json.loads(out)["metrics"]["accuracy"] <= 1


def test_a_failed_job_exits_1_with_its_error(mlaas, ctx, model, titanic, unique):
    no_target = S3Uri(ctx.settings.datasets_bucket, f"cli/{unique}/no_target.csv")
    ctx.storage.put_bytes(no_target, TRAIN.drop(columns=["Survived"]).to_csv(index=False).encode())
    code, out, err = mlaas("train", "--model", model, "--dataset", str(no_target),
                           "--data-config", titanic["data_config"], "--wait")
    assert code == 1 and out == ""
    job_id = re.search(r"^submitted train job (\w+)$", err, re.MULTILINE).group(1)
    assert re.match(rf"error: job {job_id} failed: invalid_input: .*Survived", err.splitlines()[-1]), err


def test_api_errors_exit_3_and_an_unreachable_api_4(mlaas, unique, tmp_path):
    code, out, err = mlaas("models", "show", f"{unique}-missing")
    assert (code, out) == (3, "") and err.startswith("error: not_found: ") and err.count("\n") == 1
    TEST.head(3).to_csv(tmp_path / "rows.csv", index=False)
    code, _, err = mlaas("predict", "--model", f"{unique}-missing", str(tmp_path / "rows.csv"))
    assert code == 3 and err.startswith("error: not_found: ")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    code, _, err = mlaas("models", "list", url=f"http://127.0.0.1:{closed}")
    assert code == 4 and err.startswith("error: unavailable: cannot reach the mlaas API")


def test_a_missing_or_wrong_api_key_exits_3(mlaas, api, monkeypatch):
    assert api_key(api), "the test stack requires API keys (MLAAS_API_KEYS in TEST_SERVICE_ENV)"
    monkeypatch.delenv("MLAAS_API_KEY")
    code, out, err = mlaas("models", "list")
    assert (code, out) == (3, "") and err.startswith("error: unauthorized: ")
    code, _, err = mlaas("--api-key", "mlaas_not-a-key", "jobs", "list")
    assert code == 3 and err.startswith("error: unauthorized: ") and "not-a-key" not in err


def test_datasets_upload_and_list(mlaas, unique, tmp_path):
    local = tmp_path / "test.csv"
    TEST.to_csv(local, index=False)
    code, out, err = mlaas("datasets", "upload", str(local), f"cli/{unique}/test.csv")
    assert code == 0, err
    stored = json.loads(out)
    assert stored["uri"].endswith(f"/cli/{unique}/test.csv") and stored["size"] == local.stat().st_size
    code, _, err = mlaas("datasets", "upload", str(local), stored["uri"])
    assert code == 3 and err.startswith("error: conflict: ")
    assert mlaas("datasets", "upload", str(local), stored["uri"], "--overwrite")[0] == 0
    code, out, _ = mlaas("datasets", "list", "--prefix", f"cli/{unique}/")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == [stored["uri"]]


def test_drift_wait_and_model_references(mlaas, model, titanic):
    code, out, err = mlaas("drift", titanic["train"], titanic["test"], "--data-config", titanic["data_config"],
                           "--wait")
    assert code == 0, err
    assert json.loads(out)["verdict"] == "no drift"
    # MODEL@VERSION reaches the API as a model reference: this notebook version has no drift baseline.
    code, _, err = mlaas("drift", f"{model}@1", titanic["test"])
    assert code == 3 and "has no drift-data baseline" in err
