"""The foundation against the real stack: readiness, the jobs API, idempotency, cancellation."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.ensemble import RandomForestClassifier

from mlaas import jobs
from mlaas.adapters.jobstore import JobStore
from mlaas.adapters.model_files import DEFAULT_TRUSTED_TYPES
from mlaas.context import Context
from mlaas.drift.specs import DriftColumns, DriftSpec
from mlaas.errors import Unavailable
from tests.integration.conftest import JOBS_KEY, OTHER_JOBS_KEY, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, slow_pipeline, titanic_pipeline
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def prod_model(settings, titanic, unique):
    frame = pd.read_csv("examples/data/titanic/titanic.csv")
    register(settings, unique, titanic_pipeline(), frame[NUMERIC + CATEGORICAL], frame["Survived"])
    return unique


def train_body(model, titanic, **extra):
    return {"model": model, "dataset": titanic["train"], "data_config": titanic["data_config"], **extra}


def test_health_and_ready(api):
    assert api.get("/health").json() == {"status": "ok"}
    assert api.post("/health").status_code == 200
    ready = api.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok", "mlflow": "ok", "s3": "ok"}


def test_job_runs_on_the_worker_and_records_its_transitions(api, prod_model, titanic):
    response = api.post("/train", json=train_body(prod_model, titanic), headers={"X-Request-ID": "req-42"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/jobs/{accepted['job_id']}" and accepted["version"] == 1
    job = api.wait_job(accepted["job_id"])
    assert job["state"] == "succeeded", job
    assert [h["state"] for h in job["history"]] == ["queued", "running", "succeeded"]
    assert job["progress"] == {"step": "done", "percent": 100}
    assert job["request_id"] == "req-42"
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["result"]["version"] == 2


def test_failing_job_ends_failed_with_its_error_code(api, prod_model, titanic):
    body = train_body(prod_model, titanic, dataset="s3://datasets/fixtures/titanic/nothing-here.csv")
    job = api.wait_job(api.post("/train", json=body).json()["job_id"])
    assert job["state"] == "failed"
    assert [h["state"] for h in job["history"]] == ["queued", "running", "failed"]
    assert job["error"]["code"] == "invalid_input"
    assert "nothing-here.csv" in job["error"]["message"]
    assert job["result"] is None


def test_unknown_job_is_404_and_unknown_model_is_404_on_the_post(api, titanic):
    assert api.get("/jobs/" + "0" * 32).status_code == 404
    response = api.post("/train", json=train_body("no-such-model-anywhere", titanic))
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    response = api.post("/train", json={"model": "no-such-model-anywhere", "version": 7})
    assert response.status_code == 404


def test_unknown_version_is_404(api, prod_model, titanic):
    response = api.post("/train", json=train_body(prod_model, titanic, version=99))
    assert response.status_code == 404 and "99" in response.json()["message"]
    response = api.post("/train", json=train_body(prod_model, titanic, version="no_such_alias"))
    assert response.status_code == 404 and "no_such_alias" in response.json()["message"]


def test_idempotency_key_returns_the_same_job(api, prod_model, titanic):
    body = train_body(prod_model, titanic)
    first = api.post("/train", json=body, headers={"Idempotency-Key": f"key-{prod_model}"})
    second = api.post("/train", json=body, headers={"Idempotency-Key": f"key-{prod_model}"})
    assert first.status_code == 202 and second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    other = api.post("/train", json={**body, "random_state": 1}, headers={"Idempotency-Key": f"key-{prod_model}"})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"  # the IETF draft's answer
    api.wait_job(first.json()["job_id"])
    listed = api.get("/jobs", params={"type": "train", "limit": 500}).json()
    assert sum(1 for j in listed["jobs"] if j["params"]["model"] == prod_model) == 1


def worker_log_has(stack, text: str) -> bool:
    return any(text in unit.log.read_text(errors="replace") for unit in stack.units(["workers"]))


def versions_of(settings, model: str) -> list[int]:
    return sorted(int(v.version) for v in MlflowClient(settings.mlflow_tracking_uri)
                  .search_model_versions(f"name = '{model}'"))


def test_cancel_a_queued_job(api, stack, settings, prod_model, titanic):
    running = api.post("/train", json=train_body(prod_model, titanic)).json()["job_id"]
    queued = api.post("/train", json=train_body(prod_model, titanic)).json()["job_id"]
    cancelled = api.delete(f"/jobs/{queued}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert api.wait_job(running)["state"] == "succeeded"
    # the worker receives the cancelled job's message and skips it
    wait_for(lambda: worker_log_has(stack, f"job {queued} is already cancelled; skipping"), 120,
             "the worker skipping the cancelled job")
    job = api.get(f"/jobs/{queued}").json()
    assert job["state"] == "cancelled" and job["result"] is None
    assert [h["state"] for h in job["history"]] == ["queued", "cancelled"] and job["attempts"] == 0
    assert versions_of(settings, prod_model) == [1, 2]  # the running job's version, none from the cancelled one
    again = api.delete(f"/jobs/{queued}")
    assert again.status_code == 409


def test_cancel_a_running_training(api, stack, settings, titanic, unique):
    frame = pd.read_csv("examples/data/titanic/titanic.csv")
    X, y = frame[NUMERIC + CATEGORICAL], frame["Survived"]
    register(settings, unique, slow_pipeline(X, y, fit_seconds=8), X, y, fitted=True)
    job_id = api.post("/train", json=train_body(unique, titanic)).json()["job_id"]
    wait_for(lambda: api.get(f"/jobs/{job_id}").json()["progress"]["step"] == "fit", 120,
             f"job {job_id} in its fit step", interval=0.05)
    cancelled = api.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
    # the worker stops the job at its next step, after the fit, and leaves nothing behind
    wait_for(lambda: worker_log_has(stack, f"job {job_id} cancelled"), 180, "the worker stopping the job")
    job = api.get(f"/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["result"] is None and job["error"] is None, job
    assert [h["state"] for h in job["history"]] == ["queued", "running", "cancelled"]
    assert versions_of(settings, unique) == [1]
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(f"mlaas/{unique}")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    assert api.delete(f"/jobs/{job_id}").status_code == 409


def test_a_cancel_while_the_version_is_created_leaves_no_version(api, stack, settings, titanic, unique):
    frame = pd.read_csv("examples/data/titanic/titanic.csv")
    X, y = frame[NUMERIC + CATEGORICAL], frame["Survived"]
    big = titanic_pipeline()  # hundreds of deep trees: logging and registering the retrained version takes a while
    big.set_params(clf=RandomForestClassifier(n_estimators=600, random_state=0))
    register(settings, unique, big, X, y, trusted=list(DEFAULT_TRUSTED_TYPES))
    job_id = api.post("/train", json=train_body(unique, titanic)).json()["job_id"]
    # 90% of "register" is reported right before the version is created
    wait_for(lambda: api.get(f"/jobs/{job_id}").json()["progress"] == {"step": "register", "percent": 90}, 240,
             f"job {job_id} creating its version", interval=0.02)
    cancelled = api.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
    wait_for(lambda: worker_log_has(stack, f"job {job_id} cancelled"), 180, "the worker stopping the job")
    job = api.get(f"/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["result"] is None, job
    assert versions_of(settings, unique) == [1]  # the version created meanwhile is withdrawn


def test_list_jobs_filters_and_pages(api, prod_model, titanic):
    ids = [api.post("/train", json=train_body(prod_model, titanic)).json()["job_id"] for _ in range(3)]
    for job_id in ids:
        api.wait_job(job_id)
    page = api.get("/jobs", params={"type": "train", "state": "succeeded", "limit": 2}).json()
    assert len(page["jobs"]) == 2 and page["total"] >= 3 and page["limit"] == 2
    assert all(j["state"] == "succeeded" and j["type"] == "train" for j in page["jobs"])
    newest_first = [j["created_at"] for j in page["jobs"]]
    assert newest_first == sorted(newest_first, reverse=True)
    bad = api.get("/jobs", params={"state": "exploded"})
    assert bad.status_code == 400 and "state" in bad.json()["message"]


@pytest.mark.slow
def test_ready_turns_503_when_s3_stops_and_recovers(api, stack):
    stack.stop_component("s3")
    try:
        response = api.get("/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "unavailable" and "s3" in body["message"]
        assert body["details"]["checks"]["redis"] == "ok"
    finally:
        stack.start_component("s3")
    deadline = time.monotonic() + 60
    while api.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready again 60 s after S3 came back"
        time.sleep(0.5)


def test_keys_scopes_and_rate_limits_on_the_real_server(api, stack):
    from tests.integration.conftest import LIMITED_KEY, PREDICT_KEY, Api

    anonymous = Api(stack.config.url("api"), key=None)
    assert anonymous.get("/health").status_code == 200
    # open to anyone; 200 once every dependency answers (the test before stops and restarts S3: wait, not assume)
    wait_for(lambda: anonymous.get("/ready").status_code == 200, 60, "/ready answering 200 without a key")
    assert anonymous.post("/train", json={"model": "x"}).status_code == 401
    scorer = Api(stack.config.url("api"), key=PREDICT_KEY)
    assert scorer.post("/train", json={"model": "x"}).status_code == 403
    assert scorer.post("/inference", json={"model": "no-such-model", "data": [{"a": 1}]}).status_code == 404
    limited = Api(stack.config.url("api"), key=LIMITED_KEY)
    # 5 per minute: the sixth request in a window is refused (a window may turn over once in between)
    answers = []
    while len(answers) < 11 and (not answers or answers[-1].status_code != 429):
        answers.append(limited.post("/inference", json={"model": "no-such-model", "data": [{"a": 1}]}))
    refused = answers[-1]
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited", [a.status_code for a in answers]
    assert all(a.status_code == 404 for a in answers[:5])
    assert 1 <= int(refused.headers["Retry-After"]) <= 61


class LateStore(JobStore):
    """A job store whose writes all reach Redis after the client's deadline (as after a hang)."""

    def _deadline(self, now: float) -> float:
        return now - 60


