"""Captured requests read back the same whether their numbers were stored as JSON text or packed."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlaas.adapters.capture_buffer import _command
from mlaas.services import capture, inference


class FakeBuffer:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, model: str, version: int, entry: dict[str, Any], rows: int) -> None:
        self.entries.append(json.loads(json.dumps(entry, default=str)))  # what Redis hands back
        return None


def prediction(n: int, *, columnar: bool, positional: bool = False) -> inference.Prediction:
    rng = np.random.default_rng(n)
    values = [
        [None if i % 7 == 0 else float(rng.normal()) for i in range(n)],  # floats with missing values
        [int(v) for v in rng.integers(-5, 5, n)],  # integers
        [None if i % 5 == 0 else str(rng.choice(["a", "b"])) for i in range(n)],  # text with missing values
        [float(i) for i in range(n)],  # integral floats
        [None] * n,  # nothing at all
    ]
    names = ["f", "i", "t", "whole", "empty"]
    if columnar:
        features: Any = inference.Columns(names, {}, values)
    else:
        features = pd.DataFrame(dict(zip(names, values, strict=True)))
        features["empty"] = features["empty"].astype(object)
    proba = rng.dirichlet([1, 1, 1], n)
    probabilities = [dict(zip(["b", "a", "c"], row, strict=True)) for row in proba.tolist()]
    ids: list[Any] = list(range(n)) if positional else [f"id-{i}" for i in range(n)]
    return inference.Prediction(ids, [int(v) for v in rng.integers(0, 3, n)], probabilities, [], features, proba)


@pytest.mark.parametrize("positional", [True, False])
@pytest.mark.parametrize("columnar", [True, False])
@pytest.mark.parametrize("n", [1, 40])
def test_packed_and_plain_entries_read_back_the_same(monkeypatch, n, columnar, positional):
    result = prediction(n, columnar=columnar, positional=positional)
    plain, packed = FakeBuffer(), FakeBuffer()
    monkeypatch.setattr(capture, "PACK_FROM_ROWS", 10**9)
    capture.record(plain, "m", 1, result, "r1")  # type: ignore[arg-type]
    monkeypatch.setattr(capture, "PACK_FROM_ROWS", 1)
    capture.record(packed, "m", 1, result, "r1")  # type: ignore[arg-type]
    assert "data" in plain.entries[0] and "cols" in packed.entries[0]
    for entry in (plain.entries[0], packed.entries[0]):
        entry["ts"] = 0.0
    expected = capture.entries_frame([("1-0", plain.entries[0])])
    got = capture.entries_frame([("1-0", packed.entries[0])])
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.columns[-3:]) == ["_proba_a", "_proba_b", "_proba_c"]
    np.testing.assert_array_equal(got["_proba_b"], result.proba[:, 0])
    mixed = capture.entries_frame([("1-0", plain.entries[0]), ("2-0", packed.entries[0])])
    assert len(mixed) == 2 * n and mixed["i"].dtype == np.int64
    assert got["_id"].tolist() == [str(i) for i in result.ids]


def test_commands_are_written_in_the_redis_protocol():
    assert _command("EVALSHA", "ab", 3, "é") == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n3\r\n$2\r\n\xc3\xa9\r\n"


def test_an_unreadable_entry_is_left_out_not_fatal():
    from mlaas.services.capture import entries_frame

    good = ("1-0", {"ts": 1.0, "rid": "r", "ids": ["a"], "columns": ["x"], "data": [[1.5]], "pred": [1]})
    frame = entries_frame([("0-0", {"i": 0}), good, ("2-0", {"columns": ["x"]})])
    assert frame["_entry"].tolist() == ["1-0"] and frame["x"].tolist() == [1.5]
    assert entries_frame([("0-0", {"i": 0})]).empty
