"""The MLOps loop on real services: a native stack with the Prefect server and the retraining
runner (`up --pipelines`), our server following the champion alias and logging predictions
to MLflow, simulated traffic, the monitor, labels, and the retraining flow run through Prefect.

Clean traffic is no drift; shifted traffic is drift; the flow retrains on the labelled rows and
the new version becomes champion only if it wins on the held-out split; the server then
answers with it, and no request fails on the way; clean traffic is normal to the retrained
version too. A worse retrain stays challenger. The monitor names a moved feature with its
importance and catches a joint shift that no column shows. The runner's schedule fires by
itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from mlstack.logstore import load_prediction_log, prediction_log_runs
from mlstack.polling import poll_until
from mlstack.stack import NativeStack, free_port
from mlstack.tracking import client_for
from tests.helpers import (
    SHARED_WINE_CSV,
    http_server,
    make_wine_frame,
    run_entry,
    wait_for,
    write_uci_csv,
)
from tests.integration.conftest import client_env, running_stack

WINE, DIGITS = "loop-wine", "loop-digits"
FEATURES = "loop-drift-wine"  # served only to check what the monitor says
SCHEDULED = "sched-wine"


@pytest.fixture(scope="module")
def loop_stack() -> Iterator[NativeStack]:
    """A stack of this module's own, with Prefect and a runner for both loop models (hourly:
    these tests run the flows on demand)."""
    with running_stack(pipelines=True, retrain_models=f"{WINE},{DIGITS}",
                       retrain_every_min=60) as stack:  # fmt: skip
        yield stack


@pytest.fixture(scope="module")
def wine_data(tmp_path_factory) -> Path:
    """The team's wine CSV, else a generated one of the same size."""
    if SHARED_WINE_CSV.exists():
        return SHARED_WINE_CSV
    return write_uci_csv(make_wine_frame(1600, seed=5), tmp_path_factory.mktemp("d") / "w.csv")


@pytest.fixture
def env(loop_stack: NativeStack, tmp_path: Path, wine_data: Path) -> dict[str, str]:
    """A user's shell: the tracking server, the Prefect server, the wine data."""
    return client_env(loop_stack.config.tracking_uri, tmp_path, wine_data) | {
        "MLSTACK_WINE_DATA": str(wine_data),
        "PREFECT_API_URL": loop_stack.config.prefect_api_url,
    }


def _serving(env: dict[str, str], model: str):
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", f"models:/{model}@champion",
           "--port", str(port), "--follow-alias", "1", "--log-predictions", "mlflow",
           "--log-flush-s", "1"]  # fmt: skip
    return http_server(cmd, env, port, f"our server for {model}")


