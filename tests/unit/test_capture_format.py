"""Captured requests read back as the rows that were scored, whatever payload style carried them."""

from __future__ import annotations

import base64
import decimal
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlaas.adapters.capture_buffer import _command, _loads
from mlaas.inference import payload, predict
from mlaas.monitoring import capture, housekeeping
from mlaas.settings import Settings


class FakeBuffer:
    """Keeps what would be sent to Redis, and hands it back as the flush reads it."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def append(self, model: str, version: int, entry: str, rows: int) -> None:
        self.texts.append(entry)
        return None

    def entries(self) -> list[tuple[str, Any]]:
        return [(f"{i + 1}-0", _loads(text)) for i, text in enumerate(self.texts)]


RECORDS: list[dict[str, Any]] = [
    {"id": "a", "x": 1.5, "n": 3, "t": "u", "extra": "ignored"},
    {"id": "b", "x": None, "n": -2, "t": None, "extra": "ignored"},
    {"id": "c", "x": 0.25, "n": 7, "t": "v", "extra": "ignored"},
]
USED = ["x", "n", "t"]


def payloads() -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Bodies in every accepted style, with the ids they are answered with."""
    no_ids = [{k: v for k, v in r.items() if k != "id"} for r in RECORDS]
    columns = list(no_ids[0])
    return {
        "data with ids": ({"model": "m", "data": RECORDS}, ["a", "b", "c"]),
        "data by position": ({"model": "m", "data": no_ids}, ["0", "1", "2"]),
        "dataframe_records": ({"dataframe_records": no_ids}, ["0", "1", "2"]),
        "dataframe_split with an index": ({"dataframe_split": {
            "columns": columns, "index": [10, 11, 12], "data": [[r[c] for c in columns] for r in no_ids]}},
            ["10", "11", "12"]),
        "inputs as columns": ({"inputs": {c: [r[c] for r in no_ids] for c in columns}}, ["0", "1", "2"]),
    }


def answer(body: dict[str, Any]) -> predict.Prediction:
    """What the inference service hands the capture for a body: rows parsed by its own parser."""
    rows = payload.parse_rows(body, max_rows=100)
    features = rows.frame[USED]
    proba = np.array([[0.75, 0.25], [0.5, 0.5], [0.125, 0.875]])
    probabilities = [{"no": float(p[0]), "yes": float(p[1])} for p in proba]
    return predict.Prediction(rows.ids, ["no", "no", "yes"], probabilities, ["extra"], features, proba)


@pytest.mark.parametrize("style", list(payloads()))
def test_an_entry_reads_back_the_scored_rows_with_their_ids_and_outputs(style):
    body, ids = payloads()[style]
    buffer = FakeBuffer()
    capture.record(buffer, "m", 1, answer(body), "req-1")  # type: ignore[arg-type]
    frame = capture.entries_frame(buffer.entries())
    assert frame["_id"].tolist() == ids
    assert frame["_request_id"].tolist() == ["req-1"] * 3 and frame["_entry"].tolist() == ["1-0"] * 3
    assert frame["x"].tolist()[0] == 1.5 and np.isnan(frame["x"].tolist()[1]) and frame["x"].tolist()[2] == 0.25
    assert frame["n"].tolist() == [3, -2, 7]
    assert [None if pd.isna(v) else v for v in frame["t"]] == ["u", None, "v"]
    assert "extra" not in frame and "id" not in frame
    assert frame["_prediction"].tolist() == ["no", "no", "yes"]
    assert frame["_proba_yes"].tolist() == [0.25, 0.5, 0.875]


def test_only_the_columns_the_model_used_are_kept():
    body = {"data": [dict(r, extra="x" * 10_000) for r in RECORDS]}
    buffer = FakeBuffer()
    capture.record(buffer, "m", 1, answer(body), "")  # type: ignore[arg-type]
    assert len(buffer.texts[0]) < 1_000 and "xxxx" not in buffer.texts[0]  # the ignored column is not stored
    assert list(json.loads(buffer.texts[0])["columns"]) == USED


