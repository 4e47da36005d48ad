"""The one error table: every code has a status and title, and every consumer derives from it."""

import json
import re
import socket
from pathlib import Path

import pytest
from flask import Flask

from mlaas import errors
from mlaas.api.errors import register_error_handlers
from mlaas.api.gunicorn_conf import _problem_json
from mlaas.client.api import _error

ROOT = Path(__file__).resolve().parents[2]


def every_error_class() -> list[type[errors.MlaasError]]:
    found, pending = [], [errors.MlaasError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if cls is not errors.MlaasError]


def test_every_error_class_has_its_own_code_a_status_and_a_title():
    classes = every_error_class()
    assert {cls.code for cls in classes} == set(errors.ERRORS)
    assert len({cls.code for cls in classes}) == len(classes), "two classes share a code"
    for cls in classes:
        assert 400 <= cls.status <= 599, cls
        assert cls.title and cls.description, cls


def test_cancelled_is_not_an_internal_error():
    assert errors.status_of("cancelled") == 409


def test_every_code_the_sources_name_is_in_the_table():
    pattern = re.compile(r"""(?:error_response|problem)\(\s*["']([a-z_]+)["']""")
    used = {code for path in (ROOT / "mlaas").rglob("*.py") for code in pattern.findall(path.read_text())}
    assert used, "the scan found no error codes at all"
    assert used <= set(errors.ERRORS), used - set(errors.ERRORS)


@pytest.fixture
def raising_app():
    app = Flask(__name__)
    register_error_handlers(app)

    @app.route("/raise/<code>")
    def _raise(code: str):
        cls = errors.ERRORS[code]
        raise cls("dependency") if cls is errors.Unavailable else cls(f"a {code} error")

    return app


@pytest.mark.parametrize("code", sorted(errors.ERRORS))
def test_the_api_answers_each_error_with_its_status_and_title(raising_app, code):
    response = raising_app.test_client().get(f"/raise/{code}")
    cls = errors.ERRORS[code]
    assert response.status_code == cls.status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code and body["status"] == cls.status and body["title"] == cls.title


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_input"), (403, "forbidden"), (431, "too_large"),
                                              (500, "internal")])
def test_gunicorns_own_refusals_carry_the_tables_code(status, code):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        _problem_json(ours, status, "Reason", "what went wrong")
        ours.shutdown(socket.SHUT_WR)
        sent = b"".join(iter(lambda: theirs.recv(65536), b""))
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert json.loads(body) == {"code": code, "message": "what went wrong", "status": status,
                                "title": errors.title_of(code)}


class _Response:
    def __init__(self, status: int, body: object = None, content_type: str = "application/json"):
        self.status_code, self._body, self.reason, self.url = status, body, "Reason", "http://x/y"
        self.headers, self.text = {"Content-Type": content_type}, ""

    def json(self):
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.code)
def test_the_client_maps_a_bare_status_to_the_tables_code(cls):
    error = _error(_Response(cls.status))  # e.g. a proxy's answer with no mlaas body
    assert error.status == cls.status
    assert errors.ERRORS[error.code].status == cls.status


def test_the_api_never_writes_a_bare_nan_token():
    from mlaas.api.app import StrictJSONProvider

    provider = StrictJSONProvider(Flask(__name__))
    with pytest.raises(ValueError):
        provider.dumps({"roc_auc": float("nan")})
    assert provider.dumps({"roc_auc": 0.5}) == '{"roc_auc": 0.5}'
