"""Answers of POST /feedback and GET /models/<name>/performance."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from mlaas.api.schemas.common import Query
from mlaas.quality.specs import PerformanceQuery
from mlaas.specs import Doc


class FeedbackAccepted(Doc):
    """Outcomes accepted. Inline: stored now (``accepted``, ``batch``) and joined by a worker a moment later. A
    dataset: a job (``job_id``, ``status_url``, ``state``) whose result has the counts."""

    model: str | None = None
    accepted: int | None = None
    """Inline: outcomes stored"""
    batch: str | None = None
    """Inline: the id these outcomes are stored under"""
    performance_url: str | None = None
    """Inline: where the joined figures (and the join's counts: matched, unmatched, duplicates) appear"""
    job_id: str | None = None
    """A dataset: the job reading it"""
    status_url: str | None = None
    state: str | None = None
    version: int | None = None


class PerformanceParams(PerformanceQuery, Query):
    """Query string of GET /models/<name>/performance."""


class Figures(Doc):
    model_config = ConfigDict(extra="allow")

    n: int
    """Rows with an outcome joined to their prediction"""
    metrics: dict[str, float]
    """Evaluation's metrics on those rows"""
    estimated: dict[str, Any] | None = None
    """CBPE: {n: served rows, metrics: {accuracy, roc_auc}, calibrated} (classifiers with probabilities)"""


class Window(Figures):
    start: str
    end: str


class Performance(Doc):
    """Realized quality of a version's served predictions, overall and per window, with its estimate."""

    model_config = ConfigDict(extra="allow")

    model: str
    version: int
    task: str
    overall: Figures
    windows: list[Window]
    estimate_check: dict[str, Any] | None = None
    """The estimate on the labelled rows beside their realized metrics, and the difference"""
    feedback: dict[str, Any]
    """The last join: outcomes, matched, unmatched (+ ids), duplicates (+ ids), when"""
