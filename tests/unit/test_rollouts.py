"""Rollouts without services: the canary choice, the comparison counters, their summary and the guard."""

from __future__ import annotations

import math
from typing import Any

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