def test_an_idempotency_key_whose_job_record_is_gone_makes_a_new_job(ctx, unique):
    first, created = ctx.jobs.create("drift", {"model": unique}, idempotency_key=f"gone-{unique}")
    assert created
    ctx.jobs.redis.delete(f"{ctx.settings.redis_prefix}:job:{first['job_id']}")  # expired, or never written
    second, created = ctx.jobs.create("drift", {"model": unique}, idempotency_key=f"gone-{unique}")
    assert created and second["job_id"] != first["job_id"] and second["state"] == "queued"
    again, created = ctx.jobs.create("drift", {"model": unique}, idempotency_key=f"gone-{unique}")
    assert not created and again["job_id"] == second["job_id"]


def test_a_write_redis_runs_past_the_deadline_is_not_applied_unless_redis_answered_in_time(ctx, unique):
    store = LateStore(ctx.settings)
    status, _ = store._scripts["create"](keys=[f"{ctx.settings.redis_prefix}:job:late-{unique}", "h", "z", ""],
                              args=[repr(time.time() - 60), "{}", "{}", 60, repr(time.time()), "", "", "x"])
    assert status == "late"
    assert not ctx.jobs.redis.exists(f"{ctx.settings.redis_prefix}:job:late-{unique}")
    # a late answer that still reached the client means Redis's clock is ahead, not that it hung: written once
    job, created = store.create("drift", {"model": unique}, idempotency_key=f"late-{unique}")
    assert created and ctx.jobs.get(job["job_id"])["history"] == [{"state": "queued", "at": job["created_at"]}]


