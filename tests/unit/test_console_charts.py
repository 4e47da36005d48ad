"""The console's server-side SVG charts and the history they draw (pure functions, in-memory storage)."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mlaas.adapters.runsearch import RunRecord
from mlaas.api.ui import charts, pages
from mlaas.context import Context
from mlaas.monitoring import history
from mlaas.monitoring.history import ColumnCell, DriftRun, Series
from mlaas.settings import Settings
from mlaas.uris import S3Uri
from tests.fakes import MemoryBlobStore

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_line_chart_places_each_point_inside_the_plot_in_time_order():
    series = [Series("accuracy", [(T0 + timedelta(hours=h), v) for h, v in ((2, 0.9), (0, 0.8), (1, 0.7))]),
              Series("estimated_accuracy", [(T0, 0.75), (T0 + timedelta(hours=2), 0.85)], estimated=True)]
    root = parse(charts.line_chart(series, title="accuracy over time", width=600, height=200))
    assert root.get("data-points") == "5"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2 and "est" in lines[1].get("class") and "est" not in lines[0].get("class")
    xs = [float(p.split(",")[0]) for p in lines[0].get("points").split()]
    ys = [float(p.split(",")[1]) for p in lines[0].get("points").split()]
    assert xs == sorted(xs) and xs[0] == charts.PAD_LEFT and xs[-1] == 600 - charts.PAD_RIGHT
    assert ys[0] < ys[1] > ys[2] and ys[1] == 200 - charts.PAD_BOTTOM  # 0.7, the lowest: at the bottom
    assert max(ys) <= 200 - charts.PAD_BOTTOM and min(ys) >= charts.PAD_TOP
    tips = [c.find(f"{SVG}title").text for c in root.findall(f"{SVG}circle")]
    assert "accuracy 2026-12-01 11:00: 0.7" in tips


def test_bars_start_at_zero_and_one_point_still_gets_a_time_axis():
    only = Series("v1", [(T0, 12.0)])
    root = parse(charts.line_chart([only], title="requests", height=200, bars=timedelta(minutes=5)))
    (bar,) = root.findall(f"{SVG}rect[@class='bar s0']")
    assert float(bar.get("y")) + float(bar.get("height")) == pytest.approx(200 - charts.PAD_BOTTOM, abs=0.11)
    assert float(bar.get("height")) > 0 and float(bar.get("width")) > 1
    assert parse(charts.line_chart([only], title="one")).findall(f"{SVG}circle")


def test_chart_text_is_escaped():
    markup = str(charts.line_chart([Series("<script>x</script>", [(T0, 1.0)])], title='"><script>'))
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    parse(markup)  # still well-formed XML


def test_empty_charts_are_refused_so_pages_say_no_data_instead():
    with pytest.raises(ValueError):
        charts.line_chart([Series("x", [])], title="nothing")
    with pytest.raises(ValueError):
        charts.drift_heatmap([], [])


def drift_run(minutes: int, cells: dict[str, ColumnCell]) -> DriftRun:
    record = RunRecord(f"r{minutes}", f"infer_{minutes}", "1", T0 + timedelta(minutes=minutes))
    return DriftRun(record, "infer", "1", 0.5, True, cells, None)


def test_heatmap_has_one_cell_per_column_and_run_coloured_by_outcome():
    runs = [drift_run(0, {"age": ColumnCell(False, 0.1, 0.6), "sex": ColumnCell(True, 9.0, 0.001)}),
            drift_run(5, {"age": ColumnCell(True, 0.4, 0.0001)})]
    root = parse(charts.drift_heatmap(["age", "sex"], runs))
    cells = root.findall(f"{SVG}rect")
    assert [c.get("class") for c in cells] == ["cell ok", "cell drifted", "cell drifted", "cell na"]
    assert "p 0.0001" in cells[1].find(f"{SVG}title").text and root.get("data-points") == "3"


def capture_file(storage: MemoryBlobStore, version: int, name: str, entries: list[tuple[str, datetime, int]]) -> None:
    rows = [{"_entry": entry, "_ts": ts, "age": 1.0} for entry, ts, n in entries for _ in range(n)]
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer)
    storage.put_bytes(S3Uri("drift", f"capture/titanic/{version}/date=2026-12-01/{name}.parquet"), buffer.getvalue())


def test_traffic_counts_requests_per_window_and_version():
    storage = MemoryBlobStore()
    capture_file(storage, 1, "1-0_3-0", [("1-0", T0, 5), ("2-0", T0 + timedelta(seconds=30), 1),
                                         ("3-0", T0 + timedelta(minutes=3), 2)])
    capture_file(storage, 2, "4-0_4-0", [("4-0", T0 + timedelta(minutes=2), 3)])
    storage.put_bytes(S3Uri("drift", "capture/titanic-other/1/date=2026-12-01/x.parquet"), b"not this model")
    ctx = Context(Settings(), {"storage": storage})
    volume = history.traffic("titanic", ctx=ctx, max_files=10)
    assert volume["bucket"] == timedelta(minutes=1) and volume["requests"] == 4 and volume["rows"] == 11
    by_version = {s.name: s.points for s in volume["series"]}
    assert by_version == {"v1": [(T0, 2.0), (T0 + timedelta(minutes=3), 1.0)],
                          "v2": [(T0 + timedelta(minutes=2), 1.0)]}
    newest = history.traffic("titanic", ctx=ctx, max_files=1)
    assert newest["truncated"] and newest["files"] == 1 and newest["requests"] == 1


def test_bucket_size_keeps_the_bars_few():
    assert history.bucket_size(T0, T0 + timedelta(minutes=30)) == timedelta(minutes=1)
    assert history.bucket_size(T0, T0 + timedelta(hours=3)) == timedelta(minutes=5)
    assert history.bucket_size(T0, T0 + timedelta(days=90)) == timedelta(days=1)


def test_quality_charts_pair_each_metric_with_its_estimate():
    realized = Series("accuracy", [(T0, 0.8)])
    estimate = Series("estimated_accuracy", [(T0, 0.78)], estimated=True)
    drawn = pages.quality_charts([estimate, realized, Series("rmse", [(T0, 3.0)])])
    assert [metric for metric, _ in drawn] == ["accuracy", "rmse"]
    assert len(re.findall(r"<polyline", str(drawn[0][1]))) == 2 and "(est.)" in str(drawn[0][1])


def test_window_end_prefers_the_logged_window():
    run = RunRecord("r", "perf_x", "1", T0, params={"window_end": "2026-11-30T00:00:00Z"})
    assert history.window_end(run) == datetime(2026, 11, 30, tzinfo=UTC)
    assert history.window_end(RunRecord("r", "perf_x", "1", T0, params={"end": "garbage"})) == T0


def test_quality_history_keeps_the_newest_run_of_each_window(monkeypatch):
    end = {"window_end": "2026-12-01T00:00:00Z"}
    runs = [RunRecord("a", "perf_a", "1", T0, {"accuracy": 0.7}, end, {"mlaas.model_version": "1"}),
            RunRecord("b", "perf_b", "1", T0 + timedelta(hours=1), {"accuracy": 0.8, "n": 10}, end,
                      {"mlaas.model_version": "1"})]
    monkeypatch.setattr(history, "recent_runs", lambda *a, **k: runs)
    lines, kept = history.quality_history("m", ctx=Context(Settings()), limit=10)
    assert [r.run_id for r in kept] == ["b"] and [(s.name, s.points) for s in lines] == [
        ("accuracy", [(datetime(2026, 12, 1, tzinfo=UTC), 0.8)])]
