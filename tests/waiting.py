"""Waiting on a condition instead of sleeping a fixed time: the one polling loop the tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import requests

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll until ``check`` returns something truthy and return it; fail naming ``what`` after ``timeout`` s.

    A request or OS error while polling (a server restarting) counts as "not yet". Deadlines are
    generous on purpose: they bound a wait for a condition, they never measure the product.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (requests.RequestException, OSError):
            value = None  # type: ignore[assignment]
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(interval)