def test_extreme_values_and_text_read_back_exactly():
    rows = [{"x": 1e-320, "n": 2**62, "t": "é \u2028 \"q\""}]
    buffer = FakeBuffer()
    result = predict.Prediction([0], [1], None, [], pd.DataFrame(rows)[USED], None)
    capture.record(buffer, "m", 1, result, "")  # type: ignore[arg-type]
    frame = capture.entries_frame(buffer.entries())
    assert frame[USED].to_dict(orient="records") == rows and frame["_prediction"].tolist() == ["1"]


def test_the_fast_path_columns_are_captured_with_missing_text_as_missing():
    arrays = {"x": np.array([1.5, np.nan]), "n": np.array([3.0, 4.0]), "t": np.array(["u", np.nan], dtype=object)}
    buffer = FakeBuffer()
    result = predict.Prediction(["a", "b"], [0, 1], None, [], predict.Columns(USED, arrays), None)
    capture.record(buffer, "m", 1, result, "")  # type: ignore[arg-type]
    frame = capture.entries_frame(buffer.entries())
    assert frame["_id"].tolist() == ["a", "b"] and frame["n"].tolist() == [3.0, 4.0]
    assert frame["t"].isna().tolist() == [False, True] and frame["x"].isna().tolist() == [False, True]


def entry_as_dumped(result: predict.Prediction, request_id: str, ts: float) -> str:
    """The entry as it was built before it was put together by hand: ``json.dumps`` of the whole object."""
    def pack(values: np.ndarray) -> dict[str, Any]:
        kind = values.dtype.kind
        if kind in "fiub":
            dtype = np.float64 if kind == "f" else np.int64
            packed = base64.b64encode(np.ascontiguousarray(values, dtype).tobytes()).decode()
            return {"f8" if kind == "f" else "i8": packed}
        if kind in "mM":
            return {"v": values.astype(str).tolist()}
        listed = values.tolist()
        try:
            return {"v": [None if v != v else v for v in listed]}
        except TypeError:
            return {"v": [None if pd.api.types.is_scalar(v) and pd.isna(v) else v for v in listed]}

    features = result.features
    arrays = ([features.arrays[c] for c in features.names] if isinstance(features, predict.Columns)
              else [features[c].to_numpy() for c in features.columns])
    n = len(result.ids)
    return json.dumps({
        "ts": ts, "rid": request_id, "columns": predict.feature_names(features), "cols": [pack(a) for a in arrays],
        "ids": {"n": n} if result.ids == list(range(n)) else result.ids, "pred": result.labels,
        **({"proba": {"classes": list(result.probabilities[0]),
                      "f8": base64.b64encode(np.ascontiguousarray(result.proba, np.float64).tobytes()).decode()}}
           if result.proba is not None and result.probabilities else {}),
    }, default=str)


def results_of_every_kind() -> dict[str, predict.Prediction]:
    """Answers whose entries exercise every packing: both feature forms, every dtype, missing values of each
    kind, text that JSON escapes, values JSON cannot encode, explicit and positional ids, with and without
    probabilities."""
    out = {style: answer(body) for style, (body, _) in payloads().items()}
    out["fast path, 2 classes"] = predict.Prediction(
        [0, 1], ["no", "yes"], [{"no": 0.75, "yes": 0.25}] * 2, [],
        predict.Columns(["x", "t"], {"x": np.array([1.5, np.nan]), "t": np.array(["é \u2028 \"q\"", np.nan], object)}),
        np.array([[0.75, 0.25], [0.5, 0.5]]))
    frame = pd.DataFrame({
        "i": np.array([1, -(2**62)], np.int64), "u": np.array([3, 4], np.uint8), "b": [True, False],
        "when": pd.to_datetime(["2026-01-02", None]), "na": pd.array([1, None], dtype="Int64"),
        "text": pd.array(["a", None], dtype="string"), "odd": [decimal.Decimal("1.5"), pd.Timestamp("2026-01-01")],
        "none": [None, None], "f32": np.array([0.1, np.inf], np.float32)})
    out["frame of every dtype, regression"] = predict.Prediction(["r1", "r2"], [1.5, float("nan")], None, [], frame)
    out["no rows"] = predict.Prediction([], [], [], [], predict.Columns(["x"], {"x": np.array([])}), np.empty((0, 2)))
    out["many rows, three classes"] = predict.Prediction(
        list(range(300)), [f"c{i % 3}" for i in range(300)], [{"c0": 0.2, "c1": 0.3, "c2": 0.5}], [],
        predict.Columns(["x", "t"], {"x": np.arange(300.0), "t": np.array(["u", "v", np.nan] * 100, object)}),
        np.tile([0.2, 0.3, 0.5], (300, 1)))
    return out


