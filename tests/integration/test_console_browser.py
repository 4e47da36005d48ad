"""The console at /ui in headless Chromium against the real stack: log in, pages render, charts have data.

It also writes the README's screenshots (docs/screenshots/console-*.png) from the same run.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlaas.adapters.capture_buffer import CaptureBuffer
from tests.integration.browser import Browser
from tests.integration.captured import drain
from tests.integration.conftest import ADMIN_KEY, JOBS_KEY, PREDICT_KEY, ROOT, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv(ROOT / "examples/data/titanic/titanic.csv")
TEST = pd.read_csv(ROOT / "examples/data/titanic/titanic_test.csv")
SHOTS = ROOT / "docs" / "screenshots"
FEATURES = NUMERIC + CATEGORICAL


def rows(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict(orient="records")]


def drift_job(api, body: dict) -> dict:
    response = api.post("/data-drift", json=body)
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["job_id"])
    assert job["state"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def monitored(api, ctx, settings, titanic):
    """A model with two versions, a promotion, captured traffic, two drift runs and two quality windows."""
    name = "console-titanic"  # each session's stack is new: a plain name, as it shows in the screenshots
    baseline = {"drift-data": titanic["train"], "data_config": titanic["data_config"]}  # as /train records them
    X, y = TRAIN[FEATURES], TRAIN["Survived"]
    register(settings, name, titanic_pipeline(C=0.5), X, y, tags=baseline)
    second = register(settings, name, titanic_pipeline(C=1.0), X, y, stage=None, tags=baseline)
    promoted = api.post(f"/models/{name}/promote", json={"version": second})
    assert promoted.status_code == 200, promoted.text
    shifted = TEST.head(150).assign(Age=lambda f: f["Age"] + 30, Sex="female")
    for chunk in (TEST.head(40), shifted.head(75), shifted.tail(75)):
        answer = api.post("/inference", json={"model": name, "data": rows(chunk)})
        assert answer.status_code == 200, answer.text
    drain(ctx, CaptureBuffer(settings), CaptureBuffer(settings).stream_key(name, second), 190)
    reference = {"model": name, "version": second}
    calm = drift_job(api, {"reference": reference, "current": titanic["test"]})
    drifted = drift_job(api, {"reference": reference,
                              "current": {"model": name, "version": second, "since": "2000-01-01T00:00:00Z"}})
    # Live quality windows as POST /feedback logs them (perf_ runs on the version): the console reads the runs.
    for end, accuracy, estimate in (("2026-11-30T00:00:00Z", 0.81, 0.80), ("2026-12-01T00:00:00Z", 0.74, 0.77)):
        with ctx.registry.run("perf", name, tags={"mlaas.kind": "perf", "mlaas.model_version": str(second)}) as run:
            run.log_params({"model": name, "version": second, "window_end": end})
            run.log_metrics({"n": 120, "accuracy": accuracy, "estimated_accuracy": estimate})
    return {"name": name, "version": second, "jobs": [calm["job_id"], drifted["job_id"]],
            "drifted_columns": drifted["result"]["drifted_columns"]}


def log_in(browser: Browser, base: str, key: str) -> None:
    browser.open(f"{base}/ui/login")
    browser.submit(f"document.getElementById('key').value = {json.dumps(key)}; "
                   "document.querySelector('section.login form').submit()")


def test_console_in_chromium(api, monitored, settings, tmp_path):
    base, name = api.base_url, monitored["name"]
    with Browser(tmp_path / "profile") as browser:
        browser.open(f"{base}/ui/models")
        assert browser.evaluate("location.pathname") == "/ui/login"  # no key yet
        log_in(browser, base, ADMIN_KEY)
        assert browser.evaluate("location.pathname") == "/ui/models"
        assert browser.evaluate("document.cookie") == ""  # HttpOnly: page scripts never see the key
        assert ADMIN_KEY not in browser.evaluate("location.href + document.documentElement.outerHTML")
        assert name in browser.evaluate("[...document.querySelectorAll('table.models a')].map(a => a.text)")
        browser.screenshot(SHOTS / "console-models.png")

        browser.open(f"{base}/ui/models/{name}")
        page = browser.evaluate("""(() => {
            const points = sel => [...document.querySelectorAll(sel + ' svg.chart')].map(s => +s.dataset.points);
            return {prod: document.querySelector('tr.prod td').textContent.trim(),
                    history: document.querySelectorAll('#production-history tbody tr').length,
                    drift: points('#drift'), quality: points('#quality'), traffic: points('#traffic'),
                    drifted: [...document.querySelectorAll('#drift rect.cell.drifted title')].map(t => t.textContent),
                    reports: [...document.querySelectorAll('#drift a.report')].map(a => a.pathname),
                    mlflow: [...document.querySelectorAll('#drift a.mlflow')].map(a => a.href),
                    versions: [...document.querySelectorAll('#drift tbody tr')].map(r => r.cells[2].textContent),
                    metrics: [...document.querySelectorAll('#quality .figure')].map(f => f.dataset.metric),
                    dashed: document.querySelectorAll('#quality polyline.est').length,
                    width: document.querySelector('#drift svg').getBoundingClientRect().width};
        })()""")
        assert page["prod"] == f"v{monitored['version']}" and page["history"] == 1
        # heatmap cells of both runs, and the share-drifted line with one point per run
        assert page["drift"][0] >= 2 * len(FEATURES) and page["drift"][1] == 2 and page["width"] > 100
        assert {t.split(" · ")[0] for t in page["drifted"]} >= set(monitored["drifted_columns"]) >= {"Age", "Sex"}
        assert sorted(page["reports"]) == sorted(f"/ui/jobs/{j}/report" for j in monitored["jobs"])
        assert page["versions"] == [f"v{monitored['version']}"] * 2
        assert len(page["mlflow"]) == 2 and all(settings.mlflow_ui_url in h and "/runs/" in h for h in page["mlflow"])
        assert page["metrics"] == ["accuracy"] and page["quality"] == [4] and page["dashed"] == 1
        assert page["traffic"] and page["traffic"][0] >= 1
        browser.screenshot(SHOTS / "console-model.png")

        browser.open(f"{base}{page['reports'][0]}")  # the drift report, through the same cookie
        assert "Age" in browser.evaluate("document.body.textContent")

        browser.open(f"{base}/ui/jobs?type=drift")
        states = browser.evaluate("[...document.querySelectorAll('table.jobs tr')].map(r => r.textContent)")
        for job_id in monitored["jobs"]:
            assert any(job_id in row and f"{name} v{monitored['version']}" in row and "succeeded" in row
                       and "done 100%" in row for row in states), states
        browser.screenshot(SHOTS / "console-jobs.png")
        assert browser.problems() == []  # no console errors, failed loads or CSP refusals on any page

        browser.submit("document.querySelector('form.logout').submit()")
        assert browser.evaluate("location.pathname") == "/ui/login"
        browser.open(f"{base}/ui/models")
        assert browser.evaluate("location.pathname") == "/ui/login"  # the cookie is gone


def test_console_scopes_and_ownership_over_http(api, monitored):
    """The cookie allows what the key allows: a predict key sees models but not jobs; a jobs key sees its own jobs."""
    import requests

    def session_for(key: str) -> requests.Session:
        browser = requests.Session()
        login = browser.get(f"{api.base_url}/ui/login")
        token = login.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        done = browser.post(f"{api.base_url}/ui/login", data={"key": key, "csrf_token": token},
                            allow_redirects=False)
        assert done.status_code == 303, done.text
        return browser

    scorer = session_for(PREDICT_KEY)
    assert scorer.get(f"{api.base_url}/ui/models/{monitored['name']}").status_code == 200
    assert scorer.get(f"{api.base_url}/ui/jobs").status_code == 403
    other = session_for(JOBS_KEY)
    listing = other.get(f"{api.base_url}/ui/jobs")
    assert listing.status_code == 200 and not any(j in listing.text for j in monitored["jobs"])  # the admin's jobs
    assert other.get(f"{api.base_url}/ui/jobs/{monitored['jobs'][1]}/report").status_code == 404
    # the JSON API's report route too: another key's drift report is unknown to it, its owner (admin) reads it
    report = f"/jobs/{monitored['jobs'][1]}/report"
    assert Api(api.base_url, JOBS_KEY).get(report).status_code == 404
    assert api.get(report).status_code == 200
    assert other.get(f"{api.base_url}/ui/models/no-such-model").status_code == 404
