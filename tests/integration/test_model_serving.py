"""`mlflow models serve` on registry models from the tracking server, as the README shows it:
every JSON form of /invocations returns what in-process `predict` returns; the digits CNN
answers image tensors."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from starlette.testclient import TestClient

from mlstack.data import WINE_FEATURES, load_digits_data, read_wine_csv
from mlstack.serving.app import create_app
from mlstack.serving.model import load_model
from mlstack.stack import free_port
from tests.helpers import http_server, point_mlflow_at, run_entry, scoring_requests
from tests.integration.conftest import client_env

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def register(env: dict[str, str], script: str, name: str, *args: str) -> str:
    """Train with `--register-as name` (first version: champion); return the model URI."""
    proc = run_entry([script, "--register-as", name, *args], env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return f"models:/{name}@champion"


def serve(model_uri: str, env: dict[str, str]):
    """`mlflow models serve -m URI --env-manager local` on a free port (a context manager)."""
    port = free_port()
    # mlflow starts `bash -c "exec uvicorn ..."`: the environment's bin/ must be on PATH.
    env = env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return http_server(cmd, env, port, f"mlflow models serve {model_uri}")


@pytest.fixture(scope="module")
def wine_model(stack, tmp_path_factory, wine_csv) -> tuple[str, pd.DataFrame, dict[str, str]]:
    env = client_env(stack.config.tracking_uri, tmp_path_factory.mktemp("serve"), wine_csv)
    uri = register(env, "train.py", f"wine-serve-{uuid.uuid4().hex[:6]}")
    frame = read_wine_csv(Path(env["MLSTACK_WINE_DATA"]))[list(WINE_FEATURES)].head(5)
    return uri, frame, env


def test_mlflow_models_serve_answers_every_json_form(wine_model) -> None:
    uri, frame, env = wine_model
    point_mlflow_at(env["MLFLOW_TRACKING_URI"])
    expected = mlflow.pyfunc.load_model(uri).predict(frame)
    with serve(uri, env) as url:
        for form, body in scoring_requests(frame).items():
            answer = requests.post(f"{url}/invocations", json=body, timeout=30)
            assert answer.status_code == 200, (form, answer.text)
            assert answer.json()["predictions"] == pytest.approx(list(expected), abs=1e-12), form


def test_digits_model_answers_image_tensors(stack, tmp_path) -> None:
    env = client_env(stack.config.tracking_uri, tmp_path, tmp_path / "unused.csv")
    uri = register(env, "train_digits.py", f"digits-serve-{uuid.uuid4().hex[:6]}", "--epochs", "2")
    images = load_digits_data(None, test_size=0.25, seed=42).x_test[:4]
    point_mlflow_at(env["MLFLOW_TRACKING_URI"])
    expected = np.asarray(mlflow.pyfunc.load_model(uri).predict(images))
    with serve(uri, env) as url:
        answer = requests.post(f"{url}/invocations", json={"inputs": images.tolist()}, timeout=60)
        assert answer.status_code == 200, answer.text
        got = np.asarray(answer.json()["predictions"])
        assert got.shape == (4, 10)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
        theirs = answer.json()
    # Our server: the Keras model has no fast path; through pyfunc it answers the same.
    client = mlflow.MlflowClient()
    model = load_model(uri, client)
    assert model.estimator is None
    ours = TestClient(create_app(model, lambda: load_model(uri, client)))
    answer = ours.post("/invocations", json={"inputs": images.tolist()})
    assert answer.status_code == 200 and answer.json() == theirs
