"""Rollouts without services: the canary choice, the comparison counters, their summary, the guard, and live
quality (both answers kept by id, joined with outcomes)."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.stats import binom

from mlaas.rollouts import choice, compare
from mlaas.rollouts.compare import Tally
from mlaas.rollouts.specs import GuardSpec, RolloutSpec


def test_the_choice_is_stable_per_id_and_its_share_is_the_weight():
    ids = [f"row-{i}" for i in range(20_000)]
    first = [choice.serves_candidate("m", 2, 0.1, i) for i in ids]
    assert first == [choice.serves_candidate("m", 2, 0.1, i) for i in ids]
    low, high = binom.ppf([0.0005, 0.9995], len(ids), 0.1)
    assert low <= sum(first) <= high


def test_raising_the_weight_keeps_the_candidates_ids():
    ids = range(5_000)
    at_10 = {i for i in ids if choice.serves_candidate("m", 3, 0.1, i)}
    at_30 = {i for i in ids if choice.serves_candidate("m", 3, 0.3, i)}
    assert at_10 < at_30
    assert all(choice.serves_candidate("m", 3, 1.0, i) for i in ids)


def test_ids_of_other_types_models_and_candidates_hash_apart():
    values = [choice.bucket("m", 2, "7"), choice.bucket("m", 2, 7), choice.bucket("n", 2, 7), choice.bucket("m", 3, 7)]
    assert len(set(values)) == 4
    assert all(0 <= v < 1 for v in values)


def test_requests_without_ids_are_routed_by_request_id():
    assert choice.routing_id(["a", "b"], [True, True], "r1") == "a"
    assert choice.routing_id([0, 1], [False, False], "r1") == "request:r1"
    assert choice.routing_id([0, 1], [False, False], "r2") != choice.routing_id([0, 1], [False, False], "r1")


def test_compare_answers_counts_agreement_and_numeric_differences():
    assert compare.compare_answers([1, 0, 1], [1, 1, 1]) == (3, 2, 1.0, 3)
    assert compare.compare_answers(["a", "b"], ["a", "c"]) == (2, 1, 0.0, 0)
    assert compare.compare_answers([1.5, 2.0], [1.0, 2.5]) == (2, 0, 1.0, 2)
    with pytest.raises(ValueError):
        compare.compare_answers([1], [1, 2])


def test_summary_of_a_tally_matches_a_recomputation():
    tally = compare.Tally()
    pairs = [([1, 0, 1, 1], [1, 1, 1, 0]), ([0, 0], [0, 0]), ([1], [0])]
    for i, (prod, cand) in enumerate(pairs):
        tally.scored("production", "served", 2.0 + i, len(prod))
        tally.scored("candidate", "background", 40.0, len(cand))
        tally.compared(prod, cand)
    tally.error("candidate")
    summary = compare.summarize(tally.counts, "classification")
    agreed = sum(a == b for prod, cand in pairs for a, b in zip(prod, cand, strict=True))
    assert summary["comparison"] == {"requests": 3, "rows": 7, "agreement": agreed / 7}
    assert summary["production"]["requests"] == 3 and summary["production"]["rows"] == 7
    assert summary["candidate"]["requests"] == 0 and summary["candidate"]["errors"] == 1
    assert summary["candidate"]["error_rate"] == 1 / 4
    assert summary["production"]["latency"]["served"]["mean_ms"] == 3.0
    assert summary["candidate"]["latency"]["background"]["p99_ms_at_most"] == 50


def test_regression_summary_is_the_mean_absolute_difference():
    tally = compare.Tally()
    tally.compared([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    assert compare.summarize(tally.counts, "regression")["comparison"]["mean_abs_diff"] == pytest.approx(0.5)


def test_percentile_reads_bucket_bounds():
    tally = compare.Tally()
    for ms in [0.2] * 98 + [12.0, 9000.0]:
        tally.scored("production", "served", ms, 1)
    assert compare.percentile(tally.counts, "production.served", 0.5) == 0.5
    assert compare.percentile(tally.counts, "production.served", 0.99) == 15
    assert math.isinf(compare.percentile(tally.counts, "production.served", 1.0) or 0)
    assert compare.percentile({}, "candidate.served", 0.5) is None


def _summary(agreed: int, rows: int, cand_errors: int = 0, prod_errors: int = 0, requests: int = 100) -> dict:
    tally = compare.Tally()
    for _ in range(requests):
        tally.scored("production", "served", 1.0, 1)
        tally.scored("candidate", "background", 1.0, 1)
    for _ in range(cand_errors):
        tally.error("candidate")
    for _ in range(prod_errors):
        tally.error("production")
    tally.counts["compared_rows"], tally.counts["agreed_rows"] = rows, agreed
    return compare.summarize(tally.counts, "classification")


def test_the_guard_waits_for_enough_requests_then_judges():
    guard = GuardSpec(min_requests=200, min_agreement=0.9)
    assert compare.guard_verdict(_summary(50, 100), guard) is None  # 100 requests: too few to judge
    guard = GuardSpec(min_requests=50, min_agreement=0.9)
    assert "below the floor 0.9" in (compare.guard_verdict(_summary(85, 100), guard) or "")
    assert compare.guard_verdict(_summary(95, 100), guard) is None


def test_the_guard_ends_on_an_error_rate_above_productions():
    guard = GuardSpec(min_requests=50, max_extra_error_rate=0.02)
    assert "error rate" in (compare.guard_verdict(_summary(100, 100, cand_errors=10), guard) or "")
    assert compare.guard_verdict(_summary(100, 100, cand_errors=10, prod_errors=10), guard) is None


def test_a_canary_needs_a_weight_and_a_shadow_takes_none():
    with pytest.raises(ValidationError, match="weight"):
        RolloutSpec(version=2, mode="canary")
    with pytest.raises(ValidationError, match="weight"):
        RolloutSpec(version=2, mode="shadow", weight=0.5)
    with pytest.raises(ValidationError):
        RolloutSpec(version=2, mode="canary", weight=1.5)
    assert RolloutSpec(version=2, mode="canary", weight=0.1).guard.min_requests == 50


# -- the worker's scoring: one vectorised predict per version counts as scoring each request alone -------
class _Cache:
    """The two calls scoring makes of a ModelCache, over models built here."""

    def __init__(self, models: dict[int, Any]) -> None:
        self.models = models

    def resolve(self, name: str, ref: int) -> int:
        return ref

    def get(self, version: int) -> Any:
        return self.models[version]


def _entries(served_model: Any, requests: list[list[dict]]) -> list[dict]:
    from tests.unit.test_fastpath import answer

    out = []
    for rows in requests:
        labels = [p["prediction"] for p in answer(served_model, {"data": rows})[0]["predictions"]]
        out.append({"served": "production", "ov": 2, "ms": 1.0, "body": {"data": rows}, "labels": labels})
    return out


def _context() -> Any:
    from mlaas.context import Context
    from mlaas.settings import Settings

    return Context(Settings())


@pytest.mark.parametrize("fast", [True, False])
def test_batched_scoring_counts_what_scoring_each_request_alone_counts(fast):
    from mlaas.rollouts import scoring
    from tests.unit.test_fastpath import TITANIC, TYPES, fitted, served, titanic_pipeline, titanic_records

    production = served(fitted("titanic")[0], list(TYPES), TYPES, fast=fast, id_column="PassengerId")
    retrained = titanic_pipeline(C=0.01).fit(TITANIC[list(TYPES)], TITANIC["Survived"])
    candidate = served(retrained, list(TYPES), TYPES, fast=fast, id_column="PassengerId")
    rows = titanic_records(40)
    requests = [rows[i:i + 4] for i in range(0, 40, 4)] + [rows[:3]]  # the last repeats ids of the first
    requests[2] = [{**r, "id": f"x{k}"} for k, r in enumerate(requests[2])]
    entries = _entries(production, requests)
    together, alone = Tally(), Tally()
    scoring.score_batch(entries, "m", together, ctx=_context(), cache=_Cache({2: candidate}))
    for entry in entries:
        scoring.score_batch([entry], "m", alone, ctx=_context(), cache=_Cache({2: candidate}))
    keep = ("compared_requests", "compared_rows", "agreed_rows", "production.served", "candidate.background",
            "candidate.background_rows", "candidate.attempts")
    assert {k: together.counts[k] for k in keep} == {k: alone.counts[k] for k in keep}
    assert together.counts["compared_rows"] == 43 and not together.counts.get("candidate.errors")
    assert 0 < together.counts["agreed_rows"] < 43


def test_a_request_the_other_version_cannot_score_is_its_error_and_the_rest_still_count():
    from mlaas.rollouts import scoring
    from tests.unit.test_fastpath import TYPES, fitted, served, titanic_records

    model = served(fitted("titanic")[0], list(TYPES), TYPES, fast=True)
    rows = titanic_records(12)
    entries = _entries(model, [rows[:4], rows[4:8], rows[8:]])
    entries[1]["body"] = {"data": [{k: v for k, v in r.items() if k != "Fare"} for r in rows[4:8]]}
    tally = Tally()
    scoring.score_batch(entries + [{"served": "candidate", "error": True}], "m", tally, ctx=_context(),
                        cache=_Cache({2: model}))
    assert tally.counts["candidate.errors"] == 2 and tally.counts["candidate.attempts"] == 4
    assert tally.counts["compared_requests"] == 2 and tally.counts["agreed_rows"] == 8  # the same model agrees
    summary = compare.summarize(tally.counts, "classification")
    assert summary["candidate"]["error_rate"] == 0.5 and summary["comparison"]["agreement"] == 1.0


# -- live quality: both answers kept by id, joined with feedback, judged by the guard ----------------------
class _Rollouts:
    """The RolloutStore calls keeping and refreshing live quality make, in memory."""

    def __init__(self, state: dict | None = None) -> None:
        self.state, self.counts, self.summaries = state, {}, {}

    def get(self, model: str) -> dict | None:
        return self.state

    def stats(self, rollout_id: str) -> dict[str, float]:
        return dict(self.counts)

    def add(self, rollout_id: str, counts: dict[str, float]) -> None:
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0.0) + v

    def reserve(self, rollout_id: str, rows: int, limit: int) -> int:
        self.add(rollout_id, {"quality.reserved": rows})
        return max(0, min(rows, limit - int(self.counts["quality.reserved"] - rows)))

    def release(self, rollout_id: str, rows: int) -> None:
        self.add(rollout_id, {"quality.reserved": -rows})

    def quality(self, rollout_id: str) -> dict | None:
        return self.summaries.get(rollout_id)

    def set_quality(self, rollout_id: str, summary: dict) -> None:
        self.summaries[rollout_id] = json.loads(json.dumps(summary, allow_nan=False))


class _Locks:
    def lock(self, name: str, ttl: int) -> Any:
        return contextlib.nullcontext(True)


def _quality_context(rollouts: _Rollouts, **settings: Any) -> Any:
    from mlaas.context import Context
    from mlaas.settings import Settings
    from tests.fakes import MemoryBlobStore

    return Context(Settings(**settings), {"storage": MemoryBlobStore(), "rollouts": rollouts, "monitors": _Locks()})


def _kept_batch(n_requests: int = 6) -> tuple[list[dict], Any, Any]:
    """Requests of 4 titanic rows answered by production (v1), the candidate (v2) scored in the batch; the last
    request sends no ids, the one before only for two rows."""
    from tests.unit.test_fastpath import TITANIC, TYPES, fitted, served, titanic_pipeline, titanic_records

    production = served(fitted("titanic")[0], list(TYPES), TYPES, fast=True)
    candidate = served(titanic_pipeline(C=0.01).fit(TITANIC[list(TYPES)], TITANIC["Survived"]), list(TYPES), TYPES,
                       fast=True)
    rows = [{k: v for k, v in r.items() if k != "PassengerId"} for r in titanic_records(4 * n_requests)]
    requests = [[{**r, "id": f"q{4 * i + k}"} for k, r in enumerate(rows[4 * i:4 * i + 4])]
                for i in range(n_requests)]
    requests[-2] = [{**r, "id": r["id"]} if k < 2 else {x: v for x, v in r.items() if x != "id"}
                    for k, r in enumerate(requests[-2])]
    requests[-1] = rows[-4:]
    return _entries(production, requests), production, candidate


def test_the_worker_keeps_both_answers_by_the_requests_own_ids_and_counts_rows_without():
    from mlaas.rollouts import quality, scoring
    from tests.unit.test_fastpath import answer

    entries, production, candidate = _kept_batch()
    rollouts = _Rollouts()
    ctx = _quality_context(rollouts)
    tally, kept = Tally(), quality.Kept()
    scoring.score_batch(entries, "m", tally, ctx=ctx, cache=_Cache({2: candidate}), kept=kept)
    quality.keep("m", "r1", kept, tally, ctx=ctx, ids_of=lambda body: scoring._ids(body, ctx))
    assert tally.counts["quality.rows_kept"] == 4 * 4 + 2 and tally.counts["quality.rows_without_id"] == 2 + 4
    rows, files = quality.answers(ctx, "m", "r1")
    assert len(files) == 1 and files[0][0].startswith("rollouts/m/r1/answers/")
    with_ids = [r for e in entries for r in e["body"]["data"] if "id" in r]
    assert rows["_id"].tolist() == [r["id"] for r in with_ids]
    own = {p["id"]: p for p in answer(candidate, {"data": with_ids})[0]["predictions"]}
    served = {p["id"]: p for p in answer(production, {"data": with_ids})[0]["predictions"]}
    assert rows["production"].tolist() == [str(served[i]["prediction"]) for i in rows["_id"]]
    assert rows["candidate"].tolist() == [str(own[i]["prediction"]) for i in rows["_id"]]
    assert rows["candidate_proba_1"].tolist() == pytest.approx([own[i]["probabilities"]["1"] for i in rows["_id"]])
    assert set(rows["_served"]) == {"production"}


def test_kept_rows_stop_at_the_cap_and_the_rest_are_counted():
    from mlaas.rollouts import quality, scoring

    entries, _, candidate = _kept_batch()
    rollouts = _Rollouts()
    ctx = _quality_context(rollouts, rollout_quality_rows=25)
    for _ in range(2):  # 18 rows with ids a batch
        tally, kept = Tally(), quality.Kept()
        scoring.score_batch(entries, "m", tally, ctx=ctx, cache=_Cache({2: candidate}), kept=kept)
        quality.keep("m", "r1", kept, tally, ctx=ctx, ids_of=lambda body: scoring._ids(body, ctx))
        rollouts.add("r1", dict(tally.counts))
    assert len(quality.answers(ctx, "m", "r1")[0]) == 25
    live = compare.summarize(rollouts.stats("r1"), "classification")["live_quality"]
    assert (live["rows_kept"], live["rows_not_kept"], live["rows_without_id"]) == (25, 11, 12)
    assert live["production"] is None and live["joined"] == 0


def _outcomes(actual: dict[str, Any], seconds: float = 0.0) -> pd.DataFrame:
    from mlaas.adapters.monitorstore import utcnow

    return pd.DataFrame({"_id": list(actual), "actual": [str(v) for v in actual.values()],
                         "_received": pd.Timestamp(utcnow()) + pd.Timedelta(seconds=seconds), "_batch": "b"})


def test_live_quality_is_evaluations_metrics_of_each_arm_on_the_rows_with_feedback():
    from sklearn import metrics as skm

    from mlaas.rollouts import quality
    from mlaas.rollouts.quality import Kept, frame

    kept = Kept()
    production = ["1", "0", "1", "1", "0", "0"]
    candidate = ["1", "1", "1", "0", "0", "1"]
    proba = np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9], [0.7, 0.3], [0.6, 0.4], [0.3, 0.7]])
    body = {"data": [{"id": f"a{i}", "x": i} for i in range(6)]}
    kept.add({"served": "production", "body": body, "labels": production}, "candidate", candidate, proba,
             ["0", "1"], False)
    rows, _ = frame(kept, lambda b: ([r["id"] for r in b["data"]], [True] * len(b["data"])))
    truth = {"a0": 1, "a1": 0, "a2": 0, "a3": 1, "a5": 1, "nobody": 0}  # a4 has no outcome yet
    # Received 60 s before the worker stamped the comparison: within the queue's delay, it still joins.
    live = quality.live_quality(_outcomes(truth, seconds=-60), rows, "classification",
                                {"production": 1, "candidate": 2})
    ids = ["a0", "a1", "a2", "a3", "a5"]
    y = [str(truth[i]) for i in ids]
    at = [int(i[1:]) for i in ids]
    assert live["joined"] == 5
    assert live["production"]["version"] == 1 and live["candidate"]["version"] == 2
    assert live["production"]["metrics"]["accuracy"] == skm.accuracy_score(y, [production[i] for i in at])
    assert live["candidate"]["metrics"]["accuracy"] == skm.accuracy_score(y, [candidate[i] for i in at])
    assert live["candidate"]["metrics"]["f1_macro"] == pytest.approx(
        skm.f1_score(y, [candidate[i] for i in at], average="macro"))
    assert live["candidate"]["metrics"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score([int(v) for v in y], proba[at, 1]))
    assert "roc_auc" not in live["production"]["metrics"]  # the answering version gave labels only
    assert "roc_auc" not in live["difference"]
    assert live["difference"]["accuracy"] == pytest.approx(
        live["candidate"]["metrics"]["accuracy"] - live["production"]["metrics"]["accuracy"])
    too_early = quality.live_quality(_outcomes(truth, seconds=-quality.SCORED_AFTER_SECONDS - 60), rows,
                                     "classification", {"production": 1, "candidate": 2})
    assert too_early["joined"] == 0 and too_early["production"]["n"] == 0


def test_regression_live_quality_is_mae_and_rmse_per_arm():
    from mlaas.rollouts import quality
    from mlaas.rollouts.quality import Kept, frame

    kept = Kept()
    body = {"data": [{"id": i, "x": i} for i in range(4)]}
    kept.add({"served": "candidate", "body": body, "labels": [1.0, 2.0, 3.0, 4.0]}, "production",
             [1.5, 2.5, 2.0, 4.0], None, [], True)
    rows, _ = frame(kept, lambda b: ([r["id"] for r in b["data"]], [True] * len(b["data"])))
    live = quality.live_quality(_outcomes({"0": 1.0, "1": 2.0, "2": 2.0, "3": 5.0}), rows, "regression",
                                {"production": 1, "candidate": 2})
    assert live["candidate"]["metrics"]["mae"] == pytest.approx((0 + 0 + 1 + 1) / 4)
    assert live["production"]["metrics"]["mae"] == pytest.approx((0.5 + 0.5 + 0 + 1) / 4)
    assert live["production"]["metrics"]["rmse"] == pytest.approx(math.sqrt((0.25 + 0.25 + 0 + 1) / 4))
    assert live["difference"]["mae"] == pytest.approx(0.5 - 0.5)


def test_refresh_keeps_the_figures_in_the_store_skips_unchanged_inputs_and_merges_many_parts(monkeypatch):
    from mlaas.quality import store
    from mlaas.rollouts import quality, scoring, service

    state = {"id": "r1", "model": "m", "version": 2, "production_version": 1, "state": "ended"}
    rollouts = _Rollouts(state)
    ctx = _quality_context(rollouts)
    entries, _, candidate = _kept_batch()
    monkeypatch.setattr(quality, "COMPACT_PARTS", 3)
    for _ in range(3):
        tally, kept = Tally(), quality.Kept()
        scoring.score_batch(entries, "m", tally, ctx=ctx, cache=_Cache({2: candidate}), kept=kept)
        quality.keep("m", "r1", kept, tally, ctx=ctx, ids_of=lambda body: scoring._ids(body, ctx))
        rollouts.add("r1", dict(tally.counts))
    rows, _ = quality.answers(ctx, "m", "r1")  # merges the three parts, each compared row once per batch
    assert len(store.listing(ctx, quality.folder(ctx, "m", "r1"))) == 1 and rollouts.counts["quality.parts"] == 1
    truth = {f"q{i}": i % 2 for i in range(0, 18)}
    store.write(ctx, store.outcomes_uri(ctx, "m", "b1", datetime.now(UTC)), _outcomes(truth))
    assert quality.refresh("m", ctx=ctx)["refreshed"] is True
    status = service.summary(ctx, state)["live_quality"]
    assert status["joined"] == 18 and "fingerprint" not in status and status["refreshed_at"]
    expected = quality.live_quality(_outcomes(truth), rows, "classification", {"production": 1, "candidate": 2})
    assert status["production"]["metrics"] == pytest.approx(expected["production"]["metrics"])
    assert quality.refresh("m", ctx=ctx)["reason"] == "nothing changed"


def _with_quality(prod: dict[str, float], cand: dict[str, float], joined: int) -> dict[str, Any]:
    summary = compare.summarize({}, "classification")
    summary["live_quality"].update(joined=joined, production={"version": 1, "n": joined, "metrics": prod},
                                   candidate={"version": 2, "n": joined, "metrics": cand})
    return summary


def test_the_quality_guard_ends_a_candidate_worse_than_production_by_more_than_the_margin():
    guard = GuardSpec(max_quality_drop=0.05, min_quality_rows=20)
    assert compare.guard_verdict(_with_quality({"accuracy": 0.8}, {"accuracy": 0.7}, 19), guard) is None
    reason = compare.guard_verdict(_with_quality({"accuracy": 0.8}, {"accuracy": 0.7}, 20), guard)
    assert reason is not None and "live accuracy 0.7" in reason and "20 rows" in reason
    assert compare.guard_verdict(_with_quality({"accuracy": 0.8}, {"accuracy": 0.76}, 20), guard) is None
    assert compare.guard_verdict(_with_quality({"accuracy": 0.8}, {"accuracy": 0.7}, 20), GuardSpec()) is None
    rmse = GuardSpec(max_quality_drop=0.5, min_quality_rows=1, quality_metric="rmse")
    assert compare.guard_verdict(_with_quality({"rmse": 2.0}, {"rmse": 2.4}, 5), rmse) is None
    assert "live rmse 2.6" in (compare.guard_verdict(_with_quality({"rmse": 2.0}, {"rmse": 2.6}, 5), rmse) or "")
    with pytest.raises(ValidationError, match="quality_metric"):
        GuardSpec(quality_metric="speed")


# -- the request path: what an API process queues ----------------------------------------------------------
class _Queued:
    """The RolloutStore and job queue calls the router's flush makes, in memory."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.sent: list[list[str]] = []

    def push(self, rollout_id: str, entries: list[str]) -> int:
        self.entries += entries
        return 0

    def add(self, rollout_id: str, counts: dict[str, float]) -> None:
        raise AssertionError("nothing is dropped here")

    def schedule(self, rollout_id: str) -> bool:
        return True

    def send(self, name: str, args: list[str]) -> None:
        self.sent.append(args)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-8-sig"])
