"""Inference payloads: size and bomb checks on the parsed body, then ``data`` or an MLflow scoring payload read
into rows with their ids; every shape error names the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlaas.errors import InvalidInput, TooLarge

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
ID_KEY = "id"


PAYLOAD_KEYS = ("data", "dataframe_split", "dataframe_records", "instances", "inputs")
MAX_COLUMNS = 10_000
MAX_TEXT_CHARS = 10_000



@dataclass
class Rows:
    """Rows to score, as sent: ids in request order and the sent columns (records, or a frame)."""

    ids: list[Any]
    style: str  # "mlaas" (data) or "mlflow" (one of MLflow's scoring payloads)
    explicit_ids: list[bool] = field(default_factory=list)
    records: list[dict[str, Any]] | None = None  # record payloads, ids removed
    _frame: pd.DataFrame | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """The sent columns as a data frame (built on first use for record payloads)."""
        if self._frame is None:
            self._frame = pd.DataFrame.from_records(self.records) if self.records else pd.DataFrame()
        return self._frame


def refuse_bombs(body: Any, raw: bytes, *, max_rows: int) -> None:
    """Count rows, columns and text in the parsed body before validation copies it: bombs cost little memory."""
    if not isinstance(body, dict):
        return
    for key in PAYLOAD_KEYS:
        value = body.get(key)
        if key == "dataframe_split" and isinstance(value, dict):
            rows, columns = value.get("data"), value.get("columns")
            width = len(columns) if isinstance(columns, list) else 0
        elif isinstance(value, dict):  # inputs or instances as {column: [values]}
            rows, width = next((v for v in value.values() if isinstance(v, list)), None), len(value)
        else:
            rows, width = value, 0
        if not isinstance(rows, list):
            continue
        if len(rows) > max_rows:
            raise TooLarge(f"{key}: {len(rows)} rows is more than the limit of {max_rows} per request")
        width = max([width, *(len(r) for r in rows if isinstance(r, dict | list))])
        if width > MAX_COLUMNS:
            raise TooLarge(f"{key}: {width} columns is more than the limit of {MAX_COLUMNS}")
        cells = _cells(rows if key == "dataframe_split" else value)
        if may_hold_long_text(raw) and any(
                isinstance(v, str) and len(v) > MAX_TEXT_CHARS for v in cells):
            raise TooLarge(f"{key}: a value is longer than {MAX_TEXT_CHARS} characters")


def may_hold_long_text(raw: bytes) -> bool:
    """Whether the raw body could hold a string longer than MAX_TEXT_CHARS; found with numpy, not by walking cells.

    In UTF-8 (what JSON bodies are; json also reads UTF-16 and UTF-32, which are walked instead), a JSON
    string of more than MAX_TEXT_CHARS characters takes at least that many bytes after its opening
    quote, up to its closing one. Quotes right after a backslash are not taken as delimiters: that skips
    every escaped quote and at worst joins two strings (``\\\\"``), which can only make a stretch longer.
    """
    if len(raw) <= MAX_TEXT_CHARS:
        return False
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):  # UTF-16 or -32: let the cells be walked
        return True
    body = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(body == ord('"'))
    quotes = quotes[(quotes == 0) | (body[quotes - 1] != ord("\\"))]
    following = np.append(quotes[1:], len(body))
    return bool((following - quotes > MAX_TEXT_CHARS).any())


def _cells(value: Any) -> Iterator[Any]:
    """Every value one or two levels down (records, rows, columns)."""
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict):
            yield from item.values()
        elif isinstance(item, list):
            yield from item
        else:
            yield item


def parse_rows(body: dict[str, Any], *, max_rows: int) -> Rows:
    """Read ``data`` or one MLflow scoring payload into rows; shape errors name the field."""
    present = [k for k in ("data", *MLFLOW_KEYS) if body.get(k) is not None]
    if not present:
        formats = ", ".join(MLFLOW_KEYS)
        raise InvalidInput(f"data: missing (send a list of records, or an MLflow payload: {formats})")
    if len(present) > 1:
        raise InvalidInput(f"send only one of {', '.join(present)}")
    key = present[0]
    value = body[key]
    if key == "dataframe_split":
        frame, index = _split_frame(value)
        rows = _with_ids(frame, key, index, style="mlflow")
    elif key in ("inputs", "instances") and isinstance(value, dict):
        rows = _with_ids(_columns_frame(value, key), key, None, style="mlflow")
    else:
        records = _records(value, key)
        rows = _records_rows(records, key, style="mlaas" if key == "data" else "mlflow")
    if len(rows.ids) == 0:
        raise InvalidInput(f"{key}: no rows to score")
    if len(rows.ids) > max_rows:
        raise TooLarge(f"{key}: {len(rows.ids)} rows is more than the limit of {max_rows} per request")
    return rows


def _records(value: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidInput(f"{key}: expected a list of records")
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise InvalidInput(f"{key}[{i}]: expected an object of column: value")
    return value


def _records_rows(records: list[dict[str, Any]], key: str, *, style: str) -> Rows:
    ids: list[Any] = []
    explicit: list[bool] = []
    cleaned = []
    for i, record in enumerate(records):
        if ID_KEY in record:
            record = dict(record)
            ids.append(check_id(record.pop(ID_KEY), f"{key}[{i}].id"))
            explicit.append(True)
        else:
            ids.append(i)
            explicit.append(False)
        cleaned.append(record)
    return Rows(ids, style, explicit, records=cleaned)


def _split_frame(value: Any) -> tuple[pd.DataFrame, list[Any] | None]:
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or not isinstance(
        value.get("data"), list
    ):
        raise InvalidInput("dataframe_split: expected {\"columns\": [...], \"data\": [[...], ...]}")
    columns = value["columns"]
    if not all(isinstance(c, str) for c in columns):
        raise InvalidInput("dataframe_split.columns: expected a list of column names")
    for i, row in enumerate(value["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidInput(f"dataframe_split.data[{i}]: expected a list of {len(columns)} values")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(value["data"])):
        raise InvalidInput("dataframe_split.index: expected one id per row")
    return pd.DataFrame(value["data"], columns=columns), index


def _columns_frame(value: dict[str, Any], key: str) -> pd.DataFrame:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise InvalidInput(f"{key}: expected column: [values] lists of equal length")
    return pd.DataFrame(value)


def _with_ids(frame: pd.DataFrame, key: str, index: list[Any] | None, *, style: str) -> Rows:
    if index is not None:
        ids = [check_id(v, f"{key}.index[{i}]") for i, v in enumerate(index)]
        return Rows(ids, style, [True] * len(ids), _frame=frame)
    if ID_KEY in frame.columns:
        ids = [check_id(v, f"{key}.id[{i}]") for i, v in enumerate(frame.pop(ID_KEY).tolist())]
        return Rows(ids, style, [True] * len(ids), _frame=frame)
    return Rows(list(range(len(frame))), style, [False] * len(frame), _frame=frame)


def check_id(value: Any, where: str) -> Any:
    """An id as sent, checked: a string of at most 256 characters or an integer."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"{where}: an id must be a string or an integer")
    if isinstance(value, str) and len(value) > 256:
        raise InvalidInput(f"{where}: an id must be at most 256 characters")
    return value
