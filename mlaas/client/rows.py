"""Rows for the ``mlaas`` command: CSV (typed per column as pandas reads it) or JSON records in, CSV out."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

# What pandas reads as a missing value, so rows from a CSV arrive as they did when the model was trained.
MISSING = {"", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "<NA>", "#N/A"}
_INT = re.compile(r"^[+-]?\d+$")
_BOOLS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


class UsageError(Exception):
    """A bad argument found after parsing: a missing file, rows that cannot be read."""


def read_rows(path: str) -> list[dict[str, Any]]:
    """Records from a CSV file (typed per column, as pandas reads it) or a JSON list of objects; '-' is stdin."""
    name = "standard input" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{name}: {getattr(exc, 'strerror', None) or exc}") from None
    is_json = path.lower().endswith(".json") or (not path.lower().endswith(".csv") and text.lstrip()[:1] in ("[", "{"))
    rows = _json_rows(text, name) if is_json and text.strip() else _csv_rows(text, name)
    if not rows:
        raise UsageError(f"{name}: no rows to score")
    return rows


def _json_rows(text: str, name: str) -> list[dict[str, Any]]:
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name}: not valid JSON: {exc}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("data"), list):
        loaded = loaded["data"]
    if not isinstance(loaded, list) or not all(isinstance(row, dict) for row in loaded):
        raise UsageError(f"{name}: expected a JSON list of objects (records), or {{\"data\": [...]}}")
    return loaded


def _csv_rows(text: str, name: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise UsageError(f"{name}: expected CSV with a header line")
    lines = [line for line in reader if line]
    for number, line in enumerate(lines, start=2):
        if len(line) != len(header):
            raise UsageError(f"{name}: line {number} has {len(line)} fields, the header {len(header)}")
    columns = [_typed([line[i] for line in lines]) for i in range(len(header))]
    return [dict(zip(header, values, strict=True)) for values in zip(*columns, strict=True)] if lines else []


def _typed(cells: list[str]) -> list[Any]:
    """One CSV column as pandas would type it: integers, floats, booleans or strings; missing as None."""
    present = [c for c in cells if c not in MISSING]
    if present and all(_INT.match(c) for c in present) and len(present) == len(cells):
        return [int(c) for c in cells]
    if present and all(_INT.match(c) or _is_float(c) for c in present):
        return [None if c in MISSING else float(c) for c in cells]
    if present and all(c in _BOOLS for c in present):
        return [_BOOLS.get(c) for c in cells]
    return [None if c in MISSING else c for c in cells]


def _is_float(cell: str) -> bool:
    if "_" in cell:  # Python reads 1_000 as a number, CSV readers do not
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def predictions_csv(predictions: list[dict[str, Any]]) -> str:
    """``id,prediction[,probability_<class>...]`` lines."""
    classes: list[str] = []
    for item in predictions:
        classes.extend(c for c in (item.get("probabilities") or {}) if c not in classes)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "prediction", *(f"probability_{c}" for c in classes)])
    for item in predictions:
        probabilities = item.get("probabilities") or {}
        writer.writerow([cell(item.get("id")), cell(item.get("prediction")),
                         *(cell(probabilities.get(c)) for c in classes)])
    return out.getvalue()


def cell(value: Any) -> str:
    """A value as one CSV or table cell."""
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
