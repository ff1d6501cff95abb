"""The root Dockerfile (MLproject's docker_env image) builds on a real engine, runs as the
non-root dockeruser, and holds the pinned libraries and the project code."""

from __future__ import annotations

import pytest

from tests.docker.conftest import pinned, source_commit
from tests.docker.engine import docker

pytestmark = pytest.mark.docker


def test_project_image_holds_pins_and_code(train_image: str) -> None:
    check = docker(
        "run", "--rm", train_image, "python", "-c",
        "import os, mlflow, sklearn, tensorflow, mlstack.wine; "
        "print(os.getuid(), mlflow.__version__, tensorflow.__version__)",
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.split() == ["1000", pinned("mlflow"), pinned("tensorflow-cpu")]
    helped = docker("run", "--rm", train_image, "python", "train.py", "--help")
    assert helped.returncode == 0 and "--l1-ratio" in helped.stdout
    # The build context leaves out environments, stores and secrets (.dockerignore).
    listing = docker("run", "--rm", train_image, "ls", "-A", "/opt/mlstack").stdout.split()
    assert not {".venv", ".git", ".env", "mlflow.db", "mlruns", ".stack"} & set(listing)
    # It knows which commit its code is from, so `mlflow run` can refuse stale code.
    env = docker("run", "--rm", train_image, "env").stdout.splitlines()
    assert f"MLSTACK_IMAGE_COMMIT={source_commit()[0]}" in env
    assert "MLSTACK_IMAGE_CODE_DIR=/opt/mlstack" in env
    # The train target has no SSH server: that is the dev image's.
    assert docker("run", "--rm", train_image, "sh", "-c", "command -v sshd").returncode != 0
