"""Shadow and canary rollouts through the real API: the canary's share and stability, the shadow's comparison
recomputed, live quality from feedback on the compared ids, the guards, promotion and the end recorded in the
history, bad input and scopes."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from scipy.stats import binom
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier

from mlaas.client.api import ApiError, Client
from mlaas.rollouts import choice
from tests.integration.conftest import ADMIN_KEY, PREDICT_KEY, PROMOTE_KEY, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline
from tests.integration.test_inference import records
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL


def _register_versions(settings, name: str, *, constant: bool = False) -> None:
    """v1 (production) and v2, two logistic regressions; with ``constant`` also v3, which always says 1."""
    register(settings, name, titanic_pipeline(C=0.5), TRAIN[FEATURES], TRAIN["Survived"])
    register(settings, name, titanic_pipeline(C=0.01), TRAIN[FEATURES], TRAIN["Survived"], stage=None)
    if constant:
        pipeline = titanic_pipeline().set_params(clf=DummyClassifier(strategy="constant", constant=1))
        register(settings, name, pipeline, TRAIN[FEATURES], TRAIN["Survived"], stage=None)


@pytest.fixture(scope="module")
def model(settings) -> str:
    name = f"rollout-{int(time.time() * 1000) % 10**8}"
    _register_versions(settings, name, constant=True)
    return name


def _row(i: int) -> dict:
    return records(TEST.iloc[[i % len(TEST)]], with_ids=False)[0]


def _infer(api: Api, model: str, rows: list[dict], version: int | None = None) -> dict:
    body = {"model": model, "data": rows, **({"version": version} if version else {})}
    response = api.post("/inference", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _start(api: Api, settings, model: str, body: dict) -> dict:
    """Start a rollout, then let every API replica's cached state expire (MLAAS_RESOLVE_TTL_SECONDS, 1 s here):
    from then on every request is routed by it, so the counts can be checked exactly."""
    response = api.post(f"/models/{model}/rollout", json=body)
    assert response.status_code == 200, response.text
    time.sleep(settings.resolve_ttl_seconds)
    return response.json()


def _status(api: Api, model: str) -> dict:
    response = api.get(f"/models/{model}/rollout")
    assert response.status_code == 200, response.text
    return response.json()


def _scored(api: Api, model: str, requests: int) -> dict:
    """The status once the worker has counted ``requests`` answered requests and nothing waits."""
    def done() -> dict | None:
        status = _status(api, model)
        answered = status["production"]["requests"] + status["candidate"]["requests"]
        return status if answered >= requests and status["queued"] == 0 else None
    return wait_for(done, 120, f"{requests} requests of {model} scored by the rollout")


def _end(api: Api, model: str) -> dict:
    response = api.delete(f"/models/{model}/rollout")
    assert response.status_code == 200, response.text
    return response.json()


def _events(api: Api, model: str) -> list[dict]:
    return api.get(f"/models/{model}").json()["promotions"]


def test_rollouts_need_the_admin_scope(api, model):
    for key in (PREDICT_KEY, PROMOTE_KEY):
        other = Api(api.base_url, key)
        assert other.post(f"/models/{model}/rollout", json={"version": 2, "mode": "shadow"}).status_code == 403
        assert other.get(f"/models/{model}/rollout").status_code == 403
        assert other.delete(f"/models/{model}/rollout").status_code == 403


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"version": 2, "mode": "canary"}, 400, "weight"),
    ({"version": 2, "mode": "canary", "weight": 1.5}, 400, "weight"),
    ({"version": 2, "mode": "shadow", "weight": 0.2}, 400, "weight"),
    ({"version": 2, "mode": "sideways"}, 400, "mode"),
    ({"version": 0, "mode": "shadow"}, 400, "version"),
    ({"version": 2, "mode": "shadow", "guard": {"min_agreement": 2}}, 400, "min_agreement"),
    ({"version": 2, "mode": "shadow", "surprise": 1}, 400, "surprise"),
    ({"version": 99, "mode": "shadow"}, 404, "99"),
    ({"version": 1, "mode": "shadow"}, 409, "production version"),
])
def test_bad_rollout_requests_are_refused_naming_the_problem(api, model, body, status, words):
    response = api.post(f"/models/{model}/rollout", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["message"]


def test_unknown_models_and_missing_rollouts_are_404(api, model, unique):
    assert api.post(f"/models/{unique}/rollout", json={"version": 2, "mode": "shadow"}).status_code == 404
    assert api.get(f"/models/{unique}/rollout").status_code == 404
    assert api.delete(f"/models/{model}/rollout").status_code == 404
    assert api.post(f"/models/{model}/rollout/promote", json={}).status_code == 404


def test_canary_share_is_within_binomial_bounds_and_stable_per_id(api, settings, model):
    weight, n = 0.3, 400
    assert _start(api, settings, model, {"version": 2, "mode": "canary", "weight": weight})["state"] == "active"
    ids = [f"canary-{i}" for i in range(n)]
    served = {i: _infer(api, model, [{**_row(k), "id": i}])["version"] for k, i in enumerate(ids)}
    assert set(served.values()) <= {1, 2}
    assert served == {i: 2 if choice.serves_candidate(model, 2, weight, i) else 1 for i in ids}
    low, high = binom.ppf([0.0005, 0.9995], n, weight)
    assert low <= sum(v == 2 for v in served.values()) <= high
    again = {i: _infer(api, model, [{**_row(k), "id": i}, {**_row(k + 1), "id": f"{i}-b"}])["version"]
             for k, i in enumerate(ids[:40])}
    assert again == {i: served[i] for i in ids[:40]}  # the first row's id decides, whatever follows it
    assert {_infer(api, model, [{**_row(0), "id": i}], version=1)["version"] for i in ids[:20]} == {1}

    status = _scored(api, model, n + 40)
    candidate = sum(v == 2 for v in served.values()) + sum(v == 2 for v in again.values())
    assert status["candidate"]["requests"] == candidate
    assert status["production"]["requests"] == n + 40 - candidate
    assert status["comparison"]["requests"] == n + 40  # each answer was scored by the other version too
    ended = _end(api, model)
    assert ended["state"] == "ended" and ended["ended_reason"] == "ended by request"
    wait_for(lambda: all(_infer(api, model, [{**_row(0), "id": i}])["version"] == 1 for i in ids[:30]), 30,
             "production answering every request after the end")
    kinds = [e.get("event") for e in _events(api, model) if e.get("rollout_id") == ended["id"]]
    assert kinds == ["rollout_started", "rollout_ended"]


def test_shadow_never_answers_and_its_comparison_matches_a_recomputation(api, settings, model):
    _start(api, settings, model, {"version": 2, "mode": "shadow"})
    batches = [records(TEST.iloc[i * 5:(i + 1) * 5]) for i in range(30)]
    answers = [_infer(api, model, rows) for rows in batches]
    assert {a["version"] for a in answers} == {1}
    status = _scored(api, model, len(batches))
    assert status["candidate"]["requests"] == 0 and status["production"]["requests"] == len(batches)
    assert status["candidate"]["latency"]["background"]["requests"] == len(batches)
    production = [p["prediction"] for rows in batches for p in _infer(api, model, rows, version=1)["predictions"]]
    candidate = [p["prediction"] for rows in batches for p in _infer(api, model, rows, version=2)["predictions"]]
    assert production == [p["prediction"] for a in answers for p in a["predictions"]]
    agreed = sum(a == b for a, b in zip(production, candidate, strict=True))
    assert status["comparison"] == {"requests": len(batches), "rows": len(production),
                                    "agreement": agreed / len(production)}
    assert status["task"] == "classification" and status["dropped"] == 0
    _end(api, model)


def test_the_guard_ends_a_canary_that_disagrees_with_production(api, model):
    body = {"version": 3, "mode": "canary", "weight": 0.5, "guard": {"min_requests": 20, "min_agreement": 0.9}}
    started = api.post(f"/models/{model}/rollout", json=body)
    assert started.status_code == 200, started.text
    for i in range(60):
        _infer(api, model, [{**_row(i), "id": f"guard-{i}"}])
    status = wait_for(lambda: (s := _status(api, model))["state"] == "ended" and s, 120, "the guard ending the canary")
    assert status["ended_by"] == "rollout guard" and "below the floor 0.9" in status["ended_reason"]
    assert status["comparison"]["agreement"] < 0.9
    ended = [e for e in _events(api, model) if e.get("rollout_id") == status["id"]][-1]
    assert ended["event"] == "rollout_ended" and ended["by"] == "rollout guard"
    wait_for(lambda: all(_infer(api, model, [{**_row(i), "id": f"guard-{i}"}])["version"] == 1 for i in range(30)),
             30, "production answering every request after the guard")


def test_promotion_from_a_rollout_goes_through_the_gate_and_is_recorded(api, settings, unique):
    _register_versions(settings, unique)
    client = Client(api.base_url, ADMIN_KEY)  # the Python client's rollout calls
    assert client.start_rollout(unique, 2, "shadow")["mode"] == "shadow"
    assert client.start_rollout(unique, 2, "canary", weight=0.2)["mode"] == "canary"
    with pytest.raises(ApiError) as refused:  # the gate needs evaluations of both versions on one test set
        client.promote_rollout(unique)
    assert refused.value.status == 409 and "same test set" in refused.value.message
    assert client.rollout(unique)["state"] == "active"
    promoted = client.promote_rollout(unique, require_better=False)
    assert promoted["state"] == "ended" and promoted["ended_reason"].startswith("promoted to production")
    detail = client.model(unique)
    assert detail["production_version"] == 2
    events = detail["promotions"]
    assert [e.get("event") for e in events] == ["rollout_started", "rollout_changed", None, "rollout_promoted"]
    assert events[2]["from"] == 1 and events[2]["to"] == 2
    assert events[3]["promotion"] == events[2] and events[3]["comparison"]["requests"] == 0
    with pytest.raises(ApiError) as again:  # v2 is production now
        client.start_rollout(unique, 2, "shadow")
    assert again.value.status == 409


def _live(api: Api, model: str, joined: int) -> dict:
    """The status once its live quality has joined ``joined`` rows with feedback."""
    return wait_for(lambda: (s := _status(api, model))["live_quality"]["joined"] >= joined and s, 120,
                    f"the live quality of {model} joining {joined} rows")


def _feedback(api: Api, model: str, truth: dict[str, int]) -> None:
    response = api.post("/feedback", json={"model": model, "data": [{"id": k, "actual": v} for k, v in truth.items()]})
    assert response.status_code == 202, response.text


def test_shadow_live_quality_is_each_versions_own_answers_scored_against_the_feedback(api, settings, unique):
    _register_versions(settings, unique)
    _start(api, settings, unique, {"version": 2, "mode": "shadow"})
    served = TEST.iloc[:100]
    batches = [records(served.iloc[i:i + 5]) for i in range(0, len(served), 5)]
    for rows in batches:
        _infer(api, unique, rows)
    for i in range(3):  # no ids: compared, but feedback cannot name them
        _infer(api, unique, records(TEST.iloc[100 + 2 * i:102 + 2 * i], with_ids=False))
    status = _scored(api, unique, len(batches) + 3)
    live = status["live_quality"]
    assert (live["rows_kept"], live["rows_without_id"], live["rows_not_kept"], live["joined"]) == (100, 6, 0, 0)
    assert live["production"] is None

    truth = {f"p-{r.PassengerId}": int(r.Survived) for r in served.iloc[:80].itertuples()}  # 20 without outcome
    _feedback(api, unique, {**truth, "nobody-1": 1})
    live = _live(api, unique, len(truth))["live_quality"]
    assert live["joined"] == len(truth)
    answers = {}
    for version in (1, 2):  # each version's own answers to the same rows, asked by version (never routed)
        answers[version] = {p["id"]: p for rows in batches for p in _infer(api, unique, rows, version)["predictions"]}
    y = [truth[i] for i in truth]
    for arm, version in (("production", 1), ("candidate", 2)):
        labels = [answers[version][i]["prediction"] for i in truth]
        figures = live[arm]
        assert figures["version"] == version and figures["n"] == len(truth)
        assert figures["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, labels))
        assert figures["metrics"]["f1_macro"] == pytest.approx(skm.f1_score(y, labels, average="macro"))
    auc = skm.roc_auc_score(y, [answers[2][i]["probabilities"]["1"] for i in truth])
    assert live["candidate"]["metrics"]["roc_auc"] == pytest.approx(auc)  # scored off the request path
    assert live["difference"]["accuracy"] == pytest.approx(
        live["candidate"]["metrics"]["accuracy"] - live["production"]["metrics"]["accuracy"])
    _end(api, unique)


def test_the_quality_guard_ends_a_canary_whose_live_accuracy_is_worse(api, settings, unique):
    _register_versions(settings, unique, constant=True)
    guard = {"min_requests": 10_000, "max_quality_drop": 0.05, "min_quality_rows": 40}
    _start(api, settings, unique, {"version": 3, "mode": "canary", "weight": 0.5, "guard": guard})
    served = TEST.iloc[:120]
    for rows in (records(served.iloc[i:i + 1]) for i in range(len(served))):
        _infer(api, unique, rows)
    _scored(api, unique, len(served))
    _feedback(api, unique, {f"p-{r.PassengerId}": int(r.Survived) for r in served.itertuples()})
    status = wait_for(lambda: (s := _status(api, unique))["state"] == "ended" and s, 120, "the quality guard")
    assert status["ended_by"] == "rollout guard" and "live accuracy" in status["ended_reason"]
    live = status["live_quality"]
    assert live["production"]["metrics"]["accuracy"] - live["candidate"]["metrics"]["accuracy"] > 0.05
