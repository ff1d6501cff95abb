"""Serving registry models from the tracking server, as the README shows it: `mlflow models
serve` answers every JSON form with what in-process `predict` returns, and the digits CNN
answers image tensors; our server, as a process with two workers, answers every request form
and every bad request over HTTP exactly as `mlflow models serve` does; and its prediction log
reaches the stack's S3 bucket through the tracking server."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from starlette.testclient import TestClient

from mlstack.data import WINE_FEATURES, load_digits_data, read_wine_csv
from mlstack.logstore import load_prediction_log
from mlstack.registry import load_pyfunc
from mlstack.serving.app import create_app
from mlstack.serving.model import load_model
from mlstack.stack import free_port
from mlstack.tracking import client_for
from tests.helpers import (
    PROJ_ROOT,
    SCORING_FORMS,
    awkward_requests,
    http_server,
    run_entry,
    scoring_forms,
    scoring_requests,
)
from tests.integration.conftest import client_env, s3_keys

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


def ours(model_uri: str, env: dict[str, str], *args: str):
    """`python -m mlstack.serving` on a free port (a context manager)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", model_uri,
           "--port", str(port), *args]  # fmt: skip
    return http_server(cmd, env, port, f"python -m mlstack.serving {model_uri}")


def test_mlflow_models_serve_answers_every_json_form(wine_model) -> None:
    uri, frame, env = wine_model
    expected = load_pyfunc(uri, client_for(env["MLFLOW_TRACKING_URI"])).predict(frame)
    with serve(uri, env) as url:
        for form, body in scoring_requests(frame).items():
            answer = requests.post(f"{url}/invocations", json=body, timeout=30)
            assert answer.status_code == 200, (form, answer.text)
            assert answer.json()["predictions"] == pytest.approx(list(expected), abs=1e-12), form


def test_digits_model_answers_image_tensors(stack, tmp_path) -> None:
    env = client_env(stack.config.tracking_uri, tmp_path, tmp_path / "unused.csv")
    uri = register(env, "train_digits.py", f"digits-serve-{uuid.uuid4().hex[:6]}", "--epochs", "2")
    images = load_digits_data(None, test_size=0.25, seed=42).x_test[:4]
    client = client_for(env["MLFLOW_TRACKING_URI"])
    expected = np.asarray(load_pyfunc(uri, client).predict(images))
    with serve(uri, env) as url:
        answer = requests.post(f"{url}/invocations", json={"inputs": images.tolist()}, timeout=60)
        assert answer.status_code == 200, answer.text
        got = np.asarray(answer.json()["predictions"])
        assert got.shape == (4, 10)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
        theirs = answer.json()
    # Our server: the Keras model has no fast path; through pyfunc it answers the same.
    model = load_model(uri, client)
    assert model.estimator is None
    ours = TestClient(create_app(model))
    answer = ours.post("/invocations", json={"inputs": images.tolist()})
    assert answer.status_code == 200 and answer.json() == theirs
    # The sample body in serve/requests is one such image.
    sample = (PROJ_ROOT / "serve" / "requests" / "digits.json").read_bytes()
    answer = ours.post("/invocations", content=sample, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    (probabilities,) = answer.json()["predictions"]
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1.0, abs=1e-4)


def _same_sets(body: dict) -> dict:
    """`body` with the elements of each Python set literal in its message sorted: MLflow
    prints a set of field names, whose order changes from process to process (hash
    randomisation), so two `mlflow models serve` processes word it differently too."""
    message = body.get("message")
    if not isinstance(message, str):
        return body

    def ordered(match: re.Match) -> str:
        return "{" + ", ".join(sorted(match[1].split(", "))) + "}"

    return body | {"message": re.sub(r"\{('[^'{}]*'(?:, '[^'{}]*')*)\}", ordered, message)}


def test_our_server_answers_every_request_like_mlflow_models_serve(wine_model) -> None:
    uri, frame, env = wine_model
    cases = {
        f"{form}-{rows}-rows": (json.dumps(scoring_forms(frame.head(rows), form)).encode(),
                                "application/json")
        for form in SCORING_FORMS
        for rows in (1, len(frame))
    } | awkward_requests(frame)  # fmt: skip
    with serve(uri, env) as theirs, ours(uri, env, "--workers", "2") as mine:
        for case, (content, content_type) in cases.items():
            answers = [
                requests.post(f"{url}/invocations", data=content, timeout=30,
                              headers={"Content-Type": content_type})
                for url in (mine, theirs)
            ]  # fmt: skip
            a, b = answers
            assert a.status_code == b.status_code, (case, a.text[:300], b.text[:300])
            assert a.status_code < 500, (case, a.text[:300])  # never a 500 for a client mistake
            if b.headers["content-type"].startswith("application/json"):
                assert _same_sets(a.json()) == _same_sets(b.json()), case
            else:
                assert a.text == b.text, case


def test_prediction_log_reaches_the_stack_bucket_through_the_server(stack, wine_model) -> None:
    uri, frame, env = wine_model
    body = scoring_requests(frame)["dataframe_split"]
    # No S3 keys in this process's environment (client_env): uploads go through the server.
    assert not any(k.startswith("AWS_") for k in env)
    with ours(
        uri, env, "--workers", "2", "--log-predictions", "mlflow", "--log-flush-s", "60"
    ) as url:
        with requests.Session() as session:
            ids = [session.post(f"{url}/invocations", json=body, timeout=30).headers["X-Request-Id"]
                   for _ in range(25)]  # fmt: skip
    client = client_for(stack.config.tracking_uri)
    name = uri.split("/")[1].split("@")[0]
    experiment = client.get_experiment_by_name(f"{name}-predictions")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    table = load_prediction_log(run.info.run_id, stack.config.tracking_uri)
    assert sorted(table["request_id"]) == sorted(ids)
    assert set(table["rows"]) == {len(frame)}
    keys = [k for k in s3_keys(stack) if run.info.run_id in k and "/predictions/" in k]
    assert keys and all(k.endswith(".parquet") for k in keys)
