"""Headless Chromium driven over the DevTools protocol on a pipe (no driver or websocket package needed).

``--remote-debugging-pipe`` makes Chromium read protocol messages from fd 3 and write answers and events to
fd 4, each a JSON object ending in a NUL byte. One page (target) is opened; its console messages, uncaught
exceptions and log entries (failed loads, CSP refusals) are collected as ``problems``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars",
         "--font-render-hinting=none"]


class Browser:
    """One headless Chromium page; close() ends the browser (use it as a context manager)."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900, timeout: float = 60) -> None:
        assert shutil.which("chromium"), "Chromium is not installed: run `make system-deps` (Debian package chromium)"
        self.timeout = timeout
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The child's fds 3 and 4 are the pipe ends, made in the child only. close_fds=False keeps them past exec
        # (Python's own descriptors are not inheritable anyway, PEP 446).
        self.process = subprocess.Popen(
            ["chromium", *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
            preexec_fn=lambda: _as_fd_3_and_4(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self._loaded = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):  # already gone
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._to_child)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiting = self._answers.get(message["id"])
                    if waiting is not None:
                        waiting.put(message)
                else:
                    self.events.append(message)
                    if message.get("method") == "Page.loadEventFired":
                        self._loaded.set()

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one protocol command and return its result (AssertionError on a protocol error)."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._answers[ident] = answer = queue.Queue()
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        try:
            reply = answer.get(timeout=self.timeout)
        except queue.Empty:
            raise AssertionError(f"Chromium did not answer {method} within {self.timeout} s") from None
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply.get("result", {})

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._loaded.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_loaded()

    def wait_loaded(self) -> None:
        assert self._loaded.wait(self.timeout), f"the page did not load within {self.timeout} s"

    def submit(self, expression: str) -> None:
        """Run ``expression`` (which submits a form) and wait for the next page to load."""
        self._loaded.clear()
        self.evaluate(expression)
        self.wait_loaded()

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools' own evaluation, not a page script)."""
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page (the viewport grown to the page's height for the capture)."""
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
        data = self.call("Page.captureScreenshot", session=True, format="png", clip=clip,
                         captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and error log entries seen so far."""
        found = []
        for event in list(self.events):
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                entry = params["entry"]
                found.append(f"{entry.get('source')} {entry['level']}: {entry.get('text')} {entry.get('url', '')}")
        return found


def _as_fd_3_and_4(read_end: int, write_end: int) -> None:
    high_read, high_write = fcntl.fcntl(read_end, fcntl.F_DUPFD, 10), fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
    os.dup2(high_read, 3)
    os.dup2(high_write, 4)


def wait_until(browser: Browser, expression: str, timeout: float = 30) -> Any:
    """Poll a page expression until it is truthy (for content the server renders on a later load)."""
    deadline = time.monotonic() + timeout
    while True:
        value = browser.evaluate(expression)
        if value:
            return value
        assert time.monotonic() < deadline, f"{expression}: still falsy after {timeout} s"
        time.sleep(0.2)
