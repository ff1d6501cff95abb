"""Our serving images on a real engine: the default one holds no TensorFlow, pyarrow or
matplotlib (it serves scikit-learn models; compose runs it against the champion in
test_compose_stack.py), and the TensorFlow variant serves the digits CNN from the registry,
answering image tensors as in-process `predict` does."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from mlstack.data import load_digits_data
from mlstack.registry import load_pyfunc
from mlstack.stack import NativeStack, free_port
from mlstack.tracking import client_for
from tests.docker.conftest import host_env
from tests.docker.engine import docker
from tests.helpers import run_entry, wait_for_http

pytestmark = pytest.mark.docker

HEAVY = ("tensorflow", "keras", "pyarrow", "matplotlib")


def _importable(image: str, modules: tuple[str, ...]) -> dict[str, bool]:
    """Which of `modules` import inside `image`."""
    probe = (
        "import importlib.util, json, sys; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    proc = docker("run", "--rm", "--entrypoint", "python", image, "-c", probe, *modules)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_default_serving_image_holds_no_tensorflow(serve_image: str) -> None:
    config = json.loads(docker("image", "inspect", serve_image).stdout)[0]["Config"]
    assert config["User"] == "1000"
    assert _importable(serve_image, ("sklearn", "skops", "fastparquet", *HEAVY)) == {
        "sklearn": True, "skops": True, "fastparquet": True,
        **dict.fromkeys(HEAVY, False),
    }  # fmt: skip


def test_tensorflow_serving_image_serves_the_digits_cnn(
    serve_tf_image: str, native_stack: NativeStack, data_dir: Path, tmp_path: Path
) -> None:
    env = host_env(native_stack.config.tracking_uri, tmp_path, data_dir)
    name = f"digits-docker-{uuid.uuid4().hex[:6]}"
    trained = run_entry(["train_digits.py", "--epochs", "2", "--register-as", name], env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    uri = f"models:/{name}@champion"

    port = free_port()
    container = f"serve-tf-{port}"
    started = docker(
        "run", "-d", "--name", container, "--network", "host",
        "-e", f"MLFLOW_TRACKING_URI={native_stack.config.tracking_uri}",
        serve_tf_image, "--model-uri", uri, "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", 180, "the TensorFlow serving image")
        images = load_digits_data(None, test_size=0.2, seed=0).x_test[:4]
        answer = requests.post(
            f"http://127.0.0.1:{port}/invocations", json={"inputs": images.tolist()}, timeout=60
        )
        assert answer.status_code == 200, answer.text[:500]
        client = client_for(native_stack.config.tracking_uri)
        expected = np.asarray(load_pyfunc(uri, client).predict(images))
        got = np.asarray(answer.json()["predictions"])
        assert got.shape == (4, 10)
        np.testing.assert_allclose(got, expected, atol=1e-5)  # float32 rounding
        version = requests.get(f"http://127.0.0.1:{port}/version", timeout=10).json()
        assert version["name"] == name and version["fast_path"] is True  # the tensor one
    finally:
        logs = docker("logs", container)
        docker("rm", "-f", container)
    output = logs.stdout + logs.stderr
    assert "Traceback" not in output
    assert "ms/step" not in output, output[-2000:]  # no Keras progress bar per request


def test_the_client_image_holds_streamlit_and_no_model_libraries(client_image: str) -> None:
    config = json.loads(docker("image", "inspect", client_image).stdout)[0]["Config"]
    assert config["User"] == "1000"
    found = _importable(client_image, ("streamlit", "requests", "mlflow", "sklearn", *HEAVY[:2]))
    assert found == {"streamlit": True, "requests": True, "mlflow": False, "sklearn": False,
                     "tensorflow": False, "keras": False}  # fmt: skip
