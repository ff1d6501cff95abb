"""Our server against `mlflow models serve`'s own app, in process, on the same registered model:
every request form and every bad input gets the same status and body. Then what only ours has:
/version, /metrics, 413/404 as JSON, and hot reload that keeps the old version when the new one
is broken."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import scoring_server
from starlette.testclient import TestClient

from mlstack import wine
from mlstack.data import WINE_FEATURES, read_wine_csv
from mlstack.serving import fastpath
from mlstack.serving.app import _fast_answer, create_app
from mlstack.serving.model import load_model
from mlstack.settings import Settings
from tests.helpers import SCORING_FORMS, awkward_requests, scoring_forms

URI = "models:/wine@champion"
JSON = "application/json"


def _register(settings: Settings, alpha: float) -> None:
    wine.train(wine.WineParams(alpha=alpha), register_as="wine", settings=settings)


@pytest.fixture(scope="module")
def served_settings(tmp_path_factory, wine_csv: Path) -> Settings:
    """One embedded store with wine v1 as champion, shared by this module's read-only tests."""
    store = tmp_path_factory.mktemp("serving-store")
    settings = Settings(_env_file=None, tracking_uri=None, store_dir=store, wine_data=str(wine_csv))
    _register(settings, alpha=0.5)
    return settings


@pytest.fixture(scope="module")
def frame(wine_csv: Path) -> pd.DataFrame:
    return read_wine_csv(wine_csv)[list(WINE_FEATURES)]


@pytest.fixture(scope="module")
def servers(served_settings: Settings):
    """(ours, MLflow's) test clients on the same champion, and the loaded model."""
    client = mlflow.MlflowClient(
        tracking_uri=served_settings.embedded_tracking_uri,
        registry_uri=served_settings.embedded_tracking_uri,
    )
    model = load_model(URI, client)
    ours = TestClient(create_app(model, lambda: load_model(URI, client)))
    theirs = TestClient(scoring_server.init(model.pyfunc))
    return ours, theirs, model


def _same(ours: TestClient, theirs: TestClient, content: bytes, content_type: str):
    a = ours.post("/invocations", content=content, headers={"Content-Type": content_type})
    b = theirs.post("/invocations", content=content, headers={"Content-Type": content_type})
    assert a.status_code == b.status_code, (a.text[:300], b.text[:300])
    if b.headers["content-type"].startswith(JSON):
        assert a.json() == b.json()
    else:
        assert a.text == b.text
    return a


@pytest.mark.parametrize("rows", [1, 400])
@pytest.mark.parametrize("form", SCORING_FORMS)
def test_every_json_form_answers_like_mlflow(servers, frame, form: str, rows: int) -> None:
    ours, theirs, model = servers
    body = json.dumps(scoring_forms(frame.head(rows), form)).encode()
    answer = _same(ours, theirs, body, JSON)
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == rows
    # The tabular forms take the fast path; its numbers are pyfunc's to the last digit.
    assert _fast_answer(body, JSON, model) is not None
    expected = model.pyfunc.predict(frame.head(rows))
    assert answer.json()["predictions"] == list(expected)


@pytest.mark.parametrize(
    "case",
    [
        "csv",
        "params",
        "ints-for-doubles",
        "extra-column",
        "missing-column",
        "string-value",
        "bool-value",
        "nan-value",
        "unknown-key",
        "empty-records",
        "malformed-json",
        "not-json-at-all",
        "wrong-content-type",
        "latin-1",
    ],
)
def test_other_forms_and_bad_input_answer_like_mlflow(servers, frame, case: str) -> None:
    ours, theirs, _ = servers
    content, content_type = awkward_requests(frame)[case]
    answer = _same(ours, theirs, content, content_type)
    assert answer.status_code < 500, answer.text[:300]  # never a 500 for a client's mistake


def test_missing_column_is_named_in_the_400(servers, frame) -> None:
    ours, _, _ = servers
    records = [
        {k: v for k, v in r.items() if k != "alcohol"} for r in frame.head(1).to_dict("records")
    ]
    answer = ours.post("/invocations", json={"dataframe_records": records})
    assert answer.status_code == 400 and "alcohol" in answer.json()["message"]