def test_router_queues_the_request_text_as_sent_with_the_answer(encoding):
    """The body the worker scores is the request's JSON; UTF-8 text is queued as it came, other text re-encoded."""
    from mlaas.adapters.registry import ModelVersion
    from mlaas.context import Context
    from mlaas.inference.payload import parse_rows
    from mlaas.rollouts.router import Router
    from mlaas.settings import Settings

    queued = _Queued()
    # The background thread does not flush within the test: only its own call does.
    router = Router(Context(Settings(rollout_batch_seconds=600), {"rollouts": queued, "queue": queued}))
    body = {"data": [{"id": "é-1", "Age": 22.5, "Sex": "female"}, {"Age": None, "Sex": "male"}]}
    raw = json.dumps({"model": "m", **body}, ensure_ascii=False).encode(encoding)
    rollout = {"id": "r1", "model": "m", "version": 2, "mode": "shadow", "weight": 0.0}
    production = ModelVersion(name="m", version=1, run_id=None, source="models:/m-1")
    answer = router.serve(rollout, production, parse_rows(body, max_rows=10), body, "req-1", lambda n: production,
                          lambda version: ({"predictions": ["yes", "no"]}, [1, 0]), raw=raw)
    assert answer == {"predictions": ["yes", "no"]}
    router.flush()
    [entry] = [json.loads(text) for text in queued.entries]
    assert entry.pop("ms") >= 0
    assert entry == {"served": "production", "ov": 2, "labels": [1, 0],
                     "body": json.loads(raw) if encoding == "utf-8" else body}
    assert queued.sent == [["m", "r1"]]


