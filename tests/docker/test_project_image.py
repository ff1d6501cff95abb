"""The root Dockerfile (MLproject's docker_env image) builds on a real engine, runs as the
non-root dockeruser, and holds the pinned libraries and the project code."""

from __future__ import annotations

import pytest

from tests.docker.engine import docker
from tests.helpers import PROJ_ROOT

pytestmark = pytest.mark.docker

IMAGE = "mlstack-train"


def test_project_image_holds_pins_and_code(docker_engine: str) -> None:
    build = docker("build", "-q", "-t", IMAGE, str(PROJ_ROOT), timeout=1200)
    assert build.returncode == 0, build.stderr[-2000:]
    check = docker(
        "run", "--rm", IMAGE, "python", "-c",
        "import os, mlflow, sklearn, tensorflow, mlstack.wine; "
        "print(os.getuid(), mlflow.__version__, tensorflow.__version__)",
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.split() == ["1000", "3.17.2", "2.21.0"]
    helped = docker("run", "--rm", IMAGE, "python", "train.py", "--help")
    assert helped.returncode == 0 and "--l1-ratio" in helped.stdout
    # The build context leaves out environments, stores and secrets (.dockerignore).
    listing = docker("run", "--rm", IMAGE, "ls", "-A", "/opt/mlstack").stdout.split()
    assert not {".venv", ".git", ".env", "mlflow.db", "mlruns", ".stack"} & set(listing)
