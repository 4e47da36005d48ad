import io

import pandas as pd
import pytest

from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import read_config, read_frame, write_config, write_frame
from mlaas.errors import InvalidInput
from mlaas.uris import S3Uri
from tests.fakes import MemoryBlobStore

CONFIG = {
    "index_columns": ["id"],
    "target_column": "y",
    "numerical_features": ["a"],
    "categorical_features": ["c"],
}


@pytest.fixture
def store():
    return MemoryBlobStore()


def test_csv_and_parquet_round_trip(store):
    frame = pd.DataFrame({"id": [1, 2], "a": [0.5, None], "c": ["x", "y"], "y": [0, 1]})
    store.put_bytes(S3Uri("datasets", "t/d.csv"), frame.to_csv(index=False).encode())
    loaded = read_frame(store, S3Uri("datasets", "t/d.csv"))
    assert loaded.frame.shape == (2, 4) and len(loaded.sha256) == 64
    write_frame(store, S3Uri("drift", "t/d.parquet"), loaded.frame)
    again = read_frame(store, S3Uri("drift", "t/d.parquet"))
    pd.testing.assert_frame_equal(again.frame, loaded.frame)


@pytest.mark.parametrize(
    "key, data, fragment",
    [
        ("t/missing.csv", None, "does not exist"),
        ("t/empty.csv", b"a,b\n", "holds no rows"),
        ("t/bad.parquet", b"not parquet", "not a readable parquet"),
        ("t/data.xlsx", b"x", "must end with"),
    ],
)
def test_unreadable_frames_are_invalid_input(store, key, data, fragment):
    uri = S3Uri("datasets", key)
    if data is not None:
        store.put_bytes(uri, data)
    with pytest.raises(InvalidInput, match=fragment):
        read_frame(store, uri)


def test_config_yaml_and_json(store):
    write_config(store, S3Uri("datasets", "c.yaml"), CONFIG)
    write_config(store, S3Uri("datasets", "c.json"), CONFIG)
    assert read_config(store, S3Uri("datasets", "c.yaml")) == CONFIG
    assert read_config(store, S3Uri("datasets", "c.json")) == CONFIG


@pytest.mark.parametrize("data, suffix", [(b"a: [1, 2", "yaml"), (b"{nope", "json"), (b"- just\n- a list\n", "yaml")])
def test_bad_config_is_invalid_input(store, data, suffix):
    store.put_bytes(S3Uri("datasets", f"c.{suffix}"), data)
    with pytest.raises(InvalidInput, match="data_config"):
        read_config(store, S3Uri("datasets", f"c.{suffix}"))


def test_data_config_validation_names_fields():
    with pytest.raises(InvalidInput, match="target_column"):
        DataConfig.parse({"numerical_features": ["a"]}, source="cfg")
    with pytest.raises(InvalidInput, match="no numerical_features"):
        DataConfig.parse({"target_column": "y"}, source="cfg")
    with pytest.raises(InvalidInput, match="listed twice"):
        DataConfig.parse({"target_column": "y", "numerical_features": ["a", "a"]}, source="cfg")
    with pytest.raises(InvalidInput, match="also listed"):
        DataConfig.parse({"target_column": "a", "numerical_features": ["a"]}, source="cfg")


def test_check_columns_names_every_missing_column():
    config = DataConfig.parse(CONFIG)
    frame = pd.read_csv(io.StringIO("id,a\n1,2\n"))
    with pytest.raises(InvalidInput, match="missing column\\(s\\) c, y"):
        config.check_columns(frame, source="dataset s3://datasets/x.csv")


def test_task_inference():
    config = DataConfig.parse(CONFIG)
    assert config.infer_task(pd.Series([0, 1, 1])) == "classification"
    assert config.infer_task(pd.Series([float(i) / 3 for i in range(100)])) == "regression"
    assert DataConfig.parse({**CONFIG, "task": "regression"}).infer_task(pd.Series([0, 1])) == "regression"


def test_a_parquet_file_over_the_row_limit_is_refused_from_its_footer(store, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlaas.errors import TooLarge

    buffer = io.BytesIO()  # 2 million rows of one repeated value: tiny on disk, 16 MB decoded
    pq.write_table(pa.table({"a": pa.repeat(1.0, 2_000_000)}), buffer, compression="zstd")
    store.put_bytes(S3Uri("datasets", "t/bomb.parquet"), buffer.getvalue())
    assert len(buffer.getvalue()) < 100_000
    decoded = []
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: decoded.append(1))
    with pytest.raises(TooLarge, match="2000000 rows, more than the limit of 1000000"):
        read_frame(store, S3Uri("datasets", "t/bomb.parquet"), max_rows=1_000_000)
    with pytest.raises(TooLarge, match="16000000 bytes decoded, more than the limit of 1000000"):
        read_frame(store, S3Uri("datasets", "t/bomb.parquet"), max_bytes=1_000_000)
    assert decoded == [], "the data was decoded before the footer was checked"


def test_a_csv_over_the_row_limit_is_refused_and_one_at_the_limit_is_read(store):
    from mlaas.errors import TooLarge

    store.put_bytes(S3Uri("datasets", "t/rows.csv"), ("a\n" + "1\n" * 101).encode())
    with pytest.raises(TooLarge, match="more than the limit of 100 rows"):
        read_frame(store, S3Uri("datasets", "t/rows.csv"), max_rows=100)
    assert len(read_frame(store, S3Uri("datasets", "t/rows.csv"), max_rows=101).frame) == 101


def test_an_object_over_the_byte_limit_is_too_large_naming_the_field(store):
    from mlaas.errors import TooLarge

    store.put_bytes(S3Uri("datasets", "t/big.csv"), b"a\n" + b"1\n" * 1000)
    with pytest.raises(TooLarge, match="test_dataset: s3://datasets/t/big.csv is larger than the limit of 100"):
        read_frame(store, S3Uri("datasets", "t/big.csv"), max_bytes=100, field="test_dataset")
