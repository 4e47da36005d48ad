import hashlib
import hmac
import json
import socket

import pytest
import urllib3.util.connection

from mlaas.adapters import webhooks
from mlaas.adapters.webhooks import check_secret, check_url, deliver, sign, verify
from mlaas.errors import InvalidInput
from tests.receiver import Receiver

SECRET = "s" * 32


@pytest.mark.parametrize(
    "url, allowlist, fragment",
    [
        ("ftp://hooks.example.com/x", ("hooks.example.com:21",), "only http"),
        ("http://user:pw@127.0.0.1/x", ("127.0.0.1:80",), "credentials"),
        ("http://10.0.0.5/x", ("hooks.example.com:80",), "not in MLAAS_WEBHOOK_ALLOWLIST"),
        ("http://169.254.169.254/latest/meta-data", (), "not in MLAAS_WEBHOOK_ALLOWLIST"),
        ("http://localhost:9000/x", ("localhost:9000",), "resolves to an internal address"),
        ("http://127.0.0.1:9000/x", ("127.0.0.1:9001",), "not in MLAAS_WEBHOOK_ALLOWLIST"),
        ("http://127.0.0.1:9000/x", ("127.0.0.1",), "entries are host:port"),  # a host alone allows no port
        ("http://127.0.0.1:99999/x", ("127.0.0.1:99999",), "port is not a number"),
    ],
)
def test_refused_urls(url, allowlist, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        check_url(url, allowlist)


def test_allowlisted_literal_ip_and_port():
    target = check_url("http://127.0.0.1:9000/hook?a=1", ("127.0.0.1:9000",))
    assert (target.address, target.port, target.path) == ("127.0.0.1", 9000, "/hook?a=1")


@pytest.mark.parametrize("secret", [None, "", "short", "x" * 31])
def test_a_secret_of_fewer_than_32_characters_is_refused(secret):
    with pytest.raises(InvalidInput, match="webhook.secret: required, at least 32 characters"):
        check_secret(secret)


def test_the_signature_covers_timestamp_and_body():
    body = b'{"event": "drift"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, body) == f"sha256={expected}"


def test_the_receivers_check_refuses_replays_and_tampering():
    body = b'{"event": "drift"}'
    signature = sign(SECRET, 1700000000, body)
    assert verify(SECRET, "1700000000", body, signature, now=1700000100)
    assert not verify(SECRET, "1700000000", body, signature, now=1700000000 + 301)  # replayed too late
    assert not verify(SECRET, "1700000001", body, signature, now=1700000100)  # another timestamp
    assert not verify(SECRET, "1700000000", body + b" ", signature, now=1700000100)
    assert not verify("t" * 32, "1700000000", body, signature, now=1700000100)
    assert not verify(SECRET, "soon", body, signature, now=1700000100)


@pytest.fixture
def listener():
    running = Receiver()
    yield running
    running.close()


def test_a_delivery_is_signed_and_timed_and_the_receiver_can_check_it(listener):
    outcome = deliver(f"http://127.0.0.1:{listener.port}/hook", {"event": "drift"}, secret=SECRET,
                      allowlist=(f"127.0.0.1:{listener.port}",), timeout=5, attempts=1)
    assert outcome == {"delivered": True, "status": 204, "attempts": 1}
    (headers, body), = listener.received
    assert json.loads(body) == {"event": "drift"}
    assert headers["Host"] == f"127.0.0.1:{listener.port}"
    assert verify(SECRET, headers[webhooks.TIMESTAMP_HEADER], body, headers[webhooks.SIGNATURE_HEADER])


def test_a_delivery_without_a_long_enough_secret_is_refused_before_sending(listener):
    with pytest.raises(InvalidInput, match="webhook.secret"):
        deliver(f"http://127.0.0.1:{listener.port}/hook", {}, secret="hush",
                allowlist=(f"127.0.0.1:{listener.port}",), timeout=5, attempts=1)
    assert listener.received == []


def test_dns_rebinding_cannot_move_the_request_to_loopback(listener, monkeypatch):
    """The resolver answers a public address for the check and loopback afterwards: the request must go to the
    checked address (here refused before any packet leaves), never to the listener on loopback."""
    answers = iter([["93.184.216.34"]] + [["127.0.0.1"]] * 10)

    def rebinding_resolver(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in next(answers)]

    connected = []

    def no_traffic(address, *args, **kwargs):
        connected.append(address[0])
        if address[0] != "127.0.0.1":
            raise OSError("this test sends nothing off the machine")
        return real_create_connection(address, *args, **kwargs)

    real_create_connection = urllib3.util.connection.create_connection
    monkeypatch.setattr(webhooks.socket, "getaddrinfo", rebinding_resolver)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", no_traffic)
    outcome = deliver(f"http://hooks.example.com:{listener.port}/hook", {"event": "drift"}, secret=SECRET,
                      allowlist=(f"hooks.example.com:{listener.port}",), timeout=5, attempts=2)
    assert outcome["delivered"] is False
    assert connected and set(connected) == {"93.184.216.34"}, connected
    assert listener.received == []


def test_the_request_schema_requires_a_secret_of_32_characters_and_stored_monitors_without_one_still_load():
    from pydantic import ValidationError

    from mlaas.monitoring.specs import MonitorRecord, MonitorSpec

    hook = {"url": "http://127.0.0.1:9000/hook"}
    for given in ({}, {"secret": ""}, {"secret": "x" * 31}):
        with pytest.raises(ValidationError, match="secret"):
            MonitorSpec.model_validate({"model": "m", "on_drift": {"webhook": {**hook, **given}}})
    assert MonitorSpec.model_validate({"model": "m", "on_drift": {"webhook": {**hook, "secret": "x" * 32}}})
    schema = MonitorSpec.model_json_schema()["$defs"]["WebhookAction"]
    assert schema["properties"]["secret"]["minLength"] == 32 and "secret" in schema["required"]
    legacy = MonitorRecord.model_validate({"id": "old", "model": "m", "schedule": {"every_seconds": 60}, "min_rows": 1,
                                           "created_at": "2026-01-01T00:00:00", "on_drift": {"webhook": hook}})
    assert legacy.on_drift.webhook.url == hook["url"] and legacy.on_drift.webhook.secret == ""
