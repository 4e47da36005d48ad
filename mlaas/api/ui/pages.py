"""What a model page shows about the model's health: its history from the services, drawn as charts."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from mlaas.api.ui import charts
from mlaas.context import Context
from mlaas.monitoring import history
from mlaas.monitoring.history import Series


def model_health(name: str, *, ctx: Context) -> dict[str, Any]:
    """Drift per column over time, realized and estimated quality, traffic: charts and the runs behind them."""
    limit = ctx.settings.console_runs
    columns, drift_runs = history.drift_history(name, ctx=ctx, limit=limit)
    quality, perf_runs = history.quality_history(name, ctx=ctx, limit=limit)
    volume = history.traffic(name, ctx=ctx, max_files=ctx.settings.console_traffic_files)
    out: dict[str, Any] = {"drift_runs": list(reversed(drift_runs)), "perf_runs": list(reversed(perf_runs)),
                           "traffic": volume, "drift_map": None, "drift_share": None, "quality": [],
                           "traffic_chart": None}
    if columns and drift_runs:
        out["drift_map"] = charts.drift_heatmap(columns, drift_runs)
    shares = [(r.run.started, r.share_drifted) for r in drift_runs if r.share_drifted is not None]
    if shares:
        out["drift_share"] = charts.line_chart([Series("share of columns drifted", shares)],
                                               title="Share of columns drifted", y_min=0.0, y_max=1.0)
    out["quality"] = quality_charts(quality)
    if volume["series"]:
        out["traffic_chart"] = charts.line_chart(volume["series"], title="Captured requests per window",
                                                 bars=volume["bucket"])
    return out


def quality_charts(lines: list[Series]) -> list[tuple[str, Markup]]:
    """One chart per metric: the realized line with its estimate (dashed) beside it, when there is one."""
    by_metric: dict[str, list[Series]] = {}
    for line in lines:
        base = line.name[len(history.ESTIMATED_PREFIX):].lstrip("._") if line.estimated else line.name
        by_metric.setdefault(base, []).append(line)
    return [(metric, charts.line_chart(sorted(group, key=lambda s: s.estimated), title=f"{metric} over time"))
            for metric, group in by_metric.items()]