class _Queue(_Rollouts):
    """A rollout's queue of requests besides its counts, as the drain uses them."""

    def __init__(self, state: dict, texts: list[str]) -> None:
        super().__init__(state)
        self.texts = texts

    def unschedule(self, rollout_id: str) -> None:
        pass

    def pop(self, rollout_id: str, count: int) -> list[str]:
        taken, self.texts = self.texts[:count], self.texts[count:]
        return taken

    def queued(self, rollout_id: str) -> int:
        return len(self.texts)


def test_a_drain_keeps_the_compared_rows_of_all_its_batches_in_one_part(monkeypatch):
    from mlaas.quality import store
    from mlaas.rollouts import quality, scoring

    entries, _, candidate = _kept_batch()
    state = {"id": "r1", "model": "m", "version": 2, "production_version": 1, "state": "ended"}
    rollouts = _Queue(state, [json.dumps(e) for e in entries * 3])
    ctx = _quality_context(rollouts)
    monkeypatch.setattr(scoring, "BATCH", len(entries))  # three batches
    result = scoring.drain("m", "r1", ctx=ctx, cache=_Cache({2: candidate}))
    assert result["scored"] == 3 * len(entries) and not rollouts.texts
    tally, kept = Tally(), quality.Kept()
    scoring.score_batch(entries, "m", tally, ctx=ctx, cache=_Cache({2: candidate}), kept=kept)
    one_batch, _ = quality.frame(kept, lambda body: scoring._ids(body, ctx))
    rows, files = quality.answers(ctx, "m", "r1")
    assert len(files) == 1 and rollouts.counts["quality.parts"] == 1
    assert len(rows) == rollouts.counts["quality.rows_kept"] == 3 * len(one_batch)
    assert rollouts.counts["compared_requests"] == 3 * tally.counts["compared_requests"]
    assert len(store.listing(ctx, quality.folder(ctx, "m", "r1"))) == 1
