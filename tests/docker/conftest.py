"""Docker tier: a real engine started by tests/docker/engine.py. No mocks.

Outside CI a machine where the engine cannot start skips this tier with one line saying why;
with CI=true that is a failure.
"""

from __future__ import annotations

import os

import pytest

from tests.docker import engine


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The private engine's DOCKER_HOST, with the stand-in base images built."""
    try:
        engine.up()
    except (engine.EngineError, OSError, TimeoutError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the Docker engine could not start: {exc}")
        pytest.skip(f"no Docker engine here: {exc}")
    return engine.DOCKER_HOST
