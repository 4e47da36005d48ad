import hashlib
import hmac

import pytest

from mlaas.adapters.webhooks import check_url, sign
from mlaas.errors import InvalidInput


@pytest.mark.parametrize(
    "url, allowlist, fragment",
    [
        ("ftp://hooks.example.com/x", ("hooks.example.com",), "only http"),
        ("http://user:pw@127.0.0.1/x", ("127.0.0.1",), "credentials"),
        ("http://10.0.0.5/x", ("hooks.example.com",), "not in MLAAS_WEBHOOK_ALLOWLIST"),
        ("http://169.254.169.254/latest/meta-data", (), "not in MLAAS_WEBHOOK_ALLOWLIST"),
        ("http://localhost:9000/x", ("localhost",), "resolves to an internal address"),
        ("http://127.0.0.1:9000/x", ("127.0.0.1:9001",), "not in MLAAS_WEBHOOK_ALLOWLIST"),
    ],
)
def test_refused_urls(url, allowlist, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        check_url(url, allowlist)


def test_allowlisted_literal_ip_and_port():
    assert check_url("http://127.0.0.1:9000/hook", ("127.0.0.1",))
    assert check_url("http://127.0.0.1:9000/hook", ("127.0.0.1:9000",))


def test_signature_is_hmac_sha256_of_the_body():
    body = b'{"event": "drift"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == f"sha256={expected}"
