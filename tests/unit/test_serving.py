"""Our server against `mlflow models serve`'s own app, in process, on the same registered model:
every request form and every bad input gets the same status and body. Then what only ours has:
/version, /metrics, every 4xx as JSON, and what a stop with the tracking server gone says of
queued predictions. Reloading runs in the supervisor, tested as a process in
test_serving_process.py."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import scoring_server
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from mlstack import wine
from mlstack.data import WINE_FEATURES, read_wine_csv
from mlstack.logstore import Record, load_prediction_log
from mlstack.serving.app import _fast_answer, create_app
from mlstack.serving.model import load_model
from mlstack.serving.predlog import MlflowRunSink, PredictionLog
from mlstack.serving.supervisor import unsent_note
from mlstack.serving.worker import spill_report
from mlstack.settings import Settings
from mlstack.stack.processes import free_port
from tests.helpers import PROJ_ROOT, SCORING_FORMS, awkward_requests, scoring_forms

pytestmark = pytest.mark.slow  # trains models

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
    ours = TestClient(create_app(model))
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
    small = TestClient(create_app(model, max_body_bytes=1000))
    big = json.dumps(scoring_forms(frame.head(10), "dataframe_records")).encode()
    answers = {
        413: small.post("/invocations", content=big, headers={"Content-Type": JSON}),
        415: ours.post("/invocations", content=b"{}"),
        404: ours.get("/predict"),
        405: ours.get("/invocations"),
    }
    codes = {413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 404: "NOT_FOUND",
             405: "METHOD_NOT_ALLOWED"}  # fmt: skip
    for status, answer in answers.items():
        assert answer.status_code == status
        assert answer.headers["content-type"] == JSON
        assert answer.json()["error_code"] == codes[status] and answer.json()["message"]
    assert "--max-body-mb" in answers[413].json()["message"]
    assert "Content-Type" in answers[415].json()["message"]
    assert "routes:" in answers[404].json()["message"]


def test_version_health_ping_and_metrics(servers, frame) -> None:
    _, theirs, model = servers
    ours = TestClient(create_app(model))  # fresh counters
    assert ours.get("/ping").text == theirs.get("/ping").text == "\n"
    version = ours.get("/version").json()
    assert (version["name"], version["version"], version["alias"]) == ("wine", "1", "champion")
    assert version["run_id"] == model.pyfunc.metadata.run_id and version["fast_path"] is True
    assert ours.get("/health").json()["status"] == "ok"
    body = json.dumps(scoring_forms(frame.head(1), "dataframe_split")).encode()
    for _ in range(3):
        ours.post("/invocations", content=body, headers={"Content-Type": JSON})
    ours.post("/invocations", content=b"[", headers={"Content-Type": JSON})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(ours.get("/metrics").text)
        for s in family.samples
    }
    assert samples[("mlstack_requests_total", (("path", "/invocations"), ("status", "200")))] == 3
    assert samples[("mlstack_requests_total", (("path", "/invocations"), ("status", "400")))] == 1
    assert samples[("mlstack_errors_total", ())] == 1
    assert samples[("mlstack_invocation_seconds_count", ())] == 4
    assert samples[("mlstack_invocation_seconds_bucket", (("le", "+Inf"),))] == 4
    model_info = (("alias", "champion"), ("name", "wine"), ("version", "1"))
    assert samples[("mlstack_model_info", model_info)] == 1
    assert samples[("mlstack_reloads_total", (("outcome", "ok"),))] == 0
    assert samples[("mlstack_workers", ())] == 1


def test_reload_needs_the_supervisor(servers) -> None:
    # Reloading is the supervisor's job (test_serving_process.py); a bare app says so.
    _, _, model = servers
    answer = TestClient(create_app(model)).post("/reload")
    assert answer.status_code == 501 and "python -m mlstack.serving" in answer.json()["message"]


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
    app = TestClient(create_app(model, predlog=predlog))
    body = scoring_forms(frame.head(1), "dataframe_records")
    statuses = [app.post("/invocations", json=body).status_code for _ in range(3)]
    assert statuses == [200, 200, 503]
    assert app.post("/invocations", json=body).json()["error_code"] == "PREDICTION_LOG_FULL"


def test_a_log_that_fills_during_the_prediction_still_refuses(servers, frame, tmp_path) -> None:
    from mlstack.serving.predlog import PredictionLog

    class Racing(PredictionLog):  # the queue fills between the check and the put
        full = False

    _, _, model = servers
    app = TestClient(create_app(model, predlog=Racing(tmp_path, max_queued=1)))
    body = scoring_forms(frame.head(1), "dataframe_records")
    assert [app.post("/invocations", json=body).status_code for _ in range(2)] == [200, 503]


@pytest.mark.parametrize("name", ["wine-split", "wine-records", "wine-inputs"])
def test_sample_requests_in_serve_are_answered_like_mlflow(servers, name: str) -> None:
    ours, theirs, model = servers
    body = (PROJ_ROOT / "serve" / "requests" / f"{name}.json").read_bytes()
    answer = _same(ours, theirs, body, JSON)
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2


def test_schema_names_the_inputs_with_their_training_ranges(servers) -> None:
    _, _, model = servers
    ours = TestClient(create_app(model))
    columns = ours.get("/schema").json()["columns"]
    assert [c["name"] for c in columns] == list(WINE_FEATURES)
    alcohol = next(c for c in columns if c["name"] == "alcohol")
    assert alcohol["type"] == "double"
    assert alcohol["low"] < alcohol["median"] < alcohol["high"]


def test_answers_say_which_version_answered(servers, frame) -> None:
    _, _, model = servers
    ours = TestClient(create_app(model))
    answer = ours.post("/invocations", json=scoring_forms(frame.head(1), "dataframe_records"))
    assert answer.headers["X-Model-Version"] == "1" and len(answer.headers["X-Request-Id"]) == 32


def test_monitoring_reports_the_latest_check_of_the_served_version(
    servers, served_settings, tmp_path
) -> None:
    from mlstack.monitor.run import monitor
    from mlstack.monitor.simulate import log_offline
    from mlstack.serving.model import latest_check

    _, _, model = servers
    client = mlflow.MlflowClient(
        tracking_uri=served_settings.embedded_tracking_uri,
        registry_uri=served_settings.embedded_tracking_uri,
    )
    ours = TestClient(create_app(model, latest_check=lambda m: latest_check(client, m)))
    assert ours.get("/monitoring").json() == {"latest": None}  # no check yet
    mlflow.set_tracking_uri(served_settings.embedded_tracking_uri)
    mlflow.set_registry_uri(served_settings.embedded_tracking_uri)
    log_offline(URI, "wine", 120, tmp_path / "log", data=served_settings.wine_data)
    check = monitor("wine", log=str(tmp_path / "log"), last=120, settings=served_settings)
    latest = ours.get("/monitoring").json()["latest"]
    assert latest["run_id"] == check.run_id and latest["drift"] == check.drift
    assert latest["rows"] == 120 and latest["reasons"] == check.reasons
    assert TestClient(create_app(model)).get("/monitoring").json() == {"latest": None}


def test_a_stop_with_the_tracking_server_gone_says_where_queued_predictions_went(
    tmp_path, monkeypatch
) -> None:
    # A closed port is a tracking server that went away; no retries, to keep this quick.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = mlflow.MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")
    spill = tmp_path / "unsent"
    predlog = PredictionLog(
        MlflowRunSink(client, "0" * 32), batch_size=10_000, flush_every_s=3600, spill_dir=spill
    )
    predlog.start()
    for i in range(3):
        record = Record(
            request_id=f"id-{i}", timestamp=0.0, model_name="wine", model_version="1",
            run_id=None, content_type=JSON, request="{}", response="{}", rows=1,
        )  # fmt: skip
        predlog.put(record)
    predlog.close()  # the sink refuses: the queue goes to the spill directory
    assert sorted(load_prediction_log(spill)["request_id"]) == ["id-0", "id-1", "id-2"]
    note = unsent_note([spill_report(predlog)])
    assert note == f"; 3 queued predictions kept in {spill}"
    assert unsent_note([{"spilled": 0, "lost": 0, "spill_dir": str(spill)}]) == (
        "; no predictions were left unsent"
    )
