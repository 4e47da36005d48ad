import pytest

from mlaas.errors import InvalidInput
from mlaas.settings import Secret, Settings
from mlaas.uris import S3Uri, parse_uri

BUCKETS = ("datasets", "drift")


def test_parse_valid_uri():
    parsed = parse_uri("s3://datasets/titanic/train.csv", allowed_buckets=BUCKETS)
    assert parsed == S3Uri("datasets", "titanic/train.csv")


@pytest.mark.parametrize(
    "uri, fragment",
    [
        ("file:///etc/passwd", "only s3://"),
        ("http://169.254.169.254/latest", "only s3://"),
        ("/etc/passwd", "only s3://"),
        ("s3://datasets/../secrets/x.csv", "'..'"),
        ("s3://datasets/a/./b.csv", "'.'"),
        ("s3://datasets//b.csv", "empty"),
        ("s3://other-bucket/x.csv", "not one mlaas may use"),
        ("s3://datasets/", "names no object"),
        ("s3://datasets/" + "k" * 1100, "longer than"),
        ("s3://datasets/a\nb.csv", "control"),
        ("s3://UPPER/x.csv", "not a valid bucket"),
    ],
)
def test_parse_rejects_before_io(uri, fragment):
    with pytest.raises(InvalidInput) as err:
        parse_uri(uri, allowed_buckets=BUCKETS, field="dataset")
    assert fragment in err.value.message
    assert err.value.message.startswith("dataset:")


def test_settings_from_env_converts_types_and_hides_secret():
    env = {
        "MLAAS_REDIS_URL": "redis://h:1/2",
        "MLAAS_JOB_TTL_SECONDS": "60",
        "MLAAS_RESOLVE_TTL_SECONDS": "2.5",
        "MLAAS_ALLOWED_BUCKETS": "a-1, b-2",
        "MLAAS_S3_SECRET_KEY": "topsecret",
        "MLAAS_ALLOW_PICKLE_MODELS": "true",
        "UNRELATED": "x",
    }
    s = Settings.from_env(env)
    assert s.redis_url == "redis://h:1/2"
    assert s.job_ttl_seconds == 60 and s.resolve_ttl_seconds == 2.5
    assert s.allowed_buckets == ("a-1", "b-2")
    assert s.buckets == ("datasets", "drift", "a-1", "b-2")
    assert s.allow_pickle_models is True
    assert isinstance(s.s3_secret_key, Secret) and s.s3_secret_key.reveal() == "topsecret"
    assert "topsecret" not in repr(s)
    assert s.redacted()["s3_secret_key"] == "***"


def test_settings_rejects_bad_number():
    with pytest.raises(InvalidInput, match="MLAAS_JOB_TTL_SECONDS"):
        Settings.from_env({"MLAAS_JOB_TTL_SECONDS": "soon"})
