"""The digits CNN through our server's tensor fast path: the same answers as MLflow's pyfunc
for every held-out image, alone, in 32-image requests and batched across concurrent clients
(each client its own answer); no Keras progress bar in the log; malformed tensors answered
exactly as MLflow answers them; a reload under load fails no request."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from mlflow.pyfunc import scoring_server
from starlette.testclient import TestClient

from mlstack import digits
from mlstack.data import load_digits_data
from mlstack.params import DigitsParams
from mlstack.serving.app import create_app
from mlstack.serving.model import load_model
from mlstack.settings import Settings
from mlstack.stack import free_port
from tests.helpers import http_server, wait_for

pytestmark = pytest.mark.slow  # trains two CNNs

URI = "models:/digits@champion"
# Float32 rounding: oneDNN sums in another order for another batch size.
TOLERANCE = 1e-5


def _client(settings: Settings) -> mlflow.MlflowClient:
    uri = settings.embedded_tracking_uri
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Settings:
    """An embedded store with digits v1 (champion) and v2 (another seed, no alias)."""
    root = tmp_path_factory.mktemp("digits-serving")
    settings = Settings(_env_file=None, tracking_uri=None, store_dir=root / "store")
    digits.train(DigitsParams(epochs=3), register_as="digits", settings=settings, verbose=0)
    digits.train(DigitsParams(epochs=1, seed=7), settings=settings, verbose=0,
                 register_as="digits")  # fmt: skip
    client = _client(settings)
    client.set_registered_model_alias("digits", "champion", "1")
    return settings


@pytest.fixture(scope="module")
def held_out() -> np.ndarray:
    split = DigitsParams()
    return load_digits_data(None, test_size=split.test_size, seed=split.seed).x_test


@pytest.fixture(scope="module")
def expected(store: Settings, held_out: np.ndarray) -> dict[str, np.ndarray]:
    """MLflow's pyfunc answers for every held-out image, per version."""
    out = {}
    for version in ("1", "2"):
        model = load_model(f"models:/digits/{version}", _client(store))
        out[version] = np.asarray(model.pyfunc.predict(held_out), dtype="float64")
    return out


def _env(settings: Settings) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the server's own default must keep TF quiet
    return env | {"MLFLOW_TRACKING_URI": "", "MLSTACK_STORE_DIR": str(settings.store_dir),
                  "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}  # fmt: skip


def _post(session: requests.Session, url: str, images: np.ndarray) -> np.ndarray:
    answer = session.post(f"{url}/invocations", json={"inputs": images.tolist()}, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    return np.asarray(answer.json()["predictions"], dtype="float64")


def _metric(text: str, name: str) -> float:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"{name}_total ")]
    return float(line.split()[1])


@pytest.mark.parametrize("batch_ms", ["2", "0"], ids=["batching", "no-batching"])
def test_every_held_out_image_gets_pyfuncs_answer_alone_in_32s_and_concurrently(
    store, held_out, expected, batch_ms: str
) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", URI, "--port", str(port),
           "--max-batch-ms", batch_ms]  # fmt: skip
    with http_server(cmd, _env(store), port, "our server on digits") as url:
        assert requests.get(f"{url}/version", timeout=10).json()["fast_path"] is True
        # 8 clients at once, each sending its own images one by one: answers never mix.
        local = threading.local()

        def one(i: int) -> tuple[int, np.ndarray]:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            return i, _post(local.session, url, held_out[i : i + 1])[0]

        with ThreadPoolExecutor(8) as pool:
            singles = dict(pool.map(one, range(len(held_out))))
        got = np.stack([singles[i] for i in range(len(held_out))])
        worst_single = float(np.max(np.abs(got - expected["1"])))
        # The same images in requests of 32 (the last one shorter), also concurrently.
        starts = range(0, len(held_out), 32)
        with ThreadPoolExecutor(4) as pool, requests.Session() as session:
            parts = list(pool.map(lambda s: _post(session, url, held_out[s : s + 32]), starts))
        worst_batch = float(np.max(np.abs(np.concatenate(parts) - expected["1"])))
        metrics = requests.get(f"{url}/metrics", timeout=10).text
    print(f"largest |ours - pyfunc|: single {worst_single:.2e}, 32-image {worst_batch:.2e}")
    assert worst_single <= TOLERANCE and worst_batch <= TOLERANCE
    # Each answer is its own image's: the argmax matches pyfunc's for every image.
    assert (got.argmax(1) == expected["1"].argmax(1)).all()
    calls, answered = (
        _metric(metrics, "mlstack_model_calls"),
        _metric(metrics, "mlstack_batched_requests"),
    )
    assert answered == len(held_out) + len(starts)
    if batch_ms == "0":
        assert calls == answered  # one call per request
    else:
        assert calls < answered  # concurrent requests shared calls


