"""The pure parts of live quality: the join by row id, metrics and windows, CBPE, quality conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from mlaas.errors import InvalidInput
from mlaas.quality import condition, estimate, performance
from mlaas.quality.feedback import outcomes_frame
from mlaas.quality.join import join
from mlaas.quality.specs import QualityCondition

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + timedelta(seconds=seconds))


def predictions(rows: list[tuple[int, str, str, float, str, float]]) -> pd.DataFrame:
    """(version, entry, id, seconds, label, probability of class 1) per captured row."""
    return pd.DataFrame({"_version": [r[0] for r in rows], "_entry": [r[1] for r in rows], "_id": [r[2] for r in rows],
                         "_ts": [at(r[3]) for r in rows], "_prediction": [r[4] for r in rows],
                         "_proba_0": [1 - r[5] for r in rows], "_proba_1": [r[5] for r in rows]})


def outcomes(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    """(id, actual, seconds received, batch) per outcome."""
    return pd.DataFrame({"_id": [r[0] for r in rows], "actual": [r[1] for r in rows],
                         "_received": [at(r[2]) for r in rows], "_batch": [r[3] for r in rows]})


def test_join_takes_the_latest_prediction_before_the_outcome_and_reports_the_rest():
    served = predictions([(1, "e1", "a", 0, "1", 0.9), (1, "e1", "b", 0, "0", 0.2),
                          (2, "e2", "a", 100, "0", 0.4),    # a answered again later, by v2
                          (2, "e3", "c", 5000, "1", 0.7)])  # c answered only after its outcome came
    got = outcomes([("a", "1", 50, "x"), ("b", "0", 60, "x"), ("c", "1", 70, "x"), ("zz", "1", 80, "x"),
                    ("a", "0", 200, "y"),                    # a's second outcome: joined to v2's answer
                    ("b", "1", 300, "y"), ("zz", "0", 400, "y")])  # b corrected; zz never answered
    rows, report = join(got, served, batch="y")
    keyed = {(r["_version"], r["_id"]): r for r in rows.to_dict("records")}
    assert set(keyed) == {(1, "a"), (2, "a"), (1, "b")}
    assert keyed[(1, "a")]["actual"] == "1" and keyed[(2, "a")]["actual"] == "0"
    assert keyed[(1, "b")]["actual"] == "1"  # the later outcome of the same prediction counts
    assert report["matched"] == 3 and report["unmatched"] == 2  # c (answered after) and zz (once, deduplicated)
    assert sorted(report["unmatched_ids"]) == ["c", "zz"]
    assert report["duplicates"] == 2 and sorted(report["duplicate_ids"]) == ["b", "zz"]
    assert report["ids_answered_more_than_once"] == 1  # a
    assert report["batch"] == {"batch": "y", "matched": 2, "unmatched": 1, "duplicates": 2}


def test_join_without_any_capture_leaves_every_outcome_unmatched():
    rows, report = join(outcomes([("a", "1", 5, "x")]), pd.DataFrame())
    assert rows.empty and report["matched"] == 0 and report["unmatched"] == 1


def test_outcomes_are_refused_with_missing_or_duplicate_ids_named():
    with pytest.raises(InvalidInput, match=r"duplicate ids 'p-2'"):
        outcomes_frame(pd.Series(["p-1", "p-2", "p-2"]), pd.Series([1, 0, 1]), "b", source="data")
    with pytest.raises(InvalidInput, match=r"rows 1 have no id"):
        outcomes_frame(pd.Series(["p-1", None], dtype=object), pd.Series([1, 0]), "b", source="data")
    with pytest.raises(InvalidInput, match=r"ids 'p-2' have no outcome"):
        outcomes_frame(pd.Series(["p-1", "p-2"]), pd.Series([1.0, np.nan]), "b", source="data")
    frame = outcomes_frame(pd.Series([1, 2]), pd.Series([1.0, 0.0]), "b", source="data")
    assert frame["_id"].tolist() == ["1", "2"] and frame["actual"].tolist() == ["1", "0"]  # 1.0 and 1 compare alike


def test_realized_metrics_are_scikit_learns_on_the_joined_rows():
    rng = np.random.default_rng(3)
    p1 = rng.uniform(size=300)
    rows = pd.DataFrame({"actual": rng.integers(0, 2, 300).astype(str), "_prediction": (p1 > 0.5).astype(int),
                         "_proba_0": 1 - p1, "_proba_1": p1})
    got = performance.realized(rows, "classification")["metrics"]
    y, pred = rows["actual"].astype(int), (p1 > 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, np.column_stack([1 - p1, p1])))
    values = pd.DataFrame({"actual": ["1.5", "2.0", "4.0"], "_prediction": ["1.0", "2.5", "4.0"]})
    assert performance.realized(values, "regression")["metrics"]["rmse"] == pytest.approx(
        np.sqrt(skm.mean_squared_error([1.5, 2, 4], [1, 2.5, 4])))


def test_windows_are_aligned_and_bounded():
    times = [pd.Series([at(10), at(3599), at(7300)])]
    spans = performance.windows(times, 3600, 10)
    assert [(lo - T0).total_seconds() for lo, _ in spans] == [0, 3600, 7200]
    assert all((hi - lo).total_seconds() == 3600 for lo, hi in spans)
    assert performance.windows([], 3600, 10) == []
    with pytest.raises(InvalidInput, match="window: 60 s makes 122 windows"):
        performance.windows(times, 60, 100)


def shifted_data(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Two features; the label follows a fixed logistic law of x (what moves is only where x lies)."""
    x = rng.normal(size=(n, 2)) + np.array([shift, -0.5 * shift])
    p = 1 / (1 + np.exp(-(1.8 * x[:, 0] - 1.2 * x[:, 1] + 0.6 * x[:, 0] * x[:, 1])))
    return x, (rng.uniform(size=n) < p).astype(int)


