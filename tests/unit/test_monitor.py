"""`python -m mlstack.monitor` as a user runs it, on an embedded store with a registered wine
model and prediction logs written as the server writes them: no drift on in-distribution
traffic (exit 0), drift on shifted traffic (exit 3) with live performance from labels, the
run that records it; a logged request the profile cannot read counted, not silently dropped;
every bad input as one line, exit 2, with nothing logged; and the simulator finding its data
the way training does, network or not."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from mlstack import wine
from mlstack.data import WINE_FEATURES
from mlstack.monitor.rules import Thresholds
from mlstack.monitor.simulate import log_offline
from mlstack.settings import Settings
from mlstack.stack import free_port
from mlstack.tracking import configure_tracking, tracking_client
from tests.helpers import PROJ_ROOT, make_wine_frame, run_entry, write_uci_csv

pytestmark = pytest.mark.slow  # trains a model, runs the command

MONITOR = ["-m", "mlstack.monitor"]
WINDOW = 600  # rows: enough for the generated table's shift to show in every column it moves


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Settings:
    """An embedded store with wine v1 (trained on 1,600 generated rows) as champion."""
    root = tmp_path_factory.mktemp("monitor")
    csv = write_uci_csv(make_wine_frame(1600, seed=3), root / "wine.csv")
    settings = Settings(_env_file=None, tracking_uri=None, store_dir=root / "store",
                        wine_data=str(csv))  # fmt: skip
    wine.train(wine.WineParams(alpha=0.01), register_as="wine", settings=settings)
    return settings


def _log(settings: Settings, uri: str, n: int, directory: Path, **kw) -> pd.DataFrame:
    """A prediction log of `n` simulated requests answered by `uri`; their labels."""
    configure_tracking(settings)  # log_offline loads through the process-wide URIs
    return log_offline(uri, "wine", n, directory, data=settings.wine_data, **kw)


def _env(settings: Settings) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
    return env | {
        "MLFLOW_TRACKING_URI": "",
        "MLSTACK_STORE_DIR": str(settings.store_dir),
        "MLSTACK_WINE_DATA": settings.wine_data,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def _monitoring_runs(settings: Settings) -> list:
    client = tracking_client(settings)
    experiment = client.get_experiment_by_name("wine-monitoring")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _one_line_exit_2(proc, expected: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("python -m mlstack.monitor: error: "), lines[-1]
    assert expected in lines[-1]


def test_clean_traffic_is_no_drift_and_shifted_traffic_is_drift(store, tmp_path) -> None:
    settings = store
    clean, shifted = tmp_path / "clean", tmp_path / "shifted"
    _log(settings, "models:/wine/1", WINDOW, clean, seed=1)
    labels = tmp_path / "labels.csv"
    _log(settings, "models:/wine/1", WINDOW, shifted, shifted=True, seed=2).to_csv(labels)

    calm = run_entry([*MONITOR, "--model", "wine", "--log", str(clean)], _env(settings))
    assert calm.returncode == 0, calm.stderr[-2000:]
    assert calm.stdout.startswith("drift: no (")
    moved_run = run_entry(
        [*MONITOR, "--model", "wine", "--log", str(shifted), "--labels", str(labels)],
        _env(settings),
    )
    assert moved_run.returncode == 3, moved_run.stderr[-2000:]
    assert moved_run.stdout.startswith("drift: yes (") and "live_rmse" in moved_run.stdout

    runs = {r.data.tags["mlstack.drift"]: r for r in _monitoring_runs(settings)}
    assert set(runs) == {"no", "yes"}
    run = runs["yes"]
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["mlstack.model_name"] == "wine" and tags["mlstack.model_version"] == "1"
    assert tags["mlstack.prediction_log"] == str(shifted.resolve())
    assert " .. " in tags["mlstack.window"]
    assert metrics["rows"] == WINDOW and metrics["drift"] == 1.0
    assert (
        metrics["drifted_columns"] >= 1 and "alcohol moved: effect" in tags["mlstack.drift_reasons"]
    )
    assert metrics["drift_p_value.alcohol"] < 0.001
    assert metrics["drift_effect.alcohol"] >= metrics["drift_threshold.alcohol"]
    assert "prediction_drift_p_value" in metrics and "prediction_drift_effect" in metrics
    assert "domain_auc" in metrics and "importance.alcohol" in metrics
    # Every threshold the call used is logged with it.
    assert float(run.data.params["threshold.large_effect"]) == Thresholds().large_effect
    # Live performance on the labelled rows is worse than the version's held-out figure.
    assert metrics["labelled_rows"] == WINDOW
    assert metrics["live_rmse"] > metrics["heldout_rmse"]
    artifacts = {a.path for a in tracking_client(settings).list_artifacts(run.info.run_id)}
    assert {"drift.json", "report.html", "report.json"} <= artifacts


def test_training_logs_what_the_version_leans_on_and_where_each_reference_row_came_from(
    store, tmp_path
) -> None:
    from mlstack.monitor.profiles import SEGMENT, SEGMENT_LABELLED, SEGMENT_ORIGINAL
    from mlstack.monitor.reference import ABOUT, ARTIFACT_DIR, TABLE, load_reference
    from mlstack.monitor.shifts import warm_region

    client = tracking_client(store)
    v1 = load_reference(client, "wine", "1")
    assert set(v1.importance) == set(WINE_FEATURES)
    assert sum(v1.importance.values()) == pytest.approx(1.0)
    # The generated quality depends on alcohol, volatile acidity and sulphates only.
    top = sorted(v1.importance, key=lambda c: -v1.importance[c])[:3]
    assert set(top) == {"alcohol", "volatile acidity", "sulphates"}, v1.importance
    assert set(v1.frame[SEGMENT]) == {SEGMENT_ORIGINAL}
    # Retrained with labelled production rows: its held-out split holds both, marked.
    labelled = warm_region(make_wine_frame(400, seed=9))
    result = wine.train(wine.WineParams(alpha=0.01), extra=labelled, settings=store)
    folder = Path(client.download_artifacts(result.run_id, ARTIFACT_DIR, str(tmp_path)))
    about = json.loads((folder / ABOUT).read_text())
    assert about["importance_method"] and set(about["importance"]) == set(WINE_FEATURES)
    frame = pd.read_parquet(folder / TABLE)
    counts = frame[SEGMENT].value_counts()
    # The test share of each population is held out (1,600 original rows, 400 labelled).
    share = wine.WineParams().test_size
    assert counts[SEGMENT_ORIGINAL] == pytest.approx(1600 * share, abs=40)
    assert counts[SEGMENT_LABELLED] == pytest.approx(400 * share, abs=25)
    warm = frame[frame[SEGMENT] == SEGMENT_LABELLED]
    assert warm["alcohol"].mean() > frame[frame[SEGMENT] == SEGMENT_ORIGINAL]["alcohol"].mean()


def test_the_newest_log_run_of_the_model_is_found_by_name(store, tmp_path) -> None:
    settings = store
    from mlstack.logstore import ARTIFACT_PATH
    from mlstack.tracking import experiment_id_for

    client = tracking_client(settings)
    experiment = experiment_id_for("wine-predictions", settings, client)
    run = client.create_run(experiment, tags={"mlstack.kind": "prediction-log"})
    _log(settings, "models:/wine/1", 200, tmp_path / "log")
    for path in (tmp_path / "log").glob("*.parquet"):
        client.log_artifact(run.info.run_id, str(path), ARTIFACT_PATH)
    proc = run_entry([*MONITOR, "--model", "wine", "--last", "100"], _env(settings))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 100 rows" in proc.stdout


def test_a_logged_request_the_profile_cannot_read_is_counted_in_the_line_and_the_run(
    store, tmp_path
) -> None:
    from mlstack.logstore import frame_of, load_prediction_log, new_record
    from mlstack.serving.predlog import DirectorySink

    settings = store
    log = tmp_path / "log"
    _log(settings, "models:/wine/1", 120, log)
    newest = float(load_prediction_log(log)["timestamp"].max())
    # A Parquet body, answered and logged as text: the wine profile cannot read it back. One
    # is inside the window of the last 100 rows, one long before it.
    unreadable = [
        new_record(
            request_id=f"parquet-{at}",
            model_name="wine",
            model_version="1",
            run_id=None,
            content_type="application/vnd.apache.parquet",
            request=b"PAR1\x15\x04\xff",
            response=b'{"predictions": [5.0]}',
            timestamp=at,
        )
        for at in (newest - 1e-4, 0.0)
    ]
    DirectorySink(log).write("predictions-unreadable", frame_of(unreadable))

    proc = run_entry([*MONITOR, "--model", "wine", "--log", str(log), "--last", "100"],
                     _env(settings))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 100 rows (1 unreadable request skipped)" in proc.stdout, proc.stdout
    (run,) = [r for r in _monitoring_runs(settings)
              if r.data.tags["mlstack.prediction_log"] == str(log.resolve())]  # fmt: skip
    assert run.data.metrics["skipped_requests"] == 1
    assert run.data.metrics["rows"] == 100


class _StubServer(BaseHTTPRequestHandler):
    """Answers like our model server (a version, predictions with a request id), no model."""

    def do_GET(self) -> None:
        self._json({"version": "1"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._json({"predictions": [5.0] * len(body["dataframe_split"]["data"])})

    def _json(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # quiet
        pass


def test_simulate_reads_a_local_data_path_without_network_and_makes_the_labels_folder(
    tmp_path,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    csv = write_uci_csv(make_wine_frame(200, seed=4), tmp_path / "wine.csv")
    closed = f"http://127.0.0.1:{free_port()}"  # no network: the default data is unreachable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
    env |= {"MLSTACK_STORE_DIR": str(tmp_path / "store"), "MLSTACK_DOWNLOAD_RETRIES": "1",
            "MLSTACK_WINE_DATA": f"{closed}/winequality-red.csv", "HTTP_PROXY": closed,
            "HTTPS_PROXY": closed, "NO_PROXY": "127.0.0.1"}  # fmt: skip
    labels = tmp_path / "stack" / "labels" / "wine" / "batch-1.csv"  # no such folder yet
    simulate = ["-m", "mlstack.monitor.simulate", "--server-url", url, "--clean", "30",
                "--shifted", "20"]  # fmt: skip
    try:
        proc = run_entry([*simulate, "--data", str(csv), "--labels-out", str(labels)], env)
        without_data = run_entry(simulate, env)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "failed: none" in proc.stdout and f"labels in {labels}" in proc.stdout
    written = pd.read_csv(labels)
    assert len(written) == 50 and set(written["phase"]) == {"clean", "shifted"}
    # The control: without --data it would fetch the default, which this test cut off.
    assert without_data.returncode == 2 and "cannot download" in without_data.stderr


def test_make_simulate_finds_the_data_make_train_finds(tmp_path) -> None:
    csv = tmp_path / "team-copy.csv"
    commands = {}
    for target, command in (("train", " train.py "), ("simulate", " -m mlstack.monitor.simulate ")):
        dry = subprocess.run(["make", "-n", target, f"DATA={csv}"], cwd=PROJ_ROOT,
                             capture_output=True, text=True, check=True)  # fmt: skip
        (commands[target],) = [ln for ln in dry.stdout.splitlines() if command in ln]
    assert all(f'--data "{csv}"' in line for line in commands.values()), commands


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-log", "no prediction log for model 'nowine'"),
        ("empty-log", "holds no predictions yet"),
        ("missing-log", "is neither a directory nor a run id"),
        ("other-model", "is of model 'wine', not 'digits'"),
        ("too-few-rows", "fewer than the 50 needed"),
        ("unknown-labels", "3 of 3 request ids are not in this prediction log"),
        ("bad-since", "is neither a duration nor a date-time"),
        ("no-reference", "has no drift reference"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_is_logged(
    store, tmp_path, case: str, expected: str
) -> None:
    settings = store
    log = tmp_path / "log"
    _log(settings, "models:/wine/1", 60, log)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ["a", "b", "c"], "label": [5, 6, 7]}).to_csv(labels, index=False)
    (tmp_path / "empty").mkdir()
    before = len(_monitoring_runs(settings))
    args = {
        "no-log": ["--model", "nowine"],
        "empty-log": ["--model", "wine", "--log", str(tmp_path / "empty")],
        "missing-log": ["--model", "wine", "--log", "no-such-run-or-dir"],
        "other-model": ["--model", "digits", "--log", str(log)],
        "too-few-rows": ["--model", "wine", "--log", str(log), "--last", "10"],
        "unknown-labels": ["--model", "wine", "--log", str(log), "--labels", str(labels)],
        "bad-since": ["--model", "wine", "--log", str(log), "--since", "yesterday"],
        "no-reference": ["--log", str(_log_without_reference(settings, tmp_path))],
    }[case]
    proc = run_entry([*MONITOR, *args], _env(settings))
    _one_line_exit_2(proc, expected)
    assert len(_monitoring_runs(settings)) == before  # nothing written


def _log_without_reference(settings: Settings, tmp_path: Path) -> Path:
    """A log of a model registered the way MLflow's examples do: no reference."""
    from sklearn.linear_model import LinearRegression

    configure_tracking(settings)  # mlflow.start_run and log_model are fluent
    rows = make_wine_frame(100)
    frame = rows[list(WINE_FEATURES)]
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            LinearRegression().fit(frame, rows["quality"]),
            name="model",
            input_example=frame.head(2),
            registered_model_name="bare",
        )
    log = tmp_path / "bare-log"
    _log(settings, "models:/bare/1", 60, log)
    return log
