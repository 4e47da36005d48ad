"""The docs page in a real browser: headless Chromium renders /docs from assets mlaas serves itself."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def test_docs_page_renders_every_endpoint(api, tmp_path):
    assert shutil.which("chromium"), "Chromium is not installed: run `make system-deps` (Debian package chromium)"
    page = api.get("/docs", allow_redirects=True)
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "unpkg.com" not in page.text and "cdn" not in page.text.lower()  # assets come from mlaas itself
    dom = subprocess.run(
        ["chromium", *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
         "--dump-dom", f"{api.base_url}/docs"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    spec = api.get("/openapi.json").json()
    assert rendered == set(spec["paths"]), set(spec["paths"]) ^ rendered