def test_cbpe_estimates_accuracy_and_auc_under_a_covariate_shift_within_its_stated_error():
    # A linear model of a law with an interaction term: miscalibrated where the data moves, so calibration matters.
    rng = np.random.default_rng(20261202)
    x_train, y_train = shifted_data(rng, 3000, 0.0)
    model = LogisticRegression().fit(x_train, y_train)
    x_ref, y_ref = shifted_data(rng, 3000, 0.0)
    classes = ["0", "1"]
    calibration = estimate.fit_calibration(model.predict_proba(x_ref), classes, [str(v) for v in y_ref])
    assert calibration["calibrated"]
    x_new, y_new = shifted_data(rng, 4000, 1.0)  # the inputs shift; P(y|x) does not
    proba = estimate.calibrate(model.predict_proba(x_new), classes, calibration)
    predicted = [str(v) for v in model.predict(x_new)]
    guess = estimate.expected(proba, classes, predicted)
    realized_accuracy = skm.accuracy_score(y_new, model.predict(x_new))
    realized_auc = skm.roc_auc_score(y_new, model.predict_proba(x_new)[:, 1])
    # Stated error: 3 binomial standard errors of the realized accuracy (plus the reference's calibration error).
    assert abs(guess["accuracy"] - realized_accuracy) <= 3 * estimate.standard_error(realized_accuracy, 4000) + 0.01
    assert abs(guess["roc_auc"] - realized_auc) <= 0.03
    uncalibrated = estimate.expected(model.predict_proba(x_new), classes, predicted)
    assert uncalibrated["accuracy"] != pytest.approx(guess["accuracy"], abs=1e-6)  # calibration was used


def test_expected_metrics_of_certain_predictions_are_exact():
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert estimate.expected(proba, ["0", "1"]) == {"accuracy": 1.0, "roc_auc": 1.0}
    assert estimate.expected(proba, ["0", "1"], ["1", "1", "1"])["accuracy"] == pytest.approx(2 / 3)


