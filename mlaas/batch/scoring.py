"""Scoring one chunk with the code /inference uses (``prepare_features`` and ``predict``), bad rows set apart."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlaas.errors import InvalidInput
from mlaas.inference import compiled, predict
from mlaas.inference.cache import ServedModel
from mlaas.inference.payload import Rows

_RELATIVE_ROW = re.compile(r"^row \d+ ")


@dataclass
class Scored:
    """A chunk's predictions (``id``, ``prediction``, ``proba_<class>``) and the rows it could not score."""

    predictions: pa.Table
    bad: dict[int, str] = field(default_factory=dict)  # position in the chunk -> why

    def errors(self, frame: pd.DataFrame, ids: list[Any], first_row: int) -> pa.Table | None:
        """The bad rows as a table (``row``, ``id``, ``error``, then their columns as text), or None."""
        if not self.bad:
            return None
        positions = sorted(self.bad)
        columns: dict[str, Any] = {"row": [first_row + p for p in positions], "id": [str(ids[p]) for p in positions],
                                   "error": [self.bad[p] for p in positions]}
        for name in frame.columns:
            values = frame[str(name)].iloc[positions]
            columns[f"value_{name}"] = [None if _missing(v) else str(v) for v in values]
        return pa.table(columns)


def row_ids(frame: pd.DataFrame, id_column: str | None, first_row: int) -> list[Any]:
    """Each row's id: its value in the index column, else its row number in the data set."""
    if id_column is None:
        return list(range(first_row, first_row + len(frame)))
    if id_column not in frame.columns:
        raise InvalidInput(f"dataset: missing the index column {id_column!r} (from the data config)",
                           details={"missing_columns": [id_column]})
    column = frame[id_column]
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iufb":
        return column.tolist()  # Python numbers already
    return [v.item() if hasattr(v, "item") else v for v in column.tolist()]


def score(frame: pd.DataFrame, ids: list[Any], model: ServedModel, *, skip: bool, where: str,
          first_row: int = 0) -> Scored:
    """Predict every row; a bad row fails the chunk (InvalidInput naming ``where`` and the row) unless ``skip``.

    With ``skip``, a row an error names is set apart and the rest scored again; an error naming no row
    splits the rows in halves until each bad row stands alone.
    """
    frame = frame.reset_index(drop=True)
    bad: dict[int, str] = {} if set(map(type, ids)) <= {int, str} else {
        int(p): "missing id" for p in np.flatnonzero(pd.isna(np.asarray(ids, dtype=object)))}
    if bad and not skip:
        p = min(bad)
        raise InvalidInput(f"{where}, row {first_row + p}: the index column has no value",
                           details={"row": first_row + p})
    everything = np.arange(len(frame), dtype=np.int64)
    pending = [np.setdiff1d(everything, np.fromiter(bad, dtype=np.int64)) if bad else everything]
    done: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray | None]]] = []
    while pending:
        positions = pending.pop()
        if not len(positions):
            continue
        try:
            done.append((positions, _predict(frame, ids, positions, model)))
        except InvalidInput as exc:
            if not skip or "missing_columns" in exc.details:
                raise _located(exc, where, positions, first_row) from None
            row = exc.details.get("row")
            if isinstance(row, int) and 0 <= row < len(positions):
                bad[int(positions[row])] = _RELATIVE_ROW.sub("", exc.message)
                pending.append(np.delete(positions, row))
            elif len(positions) == 1:
                bad[int(positions[0])] = exc.message
            else:
                half = len(positions) // 2
                pending += [positions[half:], positions[:half]]
    done.sort(key=lambda part: int(part[0][0]))
    return Scored(_table(done, ids, model), bad)


def _predict(frame: pd.DataFrame, ids: list[Any], positions: np.ndarray, model: ServedModel
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels and class probabilities of some rows, checked and converted by ``prepare_features`` as /inference does.

    A model with a compiled predictor is answered by it as in ``predict.predict``, but as arrays: the per-row
    answer objects that function builds for JSON cost more than the arithmetic here. Anything it cannot take
    goes through ``predict.predict`` itself.
    """
    whole = len(positions) == len(frame)
    part = frame if whole else frame.iloc[positions].reset_index(drop=True)
    part_ids = ids if whole else [ids[p] for p in positions]
    rows = Rows(ids=list(part_ids), style="mlaas", explicit_ids=[True] * len(part_ids), _frame=part)
    features, ignored = predict.prepare_features(rows, model)
    if model.predictor is not None:
        arrays = features.arrays if isinstance(features, predict.Columns) else compiled.columns_of(
            features, model.predictor.inputs)
        try:
            return model.predictor.predict(arrays)
        except compiled.Unsupported:
            pass
    result = predict.predict(model, features, rows, ignored)
    return np.asarray(result.labels), result.proba


def _located(exc: InvalidInput, where: str, positions: np.ndarray, first_row: int) -> InvalidInput:
    """The error with the chunk named and its row counted in the data set (not in the rows scored)."""
    row = exc.details.get("row")
    if isinstance(row, int) and 0 <= row < len(positions):
        at = first_row + int(positions[row])
        message = f"{where}, row {at} {_RELATIVE_ROW.sub('', exc.message)}"
        return InvalidInput(message, details={**exc.details, "row": at})
    return InvalidInput(f"{where}: {exc.message}", details=exc.details)


def _table(done: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray | None]]], ids: list[Any],
           model: ServedModel) -> pa.Table:
    if len(done) == 1 and len(done[0][0]) == len(ids):  # the usual chunk: every row scored in one call
        kept: list[Any] = ids
    else:
        kept = [ids[p] for part, _ in done for p in part]
    labels = np.concatenate([answer[0] for _, answer in done]) if done else np.array([])
    columns: dict[str, Any] = {"id": kept, "prediction": labels}
    matrices = [answer[1] for _, answer in done if answer[1] is not None]
    if model.classes is not None and len(matrices) == len(done):
        proba = np.vstack(matrices) if matrices else np.empty((0, len(model.classes)))
        for i, name in enumerate(model.classes):
            columns[f"proba_{name}"] = proba[:, i]
    return pa.table(columns)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA
