"""The console at /ui over fake adapters: login, the key cookie, CSRF, CSP and scopes (no servers)."""

from __future__ import annotations

import logging
import re

import pytest

from mlaas.api.app import create_app
from mlaas.auth import generate_key
from mlaas.context import Context
from mlaas.errors import NotFound
from mlaas.settings import Settings
from tests.fakes import MemoryBlobStore

ADMIN_KEY, ADMIN_ENTRY = generate_key("admin")
PREDICT_KEY, PREDICT_ENTRY = generate_key("scorer", ("predict",))


class FakeMlflowClient:
    def get_experiment_by_name(self, name):
        return None  # no runs logged yet


class FakeRegistry:
    """A registry with one model and no production version."""

    client = FakeMlflowClient()

    def __init__(self, settings):
        self.settings = settings

    def list_models(self):
        return [self.get_model("titanic")]

    def get_model(self, name):
        if name != "titanic":
            raise NotFound(f"model {name!r} does not exist")
        return {"name": "titanic", "aliases": {}, "tags": {}, "description": "<b>not bold</b>"}

    def list_versions(self, name):
        self.get_model(name)
        return []

    def production_version(self, name):
        raise NotFound(f"model {name!r} has no production version")


class FakeJobs:
    def __init__(self):
        self.owners = []

    def list(self, job_type=None, state=None, limit=50, offset=0, owner=None):
        self.owners.append(owner)
        job = {"job_id": "j1", "type": "drift", "state": "running", "params": {"model": "titanic", "version": 1},
               "progress": {"step": "compare", "percent": 50}, "result": None, "error": None,
               "created_at": "2026-12-01T10:00:00Z"}
        return [job], 1


@pytest.fixture
def jobs():
    return FakeJobs()


@pytest.fixture
def app(jobs):
    settings = Settings(api_keys=(ADMIN_ENTRY, PREDICT_ENTRY), rate_limit_per_minute=0)
    return create_app(settings, Context(settings, {"storage": MemoryBlobStore(), "registry": FakeRegistry(settings),
                                                   "jobs": jobs}))


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_of(client) -> str:
    page = client.get("/ui/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def log_in(client, key: str):
    return client.post("/ui/login", data={"key": key, "csrf_token": csrf_of(client)})


def cookie_header(response, name: str) -> str:
    return next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{name}="))


def test_login_keeps_the_key_in_an_httponly_strict_cookie_and_nowhere_else(client, caplog):
    caplog.set_level(logging.DEBUG)
    response = log_in(client, ADMIN_KEY)
    assert response.status_code == 303 and response.headers["Location"] == "/ui/models"
    cookie = cookie_header(response, "mlaas_console")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    page = client.get("/ui/models")
    assert page.status_code == 200 and ADMIN_KEY not in page.get_data(as_text=True)
    assert ADMIN_KEY not in caplog.text


def test_cookie_is_secure_over_https(client):
    token = csrf_of(client)
    response = client.post("/ui/login", data={"key": ADMIN_KEY, "csrf_token": token},
                           headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in cookie_header(response, "mlaas_console")


def test_login_refuses_a_wrong_key_and_a_missing_csrf_token(client):
    wrong = log_in(client, "mlaas_not-a-key")
    assert wrong.status_code == 401 and "key: this API key is not valid" in wrong.get_data(as_text=True)
    assert not any(c.startswith("mlaas_console=") for c in wrong.headers.getlist("Set-Cookie"))
    client.get("/ui/login")
    forged = client.post("/ui/login", data={"key": ADMIN_KEY})  # a cross-site form cannot know the token
    assert forged.status_code == 403 and "csrf_token" in forged.get_data(as_text=True)
    assert not any(c.startswith("mlaas_console=") for c in forged.headers.getlist("Set-Cookie"))
    stale = client.post("/ui/login", data={"key": ADMIN_KEY, "csrf_token": "x" * 43})
    assert stale.status_code == 403


def test_pages_without_a_key_go_to_the_login_page(client):
    for path in ("/ui/models", "/ui/models/titanic", "/ui/jobs"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"] == "/ui/login", path
    client.set_cookie("mlaas_console", "mlaas_forged", path="/ui")
    assert client.get("/ui/models").headers["Location"] == "/ui/login"


def test_the_cookie_has_the_same_scopes_as_the_bearer_key(client, jobs):
    log_in(client, PREDICT_KEY)
    assert client.get("/ui/models").status_code == 200  # any valid key, as GET /models
    forbidden = client.get("/ui/jobs")  # needs the jobs scope, as GET /jobs
    assert forbidden.status_code == 403 and "lacks the &#39;jobs&#39; scope" in forbidden.get_data(as_text=True)
    assert forbidden.mimetype == "text/html"
    log_in(client, ADMIN_KEY)
    page = client.get("/ui/jobs")
    assert page.status_code == 200 and "compare 50%" in page.get_data(as_text=True)
    assert jobs.owners == [None]  # an admin key sees every owner's jobs, as through the API


def test_the_cookie_does_not_authorise_the_json_api(client):
    log_in(client, ADMIN_KEY)
    client.set_cookie("mlaas_console", ADMIN_KEY, path="/")
    assert client.get("/models").status_code == 401


def test_logout_needs_the_token_and_clears_the_cookie(client):
    log_in(client, ADMIN_KEY)
    assert client.post("/ui/logout").status_code == 403
    token = csrf_of(client)
    response = client.post("/ui/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/ui/login"
    cleared = cookie_header(response, "mlaas_console")
    assert cleared.startswith("mlaas_console=;") and "Expires=Thu, 01 Jan 1970" in cleared
    assert client.get("/ui/models").status_code == 303


def test_every_console_page_has_a_strict_csp_and_no_inline_script(client):
    log_in(client, ADMIN_KEY)
    for path in ("/ui/login", "/ui/models", "/ui/models/titanic", "/ui/jobs", "/ui/models/nope"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'none'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
        html = response.get_data(as_text=True)
        assert "<script" not in html and " style=" not in html and "http://" not in html.replace(
            'xmlns="http://www.w3.org/2000/svg"', ""), path


def test_model_page_escapes_registry_text_and_says_what_is_missing(client):
    log_in(client, ADMIN_KEY)
    html = client.get("/ui/models/titanic").get_data(as_text=True)
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html and "<b>not bold</b>" not in html
    assert "No feedback yet" in html and "No drift runs yet" in html and "No captured traffic yet" in html


def test_unknown_model_and_bad_filter_are_pages_with_the_api_status(client):
    log_in(client, ADMIN_KEY)
    missing = client.get("/ui/models/nope")
    assert missing.status_code == 404 and "model &#39;nope&#39; does not exist" in missing.get_data(as_text=True)
    bad = client.get("/ui/jobs?state=sleeping")
    assert bad.status_code == 400 and "state" in bad.get_data(as_text=True)
    assert client.get("/ui/jobs?state=").status_code == 200  # the filter form's "any"


def test_static_assets_are_served_by_mlaas(client):
    css = client.get("/ui/static/console.css")
    assert css.status_code == 200 and ".chart" in css.get_data(as_text=True)
    assert client.get("/ui/static/favicon.svg").status_code == 200


def test_console_is_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert paths and not any(p.startswith("/ui") for p in paths)
