"""Fixtures shared by every test tier: a generated wine-like CSV, an isolated embedded store, and
a headless Chromium (Debian's, driven by Playwright) for the tiers that open pages.

Nothing here needs the network: the default UCI URL is never used by tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlstack.settings import Settings
from tests.helpers import ARTIFACTS, make_wine_frame, write_uci_csv

TIERS = {
    "integration": pytest.mark.integration,
    "docker": pytest.mark.docker,
    "browser": pytest.mark.browser,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests in tests/integration, tests/docker and tests/browser start real services: they
    carry their tier's marker and `slow`, so `-m 'not slow'` (make test-quick) stays quick."""
    here = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(here).parts[0] if here in item.path.parents else None
        if tier in TIERS:
            item.add_marker(TIERS[tier])
            item.add_marker(pytest.mark.slow)


CHROMIUM = Path("/usr/lib/chromium/chromium")  # /usr/bin/chromium is a shell wrapper
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]  # fmt: skip


def _unavailable(reason: str) -> None:
    """Skip (outside CI) or fail (CI=true): a browser tier that cannot run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the browser tier cannot run: {reason}")
    pytest.skip(f"no browser here: {reason}")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's build, launched by Playwright), one per test module: while
    it runs, Playwright's sync API holds an event loop in this thread, and a later test's
    asyncio.run() would find it running. Outside CI a machine without Chromium or Playwright
    skips the test with one line saying why; with CI=true that is a failure."""
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
    """A fresh page; when the test fails, test-artifacts/ gets a screenshot of it and a log of
    what the browser saw (console, page errors, failed or refused requests), since a blank
    screenshot alone cannot say why a page never drew."""
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(30_000)
    seen: list[str] = []
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: seen.append(f"failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and seen.append(f"{r.status}: {r.url}"))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        (ARTIFACTS / f"{request.node.name}.log").write_text(
            "\n".join([f"url: {page.url}", *seen]) + "\n"
        )
    context.close()


@pytest.fixture(scope="session")
def wine_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 400-row wine CSV in the UCI format."""
    return write_uci_csv(make_wine_frame(), tmp_path_factory.mktemp("data") / "wine.csv")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """An empty directory for this test's embedded tracking store."""
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def settings(store_dir: Path, tmp_path: Path, wine_csv: Path) -> Settings:
    """Settings for an isolated embedded store; ignores any developer `.env` and server."""
    return Settings(
        _env_file=None,
        tracking_uri=None,
        store_dir=store_dir,
        cache_dir=tmp_path / "cache",
        wine_data=str(wine_csv),
    )


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running an entry point against the isolated embedded store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
    env.update(
        MLFLOW_TRACKING_URI="",  # beats a developer's .env: embedded store
        MLFLOW_DISABLE_TELEMETRY="true",
        MLSTACK_STORE_DIR=str(settings.store_dir),
        MLSTACK_CACHE_DIR=str(settings.cache_dir),
        MLSTACK_WINE_DATA=settings.wine_data,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONUNBUFFERED="1",
    )
    return env
