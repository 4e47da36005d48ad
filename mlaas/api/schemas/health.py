"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from mlaas.specs import Doc


class Health(Doc):
    status: str = "ok"


class Readiness(Doc):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    """redis, mlflow, s3: ok or why not"""
