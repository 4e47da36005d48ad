"""Batch scoring without services: chunking, the parts a job writes, resuming, cancelling and bad rows."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlaas.batch import parts, reader, service
from mlaas.batch.specs import BatchJob
from mlaas.context import Context
from mlaas.errors import Cancelled, Conflict, InvalidInput, TooLarge
from mlaas.inference.cache import ServedModel
from mlaas.settings import Settings
from mlaas.uris import S3Uri
from tests.fakes import MemoryBlobStore
from tests.integration.models import CATEGORICAL, NUMERIC, titanic_pipeline

TITANIC = pd.read_csv("examples/data/titanic/titanic.csv")
FEATURES = NUMERIC + CATEGORICAL
TYPES = {"Age": "number", "Fare": "number", "SibSp": "integer", "Parch": "integer", "Pclass": "integer",
         "Sex": "string", "Embarked": "string"}
CSV = S3Uri("datasets", "batch/titanic.csv")
PARQUET = S3Uri("datasets", "batch/titanic.parquet")


@pytest.fixture(scope="module")
def model() -> ServedModel:
    estimator = titanic_pipeline().fit(TITANIC[FEATURES], TITANIC["Survived"])
    return ServedModel("titanic", 3, estimator, FEATURES, TYPES, None, [0, 1], "classification", 0.0, None)


class Cache:
    """What a batch job asks of the model cache: one loaded version."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model

    def resolve(self, name: str, ref: Any) -> Any:
        return (name, ref)

    def get(self, _: Any) -> ServedModel:
        return self.model


@pytest.fixture
def ctx() -> Context:
    store = MemoryBlobStore()
    store.put_bytes(CSV, TITANIC.to_csv(index=False).encode())
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(TITANIC, preserve_index=False), buffer, row_group_size=128)
    store.put_bytes(PARQUET, buffer.getvalue())
    return Context(Settings(), {"storage": store})


def job(dataset: S3Uri = CSV, **fields: Any) -> BatchJob:
    return BatchJob(**{"model": "titanic", "version": 3, "dataset": str(dataset), "chunk_rows": 100, **fields})


def steps(log: list[str], stop_at: str | None = None, error: type[Exception] = RuntimeError) -> Any:
    def progress(step: str, percent: int) -> None:
        assert 0 <= percent <= 100
        if step == stop_at:
            raise error(f"stopped at {step}")
        log.append(step)
    return progress


def outputs(ctx: Context, job_id: str, kind: str = "part") -> pd.DataFrame:
    store = ctx.storage
    keys = sorted(k for (b, k) in store.objects if k.startswith(f"predictions/{job_id}/{kind}-"))  # type: ignore[attr-defined]
    return pd.concat([pd.read_parquet(io.BytesIO(store.get_bytes(S3Uri("drift", k)))) for k in keys],
                     ignore_index=True)