class RefusingQueue:
    """A broker that does not take the message (Redis gone between the record and the publish)."""

    def submit(self, task_name: str, job_id: str) -> None:
        raise Unavailable("redis", "redis did not accept the task (TimeoutError)")


class RecordingQueue:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def submit(self, task_name: str, job_id: str) -> None:
        self.sent.append(job_id)


def test_a_submission_the_broker_refused_leaves_nothing_and_its_retry_makes_a_job(ctx, unique):
    refused = Context(ctx.settings, {"jobs": ctx.jobs, "queue": RefusingQueue()})
    spec = DriftSpec(reference=f"s3://datasets/{unique}/a.csv", current=f"s3://datasets/{unique}/b.csv",
                     columns=DriftColumns(numerical=["x"]))
    with pytest.raises(Unavailable):
        jobs.submit(spec, ctx=refused, idempotency_key=f"refused-{unique}")
    listed, _ = ctx.jobs.list(job_type="drift", limit=500)
    assert [j for j in listed if j["params"].get("reference") == spec.reference] == []
    queue = RecordingQueue()
    job, created = jobs.submit(spec, ctx=Context(ctx.settings, {"jobs": ctx.jobs, "queue": queue}),
                               idempotency_key=f"refused-{unique}")
    assert created and queue.sent == [job["job_id"]] and ctx.jobs.get(job["job_id"])["state"] == "queued"