class Client(threading.Thread):
    """Requests all the way through the loop, a few a second: every status is kept."""

    def __init__(self, url: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.statuses: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        with requests.Session() as session:
            while not self.done.is_set():
                try:
                    status = session.post(f"{self.url}/invocations", json=self.body, timeout=30)
                    self.statuses.append(status.status_code)
                except requests.RequestException:
                    self.statuses.append(0)
                time.sleep(0.2)


def _ok(proc, *codes: int) -> str:
    assert proc.returncode in (codes or (0,)), proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _simulate(
    env, url, kind, *, clean=0, shifted=0, seed=0, labels: Path | None = None, shift: str = ""
) -> set:
    """Send the traffic; the ids of the requests answered (from the labels it writes: its
    folder need not exist, simulate makes it)."""
    labels = labels or Path(tempfile.mkdtemp(prefix="loop-ids-")) / "ids.csv"
    args = ["-m", "mlstack.monitor.simulate", "--server-url", url, "--kind", kind,
            "--clean", str(clean), "--shifted", str(shifted), "--seed", str(seed),
            "--labels-out", str(labels)]  # fmt: skip
    if kind == "wine":
        args += ["--data", env["MLSTACK_WINE_DATA"]]
    if shift:
        args += ["--shift", shift]
    out = _ok(run_entry(args, env, timeout=600))
    assert "failed: none" in out, out
    return set(pd.read_csv(labels)["request_id"])


def _logged(env, model: str) -> set:
    """The request ids in the model's newest prediction log (the server's run)."""
    client = client_for(env["MLFLOW_TRACKING_URI"])
    runs = prediction_log_runs(client, model, max_results=1)
    if not runs:
        return set()
    return set(load_prediction_log(runs[0].info.run_id, client.tracking_uri)["request_id"])


def _monitor(env, model: str, last: int, sent: set) -> tuple[int, str]:
    # The server writes its log every second: wait until it holds what was just sent.
    wait_for(lambda: sent <= _logged(env, model), 60, f"{len(sent)} requests in the log", 0.5)
    proc = run_entry(["-m", "mlstack.monitor", "--model", model, "--last", str(last)], env)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    return proc.returncode, proc.stdout


def _version(url: str) -> str:
    return str(requests.get(f"{url}/version", timeout=10).json()["version"])


def test_wine_loop_drift_retrain_promote_and_serve(loop_stack: NativeStack, env) -> None:
    labels = loop_stack.config.labels_dir / WINE
    assert labels.is_dir()  # made by the stack, which tells people to drop label files there
    _ok(run_entry(["train.py", "--register-as", WINE], env))
    with _serving(env, WINE) as url:
        row = {"dataframe_records": [{"fixed acidity": 7.4, "volatile acidity": 0.7,
               "citric acid": 0.0, "residual sugar": 1.9, "chlorides": 0.076,
               "free sulfur dioxide": 11.0, "total sulfur dioxide": 34.0, "density": 0.9978,
               "pH": 3.51, "sulphates": 0.56, "alcohol": 9.4}]}  # fmt: skip
        client = Client(url, row)
        client.start()
        try:
            sent = _simulate(env, url, "wine", clean=300)
            code, line = _monitor(env, WINE, last=300, sent=sent)
            assert code == 0 and line.startswith("drift: no"), line
            sent = _simulate(env, url, "wine", shifted=500, seed=1, labels=labels / "shifted.csv")
            code, line = _monitor(env, WINE, last=500, sent=sent)
            assert code == 3 and line.startswith("drift: yes"), line

            run = _ok(run_entry(["-m", "mlstack.pipelines", "run", WINE], env, timeout=900))
            assert ": Completed;" in run and "champion moved to it" in run, run
            wait_for(lambda: _version(url) == "2", 60, "the server to follow the alias to v2")
            # v2 was also tested on labelled shifted rows: clean traffic is still normal to it.
            sent = _simulate(env, url, "wine", clean=500, seed=3)
            code, line = _monitor(env, WINE, last=500, sent=sent)
            assert code == 0 and line.startswith("drift: no"), line

            # A retrain that is worse (a far stronger penalty) stays challenger.
            _simulate(env, url, "wine", shifted=400, seed=2, labels=labels / "more.csv")
            stronger = ["--params", json.dumps({"alpha": 50.0})]
            worse = run_entry(["-m", "mlstack.pipelines", "run", WINE, *stronger], env, 900)
            assert "champion stays v2" in _ok(worse), worse.stdout
            # Nothing to wait for, a thing that must not happen: watch three alias checks.
            moved = poll_until(lambda: None if _version(url) != "2" else "still v2", 3.0)
            assert moved == "still v2", "the server left v2 for the challenger"
        finally:
            client.done.set()
            client.join(30)
    assert client.statuses and set(client.statuses) == {200}, set(client.statuses)

    mlflow_client = client_for(loop_stack.config.tracking_uri)
    assert mlflow_client.get_model_version_by_alias(WINE, "champion").version == "2"
    assert mlflow_client.get_model_version_by_alias(WINE, "challenger").version == "3"
    v2 = mlflow_client.get_model_version(WINE, "2")
    assert v2.tags["mlstack.trigger"] == "drift"  # why this version exists ...
    pipeline = mlflow_client.get_run(v2.tags["mlstack.pipeline_run_id"])  # ... and its story
    assert pipeline.info.status == "FINISHED"
    assert pipeline.data.tags["mlstack.model_version"] == "2"
    assert pipeline.data.tags["mlstack.monitoring_run_id"] == v2.tags["mlstack.monitoring_run_id"]
    monitoring = mlflow_client.get_run(v2.tags["mlstack.monitoring_run_id"])
    assert monitoring.data.tags["mlstack.drift"] == "yes"
    training = mlflow_client.get_run(v2.run_id)
    assert training.data.tags["mlstack.pipeline_run_id"] == pipeline.info.run_id
    assert int(training.data.params["labelled_rows"]) == 500
    assert v2.tags["promotion.champion_scored_on"] == "this version's held-out split"
    assert not list(labels.glob("*.csv")) and (labels / "used" / "shifted.csv").exists()


@pytest.mark.skipif(not SHARED_WINE_CSV.exists(), reason="needs the real wine data's relations")
def test_the_monitor_names_a_moved_feature_and_sees_a_joint_shift(
    loop_stack: NativeStack, env
) -> None:
    from mlstack.monitor.reference import load_reference

    client = client_for(loop_stack.config.tracking_uri)
    _ok(run_entry(["train.py", "--register-as", FEATURES], env))
    importance = load_reference(client, FEATURES, "1").importance
    top = max(importance, key=importance.get)  # the feature v1 leans on most
    with _serving(env, FEATURES) as url:
        sent = _simulate(env, url, "wine", clean=500, seed=4)
        code, line = _monitor(env, FEATURES, last=500, sent=sent)
        assert code == 0 and line.startswith("drift: no (largest move: "), line
        # Moderately (0.4 sd): drift because the model leans on it (a column it ignored would
        # need 0.5), and the line says which and how much it matters.
        sent = _simulate(env, url, "wine", shifted=500, seed=5, shift=f"feature:{top}:0.4")
        code, line = _monitor(env, FEATURES, last=500, sent=sent)
        assert code == 3 and line.startswith("drift: yes ("), line
        assert f"{top} moved: effect 0." in line and "importance rank 1 of 11" in line, line
        # Acidity, citric acid, density and pH shuffled across rows: no column moved alone.
        sent = _simulate(env, url, "wine", shifted=500, seed=6, shift="relations")
        code, line = _monitor(env, FEATURES, last=500, sent=sent)
        assert code == 3 and "; joint shift: domain AUC 0." in line, line
        assert " moved: effect " not in line, line
    experiment = client.get_experiment_by_name(f"{FEATURES}-monitoring")
    (newest,) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    metrics, params = newest.data.metrics, newest.data.params
    assert metrics["domain_drift"] == 1.0 and metrics["drifted_columns"] == 0.0
    assert metrics["domain_auc"] >= float(params["threshold.domain_auc"])


def test_digits_loop_new_handwriting_is_caught_and_learnt(loop_stack: NativeStack, env) -> None:
    labels = loop_stack.config.labels_dir / DIGITS
    assert labels.is_dir()
    _ok(run_entry(["train_digits.py", "--epochs", "8", "--register-as", DIGITS], env, 900))
    with _serving(env, DIGITS) as url:
        sent = _simulate(env, url, "digits", clean=200)
        code, line = _monitor(env, DIGITS, last=200, sent=sent)
        assert code == 0, line
        sent = _simulate(env, url, "digits", shifted=400, seed=1, labels=labels / "new-hands.csv")
        code, line = _monitor(env, DIGITS, last=400, sent=sent)
        assert code == 3 and " moved: effect " in line, line
        run = _ok(run_entry(["-m", "mlstack.pipelines", "run", DIGITS], env, timeout=1200))
        assert "champion moved to it" in run, run
        wait_for(lambda: _version(url) == "2", 60, "the server to follow the alias to v2")


def test_the_runner_schedule_fires_by_itself(loop_stack: NativeStack, env, tmp_path) -> None:
    # A runner of its own, every 6 s, for a model with no champion: each run is "skipped".
    runner_env = env | {"MLSTACK_LABELS_DIR": str(tmp_path / "labels")}
    cmd = [sys.executable, "-m", "mlstack.pipelines", "serve", "--models", SCHEDULED,
           "--every", "0.1"]  # fmt: skip
    with open(tmp_path / "runner.log", "wb") as log:
        runner = subprocess.Popen(cmd, env=runner_env, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    try:
        client = client_for(loop_stack.config.tracking_uri)

        def scheduled_runs() -> list:
            experiment = client.get_experiment_by_name(f"{SCHEDULED}-pipelines")
            if experiment is None:
                return []
            return [r for r in client.search_runs([experiment.experiment_id])
                    if r.info.status == "FINISHED"]  # fmt: skip

        runs = wait_for(scheduled_runs, 180, "a scheduled run of retrain/sched-wine")
        decision = runs[0].data.tags["mlstack.decision"]
        assert "skipped: model 'sched-wine' has no champion" in decision
        deployment = requests.get(
            f"{loop_stack.config.prefect_api_url}/deployments/name/retrain/{SCHEDULED}", timeout=10
        ).json()
        assert deployment["schedules"][0]["schedule"]["interval"] == 6.0
    finally:
        runner.terminate()
        runner.wait(60)
