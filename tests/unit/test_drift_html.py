"""The HTML drift report: self-contained, ordered by verdict, one chart per column, user strings escaped."""

from __future__ import annotations

from collections import defaultdict
from html import escape
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from mlaas.drift import INSUFFICIENT_DATA, ColumnResult, ColumnSpec, DriftReport, compare
from mlaas.drift.html import render_html

XSS_COLUMN = "<script>alert(1)</script>"
XSS_CATEGORY = '"><img src=x onerror=alert(1)>'
SPEC = ColumnSpec(numerical=["stable", "shifted", "constant", "gappy", "few"], categorical=["color", XSS_COLUMN])
META = {"model": "churn", "version": "3", "run": "<b>run & 'id'</b>", "current": "s3://bucket/current.parquet"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
FORBIDDEN = {"script", "link", "iframe", "frame", "object", "embed", "img", "image", "base", "use", "foreignobject"}
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "srcset", "poster", "data", "background"}
STATE_ORDER = {"drift": 0, "ok": 1, "na": 2}


def _frame(rows: int, seed: int, *, shift: bool) -> pd.DataFrame:
    """Normal, shifted, constant, gappy, nearly empty and categorical columns; shift moves two of them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "stable": rng.normal(0.0, 1.0, rows),
            "shifted": rng.normal(1.5 if shift else 0.0, 1.0, rows),
            "constant": np.full(rows, 7.0),
            "gappy": rng.exponential(2.0, rows),
            "few": np.where(np.arange(rows) < 12, rng.normal(0.0, 1.0, rows), np.nan),
            "color": rng.choice(["red", "green", "blue"], rows, p=[0.2, 0.3, 0.5] if shift else [0.5, 0.3, 0.2]),
            XSS_COLUMN: rng.choice([XSS_CATEGORY, "plain"], rows),
        }
    )
    frame.loc[rng.random(rows) < 0.2, "gappy"] = np.nan
    return frame


@pytest.fixture(scope="module")
def drifted() -> DriftReport:
    """Shifted data (fewer current rows), Benjamini-Hochberg correction and the domain classifier."""
    report = compare(
        _frame(300, 1, shift=False),
        _frame(200, 2, shift=True),
        SPEC,
        drift_share=0.3,
        correction="bh",
        domain_classifier=True,
    )
    assert report.dataset_drift and report.domain_classifier is not None
    return report


@pytest.fixture(scope="module")
def stable() -> DriftReport:
    """Two samples of the same distributions, no correction, no domain classifier."""
    report = compare(_frame(300, 3, shift=False), _frame(300, 4, shift=False), SPEC)
    assert not report.dataset_drift
    return report


class Page(HTMLParser):
    """Tags, attributes and text of a page, by the id of the elements they sit in; fails on mismatched tags."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.open: list[tuple[str, dict[str, str]]] = []
        self.inside: dict[str, list[tuple[str, dict[str, str]]]] = defaultdict(list)
        self.text: dict[str, str] = defaultdict(str)  # by id, and by class as ".name"
        self.styles = ""
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed tags: {[tag for tag, _ in self.open]}"

    def _record(self, tag: str, raw: list[tuple[str, str | None]]) -> dict[str, str]:
        attrs = {name: value or "" for name, value in raw}
        for _, outer in self.open:
            if "id" in outer:
                self.inside[outer["id"]].append((tag, attrs))
        self.tags.append((tag, attrs))
        self.styles += attrs.get("style", "")
        return attrs

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        recorded = self._record(tag, attrs)
        if tag not in VOID:
            self.open.append((tag, recorded))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._record(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1][0] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        for tag, attrs in self.open:
            keys = [attrs["id"]] if "id" in attrs else []
            for key in [*keys, *(f".{name}" for name in attrs.get("class", "").split())]:
                self.text[key] += data
            if tag == "style":
                self.styles += data

    def sections(self) -> list[tuple[str, str, str]]:
        """(id, column, state) of each column section, in page order."""
        return [
            (a["id"], a["data-column"], a["data-state"])
            for tag, a in self.tags
            if tag == "section" and "data-column" in a
        ]


def _render(report: DriftReport) -> str:
    return render_html(
        report,
        title='Weekly drift <check> & "review"',
        reference_label="train 'v1'",
        current_label="prod <w12>",
        meta=META,
    )


def _state(result: ColumnResult) -> str:
    return "na" if result.status == INSUFFICIENT_DATA else "drift" if result.drifted else "ok"


@pytest.fixture(params=["drifted", "stable"])
def report(request: pytest.FixtureRequest) -> DriftReport:
    return request.getfixturevalue(request.param)


def test_page_is_self_contained(report: DriftReport) -> None:
    page = Page(_render(report))
    ids = {a["id"] for _, a in page.tags if "id" in a}
    assert not {tag for tag, _ in page.tags} & FORBIDDEN
    links = [(name, value) for _, attrs in page.tags for name, value in attrs.items() if name in URL_ATTRIBUTES]
    assert links and all(name == "href" and value.startswith("#") and value[1:] in ids for name, value in links)
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert page.styles and "url(" not in page.styles.lower() and "@import" not in page.styles.lower()


