"""Charts as inline SVG, drawn on the server: no script, no CDN, nothing a strict CSP would block.

Colours come from classes styled by the console's stylesheet (``s0``…``s7``), never from inline styles.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from mlaas.monitoring.history import ColumnCell, DriftRun, Series

PALETTE = 8
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 16, 28, 34
MIN_BARS = 12
LEGEND_STEP, LEGEND_CHARS = 230, 32


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def line_chart(series: Sequence[Series], *, title: str, width: int = 960, height: int = 220,
               y_min: float | None = None, y_max: float | None = None, bars: timedelta | None = None) -> Markup:
    """Lines (or bars of width ``bars``) of time series on one time axis, with a legend and point tooltips."""
    points = [(at, value) for s in series for at, value in s.points]
    if not points:
        raise ValueError("line_chart needs at least one point")
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    if bars is not None:
        t1 += bars
        t0 = min(t0, t1 - MIN_BARS * bars)  # a few windows of traffic still read as bars, not one block
    if t1 == t0:
        t0, t1 = t0 - timedelta(minutes=1), t1 + timedelta(minutes=1)
    lo = min([p[1] for p in points] + ([y_min] if y_min is not None else []) + ([0.0] if bars else []))
    hi = max([p[1] for p in points] + ([y_max] if y_max is not None else []))
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    plot_w, plot_h = width - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM
    span = (t1 - t0).total_seconds()

    def x(at: datetime) -> float:
        return PAD_LEFT + plot_w * (at - t0).total_seconds() / span

    def y(value: float) -> float:
        return PAD_TOP + plot_h * (1 - (value - lo) / (hi - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
             f'data-points="{len(points)}"><title>{escape(title)}</title>']
    for i in range(5):  # horizontal grid with value labels
        value = lo + (hi - lo) * i / 4
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}"/><text class="tick" x="{PAD_LEFT - 6}" y="{y(value) + 4:.1f}" '
                     f'text-anchor="end">{_fmt(value)}</text>')
    for at, anchor in ((t0, "start"), (t1, "end")):
        parts.append(f'<text class="tick" x="{x(at):.1f}" y="{height - 12}" text-anchor="{anchor}">'
                     f'{_stamp(at)} UTC</text>')
    for index, s in enumerate(series):
        cls = f"s{index % PALETTE}{' est' if s.estimated else ''}"
        ordered = sorted(s.points)
        if bars is not None:
            slot = (x(t0 + bars) - x(t0)) / max(len(series), 1)
            for at, value in ordered:
                left = x(at) + slot * index
                parts.append(f'<rect class="bar {cls}" x="{left:.1f}" y="{y(value):.1f}" '
                             f'width="{max(slot - 1, 1):.1f}" height="{y(lo) - y(value):.1f}">'
                             f'<title>{escape(s.name)} {_stamp(at)}: {_fmt(value)}</title></rect>')
        else:
            path = " ".join(f"{x(at):.1f},{y(value):.1f}" for at, value in ordered)
            parts.append(f'<polyline class="line {cls}" points="{path}"/>')
            parts.extend(f'<circle class="dot {cls}" cx="{x(at):.1f}" cy="{y(value):.1f}" r="3"><title>'
                         f'{escape(s.name)} {_stamp(at)}: {_fmt(value)}</title></circle>' for at, value in ordered)
        left = PAD_LEFT + LEGEND_STEP * index
        parts.append(f'<rect class="key {cls}" x="{left}" y="8" width="10" height="10"/>'
                     f'<text class="legend" x="{left + 14}" y="17">'
                     f'{escape(s.name[:LEGEND_CHARS])}{" (est.)" if s.estimated else ""}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def drift_heatmap(columns: Sequence[str], runs: Sequence[DriftRun], *, width: int = 960, row: int = 18) -> Markup:
    """Columns (rows) by drift runs (left to right, oldest first): red where the column drifted."""
    if not columns or not runs:
        raise ValueError("drift_heatmap needs columns and runs")
    label_w = min(max(len(c) for c in columns), 28) * 7 + 12
    cell = max(6, min(48, (width - label_w - 8) // len(runs)))  # wide cells for few runs, narrow for many
    width, height = max(label_w + cell * len(runs) + 8, 420), PAD_TOP + row * len(columns) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart heatmap" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="drift per column" '
             f'data-points="{sum(len(r.cells) for r in runs)}"><title>Drift per column over time</title>']
    for index, column in enumerate(columns):
        top = PAD_TOP + index * row
        parts.append(f'<text class="tick" x="{label_w - 6}" y="{top + row - 5}" text-anchor="end">'
                     f'{escape(column[:28])}</text>')
        for col, run in enumerate(runs):
            outcome = run.cells.get(column)
            parts.append(f'<rect class="cell {_cell_class(outcome)}" x="{label_w + col * cell}" y="{top}" '
                         f'width="{cell - 2}" height="{row - 2}"><title>{escape(column)} · {_stamp(run.run.started)}'
                         f' · {escape(run.run.name)}: {_cell_text(outcome)}</title></rect>')
    parts.append(f'<text class="tick" x="{label_w}" y="{PAD_TOP - 10}">{_stamp(runs[0].run.started)} UTC → '
                 f'{_stamp(runs[-1].run.started)} UTC</text></svg>')
    return Markup("".join(parts))


def _cell_class(outcome: ColumnCell | None) -> str:
    if outcome is None:
        return "na"
    return "drifted" if outcome.drifted else "ok"


def _cell_text(outcome: ColumnCell | None) -> str:
    if outcome is None:
        return "not compared"
    verdict = "drifted" if outcome.drifted else "no drift"
    stat = "" if outcome.statistic is None else f", statistic {_fmt(outcome.statistic)}"
    p = "" if outcome.p_value is None else f", p {_fmt(outcome.p_value)}"
    return f"{verdict}{stat}{p}"
