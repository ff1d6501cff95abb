"""The tracking server image (Dockerfile, target mlflow-server) builds on a real engine and
answers HTTP without MLflow's data-science dependencies (docker/install.py --slim-mlflow).
test_compose_stack.py then runs training, the registry and artifacts through it."""

from __future__ import annotations

import json

import pytest
import requests

from mlstack.stack import free_port
from tests.docker.engine import docker
from tests.helpers import wait_for_http

pytestmark = pytest.mark.docker


def test_server_image_builds_runs_as_non_root_and_answers(server_image: str) -> None:
    config = json.loads(docker("image", "inspect", server_image).stdout)[0]["Config"]
    assert config["User"] == "10001"
    assert not [e for e in config["Env"] if e.split("=")[0].endswith(("PASSWORD", "SECRET_KEY"))]
    probe = docker(
        "run", "--rm", server_image, "python", "-c",
        "import importlib.util as u; "
        "print([m for m in ('sklearn', 'scipy', 'pyarrow', 'matplotlib') if u.find_spec(m)])",
    )  # fmt: skip
    assert probe.returncode == 0 and probe.stdout.strip() == "[]", probe.stdout + probe.stderr

    port = free_port()
    name = f"mlstack-server-test-{port}"
    run = docker(
        "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:5000", server_image,
        "mlflow", "server", "--host", "0.0.0.0", "--port", "5000",
        "--backend-store-uri", "sqlite:////tmp/mlflow.db",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", 120, "the tracking server container")
        ui = requests.get(
            f"http://127.0.0.1:{port}/", headers={"Host": f"localhost:{port}"}, timeout=10
        )
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    finally:
        docker("rm", "-f", name)
