"""`mlflow models build-docker` on the registry's champion, run with `docker run -p
127.0.0.1:PORT:8080`, answers every JSON form of /invocations with what in-process `predict`
returns, exactly as the README's commands do it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from mlstack.data import WINE_FEATURES, read_wine_csv
from mlstack.registry import load_pyfunc
from mlstack.stack import NativeStack, free_port
from mlstack.tracking import client_for
from tests.docker.conftest import host_env
from tests.docker.engine import docker
from tests.helpers import run_entry, scoring_requests, wait_for_http

pytestmark = pytest.mark.docker

SERVING_IMAGE = "wine-serve"


def test_build_docker_image_serves_the_champion(
    docker_engine: str, native_stack: NativeStack, data_dir: Path, tmp_path: Path
) -> None:
    env = host_env(native_stack.config.tracking_uri, tmp_path, data_dir)
    name = f"wine-docker-{uuid.uuid4().hex[:6]}"
    trained = run_entry(["train.py", "--register-as", name], env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    model_uri = f"models:/{name}@champion"

    built = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "models", "build-docker", "-m", model_uri,
         "-n", SERVING_IMAGE, "--env-manager", "local"],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]

    port = free_port()
    container = f"wine-serve-{port}"
    started = docker(
        "run", "-d", "--name", container, "-p", f"127.0.0.1:{port}:8080", SERVING_IMAGE
    )
    assert started.returncode == 0, started.stderr
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", 180, "the build-docker image")
        frame = read_wine_csv(data_dir / "winequality-red.csv")[list(WINE_FEATURES)].head(5)
        client = client_for(env["MLFLOW_TRACKING_URI"])
        expected = list(load_pyfunc(model_uri, client).predict(frame))
        for form, body in scoring_requests(frame).items():
            answer = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30)
            assert answer.status_code == 200, (form, answer.text)
            assert answer.json()["predictions"] == pytest.approx(expected, abs=1e-12), form
        # A client's mistake is a 4xx with a JSON body, not a crash.
        bad = requests.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_split": {}}, timeout=30
        )
        assert 400 <= bad.status_code < 500 and "error_code" in bad.json()
    finally:
        docker("rm", "-f", container)
