"""The adapters against the real servers: blob storage, the MLflow registry, the job store."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlaas.adapters.jobstore import JobStore
from mlaas.adapters.registry import MlflowRegistry, run_name
from mlaas.datasets.frames import read_config, read_frame, write_config, write_frame
from mlaas.errors import Conflict, NotFound
from mlaas.uris import S3Uri
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")


def test_storage_round_trips_and_errors(ctx, settings, unique):
    store = ctx.storage
    bucket = settings.datasets_bucket
    frame = TRAIN.head(50)
    write_frame(store, S3Uri(bucket, f"{unique}/part.parquet"), frame)
    store.put_bytes(S3Uri(bucket, f"{unique}/part.csv"), frame.to_csv(index=False).encode())
    write_config(store, S3Uri(bucket, f"{unique}/c.yaml"), {"target_column": "Survived", "numerical_features": ["Age"]})
    write_config(store, S3Uri(bucket, f"{unique}/c.json"), {"target_column": "Survived"})
    pd.testing.assert_frame_equal(read_frame(store, S3Uri(bucket, f"{unique}/part.parquet")).frame, frame)
    assert len(read_frame(store, S3Uri(bucket, f"{unique}/part.csv")).frame) == 50
    assert read_config(store, S3Uri(bucket, f"{unique}/c.yaml"))["numerical_features"] == ["Age"]
    assert read_config(store, S3Uri(bucket, f"{unique}/c.json")) == {"target_column": "Survived"}
    listed = sorted(o.uri.key.rsplit("/", 1)[1] for o in store.list(bucket, f"{unique}/"))
    assert listed == ["c.json", "c.yaml", "part.csv", "part.parquet"]
    assert store.exists(S3Uri(bucket, f"{unique}/part.csv"))
    assert not store.exists(S3Uri(bucket, f"{unique}/nothing.csv"))
    with pytest.raises(NotFound):
        store.get_bytes(S3Uri(bucket, f"{unique}/nothing.csv"))
    streamed = io.BytesIO(b"a,b\n" + b"1,2\n" * 10_000)
    store.put_stream(S3Uri(bucket, f"{unique}/s.csv"), streamed, length=-1, content_type="text/csv")
    assert store.stat(S3Uri(bucket, f"{unique}/s.csv")).size == 4 + 40_000


def test_registry_resolves_every_kind_of_reference(ctx, settings, unique):
    registry: MlflowRegistry = ctx.registry
    X, y = TRAIN[NUMERIC + CATEGORICAL], TRAIN["Survived"]
    register(settings, unique, titanic_pipeline(), X, y, stage=None)
    with pytest.raises(NotFound, match="no production version"):
        registry.resolve(unique)
    register(settings, unique, titanic_pipeline(C=0.1), X, y, stage="prod")
    register(settings, unique, titanic_pipeline(C=1.0), X, y, stage=None)
    assert registry.resolve(unique).version == 2  # tagged stage=prod by a notebook user
    assert registry.resolve(unique, "latest").version == 3
    assert registry.resolve(unique, 1).version == 1 and registry.resolve(unique, "1").version == 1
    MlflowClient(settings.mlflow_tracking_uri).set_registered_model_alias(unique, "prod", "3")
    MlflowClient(settings.mlflow_tracking_uri).set_registered_model_alias(unique, "champion", "1")
    assert registry.resolve(unique).version == 3  # the alias wins over the tag
    assert registry.resolve(unique, "prod").version == 3
    assert registry.resolve(unique, "champion").version == 1
    with pytest.raises(NotFound, match="no alias 'nobody'"):
        registry.resolve(unique, "nobody")
    with pytest.raises(NotFound, match="version 9"):
        registry.resolve(unique, 9)
    with pytest.raises(NotFound, match="does not exist"):
        registry.resolve(f"{unique}-absent", "latest")
    loaded = registry.load_model(registry.resolve(unique, 1))
    assert loaded.flavor == "sklearn" and [c["name"] for c in loaded.input_schema] == NUMERIC + CATEGORICAL


def test_run_names_are_sortable_and_unique_within_a_second():
    names = [run_name("train") for _ in range(200)]
    assert len(set(names)) == 200
    assert all(n.startswith("train_") for n in names)
    assert names == sorted(names, key=lambda n: n.rsplit("_", 1)[0])


def test_job_store_transitions(settings):
    store = JobStore(settings)
    job, created = store.create("train", {"model": "m"}, request_id="r1")
    assert created and job["state"] == "queued" and job["request_id"] == "r1"
    store.transition(job["job_id"], "running", allowed_from=("queued",))
    with pytest.raises(Conflict):
        store.transition(job["job_id"], "running", allowed_from=("queued",))
    store.transition(job["job_id"], "failed", allowed_from=("running",), error={"code": "x", "message": "y"})
    with pytest.raises(Conflict):
        store.transition(job["job_id"], "cancelled", allowed_from=("queued", "running"))
    final = store.get(job["job_id"])
    assert final["state"] == "failed" and final["error"] == {"code": "x", "message": "y"}
    assert [h["state"] for h in final["history"]] == ["queued", "running", "failed"]
    with pytest.raises(NotFound):
        store.get("no-such-job")
    with pytest.raises(NotFound):
        store.transition("no-such-job", "running", allowed_from=("queued",))
    assert store.redis.ttl(f"{settings.redis_prefix}:job:{job['job_id']}") > 0
