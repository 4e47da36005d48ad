import dataclasses
import logging

import pytest

from mlaas.errors import InvalidInput
from mlaas.settings import Secret, Settings, unknown_variable_message
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


@pytest.mark.parametrize("raw, expected", [("true", True), ("FALSE", False), ("1", True), ("0", False),
                                           ("yes", True), ("no", False), (" on ", True), ("off", False)])
def test_settings_read_the_usual_boolean_spellings(raw, expected):
    assert Settings.from_env({"MLAAS_AUTH_ENABLED": raw}).auth_enabled is expected


@pytest.mark.parametrize("raw", ["flase", "", "2", "enabled"])
def test_a_misspelt_boolean_refuses_to_start_instead_of_switching_auth_off(raw):
    with pytest.raises(InvalidInput) as err:
        Settings.from_env({"MLAAS_AUTH_ENABLED": raw})
    assert err.value.message == f"MLAAS_AUTH_ENABLED: {raw!r} is not a boolean (true/false, 1/0, yes/no, on/off)"


@pytest.mark.parametrize("variable, raw, reason", [
    ("MLAAS_REDIS_SOCKET_TIMEOUT", "-1", "must be greater than 0"),
    ("MLAAS_CAPTURE_TIMEOUT", "0", "must be greater than 0"),
    ("MLAAS_MLFLOW_TIMEOUT", "inf", "is not a finite number"),
    ("MLAAS_MODEL_CACHE_SIZE", "0", "must be greater than 0"),
    ("MLAAS_MAX_INFERENCE_ROWS", "1.5", "is not an integer"),
    ("MLAAS_RATE_LIMIT_PER_MINUTE", "-5", "must be at least 0"),
    ("MLAAS_WORKER_METRICS_PORT", "70000", "must be at most 65535"),
    ("MLAAS_TEST_FRACTION", "0.7", "must be less than 0.5"),
    ("MLAAS_CAPTURE_BATCH_SECONDS", "soon", "is not a number"),
    ("MLAAS_LOG_LEVEL", "LOUD", "is not one of 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
])
def test_values_that_make_no_sense_are_refused_with_the_variable_name(variable, raw, reason):
    with pytest.raises(InvalidInput) as err:
        Settings.from_env({variable: raw})
    assert err.value.message.startswith(f"{variable}: {raw!r} {reason}")


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(InvalidInput) as err:
        Settings.from_env({"MLAAS_JOB_TTL_SECONDS": "soon", "MLAAS_WARM_MODELS": "maybe"})
    assert "MLAAS_JOB_TTL_SECONDS" in err.value.message and "MLAAS_WARM_MODELS" in err.value.message


def test_zero_is_accepted_where_it_means_off_or_immediately():
    s = Settings.from_env({"MLAAS_RATE_LIMIT_PER_MINUTE": "0", "MLAAS_CAPTURE_BATCH_SECONDS": "0",
                           "MLAAS_RESOLVE_TTL_SECONDS": "0", "MLAAS_LOG_LEVEL": "debug"})
    assert (s.rate_limit_per_minute, s.capture_batch_seconds, s.resolve_ttl_seconds) == (0, 0.0, 0.0)
    assert s.log_level == "DEBUG"


def test_an_unknown_mlaas_variable_is_a_warning_naming_the_closest_setting(caplog):
    with caplog.at_level(logging.WARNING, logger="mlaas.settings"):
        s = Settings.from_env({"MLAAS_AUTH_ENABLE": "false", "MLAAS_API_URL": "http://x", "MLAAS_STACK_DIR": "/s",
                               "OTHER_THING": "1"})
    assert s.auth_enabled is True  # the misspelt name changed nothing
    assert [r.getMessage() for r in caplog.records] == [
        "MLAAS_AUTH_ENABLE is not an mlaas setting and is ignored; did you mean MLAAS_AUTH_ENABLED?"]


def test_unknown_variable_without_a_close_setting_is_still_reported():
    known = tuple(f"MLAAS_{f.name.upper()}" for f in dataclasses.fields(Settings))
    assert unknown_variable_message("MLAAS_ZZZZZZZZ", known) == (
        "MLAAS_ZZZZZZZZ is not an mlaas setting and is ignored (see mlaas/settings.py)")
    assert unknown_variable_message("MLAAS_API_KEY", known) is None


def test_overrides_and_replace_are_validated_and_keep_secrets_secret():
    s = Settings.from_env({"MLAAS_S3_SECRET_KEY": "from-env"}, auth_enabled=False, s3_secret_key="override")
    assert s.auth_enabled is False and isinstance(s.s3_secret_key, Secret) and s.s3_secret_key.reveal() == "override"
    with pytest.raises(InvalidInput, match="model_cache_size: 0 must be greater than 0"):
        Settings.from_env({}, model_cache_size=0)
    with pytest.raises(InvalidInput, match="not_a_setting"):
        Settings.from_env({}, not_a_setting=1)
    replaced = dataclasses.replace(s, s3_secret_key="plain", allowed_buckets=("extra",))
    assert isinstance(replaced.s3_secret_key, Secret) and "plain" not in repr(replaced)
    assert replaced.buckets == ("datasets", "drift", "extra")
    with pytest.raises(ValueError):
        dataclasses.replace(s, capture_timeout=-1.0)


def test_a_bad_secret_is_named_without_showing_it():
    with pytest.raises(InvalidInput) as err:
        Settings.from_env({}, s3_secret_key=12345)
    assert "s3_secret_key" in err.value.message and "12345" not in err.value.message


def test_keys_are_printable_ascii_as_the_openapi_document_states():
    import re

    from mlaas import specs
    from mlaas.errors import InvalidInput
    from mlaas.uris import parse_uri

    for uri in ("s3://datasets/caf\u00e9.csv", "s3://datasets/a\u0007.csv", "s3://datasets/a\\b.csv"):
        assert not re.match(specs.S3_URI_PATTERN, uri)
        with pytest.raises(InvalidInput, match="printable ASCII"):
            parse_uri(uri)
    assert re.match(specs.S3_URI_PATTERN, "s3://datasets/a b/c~d.csv")
    assert parse_uri("s3://datasets/a b/c~d.csv").key == "a b/c~d.csv"