@pytest.mark.parametrize("kind", list(results_of_every_kind()))
def test_an_entry_is_the_same_text_as_the_whole_object_dumped(kind, monkeypatch):
    result = results_of_every_kind()[kind]
    monkeypatch.setattr(capture.time, "time", lambda: 1796289299.1084068)
    buffer = FakeBuffer()
    capture.record(buffer, "m", 1, result, "req-\u00e9")  # type: ignore[arg-type]
    assert buffer.texts == [entry_as_dumped(result, "req-\u00e9", 1796289299.1084068)]
    assert len(capture.entries_frame(buffer.entries())) == len(result.ids)


def test_entries_buffered_by_earlier_releases_still_read_back():
    f8 = base64.b64encode(np.array([1.5, np.nan]).tobytes()).decode()
    i8 = base64.b64encode(np.array([3, -2], dtype=np.int64).tobytes()).decode()
    proba = base64.b64encode(np.array([[0.75, 0.25], [0.5, 0.5]]).tobytes()).decode()
    plain = {"ts": 1.0, "rid": "r", "ids": ["a", "b"], "columns": ["x", "n"], "data": [[1.5, 3], [None, -2]],
             "pred": [0, 1], "proba": [{"0": 0.75, "1": 0.25}, {"0": 0.5, "1": 0.5}]}
    packed = {"ts": 1.0, "rid": "r", "ids": {"n": 2}, "columns": ["x", "n"], "cols": [{"f8": f8}, {"i8": i8}],
              "pred": [0, 1], "proba": {"classes": [0, 1], "f8": proba}}
    frame = capture.entries_frame([("1-0", plain), ("2-0", packed)])
    assert frame["_id"].tolist() == ["a", "b", "0", "1"] and frame["n"].tolist() == [3, -2, 3, -2]
    assert frame["x"].isna().tolist() == [False, True, False, True]
    assert frame["_proba_1"].tolist() == [0.25, 0.5, 0.25, 0.5]


def test_commands_are_written_in_the_redis_protocol():
    assert _command("EVALSHA", "ab", 3, "é") == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n3\r\n$2\r\n\xc3\xa9\r\n"


def test_an_unreadable_entry_is_left_out_not_fatal():
    good = ("1-0", {"ts": 1.0, "rid": "r", "columns": ["x"], "pred": [1], "body": {"data": [{"x": 1.5}]}})
    missing_column = ("3-0", {"ts": 1.0, "rid": "r", "columns": ["y"], "pred": [1], "body": {"data": [{"x": 1.5}]}})
    frame = capture.entries_frame([("0-0", {"i": 0}), good, ("2-0", {"columns": ["x"]}), missing_column,
                                   ("4-0", _loads("{not json"))])
    assert frame["_entry"].tolist() == ["1-0"] and frame["x"].tolist() == [1.5]
    assert capture.entries_frame([("0-0", {"i": 0})]).empty


