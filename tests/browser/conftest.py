"""Browser tier: Debian's Chromium driven by Playwright against the real web client
(`python -m mlstack.client`) and our real model server, on an embedded store.

Outside CI a machine without Chromium or Playwright skips this tier with one line saying why;
with CI=true that is a failure. A failing test leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mlstack.stack import free_port
from tests.helpers import PROJ_ROOT, http_server

CHROMIUM = Path("/usr/lib/chromium/chromium")  # /usr/bin/chromium is a shell wrapper
ARTIFACTS = PROJ_ROOT / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]  # fmt: skip


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the browser tier cannot run: {reason}")
    pytest.skip(f"no browser here: {reason}")


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's build, launched by Playwright)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (make setup)")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Keep each phase's report on the test item, so the page fixture knows a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    """A fresh page; a screenshot of it in test-artifacts/ when the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def serve(env: dict[str, str], model_uri: str, *args: str):
    """Our model server for `model_uri` on a free port (a context manager: its URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", model_uri,
           "--port", str(port), *args]  # fmt: skip
    return http_server(cmd, env, port, f"our server for {model_uri}")


def start_client(env: dict[str, str], server_url: str):
    """`python -m mlstack.client` for `server_url` on a free port (a context manager: its URL,
    once healthy)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.client", "--server-url", server_url, "--port", str(port)]
    return http_server(cmd, env, port, "the web client", health="/_stcore/health")
