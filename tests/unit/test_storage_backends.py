"""URIs with a scheme, the settings that choose storage backends, and the router between them (no servers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import localstack  # noqa: E402
import localstack.clientenv  # noqa: E402
import localstack.units  # noqa: E402

from mlaas.adapters.storage import RoutedBlobStore, open_store  # noqa: E402
from mlaas.adapters.storage.azure import AzureBlobStore, account_name, decode_metadata, encode_metadata  # noqa: E402
from mlaas.adapters.storage.s3 import MinioBlobStore  # noqa: E402
from mlaas.errors import InvalidInput  # noqa: E402
from mlaas.settings import Settings  # noqa: E402
from mlaas.uris import BlobUri, S3Uri, parse_uri  # noqa: E402
from tests.fakes import MemoryBlobStore  # noqa: E402

KEY = "c2VjcmV0LWtleQ=="


def test_az_uris_parse_only_where_azure_is_accepted() -> None:
    uri = parse_uri("az://datasets/titanic/train.csv", schemes=("s3", "az"), allowed_buckets=("datasets",))
    assert uri == BlobUri("datasets", "titanic/train.csv", "az") and str(uri) == "az://datasets/titanic/train.csv"
    with pytest.raises(InvalidInput, match=r"dataset: only s3:// URIs are accepted, got 'az'.*MLAAS_AZURE_"):
        parse_uri("az://datasets/x.csv", field="dataset")
    with pytest.raises(InvalidInput, match="only az:// URIs"):
        parse_uri("s3://datasets/x.csv", schemes=("az",))
    with pytest.raises(InvalidInput, match="container 'other' is not one mlaas may use"):
        parse_uri("az://other/x.csv", schemes=("az",), allowed_buckets=("datasets",))


@pytest.mark.parametrize("name", ["my.data", "a--b", "-ab", "ab", "Upper"])
def test_container_names_follow_azure_rules(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid container name"):
        parse_uri(f"az://{name}/x.csv", schemes=("az",))


def test_dotted_bucket_names_stay_valid_on_s3() -> None:
    assert parse_uri("s3://my.data/x.csv").bucket == "my.data"


def test_derived_uris_keep_their_scheme_and_the_old_name_is_an_alias() -> None:
    uri = BlobUri("drift", "m/1/baseline.parquet", "az")
    assert str(uri.child("x")) == "az://drift/m/1/baseline.parquet/x"
    assert str(uri.sibling("data_config.yaml")) == "az://drift/m/1/data_config.yaml"
    assert S3Uri is BlobUri and str(S3Uri("b1b", "k")) == "s3://b1b/k"


def test_settings_choose_the_schemes() -> None:
    assert Settings().storage_schemes == ("s3",)
    both = Settings(azure_connection_string="UseDevelopmentStorage=true")
    assert both.storage_schemes == ("s3", "az") and both.storage_scheme == "s3"
    azure = Settings.from_env({"MLAAS_STORAGE_BACKEND": "azure", "MLAAS_AZURE_ACCOUNT_URL": "https://acct.blob.core.windows.net"})
    assert azure.storage_schemes == ("az",) and azure.storage_scheme == "az"
    assert str(azure.drift_uri("feedback/m")) == f"az://{azure.drift_bucket}/feedback/m"
    assert str(both.drift_uri("reports/x.html")) == f"s3://{both.drift_bucket}/reports/x.html"
    assert Settings(storage_backend="azure", azure_account_url="https://a.blob.core.windows.net",
                    s3_access_key="k").storage_schemes == ("az", "s3")
    with pytest.raises(InvalidInput, match="MLAAS_STORAGE_BACKEND: azure needs MLAAS_AZURE_CONNECTION_STRING"):
        Settings.from_env({"MLAAS_STORAGE_BACKEND": "azure"})
    with pytest.raises(InvalidInput, match="MLAAS_STORAGE_BACKEND"):
        Settings.from_env({"MLAAS_STORAGE_BACKEND": "gcs"})


def test_azure_secrets_never_show() -> None:
    settings = Settings.from_env({"MLAAS_AZURE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
                                  "MLAAS_AZURE_ACCOUNT_KEY": KEY, "MLAAS_AZURE_SAS_TOKEN": "sv=1&sig=abc",
                                  "MLAAS_AZURE_CONNECTION_STRING": f"AccountKey={KEY}"})
    shown = f"{settings!r} {settings.redacted()}"
    assert KEY not in shown and "sig=abc" not in shown
    assert settings.redacted()["azure_account_key"] == "***"


@pytest.mark.parametrize("extra", [{"azure_account_key": KEY}, {"azure_sas_token": "?sv=2024&sig=x"}, {}])
def test_every_credential_kind_builds_a_client_without_a_request(extra: dict[str, str]) -> None:
    settings = Settings(storage_backend="azure", azure_account_url="https://acct.blob.core.windows.net", **extra)
    store = open_store(settings)
    assert isinstance(store.backend("az"), AzureBlobStore) and set(store.backends) == {"az"}


def test_account_names_from_account_urls() -> None:
    assert account_name("https://acct.blob.core.windows.net") == "acct"
    assert account_name("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"


@pytest.mark.parametrize("name", ["mlaas-owner", "a_b", "x.y-z_9", "Owner"])
def test_metadata_names_survive_azure_identifier_rules(name: str) -> None:
    encoded = encode_metadata(name)
    assert encoded.replace("_", "").isalnum() and not encoded[0].isdigit()
    assert decode_metadata(encoded) == name.lower()


def test_the_router_sends_each_scheme_to_its_backend() -> None:
    s3, az = MemoryBlobStore(), MemoryBlobStore()
    store = RoutedBlobStore({"s3": s3, "az": az}, "az")
    store.put_bytes(BlobUri("datasets", "a", "az"), b"1")
    store.put_bytes(BlobUri("datasets", "b"), b"2")
    assert list(az.objects) == [("datasets", "a")] and list(s3.objects) == [("datasets", "b")]
    assert [o.uri.key for o in store.list("datasets")] == ["a"]  # bucket-only calls: the default backend
    store.ensure_buckets(("drift",))
    assert az.buckets == {"drift"} and not s3.buckets
    only_s3 = open_store(Settings())
    assert isinstance(only_s3.backend("s3"), MinioBlobStore)
    with pytest.raises(InvalidInput, match="no storage is configured for az:// URIs"):
        only_s3.stat(BlobUri("datasets", "a", "az"))


def test_the_azure_stack_points_mlaas_and_mlflow_at_azurite(tmp_path) -> None:
    config = localstack.StackConfig(state_dir=tmp_path, storage="azure", s3_port=19999)
    env = localstack.clientenv.client_env(config)
    assert env["MLAAS_STORAGE_BACKEND"] == "azure" and not any(k.startswith("MLAAS_S3_") for k in env)
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("MLAAS_")})
    assert settings.storage_schemes == ("az",)
    assert "BlobEndpoint=http://127.0.0.1:19999/devstoreaccount1;" in settings.azure_connection_string.reveal()
    mlflow = localstack.units.mlflow_unit(config)
    argv = mlflow.command()
    assert argv[argv.index("--artifacts-destination") + 1] == "wasbs://mlflow@devstoreaccount1.blob.core.windows.net/"
    assert mlflow.env and "AZURE_STORAGE_CONNECTION_STRING" in mlflow.env and "AWS_ACCESS_KEY_ID" not in mlflow.env
    assert localstack.units.s3_unit(config).ports == (19999,)  # Azurite's blob service alone, on the S3 port
    with pytest.raises(localstack.StackError, match="MLAAS_STACK_STORAGE: expected s3 or azure"):
        localstack.StackConfig.from_env({"MLAAS_STACK_STORAGE": "gcs"})