def test_our_own_errors_are_json_4xx(servers, frame) -> None:
    ours, _, model = servers
    small = TestClient(create_app(model, lambda: model, max_body_bytes=1000))
    big = json.dumps(scoring_forms(frame.head(10), "dataframe_records")).encode()
    too_large = small.post("/invocations", content=big, headers={"Content-Type": JSON})
    assert too_large.status_code == 413 and "--max-body-mb" in too_large.json()["message"]
    no_type = ours.post("/invocations", content=b"{}")
    assert no_type.status_code == 415
    missing = ours.get("/predict")
    assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"
    wrong_method = ours.get("/invocations")
    assert wrong_method.status_code == 405


def test_version_health_ping_and_metrics(servers, frame) -> None:
    _, theirs, model = servers
    ours = TestClient(create_app(model, lambda: model))  # fresh counters
    assert ours.get("/ping").text == theirs.get("/ping").text == "\n"
    version = ours.get("/version").json()
    assert (version["name"], version["version"], version["alias"]) == ("wine", "1", "champion")
    assert version["run_id"] == model.pyfunc.metadata.run_id and version["fast_path"] is True
    assert ours.get("/health").json()["status"] == "ok"
    body = json.dumps(scoring_forms(frame.head(1), "dataframe_split")).encode()
    for _ in range(3):
        ours.post("/invocations", content=body, headers={"Content-Type": JSON})
    ours.post("/invocations", content=b"[", headers={"Content-Type": JSON})
    text = ours.get("/metrics").text
    assert 'mlstack_requests_total{path="/invocations",status="200"} 3' in text
    assert 'mlstack_requests_total{path="/invocations",status="400"} 1' in text
    assert "mlstack_invocation_seconds_count 4" in text
    assert 'mlstack_model_info{name="wine",version="1",alias="champion"} 1' in text


def test_reload_follows_the_alias_and_a_broken_version_keeps_the_old(
    settings: Settings, frame
) -> None:
    _register(settings, alpha=0.5)
    client = mlflow.MlflowClient()
    broken = {"on": False}

    def loader():
        if broken["on"]:
            raise RuntimeError("artifact store unreachable")
        return load_model(URI, client)

    ours = TestClient(create_app(loader(), loader))
    body = {
        "dataframe_split": {"columns": list(frame.columns), "data": frame.head(3).values.tolist()}
    }
    before = ours.post("/invocations", json=body).json()["predictions"]

    _register(settings, alpha=0.01)  # better rmse: champion moves to v2
    assert str(client.get_model_version_by_alias("wine", "champion").version) == "2"
    assert ours.get("/version").json()["version"] == "1"  # nothing changes until a reload
    reloaded = ours.post("/reload").json()
    assert reloaded["reloaded"] and reloaded["previous"]["version"] == "1"
    assert reloaded["serving"]["version"] == "2"
    after = ours.post("/invocations", json=body).json()["predictions"]
    v2 = mlflow.pyfunc.load_model("models:/wine/2").predict(frame.head(3))
    assert after == list(v2) and after != before

    broken["on"] = True
    failed = ours.post("/reload")
    assert failed.status_code == 500
    assert failed.json() == {
        "reloaded": False,
        "error": "RuntimeError: artifact store unreachable",
        "serving": ours.get("/version").json(),
    }
    assert ours.get("/version").json()["version"] == "2"
    assert ours.post("/invocations", json=body).json()["predictions"] == after
    assert 'mlstack_reloads_total{outcome="failed"} 1' in ours.get("/metrics").text


COLUMNS = ("a", "b")
TYPES = (float, int)


