"""Runs through the real tracking server: data lands in PostgreSQL and S3, the registry works,
restarts lose nothing, and concurrent clients lose no point."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pytest
import requests

from mlstack.registry import load_pyfunc
from mlstack.stack import NativeStack
from mlstack.tracking import client_for
from tests.helpers import PROJ_ROOT, run_entry
from tests.integration.conftest import pg_rows, s3_keys

pytestmark = pytest.mark.integration


def _run_id(stdout: str) -> str:
    return next(ln.split()[1] for ln in stdout.splitlines() if ln.startswith("run "))


def _client(stack: NativeStack) -> mlflow.MlflowClient:
    return client_for(stack.config.tracking_uri)


def test_client_environment_has_no_storage_credentials(server_env: dict[str, str]) -> None:
    leaked = [k for k in server_env if k.startswith(("AWS_", "MLFLOW_S3", "POSTGRES"))]
    assert leaked == []
    assert server_env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")


def test_wine_run_lands_in_postgres_and_s3(stack: NativeStack, server_env: dict) -> None:
    proc = run_entry(["train.py", "--alpha", "0.3"], server_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = _run_id(proc.stdout)

    params = dict(pg_rows(stack, "SELECT key, value FROM params WHERE run_uuid = %s", run_id))
    assert params["alpha"] == "0.3" and params["l1_ratio"] == "0.5"
    metrics = dict(pg_rows(stack, "SELECT key, value FROM metrics WHERE run_uuid = %s", run_id))
    assert {"rmse", "mae", "r2", "train_rmse"} <= metrics.keys()
    assert f"rmse={metrics['rmse']:.4f}" in proc.stdout
    (status,) = pg_rows(stack, "SELECT status FROM runs WHERE run_uuid = %s", run_id)
    assert status == ("FINISHED",)

    keys = s3_keys(stack, "artifacts/")
    assert any(k.endswith(f"{run_id}/artifacts/plots/predicted_vs_actual.png") for k in keys)
    # Visible in the UI: the page loads and the UI's own API returns the run, also when the
    # browser says "localhost" (MLflow 3 rejects Host headers it was not told to allow).
    uri = stack.config.tracking_uri
    host = f"localhost:{stack.config.mlflow_port}"
    page = requests.get(f"{uri}/", headers={"Host": host}, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    ui_api = requests.get(
        f"{uri}/ajax-api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=10
    )
    assert ui_api.status_code == 200 and ui_api.json()["run"]["info"]["status"] == "FINISHED"
    evil = requests.get(f"{uri}/", headers={"Host": "evil.example:80"}, timeout=10)
    assert evil.status_code == 403  # DNS-rebinding guard (/health alone is exempt)
    client = _client(stack)
    (model,) = client.search_logged_models(
        experiment_ids=[client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    model_id = model.model_id
    assert any(k.endswith(f"models/{model_id}/artifacts/MLmodel") for k in keys)


def test_digits_run_logs_step_metrics_and_model(stack: NativeStack, server_env: dict) -> None:
    proc = run_entry(["train_digits.py", "--epochs", "2"], server_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = _run_id(proc.stdout)
    steps = pg_rows(
        stack,
        "SELECT step FROM metrics WHERE run_uuid = %s AND key = 'val_accuracy' ORDER BY step",
        run_id,
    )
    assert steps == [(0,), (1,)]
    keys = s3_keys(stack, "artifacts/")
    assert any(k.endswith(f"{run_id}/artifacts/plots/confusion_matrix.png") for k in keys)
    # The model comes back through the server's artifact proxy and predicts class probabilities.
    client = _client(stack)
    (logged,) = client.search_logged_models(
        experiment_ids=[client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    model = load_pyfunc(logged.model_uri, client)
    assert model.predict(np.zeros((3, 8, 8, 1), dtype="float32")).shape == (3, 10)


def test_registry_and_aliases_through_the_server(stack: NativeStack, server_env: dict) -> None:
    for alpha in ("0.01", "5.0"):
        proc = run_entry(["train.py", "--alpha", alpha, "--register-as", "wine-it"], server_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "champion stays v1" in proc.stdout
    client = _client(stack)
    assert str(client.get_model_version_by_alias("wine-it", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("wine-it", "challenger").version) == "2"

    promote = "-m mlstack.promote --name wine-it --version 2".split()
    proc = run_entry(promote, server_env)
    assert proc.returncode == 0, proc.stderr
    assert str(client.get_model_version_by_alias("wine-it", "champion").version) == "2"
    rows = pg_rows(
        stack,
        "SELECT alias, version FROM registered_model_aliases WHERE name = %s ORDER BY alias",
        "wine-it",
    )
    assert rows == [("challenger", 2), ("champion", 2)]


def _snapshot(stack: NativeStack) -> tuple[int, int, int]:
    runs = pg_rows(stack, "SELECT count(*) FROM runs")[0][0]
    points = pg_rows(stack, "SELECT count(*) FROM metrics")[0][0]
    return runs, points, len(s3_keys(stack))


def test_restarting_server_and_database_loses_nothing(stack: NativeStack, server_env: dict) -> None:
    proc = run_entry(["train.py", "--alpha", "0.2"], server_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = _snapshot(stack)
    assert before[0] >= 1 and before[2] >= 1

    for service in ("mlflow", "postgres"):
        stack.stop_service(service)
        stack.start_service(service)
        assert _snapshot(stack) == before, f"after restarting {service}"

    # The restarted server still serves reads of old runs and takes new ones.
    old_run = _client(stack).get_run(_run_id(proc.stdout))
    assert old_run.data.params["alpha"] == "0.2"
    again = run_entry(["train.py", "--alpha", "0.21"], server_env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _snapshot(stack)[0] == before[0] + 1


def test_eight_concurrent_clients_lose_no_point_or_artifact(
    stack: NativeStack, server_env: dict
) -> None:
    workers, points = 8, 500
    experiment_id = _client(stack).create_experiment("load-test")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.log_worker",
                experiment_id,
                str(i),
                str(points),
            ],
            cwd=PROJ_ROOT,
            env=server_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        run_ids.append(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("RUN_ID ")))

    counts = pg_rows(
        stack,
        "SELECT run_uuid, count(*), count(DISTINCT step) FROM metrics "
        "WHERE run_uuid = ANY(%s) AND key = 'load' GROUP BY run_uuid",
        run_ids,
    )
    assert sorted(c[1:] for c in counts) == [(points, points)] * workers
    keys = s3_keys(stack, "artifacts/")
    for i, run_id in enumerate(run_ids):
        assert any(k.endswith(f"{run_id}/artifacts/worker-{i}.txt") for k in keys)
        body = (
            stack.s3_client()
            .get_object(
                Bucket=stack.config.bucket,
                Key=next(k for k in keys if k.endswith(f"{run_id}/artifacts/worker-{i}.txt")),
            )["Body"]
            .read()
        )
        assert body == f"worker {i}\n".encode() * 100
