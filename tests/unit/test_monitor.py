"""`python -m mlstack.monitor` as a user runs it, on an embedded store with a registered wine
model and prediction logs written as the server writes them: no drift on in-distribution
traffic (exit 0), drift on shifted traffic (exit 3) with live performance from labels, the
run that records it; and every bad input as one line, exit 2, with nothing logged."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from mlstack import wine
from mlstack.data import WINE_FEATURES
from mlstack.monitor.simulate import log_offline
from mlstack.settings import Settings
from tests.helpers import make_wine_frame, point_mlflow_at, run_entry, store_client, write_uci_csv

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
    point_mlflow_at(settings.embedded_tracking_uri)
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
    client = store_client(settings)
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
    assert metrics["share_drifted_columns"] >= 0.4
    assert 0 <= metrics["drift_p_value.alcohol"] < 0.05 and metrics["drift_score.alcohol"] > 0
    assert "prediction_drift_p_value" in metrics and "prediction_drift_score" in metrics
    # Live performance on the labelled rows is worse than the version's held-out figure.
    assert metrics["labelled_rows"] == WINDOW
    assert metrics["live_rmse"] > metrics["heldout_rmse"]
    artifacts = {a.path for a in store_client(settings).list_artifacts(run.info.run_id)}
    assert {"report.html", "report.json"} <= artifacts


def test_the_newest_log_run_of_the_model_is_found_by_name(store, tmp_path) -> None:
    settings = store
    from mlstack.serving.predlog import MlflowRunSink
    from mlstack.tracking import experiment_id_for

    client = store_client(settings)
    experiment = experiment_id_for("wine-predictions", settings, client)
    run = client.create_run(experiment, tags={"mlstack.kind": "prediction-log"})
    _log(settings, "models:/wine/1", 200, tmp_path / "log")
    for path in (tmp_path / "log").glob("*.parquet"):
        client.log_artifact(run.info.run_id, str(path), MlflowRunSink.ARTIFACT_PATH)
    proc = run_entry([*MONITOR, "--model", "wine", "--last", "100"], _env(settings))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 100 rows" in proc.stdout


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

    point_mlflow_at(settings.embedded_tracking_uri)
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