def test_withdraw_leaves_a_job_a_worker_already_started(ctx, unique):
    job, _ = ctx.jobs.create("drift", {"model": unique}, idempotency_key=f"started-{unique}")
    ctx.jobs.transition(job["job_id"], "running", allowed_from=("queued",))
    assert not ctx.jobs.withdraw(job["job_id"], "drift", f"started-{unique}")
    assert ctx.jobs.get(job["job_id"])["state"] == "running"
    again, created = ctx.jobs.create("drift", {"model": unique}, idempotency_key=f"started-{unique}")
    assert not created and again["job_id"] == job["job_id"]


def test_a_key_reads_lists_and_cancels_only_its_own_jobs_and_idempotency_keys_are_its_own(api, prod_model, titanic):
    alice, bob = Api(api.base_url, JOBS_KEY), Api(api.base_url, OTHER_JOBS_KEY)
    body, key = train_body(prod_model, titanic), {"Idempotency-Key": f"mine-{prod_model}"}
    first = alice.post("/train", json=body, headers=key)
    second = bob.post("/train", json=body, headers=key)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    mine, theirs = first.json()["job_id"], second.json()["job_id"]
    assert mine != theirs  # bob's use of the same key neither reveals nor returns alice's job
    assert alice.post("/train", json={**body, "random_state": 5}, headers=key).status_code == 422

    assert bob.get(f"/jobs/{mine}").status_code == 404
    assert bob.delete(f"/jobs/{mine}").status_code == 404
    assert alice.get(f"/jobs/{mine}").json()["owner"] == "test-jobs"
    assert alice.get(f"/jobs/{mine}").json()["state"] != "cancelled"  # bob's DELETE did nothing

    def listed(client: Api) -> set[str]:
        page = client.get("/jobs", params={"type": "train", "limit": 200}).json()
        return {j["job_id"] for j in page["jobs"]}

    assert mine in listed(alice) and theirs not in listed(alice)
    assert theirs in listed(bob) and mine not in listed(bob)
    assert {mine, theirs} <= listed(api)  # the admin key sees every job
    assert alice.delete(f"/jobs/{mine}").status_code in (200, 409)  # cancelled, or already finished: not a 404
    assert bob.delete(f"/jobs/{theirs}").status_code in (200, 409)


def test_a_listing_offset_past_any_index_is_a_400_naming_it(api):
    response = api.get("/jobs?limit=10&offset=2901981020205511253379736642489679872")
    assert response.status_code == 400 and "offset" in response.json()["message"]
    assert api.get("/jobs?limit=10&offset=1000000000").status_code == 200