def test_no_keras_progress_bar_and_nothing_per_request_in_the_log(
    store, held_out, tmp_path
) -> None:
    import subprocess

    port = free_port()
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", URI, "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=_env(store), stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), 120, "our server on digits")
        with requests.Session() as session:
            for i in range(20):
                _post(session, url, held_out[i : i + 1])
            # `instances` of booleans is not the fast path's: MLflow's pyfunc (Keras predict).
            slow = session.post(
                f"{url}/invocations", json={"instances": [[[[True]] * 8] * 8]}, timeout=60
            )
            assert slow.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "ms/step" not in text and "━" not in text, text[-2000:]
    # TensorFlow's start-up lines (absl prints some before any setting is read) come before
    # the server says it serves; after that, nothing per request.
    line = f"serving models:/digits@champion (version 1, fast path on) on {url}"
    _, serving, after = text.partition(line)
    assert serving, text[-2000:]
    assert after.strip() == "", after[-2000:]


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/ping", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": [[1.0] * 64]},  # flat: wrong shape
        {"inputs": [[[[0.0]] * 8] * 7]},  # 7 rows of 8
        {"inputs": [[[[0.0]] * 8] * 8, [[[0.0]] * 8]]},  # ragged
        {"inputs": [[[["dark"]] * 8] * 8]},  # text
        {"inputs": {"x": [[[[0.0]] * 8] * 8]}},  # named, for a model of one unnamed tensor
        {"inputs": []},
        {"instances": [[[[0.5]] * 8] * 8], "params": {"x": 1}},
    ],
)
def test_a_malformed_tensor_is_answered_exactly_as_mlflow_answers_it(store, body) -> None:
    model = load_model(URI, _client(store))
    assert model.keras is not None  # the fast path applies to this model
    ours = TestClient(create_app(model)).post("/invocations", json=body)
    theirs = TestClient(scoring_server.init(model.pyfunc)).post("/invocations", json=body)
    assert ours.status_code == theirs.status_code
    assert ours.json() == theirs.json()


def test_a_reload_under_load_fails_no_request_and_mixes_no_versions(
    store, held_out, expected
) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", URI, "--port", str(port)]
    answers: list[tuple[int, int, np.ndarray | None]] = []
    stop = threading.Event()

    def client(offset: int) -> None:
        with requests.Session() as session:
            i = offset
            while not stop.is_set():
                i = (i + 1) % len(held_out)
                r = session.post(
                    f"{url}/invocations", json={"inputs": held_out[i : i + 1].tolist()}, timeout=60
                )
                got = np.asarray(r.json()["predictions"][0]) if r.status_code == 200 else None
                answers.append((i, r.status_code, got))

    try:
        with http_server(cmd, _env(store), port, "our server on digits") as url:
            threads = [threading.Thread(target=client, args=(k * 50,)) for k in range(4)]
            for t in threads:
                t.start()
            wait_for(lambda: len(answers) > 100, 60, "load before the reload")
            _client(store).set_registered_model_alias("digits", "champion", "2")
            reloaded = requests.post(f"{url}/reload", timeout=120)
            assert reloaded.status_code == 200 and reloaded.json()["serving"]["version"] == "2"
            done = len(answers)
            wait_for(lambda: len(answers) > done + 100, 60, "load after the reload")
            stop.set()
            for t in threads:
                t.join(60)
    finally:
        stop.set()
        _client(store).set_registered_model_alias("digits", "champion", "1")
    assert {status for _, status, _ in answers} == {200}
    versions = []
    for i, _, got in answers:
        v1 = np.max(np.abs(got - expected["1"][i])) <= TOLERANCE
        v2 = np.max(np.abs(got - expected["2"][i])) <= TOLERANCE
        assert v1 or v2, f"image {i}: neither version's answer"
        versions.append("1" if v1 else "2")
    assert versions[0] == "1" and versions[-1] == "2"


def test_the_fast_path_is_off_for_a_model_it_cannot_check(store, tmp_path: Path) -> None:
    """A Keras model logged without an input example is served by MLflow's code alone."""
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])  # fmt: skip
    from mlflow.models import infer_signature

    x = np.zeros((2, 8, 8, 1), dtype="float32")
    signature = infer_signature(x, model.predict_on_batch(x))
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store.embedded_tracking_uri)
    try:
        with mlflow.start_run():
            info = mlflow.tensorflow.log_model(model, name="model", signature=signature)
        served = load_model(info.model_uri, None)
    finally:
        mlflow.set_tracking_uri(before)
    assert served.keras is None and served.describe()["fast_path"] is False