@pytest.mark.parametrize("sizes", [[7, 300, 1, 583], [891], [100] * 8 + [91], [250, 250, 250, 141]])
def test_rechunk_gives_exact_chunks_in_order_whatever_the_batches(sizes):
    values = pa.array(range(891))
    offsets = np.cumsum([0, *sizes])
    batches = [pa.record_batch([values[a:b]], names=["x"]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    tables = list(reader.rechunk(batches, 100))
    assert [t.num_rows for t in tables] == [100] * 8 + [91]
    assert pa.concat_tables(tables)["x"].to_pylist() == list(range(891))


def test_csv_and_parquet_read_as_the_same_chunks_through_range_reads(ctx):
    got = {}
    for uri in (CSV, PARQUET):
        chunks = list(reader.read_chunks(ctx.storage, uri, chunk_rows=100, text_columns=["Sex"]))
        assert [(c.index, c.first_row, len(c.frame)) for c in chunks] == [(i, 100 * i, 100) for i in range(8)] + [
            (8, 800, 91)]
        assert chunks[-1].fraction_read == 1.0
        got[uri.key] = pd.concat([c.frame for c in chunks], ignore_index=True)
    for frame in got.values():
        assert frame["PassengerId"].tolist() == TITANIC["PassengerId"].tolist()
        assert frame["Fare"].tolist() == pytest.approx(TITANIC["Fare"].tolist())


def test_a_job_writes_one_part_per_chunk_equal_to_the_models_predictions(ctx, model):
    result = service.run(job(), ctx=ctx, job_id="j1", progress=steps([]), cache=Cache(model))  # type: ignore[arg-type]
    assert result | {"dataset": None} == {
        "model": "titanic", "version": 3, "output": "s3://drift/predictions/j1/", "rows": 891, "files": 9,
        "errors": 0, "error_files": 0, "chunks": 9, "resumed_chunks": 0, "dataset": None}
    out = outputs(ctx, "j1")
    assert out["id"].tolist() == list(range(891))  # no index column configured: the row number
    assert out["prediction"].tolist() == model.estimator.predict(TITANIC[FEATURES]).tolist()
    proba = model.estimator.predict_proba(TITANIC[FEATURES])
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(), proba, rtol=1e-9)


def test_a_rerun_after_a_lost_worker_keeps_the_written_parts_and_writes_each_row_once(ctx, model):
    cache = Cache(model)
    with pytest.raises(RuntimeError):
        service.run(job(PARQUET), ctx=ctx, job_id="j2", progress=steps([], stop_at="chunk 4"), cache=cache)  # type: ignore[arg-type]
    assert len(parts.written(ctx.storage, S3Uri("drift", "predictions/j2"), "j2")) == 4
    log: list[str] = []
    result = service.run(job(PARQUET), ctx=ctx, job_id="j2", progress=steps(log), cache=cache)  # type: ignore[arg-type]
    assert result["resumed_chunks"] == 4 and result["rows"] == 891 and result["files"] == 9
    assert log[1:] == [f"chunk {i}" for i in range(9)]
    out = outputs(ctx, "j2")
    assert out["id"].tolist() == list(range(891))
    assert out["prediction"].tolist() == model.estimator.predict(TITANIC[FEATURES]).tolist()


def test_cancel_stops_between_chunks_and_another_jobs_parts_are_never_taken_over(ctx, model):
    cache = Cache(model)
    with pytest.raises(Cancelled):
        service.run(job(), ctx=ctx, job_id="j3", progress=steps([], "chunk 2", Cancelled), cache=cache)  # type: ignore[arg-type]
    assert sorted(parts.written(ctx.storage, S3Uri("drift", "predictions/j3"), "j3")) == [0, 1]
    with pytest.raises(Conflict, match="another job"):
        service.run(job(output="s3://drift/predictions/j3/"), ctx=ctx, job_id="j4", progress=steps([]), cache=cache)  # type: ignore[arg-type]
    ctx.storage.put_bytes(S3Uri("datasets", "mine/keep.csv"), b"a\n1\n")
    with pytest.raises(Conflict, match="keep.csv"):
        service.run(job(output="s3://datasets/mine"), ctx=ctx, job_id="j5", progress=steps([]), cache=cache)  # type: ignore[arg-type]


def bad_titanic() -> pd.DataFrame:
    frame = TITANIC.copy()
    frame["Age"] = frame["Age"].astype(object)
    frame.loc[[5, 250, 251], "Age"] = "old"
    return frame


def test_a_bad_value_fails_the_job_naming_chunk_and_row_or_is_set_apart_with_skip(ctx, model):
    ctx.storage.put_bytes(CSV, bad_titanic().to_csv(index=False).encode())
    cache = Cache(model)
    with pytest.raises(InvalidInput, match=r"chunk 0, row 5 \(id 5\), column 'Age': expected a number") as failed:
        service.run(job(), ctx=ctx, job_id="j6", progress=steps([]), cache=cache)  # type: ignore[arg-type]
    assert failed.value.details["row"] == 5
    result = service.run(job(on_error="skip"), ctx=ctx, job_id="j7", progress=steps([]), cache=cache)  # type: ignore[arg-type]
    assert (result["rows"], result["errors"], result["error_files"]) == (888, 3, 2)
    errors = outputs(ctx, "j7", "errors")
    assert errors["row"].tolist() == [5, 250, 251] and errors["value_Age"].tolist() == ["old"] * 3
    assert errors["error"].str.contains("expected a number").all()
    out = outputs(ctx, "j7")
    kept = TITANIC.drop(index=[5, 250, 251])
    assert out["id"].tolist() == kept.index.tolist()
    assert out["prediction"].tolist() == model.estimator.predict(kept[FEATURES]).tolist()


def test_missing_columns_fail_even_with_skip_and_the_row_limit_holds(ctx, model):
    ctx.storage.put_bytes(CSV, TITANIC.drop(columns=["Fare"]).to_csv(index=False).encode())
    with pytest.raises(InvalidInput, match="chunk 0: missing column"):
        service.run(job(on_error="skip"), ctx=ctx, job_id="j8", progress=steps([]), cache=Cache(model))  # type: ignore[arg-type]
    small = Context(Settings(batch_max_rows=500), {"storage": ctx.storage})
    with pytest.raises(TooLarge, match="limit of 500 rows"):
        service.run(job(PARQUET), ctx=small, job_id="j9", progress=steps([]), cache=Cache(model))  # type: ignore[arg-type]


def test_ids_come_from_the_data_config_index_column(ctx, model):
    config = S3Uri("datasets", "batch/config.yaml")
    ctx.storage.put_bytes(config, b"index_columns: [PassengerId]\ntarget_column: Survived\n"
                                  b"numerical_features: [Age, SibSp, Parch, Fare]\n"
                                  b"categorical_features: [Pclass, Sex, Embarked]\n")
    service.run(job(data_config=str(config)), ctx=ctx, job_id="j10", progress=steps([]), cache=Cache(model))  # type: ignore[arg-type]
    assert outputs(ctx, "j10")["id"].tolist() == TITANIC["PassengerId"].tolist()


def test_skip_finds_rows_an_error_does_not_name_by_halving_the_chunk(ctx):
    strict = titanic_pipeline()
    strict.set_params(prep__cat__onehot__handle_unknown="error")
    strict.fit(TITANIC[FEATURES], TITANIC["Survived"])
    model = ServedModel("strict", 1, strict, FEATURES, TYPES, None, [0, 1], "classification", 0.0, None)
    frame = TITANIC.copy()
    frame.loc[[17, 640], "Embarked"] = "X"  # a category the encoder never saw: scikit-learn names no row
    ctx.storage.put_bytes(CSV, frame.to_csv(index=False).encode())
    with pytest.raises(InvalidInput, match="chunk 0: the model rejected the rows"):
        service.run(job(), ctx=ctx, job_id="j11", progress=steps([]), cache=Cache(model))  # type: ignore[arg-type]
    result = service.run(job(on_error="skip"), ctx=ctx, job_id="j12", progress=steps([]), cache=Cache(model))  # type: ignore[arg-type]
    assert (result["rows"], result["errors"]) == (889, 2)
    assert outputs(ctx, "j12", "errors")["row"].tolist() == [17, 640]
    kept = frame.drop(index=[17, 640])
    out = outputs(ctx, "j12")
    assert out["id"].tolist() == kept.index.tolist()
    assert out["prediction"].tolist() == strict.predict(kept[FEATURES]).tolist()