def test_quality_conditions_judge_floors_and_drops_in_the_metric_direction():
    floor = QualityCondition(metric="accuracy", floor=0.8)
    assert condition.judge(floor, 0.79, None) and not condition.judge(floor, 0.81, None)
    drop = QualityCondition(metric="f1_macro", max_drop=0.05)
    assert condition.judge(drop, 0.70, 0.80) and not condition.judge(drop, 0.78, 0.80)
    assert not condition.judge(drop, 0.5, None)  # no evaluation to compare with
    error = QualityCondition(metric="rmse", floor=2.0, max_drop=0.5)
    assert condition.judge(error, 2.1, 1.9) == ["rmse 2.1 is above 2"]
    assert len(condition.judge(error, 2.6, 1.9)) == 2
    with pytest.raises(InvalidInput, match="quality.metric: 'f1_macro' is not an estimated metric"):
        condition.validate(QualityCondition(metric="f1_macro", source="estimated", floor=0.5))
    with pytest.raises(ValueError, match="floor or max_drop"):
        QualityCondition(metric="accuracy")


class MemoryStore:
    """Blob storage in a dict, for the join's files."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def get_bytes(self, uri, max_bytes=None):
        from mlaas.errors import NotFound

        if (uri.bucket, uri.key) not in self.objects:
            raise NotFound(str(uri))
        return self.objects[(uri.bucket, uri.key)]

    def put_bytes(self, uri, data, content_type=""):
        self.objects[(uri.bucket, uri.key)] = data

    def list(self, bucket, prefix=""):
        from mlaas.adapters.storage import ObjectInfo
        from mlaas.uris import S3Uri

        for (b, k), v in sorted(self.objects.items()):
            if b == bucket and k.startswith(prefix):
                yield ObjectInfo(S3Uri(b, k), len(v), None, str(hash(v)))


class FreeLock:
    def lock(self, name, ttl):
        import contextlib

        return contextlib.nullcontext(True)


def test_a_reader_gets_the_rows_of_the_join_whose_counts_it_read():
    from mlaas.context import Context
    from mlaas.datasets.frames import write_frame
    from mlaas.quality import join as joining
    from mlaas.quality import store
    from mlaas.settings import Settings
    from mlaas.uris import S3Uri

    ctx = Context(Settings(), {"storage": MemoryStore(), "monitors": FreeLock()})
    served = predictions([(1, "e1", f"r-{i}", 0, "1", 0.8) for i in range(5)]).drop(columns="_version")
    write_frame(ctx.storage, S3Uri("drift", "capture/m/1/date=2026-11-01/e1_e1.parquet"), served)
    reports = []
    for n, value in enumerate(["1", "0", "1"]):  # three batches, each correcting r-0
        batch = outcomes([("r-0", value, 10 + n, f"b{n}")] + ([("r-1", "1", 10, "b0")] if n == 0 else []))
        write_frame(ctx.storage, store.outcomes_uri(ctx, "m", f"b{n}", T0), batch)
        reports.append(joining.run("m", ctx=ctx)["report"])
    assert joining.run("m", ctx=ctx)["joined"] is False  # nothing changed since
    latest = store.joined(ctx, "m", 1, reports[2])
    assert dict(zip(latest["_id"], latest["actual"], strict=True)) == {"r-0": "1", "r-1": "1"}
    assert reports[2]["duplicates"] == 2 and reports[2]["matched"] == 2
    previous = store.joined(ctx, "m", 1, reports[1])  # a reader that read the last report before this join
    assert dict(zip(previous["_id"], previous["actual"], strict=True)) == {"r-0": "0", "r-1": "1"}
    assert store.joined(ctx, "m", 1, reports[0]).empty  # two joins old: emptied


def test_the_feedback_scope_is_its_own_and_comes_with_jobs():
    from mlaas.api.security import required_scope
    from mlaas.auth import ApiKey

    jobs, feedback, scorer = (ApiKey(name, frozenset(scopes), b"x" * 32) for name, scopes in
                              (("j", {"jobs"}), ("f", {"feedback"}), ("p", {"predict"})))
    assert required_scope("feedback.post_feedback") == "feedback"
    assert required_scope("feedback.get_performance") is None  # any key reads quality, as it reads /models
    assert jobs.allows("feedback") and feedback.allows("feedback") and not scorer.allows("feedback")
    assert not feedback.allows("jobs") and not feedback.allows("predict")