@pytest.mark.parametrize(
    ("payload", "matrix"),
    [
        ({"dataframe_split": {"columns": ["b", "a"], "data": [[1, 2.5]]}}, [[2.5, 1.0]]),
        ({"dataframe_records": [{"a": 1, "b": 2, "c": "x"}]}, [[1.0, 2.0]]),
        ({"inputs": {"a": [1.5, 2.5], "b": [3, 4]}}, [[1.5, 3.0], [2.5, 4.0]]),
        ({"instances": [{"a": 0.5, "b": 7}]}, [[0.5, 7.0]]),
    ],
)
def test_fast_path_reads_the_tabular_forms(payload, matrix) -> None:
    np.testing.assert_array_equal(fastpath.parse(payload, COLUMNS, TYPES), np.asarray(matrix))


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_records": [{"a": 1.0}]},  # missing column
        {"dataframe_records": [{"a": 1.0, "b": 2.5}]},  # float where an int is declared
        {"dataframe_records": [{"a": True, "b": 2}]},  # bool is not a number here
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0]]}},  # ragged
        {"dataframe_records": [{"a": 1.0, "b": 2}], "params": {"k": 1}},  # params
        {"inputs": {"a": [1.0, 2.0], "b": [3]}},  # columns of different lengths
        {"dataframe_records": []},  # empty
        [1, 2],
    ],
)
def test_fast_path_hands_anything_else_to_mlflow(payload) -> None:
    assert fastpath.parse(payload, COLUMNS, TYPES) is None


def test_fast_path_numbers_equal_pyfunc_to_the_last_digit(tmp_path) -> None:
    # Dense coefficients and many-digit inputs of wine-like magnitudes: where a matrix laid out
    # unlike pandas' makes BLAS sum in another order and the last digit of a prediction moves.
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import ElasticNet

    rng = np.random.default_rng(7)
    scale = np.array([8, 0.5, 0.3, 2.5, 0.08, 15, 46, 0.997, 3.3, 0.66, 10.4])
    frame = pd.DataFrame(rng.uniform(0.5, 1.5, (1000, 11)) * scale, columns=list(WINE_FEATURES))
    target = frame.to_numpy() @ rng.normal(size=11) + rng.normal(size=1000)
    estimator = ElasticNet(alpha=1e-4, max_iter=10_000).fit(frame, target)
    path = tmp_path / "model"
    signature = infer_signature(frame, estimator.predict(frame))
    mlflow.sklearn.save_model(estimator, path, signature=signature, serialization_format="pickle")
    model = load_model(str(path), client=None)
    body = json.dumps(scoring_forms(frame, "dataframe_split")).encode()
    answer, rows = _fast_answer(body, JSON, model)
    fast = json.loads(answer.body)["predictions"]
    assert rows == len(frame)
    assert fast == list(model.pyfunc.predict(frame))


def test_a_full_prediction_log_refuses_work_instead_of_dropping_records(servers, frame, tmp_path):
    from mlstack.serving.predlog import PredictionLog

    _, _, model = servers
    predlog = PredictionLog(tmp_path / "log", max_queued=2)  # never started: nothing drains
    app = TestClient(create_app(model, lambda: model, predlog=predlog))
    body = scoring_forms(frame.head(1), "dataframe_records")
    statuses = [app.post("/invocations", json=body).status_code for _ in range(3)]
    assert statuses == [200, 200, 503]
    assert app.post("/invocations", json=body).json()["error_code"] == "PREDICTION_LOG_FULL"


def test_a_log_that_fills_during_the_prediction_still_refuses(servers, frame, tmp_path) -> None:
    from mlstack.serving.predlog import PredictionLog

    class Racing(PredictionLog):  # the queue fills between the check and the put
        full = False

    _, _, model = servers
    app = TestClient(create_app(model, lambda: model, predlog=Racing(tmp_path, max_queued=1)))
    body = scoring_forms(frame.head(1), "dataframe_records")
    assert [app.post("/invocations", json=body).status_code for _ in range(2)] == [200, 503]


def test_bound_sockets_give_accepted_connections_tcp_nodelay() -> None:
    """Without proto=IPPROTO_TCP on the listener, asyncio leaves Nagle on (uvicorn #3149) and
    each kept-alive answer waits ~40 ms for a delayed ACK."""
    import asyncio
    import socket

    from mlstack.serving.runner import bind_sockets
    from mlstack.stack import free_port

    async def nodelay_of_accepted(sock: socket.socket) -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader, writer) -> None:
            conn = writer.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()

    port = free_port()
    sockets = bind_sockets("127.0.0.1", port, count=2)  # one per worker, same port
    assert [s.getsockname()[1] for s in sockets] == [port, port]
    for sock in sockets:
        assert sock.proto == socket.IPPROTO_TCP
        assert asyncio.run(nodelay_of_accepted(sock)) != 0