def many(count: int) -> FakeBuffer:
    """``count`` captured requests of three shapes, interleaved: frames of 1-2 rows, fast-path columns, no proba."""
    buffer = FakeBuffer()
    for i in range(count):
        n = 1 + i % 2
        proba = np.array([[0.25, 0.75]] * n)
        if i % 3 == 0:
            features: Any = predict.Columns(["x", "t"], {"x": np.full(n, float(i)), "t": np.array(["u"] * n, object)})
            result = predict.Prediction(list(range(n)), ["yes"] * n, [{"no": 0.25, "yes": 0.75}], [], features, proba)
        elif i % 3 == 1:
            features = pd.DataFrame({"x": np.full(n, float(i)), "n": np.full(n, i), "t": [None] * n})
            result = predict.Prediction(list(range(n)), ["no"] * n, [{"no": 0.25, "yes": 0.75}], [], features, proba)
        else:
            features = pd.DataFrame({"x": np.full(n, float(i)), "n": np.full(n, i)})
            result = predict.Prediction([f"r{i}-{j}" for j in range(n)], [1] * n, None, [], features, None)
        capture.record(buffer, "m", 1, result, f"req-{i}")  # type: ignore[arg-type]
    return buffer


def test_a_batch_of_several_shapes_reads_back_every_row_once_in_entry_order_with_its_types():
    entries = many(300).entries()
    frame = capture.entries_frame(entries)
    assert len(frame) == 150 * 1 + 150 * 2
    assert frame["_entry"].tolist() == [entry_id for i, (entry_id, _) in enumerate(entries) for _ in range(1 + i % 2)]
    assert frame["x"].tolist() == [float(i) for i in range(300) for _ in range(1 + i % 2)]
    assert frame["x"].dtype == np.float64 and frame["_proba_yes"].dtype == np.float64
    assert str(frame["_ts"].dtype) == "datetime64[ns, UTC]"
    fast = frame[frame["_request_id"] == "req-0"]
    assert fast["n"].isna().all() and fast["t"].tolist() == ["u"] and fast["_prediction"].tolist() == ["yes"]
    plain = frame[frame["_request_id"] == "req-5"]
    assert plain["_id"].tolist() == ["r5-0", "r5-1"] and plain["_proba_yes"].isna().all()
    assert plain["n"].tolist() == [5, 5] and frame[frame["_request_id"] == "req-1"]["t"].isna().all()


def test_an_unreadable_entry_inside_a_batch_of_its_shape_leaves_only_itself_out():
    entries = many(40).entries()
    broken = json.loads(json.dumps(entries[7][1]))
    broken["cols"][0]["f8"] = broken["cols"][0]["f8"][:-4]  # a value short
    short_pred = json.loads(json.dumps(entries[13][1]))
    short_pred["pred"] = []
    entries[7], entries[13] = (entries[7][0], broken), (entries[13][0], short_pred)
    frame = capture.entries_frame(entries)
    kept = [entry_id for i, (entry_id, _) in enumerate(entries) if i not in (7, 13) for _ in range(1 + i % 2)]
    assert frame["_entry"].tolist() == kept


class Backlog:
    """What housekeeping reads of a buffer to size its helpers: the entries each stream holds."""

    def __init__(self, lengths: dict[str, int]) -> None:
        self.lengths = lengths

    def length(self, key: str) -> int:
        return self.lengths[key]


@pytest.mark.parametrize(("lengths", "helpers"), [
    ({"a": 0}, 0), ({"a": 5_000}, 0), ({"a": 5_001}, 1), ({"a": 9_000, "b": 6_000}, 2), ({"a": 10**6}, 3),
])
def test_a_backlog_queues_one_helper_per_further_batch_within_the_bound(lengths, helpers):
    ctx = SimpleNamespace(settings=Settings(capture_flush_batch=5_000, capture_flush_parallel=4))
    assert housekeeping.helpers_for(ctx, Backlog(lengths), list(lengths)) == helpers  # type: ignore[arg-type]