def test_columns_are_ordered_drifted_first_and_untested_last(drifted: DriftReport) -> None:
    by_name = {r.column: r for r in drifted.columns}
    sections = Page(_render(drifted)).sections()
    assert sorted(column for _, column, _ in sections) == sorted(by_name)
    assert [state for _, column, state in sections] == [_state(by_name[column]) for _, column, _ in sections]
    states = [state for _, _, state in sections]
    assert {"drift", "ok", "na"} <= set(states) and states == sorted(states, key=STATE_ORDER.__getitem__)
    for group in ("drift", "ok"):
        statistics = [x for _, c, s in sections if s == group and (x := by_name[c].statistic) is not None]
        assert len(statistics) == states.count(group) and statistics == sorted(statistics, reverse=True)


def test_every_column_has_a_titled_chart_with_a_legend(report: DriftReport) -> None:
    page = Page(_render(report))
    for section_id, column, state in page.sections():
        inside = page.inside[section_id]
        svgs = [i for i, (tag, _) in enumerate(inside) if tag == "svg"]
        assert len(svgs) == 1, column
        assert inside[svgs[0] + 1][0] == "title" and column in page.text[section_id]
        assert "train 'v1'" in page.text[section_id] and "prod <w12>" in page.text[section_id]
        badges = [a["class"] for tag, a in inside if "badge" in a.get("class", "")]
        assert badges == [{"drift": "badge drift", "ok": "badge ok", "na": "badge na"}[state]]
    assert "share of values" in page.text[".chart"]


def test_untested_column_says_so_and_shows_its_counts(drifted: DriftReport) -> None:
    page = Page(_render(drifted))
    (few,) = [r for r in drifted.columns if r.status == INSUFFICIENT_DATA]
    (section_id,) = [i for i, column, _ in page.sections() if column == few.column]
    text = page.text[section_id]
    assert "Not tested" in text and "insufficient data" in text and "no drift" not in text
    assert f"Non-missing{few.n_reference:,}{few.n_current:,}" in text and "Statistic—" in text


def test_bars_are_shares_so_sides_with_different_row_counts_compare(drifted: DriftReport) -> None:
    page = Page(_render(drifted))
    assert drifted.n_reference_rows != drifted.n_current_rows
    (section_id,) = [i for i, column, _ in page.sections() if column == "constant"]
    heights = {
        side: [float(a["height"]) for tag, a in page.inside[section_id] if a.get("class") == side]
        for side in ("ref", "cur")
    }
    assert heights["ref"] == heights["cur"] and len(heights["ref"]) == 1 and heights["ref"][0] > 0


def test_verdict_matches_the_dataset_verdict(drifted: DriftReport, stable: DriftReport) -> None:
    for report in (drifted, stable):
        expected = "Dataset drift detected" if report.dataset_drift else "No dataset drift"
        assert Page(_render(report)).text[".verdict"] == expected


def test_user_strings_appear_only_escaped(drifted: DriftReport) -> None:
    html = _render(drifted)
    for raw in (XSS_COLUMN, XSS_CATEGORY, META["run"], "prod <w12>", "<check>"):
        assert raw not in html
        assert escape(raw, quote=True) in html
    page = Page(html)
    assert not {tag for tag, _ in page.tags} & {"script", "img", "b", "check", "w12"}
    assert XSS_COLUMN in [column for _, column, _ in page.sections()]


def test_figures_are_formatted_and_corrections_shown_when_used(drifted: DriftReport, stable: DriftReport) -> None:
    page = Page(_render(drifted))
    by_name = {r.column: r for r in drifted.columns}
    sections = {column: page.text[i] for i, column, _ in page.sections()}
    shifted = by_name["shifted"]
    assert shifted.p_value is not None and shifted.adjusted_p_value is not None and shifted.p_value < 1e-6
    assert f"p-value{shifted.p_value:.2e}" in sections["shifted"]
    assert f"Adjusted p-value{shifted.adjusted_p_value:.2e}" in sections["shifted"]
    gappy = by_name["gappy"]
    assert f"Missing share{gappy.missing_reference * 100:.3g}%{gappy.missing_current * 100:.3g}%" in sections["gappy"]
    auc = drifted.domain_classifier.auc if drifted.domain_classifier else None
    assert auc is not None and f"ROC AUC{auc:.4g}" in page.text[".card"]
    stable_page = Page(_render(stable))
    assert "Adjusted" not in stable_page.text[".card"] and "Domain classifier" not in stable_page.text[".card"]


def test_summary_links_each_column_to_its_section(report: DriftReport) -> None:
    page = Page(_render(report))
    columns = {section_id: column for section_id, column, _ in page.sections()}
    links = [a["href"][1:] for tag, a in page.inside["summary"] if tag == "a"]
    assert sorted(links) == sorted(columns)
    for key, value in META.items():
        assert f"{key}{value}" in page.text[".card"]
