"""A service shared by many keys, against the real stack: who may move production, who owns monitors and datasets,
what a job may read (allowed buckets, row limits), and bodies built to crash the parsers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from mlaas.uris import S3Uri, parse_uri
from tests.integration.conftest import JOBS_KEY, OTHER_JOBS_KEY, PROMOTE_KEY, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TITANIC = pd.read_csv("examples/data/titanic/titanic.csv")


@pytest.fixture
def model(settings, unique):
    register(settings, unique, titanic_pipeline(), TITANIC[NUMERIC + CATEGORICAL], TITANIC["Survived"])
    return unique


@pytest.fixture(scope="module")
def keys(stack):
    url = stack.config.url("api")
    return {"jobs": Api(url, JOBS_KEY), "other": Api(url, OTHER_JOBS_KEY), "promoter": Api(url, PROMOTE_KEY)}


def refused(response, status, fragment):
    assert response.status_code == status, response.text[:400]
    assert fragment in response.json()["message"], response.json()
    return response.json()


def retrain_monitor(model, titanic, promote=True):
    return {"model": model, "on_drift": {"retrain": {"dataset": titanic["train"], "data_config": titanic["data_config"],
                                                     "promote": promote}}}


# ---- promotion is an admin act -------------------------------------------------------------------

def test_every_request_that_may_move_production_needs_the_promote_scope(api, keys, model, titanic):
    jobs_key, promoter = keys["jobs"], keys["promoter"]
    train = {"model": model, "dataset": titanic["train"], "data_config": titanic["data_config"], "promote": True}
    evaluate = {"model": model, "dataset": titanic["test"], "data_config": titanic["data_config"], "promote": True}
    refused(jobs_key.post("/train", json=train), 403, "'promote' scope")
    refused(jobs_key.post("/evaluate", json=evaluate), 403, "'promote' scope")
    refused(jobs_key.post("/monitors", json=retrain_monitor(model, titanic)), 403, "on_drift.retrain.promote")
    refused(jobs_key.post(f"/models/{model}/promote", json={"version": 1}), 403, "'promote' scope")
    refused(jobs_key.post(f"/models/{model}/rollback"), 403, "'promote' scope")
    created = jobs_key.post("/monitors", json=retrain_monitor(model, titanic, promote=False))
    assert created.status_code == 201, created.text
    refused(jobs_key.request("PATCH", f"/monitors/{created.json()['id']}",
                             json={"on_drift": retrain_monitor(model, titanic)["on_drift"]}), 403, "'promote' scope")
    # the same request without promote is a jobs key's to make
    assert jobs_key.post("/evaluate", json={**evaluate, "promote": False}).status_code == 202
    # a promote key and an admin key may
    for key in (promoter, api):
        assert key.post("/train", json=train).status_code == 202
        assert key.post("/evaluate", json=evaluate).status_code == 202
        monitor = key.post("/monitors", json=retrain_monitor(model, titanic))
        assert monitor.status_code == 201, monitor.text
        assert key.request("PATCH", f"/monitors/{monitor.json()['id']}",
                           json={"on_drift": retrain_monitor(model, titanic)["on_drift"]}).status_code == 200
    for key in (promoter, api):  # past the scope check, to the registry: v1 is production already
        assert key.post(f"/models/{model}/promote", json={"version": 1}).json()["code"] == "conflict"


def test_the_gate_also_compares_on_productions_own_test_set(api, ctx, settings, model, titanic, unique):
    first = api.post("/train", json={"model": model, "dataset": titanic["train"], "data_config": titanic["data_config"],
                                     "random_state": 1})
    good = api.wait_job(first.json()["job_id"])
    assert good["state"] == "succeeded", good
    production = good["result"]["version"]  # production now records its own test set (its holdout)
    assert api.post(f"/models/{model}/promote", json={"version": production}).status_code == 200
    # poisoned: every label flipped, and a test set poisoned the same way, so the candidate wins on the caller's rows
    flipped = TITANIC.assign(Survived=1 - TITANIC["Survived"])
    uri = S3Uri(settings.datasets_bucket, f"{unique}/flipped.csv")
    ctx.storage.put_bytes(uri, flipped.to_csv(index=False).encode())
    poisoned = api.post("/train", json={"model": model, "dataset": str(uri), "test_dataset": str(uri),
                                        "data_config": titanic["data_config"], "promote": True, "random_state": 1})
    job = api.wait_job(poisoned.json()["job_id"])
    assert job["state"] == "succeeded", job
    decision = job["result"]["promotion"]
    assert not decision["promoted"], decision
    assert "on the job's test rows" in decision["reason"] and "at least as good" in decision["reason"]
    assert decision["production_test_set"]["passed"] is False, decision
    assert "worse than" in decision["production_test_set"]["reason"]
    assert api.get(f"/models/{model}").json()["production_version"] == production


# ---- ownership of monitors and datasets ----------------------------------------------------------

def test_monitors_are_seen_and_changed_only_by_the_key_that_made_them_and_admins(api, keys, model):
    owner, other = keys["jobs"], keys["other"]
    created = owner.post("/monitors", json={"model": model})
    assert created.status_code == 201, created.text
    monitor_id = created.json()["id"]
    assert created.json()["owner"] == "test-jobs"
    path = f"/monitors/{monitor_id}"
    assert monitor_id in [m["id"] for m in owner.get("/monitors").json()["monitors"]]
    assert monitor_id not in [m["id"] for m in other.get("/monitors").json()["monitors"]]
    refused(other.get(path), 404, monitor_id)
    refused(other.request("PATCH", path, json={"enabled": False}), 404, monitor_id)
    refused(other.post(f"{path}/run"), 404, monitor_id)
    refused(other.delete(path), 404, monitor_id)
    assert owner.get(path).json()["enabled"] is True  # the refused change did not happen
    assert monitor_id in [m["id"] for m in api.get("/monitors").json()["monitors"]]  # admin sees all
    assert api.request("PATCH", path, json={"enabled": False}).json()["owner"] == "test-jobs"  # and keeps the owner
    assert owner.delete(path).status_code == 204
    refused(owner.get(path), 404, monitor_id)


def test_a_dataset_is_replaced_and_listed_only_by_its_owner_and_admins(api, keys, unique):
    owner, other = keys["jobs"], keys["other"]
    key = f"{unique}/mine.csv"
    put = owner.request("PUT", f"/datasets/{key}", data=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"})
    assert put.status_code == 201, put.text
    for params in ({"overwrite": "true"}, {}):
        refused(other.request("PUT", f"/datasets/{key}", params=params, data=b"a,b\n6,6\n",
                              headers={"Content-Type": "text/csv"}), 403, "belongs to another key")
    listed = {k: [d["uri"] for d in api_.get("/datasets", params={"prefix": f"{unique}/"}).json()["datasets"]]
              for k, api_ in (("owner", owner), ("other", other), ("admin", api))}
    assert listed == {"owner": [put.json()["uri"]], "other": [], "admin": [put.json()["uri"]]}
    again = owner.request("PUT", f"/datasets/{key}", params={"overwrite": "true"}, data=b"a,b\n3,4\n",
                          headers={"Content-Type": "text/csv"})
    assert again.status_code == 201 and again.json()["sha256"] != put.json()["sha256"]


def test_a_job_reads_another_keys_upload_only_through_an_admin_key(api, keys, model, titanic, unique):
    owner, other = keys["jobs"], keys["other"]
    train = (Path("examples/data/titanic/titanic.csv")).read_bytes()
    put = owner.request("PUT", f"/datasets/{unique}/train.csv", data=train, headers={"Content-Type": "text/csv"})
    assert put.status_code == 201, put.text
    mine = put.json()["uri"]
    requests = {
        "/train": {"model": model, "dataset": mine, "data_config": titanic["data_config"]},
        "/evaluate": {"model": model, "dataset": mine, "data_config": titanic["data_config"]},
        "/data-drift": {"reference": titanic["train"], "current": mine, "data_config": titanic["data_config"]},
        "/batch-inference": {"model": model, "dataset": mine},
    }
    for path, body in requests.items():
        field = "current" if path == "/data-drift" else "dataset"
        refused(other.post(path, json=body), 403, f"{field}: {mine} belongs to another key")
    monitor = {"model": model, "on_drift": {"retrain": {"dataset": mine, "data_config": titanic["data_config"]}}}
    refused(other.post("/monitors", json=monitor), 403, f"on_drift.retrain.dataset: {mine} belongs to another key")
    # the owner, an admin key, and anyone for an object put there without the API (the fixtures) may read them
    for caller in (owner, api):
        accepted = caller.post("/data-drift", json=requests["/data-drift"])
        assert accepted.status_code == 202, accepted.text
    assert other.post("/data-drift", json={**requests["/data-drift"], "current": titanic["test"]}).status_code == 202
    job = owner.wait_job(owner.post("/evaluate", json=requests["/evaluate"]).json()["job_id"])
    assert job["state"] == "succeeded", job


# ---- bounded work, and URIs from tags ------------------------------------------------------------

def test_a_parquet_dataset_over_the_row_limit_fails_too_large_from_its_footer(api, ctx, settings, titanic, unique):
    rows = settings.max_dataset_rows + 1
    table = pa.table({"Age": pa.array(np.zeros(rows, dtype=np.int8))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=1 << 22)
    assert len(buffer.getvalue()) < 1024 * 1024  # a small file that decodes to millions of rows
    uri = S3Uri(settings.datasets_bucket, f"{unique}/many.parquet")
    ctx.storage.put_bytes(uri, buffer.getvalue())
    response = api.post("/data-drift", json={"reference": str(uri), "current": titanic["test"],
                                             "columns": {"numerical": ["Age"]}})
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["job_id"])
    assert job["state"] == "failed" and job["error"]["code"] == "too_large", job
    # the footer's count, so the rows were never decoded
    assert job["error"]["message"] == (f"reference: {uri} has {rows} rows, more than the limit of "
                                       f"{settings.max_dataset_rows}")


def test_uris_in_model_version_tags_outside_the_allowed_buckets_are_refused(api, ctx, settings, model, titanic):
    ctx.storage.ensure_buckets(("someone-elses-bucket",))
    for name in ("train.csv", "data_config.yaml"):
        source = parse_uri(titanic["train" if name == "train.csv" else "data_config"])
        ctx.storage.put_bytes(S3Uri("someone-elses-bucket", f"planted/{name}"), ctx.storage.get_bytes(source))
    client = MlflowClient(settings.mlflow_tracking_uri)
    for tag, value in (("dataset", "s3://someone-elses-bucket/planted/train.csv"),
                       ("test_dataset", "s3://someone-elses-bucket/planted/train.csv"),
                       ("data_config", "s3://someone-elses-bucket/planted/data_config.yaml"),
                       ("drift-data", "s3://someone-elses-bucket/planted/train.csv")):
        client.set_model_version_tag(model, "1", tag, value)
    refused(api.post("/train", json={"model": model, "version": 1}), 400, "not one mlaas may use")
    refused(api.post("/evaluate", json={"model": model, "version": 1}), 400, "not one mlaas may use")
    refused(api.post("/data-drift", json={"reference": {"model": model, "version": 1}, "current": titanic["test"]}),
            400, "not one mlaas may use")


# ---- hostile bodies ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, content_type, body", [
    ("json", "application/json", b"[" * 100_000 + b"]" * 100_000),
    ("json", "application/json", b'{"a": ' * 100_000 + b"1" + b"}" * 100_000),
    ("yaml", "application/yaml", b"[" * 100_000 + b"]" * 100_000),
    ("yaml", "application/yaml", b"{a: " * 100_000 + b"1" + b"}" * 100_000),
], ids=["json-array", "json-object", "yaml-sequence", "yaml-mapping"])
def test_a_deeply_nested_config_upload_is_a_400(api, unique, suffix, content_type, body):
    response = api.request("PUT", f"/datasets/{unique}/deep.{suffix}", data=body,
                           headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/problem+json")


def test_events_recorded_at_once_all_stay_in_the_promotion_history(ctx, model):
    from concurrent.futures import ThreadPoolExecutor

    from mlaas.training import promotion

    events = [{"event": "rollout_changed", "rollout_id": f"r{i}", "candidate": 2, "production": 1} for i in range(8)]
    with ThreadPoolExecutor(8) as pool:  # eight writers read, extend and write the same tag at once
        list(pool.map(lambda e: promotion.append_history(ctx, model, e), events))
    recorded = {e.get("rollout_id") for e in promotion.promotion_history(ctx, model)}
    assert {e["rollout_id"] for e in events} <= recorded
