"""A drift report as one self-contained HTML page: inline CSS and SVG, no script, no external reference.

The page renders offline and inside MLflow's artifact viewer (an iframe). Every string that comes from
the user's data or request (title, labels, column names, categories, meta) goes through ``html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from mlaas.drift.engine import INSUFFICIENT_DATA, METHODS, ColumnResult, DomainClassifierResult, DriftReport

DASH = "—"
WIDTH, LEFT, RIGHT = 640, 60, 24  # chart viewBox width and the plot's side margins
TOP, PLOT_H = 38, 190  # room for the legend above the plot, and the plot's height
BASE = TOP + PLOT_H  # y of the x axis
CHAR_WIDTH = 7.0  # rough width of a character of the chart's 12px text
TICKS_MAX = 10  # numerical bin edges labelled on the x axis at most
TICK_CHARS, LEGEND_CHARS = 14, 32  # longer labels are cut on the axis and in the legend (bar titles hold them whole)

CSS = """
body{margin:0;background:#f4f5f7;color:#1d2330;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px}h1{font-size:24px;margin:0 0 12px}h2{font-size:18px;margin:0 0 10px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 20px;margin:0 0 16px}
.column{border-left:6px solid #9aa3b0}.column.drift{border-left-color:#c62828}.column.ok{border-left-color:#2e7d32}
.verdict{display:inline-block;font-size:20px;font-weight:700;padding:6px 16px;border-radius:6px;color:#fff}
.verdict.drift{background:#c62828}.verdict.ok{background:#2e7d32}.share{font-size:15px;margin:10px 0}
.badge{display:inline-block;font-size:12px;font-weight:700;padding:2px 9px;border-radius:10px;color:#fff;
vertical-align:middle;text-transform:uppercase;letter-spacing:.03em}
.badge.drift{background:#c62828}.badge.ok{background:#2e7d32}.badge.na{background:#78828f}
.kind{font-size:12px;font-weight:400;color:#5a6472;border:1px solid #c5cbd3;border-radius:4px;
padding:1px 6px;vertical-align:middle}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:8px 0 0}dt{color:#5a6472}
dd{margin:0;overflow-wrap:anywhere}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e9ee}th{font-size:12px;color:#5a6472;font-weight:600}
th[scope=row],td.num,.badge{white-space:nowrap}td.num{font-variant-numeric:tabular-nums}
tr.drift td:first-child a{color:#c62828;font-weight:700}a{color:#1f5fa8}
.detail{display:grid;grid-template-columns:minmax(220px,280px) 1fr;gap:20px;align-items:start}
.note{color:#5a6472;margin:6px 0}.note.na{color:#1d2330;background:#eef0f3;padding:8px 12px;border-radius:6px}
@media (max-width:760px){.detail{grid-template-columns:1fr}}figure{margin:0}.scroll{overflow-x:auto}
svg.chart{width:100%;height:auto;display:block}svg .title,svg .legend{font-size:13px;font-weight:600}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:#3a4250}svg .grid{stroke:#e6e9ee}
svg .axis{stroke:#9aa3b0}svg .ref{fill:#6b8fb8}svg .cur{fill:#e8832a}
"""


def _e(value: object) -> str:
    """HTML-escaped text of any value, quotes included."""
    return escape(str(value), quote=True)


def _num(value: float | None) -> str:
    """Four significant digits, plain between 0.001 and a million; a dash for a missing number."""
    if value is None or math.isnan(value):
        return DASH
    if value == 0 or not 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    decimals = max(0, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def _p(value: float | None) -> str:
    """A p-value: scientific notation below 0.001."""
    return f"{value:.2e}" if value is not None and 0 < value < 1e-3 else _num(value)


def _cut(text: str, size: int) -> str:
    """``text`` cut to at most ``size`` characters, with an ellipsis when cut."""
    return text if len(text) <= size else text[: size - 1] + "…"


def _pct(share: float) -> str:
    """A share as a percentage with up to three significant digits."""
    return f"{share * 100:.3g}%"


def _state(status: str, drifted: bool) -> str:
    """CSS class of a verdict: drift, ok or na (not tested)."""
    return "na" if status == INSUFFICIENT_DATA else "drift" if drifted else "ok"


def _badge(status: str, drifted: bool) -> str:
    """The verdict of a column or of the domain classifier as a coloured badge."""
    state = _state(status, drifted)
    text = {"na": "insufficient data", "drift": "drift", "ok": "no drift"}[state]
    return f'<span class="badge {state}">{text}</span>'


def _rule(result: ColumnResult) -> str:
    """When the column counts as drifted, e.g. "p < 0.05" or "statistic ≥ 0.1"."""
    method = METHODS.get(result.method)
    has_p = method.has_p_value if method else result.p_value is not None
    if not has_p:
        return f"statistic ≥ {_num(result.threshold)}"
    return f"{'adjusted ' if result.adjusted_p_value is not None else ''}p &lt; {_num(result.threshold)}"


def _rank(result: ColumnResult) -> tuple[int, float]:
    """Sort key: drifted, then not drifted, then untested; larger statistics first within each."""
    group = {"drift": 0, "ok": 1, "na": 2}[_state(result.status, result.drifted)]
    statistic = result.statistic
    return group, -statistic if statistic is not None and math.isfinite(statistic) else math.inf


def _facts(items: Sequence[tuple[str, str]]) -> str:
    """A definition list of plain-text names and HTML values."""
    return '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _header(
    report: DriftReport, ordered: Sequence[ColumnResult], title: str, labels: tuple[str, str], meta: Mapping[str, str]
) -> str:
    """Title, dataset verdict, share and links of drifted columns, row counts, correction and meta."""
    drifted = ", ".join(f'<a href="#col-{i}">{_e(r.column)}</a>' for i, r in enumerate(ordered) if r.drifted)
    tested = sum(r.status != INSUFFICIENT_DATA for r in report.columns)
    untested = len(report.columns) - tested
    state, verdict = ("drift", "Dataset drift detected") if report.dataset_drift else ("ok", "No dataset drift")
    share = (
        f"<strong>{len(report.drifted_columns)} of {tested}</strong> tested columns drifted "
        f"(<strong>{_pct(report.share_drifted)}</strong>); the dataset drifts at ≥ {_pct(report.drift_share)}"
        + (f"; {untested} not tested (insufficient data)" if untested else "")
    )
    facts = [
        ("Drifted columns", drifted or "none"),
        ("Reference", f"{_e(labels[0])} · {report.n_reference_rows:,} rows"),
        ("Current", f"{_e(labels[1])} · {report.n_current_rows:,} rows"),
        ("Correction", _e(report.correction or "none")),
        *((str(k), _e(v)) for k, v in meta.items()),
    ]
    return (
        f'<header class="card"><h1>{_e(title)}</h1><div class="verdict {state}">{verdict}</div>'
        f'<p class="share">{share}</p>{_facts(facts)}</header>'
    )


def _classifier(result: DomainClassifierResult) -> str:
    """The domain classifier's AUC, threshold and verdict."""
    facts = [
        ("ROC AUC", f"<strong>{_num(result.auc)}</strong>"),
        ("Drift when", f"AUC ≥ {_num(result.threshold)}"),
        ("AUC per fold", ", ".join(_num(a) for a in result.auc_folds) or DASH),
        ("Rows used", f"{result.n_reference:,} reference · {result.n_current:,} current"),
    ]
    return (
        f'<section class="card"><h2>Domain classifier {_badge(result.status, result.drifted)}</h2>'
        f'<p class="note">A {_e(result.model)} learns to tell current rows from reference rows on all columns '
        f"together; an AUC near 0.5 means it cannot.</p>{_facts(facts)}</section>"
    )


def _summary(ordered: Sequence[ColumnResult], corrected: bool) -> str:
    """A table of every column, linking to its section."""
    heads = ["Column", "Kind", "Method", "Statistic", "Adjusted p-value" if corrected else "p-value", "Verdict"]
    rows = "".join(
        f'<tr class="{_state(r.status, r.drifted)}"><td><a href="#col-{i}">{_e(r.column)}</a></td>'
        f'<td>{_e(r.kind)}</td><td>{_e(r.method)}</td><td class="num">{_num(r.statistic)}</td>'
        f'<td class="num">{_p(r.adjusted_p_value if corrected else r.p_value)}</td>'
        f"<td>{_badge(r.status, r.drifted)}</td></tr>"
        for i, r in enumerate(ordered)
    )
    head = "".join(f"<th>{h}</th>" for h in heads)
    table = f'<div class="scroll"><table><tr>{head}</tr>{rows}</table></div>'
    return f'<section class="card" id="summary"><h2>Columns</h2>{table}</section>'


def _nice_step(top: float) -> float:
    """A round grid step (1, 2 or 5 times a power of ten) giving about four lines up to ``top``."""
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= raw)


def _axes(top: float, step: float, ticks: Sequence[tuple[float, str]], x_title: str) -> tuple[list[str], int]:
    """Grid lines with share labels, the x axis with its tick labels (turned when crowded), axis titles; height."""
    plot_w = WIDTH - LEFT - RIGHT
    out: list[str] = []
    for k in range(round(top / step) + 1):
        y = BASE - PLOT_H * k * step / top
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_pct(k * step)}</text>')
    crowded = max((len(t) for _, t in ticks), default=0) * CHAR_WIDTH > 0.9 * plot_w / max(len(ticks), 1)
    for x, text in ticks:
        turn = f'transform="rotate(-35 {x:.1f} {BASE + 16})" text-anchor="end"' if crowded else 'text-anchor="middle"'
        out.append(f'<text x="{x:.1f}" y="{BASE + 16}" {turn}>{_e(text)}</text>')
    height = BASE + (96 if crowded else 48)
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{BASE}" y2="{BASE}"/>')
    out.append(
        f'<text class="title" x="{LEFT + plot_w / 2}" y="{height - 8}" text-anchor="middle">{_e(x_title)}</text>'
        f'<text class="title" transform="rotate(-90 16 {BASE - PLOT_H / 2})" x="16" y="{BASE - PLOT_H / 2}" '
        'text-anchor="middle">share of values</text>'
    )
    return out, height


def _legend(labels: tuple[str, str]) -> list[str]:
    """Colour swatches naming the reference and the current side."""
    out: list[str] = []
    x = LEFT
    for cls, label in zip(("ref", "cur"), labels, strict=True):
        out.append(f'<rect class="{cls} swatch" x="{x}" y="8" width="14" height="14"/>')
        shown = _cut(label, LEGEND_CHARS)
        out.append(f'<text class="legend" x="{x + 20}" y="20">{_e(shown)}</text>')
        x += 44 + round(len(shown) * CHAR_WIDTH)
    return out


def _bars(
    caption: str,
    names: Sequence[str],
    counts: tuple[Sequence[int], Sequence[int]],
    ticks: Sequence[tuple[float, str]],
    x_title: str,
    labels: tuple[str, str],
) -> str:
    """An SVG of reference and current shares side by side per group; tick positions count in groups."""
    shares = [[c / max(sum(side), 1) for c in side] for side in counts]
    highest = max(max(side, default=0.0) for side in shares) or 1.0
    step = _nice_step(highest)
    top = step * math.ceil(highest / step)
    group_w = (WIDTH - LEFT - RIGHT) / len(names)
    axes, height = _axes(top, step, [(LEFT + group_w * pos, text) for pos, text in ticks], x_title)
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img"><title>{_e(caption)}</title>', *axes]
    for side, (cls, label) in enumerate(zip(("ref", "cur"), labels, strict=True)):
        for i, (name, share) in enumerate(zip(names, shares[side], strict=True)):
            bar = PLOT_H * share / top
            out.append(
                f'<rect class="{cls}" x="{LEFT + group_w * (i + 0.06 + 0.44 * side):.1f}" '
                f'y="{BASE - bar:.1f}" width="{group_w * 0.44:.1f}" height="{bar:.1f}">'
                f"<title>{_e(label)}, {_e(name)}: {_pct(share)} ({counts[side][i]:,} values)</title></rect>"
            )
    return "".join([*out, *_legend(labels), "</svg>"])


def _chart(result: ColumnResult, labels: tuple[str, str]) -> str:
    """The distribution chart of a column: shares per bin (numerical) or per category."""
    hist = result.histogram
    if hist is None:
        return '<p class="note na">No non-missing values on either side: nothing to chart.</p>'
    caption = f"Distribution of {result.column}: {labels[0]} against {labels[1]}"
    if hist.edges is not None:
        edges, last = hist.edges, len(hist.edges) - 2
        bins = enumerate(zip(edges[:-1], edges[1:], strict=True))
        names = [f"[{_num(a)}, {_num(b)}{']' if i == last else ')'}" for i, (a, b) in bins]
        shown = list(range(0, len(edges), math.ceil(len(edges) / TICKS_MAX)))
        shown[-1] = len(edges) - 1  # always label the last edge, in place of a crowding neighbour
        ticks = [(float(i), _num(edges[i])) for i in shown]
        return _bars(caption, names, (hist.reference, hist.current), ticks, f"{result.column} (bins)", labels)
    names = [str(v) for v in hist.labels or []]
    ref, cur = list(hist.reference), list(hist.current)
    if hist.other_reference or hist.other_current:
        names, ref, cur = [*names, "(other)"], [*ref, hist.other_reference], [*cur, hist.other_current]
    ticks = [(i + 0.5, _cut(n, TICK_CHARS)) for i, n in enumerate(names)]
    return _bars(caption, names, (ref, cur), ticks, f"{result.column} (categories)", labels)


def _sides(labels: tuple[str, str], result: ColumnResult) -> str:
    """Non-missing counts and missing shares of both sides as a small table."""
    rows = [
        ("Non-missing", f"{result.n_reference:,}", f"{result.n_current:,}"),
        ("Missing share", _pct(result.missing_reference), _pct(result.missing_current)),
    ]
    body = "".join(
        f'<tr><th scope="row">{name}</th><td class="num">{a}</td><td class="num">{b}</td></tr>' for name, a, b in rows
    )
    return f"<table><tr><th></th><th>{_e(labels[0])}</th><th>{_e(labels[1])}</th></tr>{body}</table>"


def _section(index: int, result: ColumnResult, labels: tuple[str, str]) -> str:
    """One column: name, kind, verdict, test figures, both sides' counts and the distribution chart."""
    state = _state(result.status, result.drifted)
    facts = [("Method", _e(result.method)), ("Statistic", _num(result.statistic)), ("p-value", _p(result.p_value))]
    if result.adjusted_p_value is not None:
        facts.append(("Adjusted p-value", _p(result.adjusted_p_value)))
    facts.append(("Drift when", _rule(result)))
    untested = (
        '<p class="note na"><strong>Not tested:</strong> too few non-missing values on one side for a '
        "reliable test, so this column counts neither as drifted nor as stable.</p>"
        if state == "na"
        else ""
    )
    return (
        f'<section class="card column {state}" id="col-{index}" data-column="{_e(result.column)}" '
        f'data-state="{state}"><h2>{_e(result.column)} <span class="kind">{_e(result.kind)}</span> '
        f'{_badge(result.status, result.drifted)}</h2>{untested}<div class="detail"><div>{_facts(facts)}'
        f"{_sides(labels, result)}</div><figure>{_chart(result, labels)}</figure></div>"
        '<p class="note"><a href="#summary">↑ all columns</a></p></section>'
    )


def render_html(
    report: DriftReport,
    *,
    title: str,
    reference_label: str,
    current_label: str,
    meta: Mapping[str, str] | None = None,
) -> str:
    """One self-contained HTML page of a drift report, drifted columns first."""
    labels = (reference_label, current_label)
    ordered = sorted(report.columns, key=_rank)
    parts = [
        _header(report, ordered, title, labels, meta or {}),
        _classifier(report.domain_classifier) if report.domain_classifier is not None else "",
        _summary(ordered, report.correction is not None),
        *(_section(i, r, labels) for i, r in enumerate(ordered)),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(p for p in parts if p)
        + "\n</main>\n</body>\n</html>\n"
    )
