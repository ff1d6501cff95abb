"""Fixtures shared by every test tier: a generated wine-like CSV and an isolated embedded store.

Nothing here needs the network: the default UCI URL is never used by tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlstack.settings import Settings
from tests.helpers import make_wine_frame, write_uci_csv

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
