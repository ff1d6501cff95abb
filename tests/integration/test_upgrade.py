"""Upgrades on real services: a store made by an older MLflow server (a 2.22 release, and the
3.x release before ours, each installed by this test in a throwaway venv) is opened by
today's: `up` backs it up, runs `mlflow db upgrade` once and says so, and every run, metric,
model version and alias is still there; `models:/wine@champion` still serves what it did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import pytest
import requests

from mlstack.stack import NativeStack, StackConfig, find_free_ports, free_port
from mlstack.stack.backup import head_revision, read_manifest
from mlstack.stack.processes import port_free
from tests.helpers import (
    SHARED_WINE_CSV,
    http_server,
    make_wine_frame,
    run_entry,
    wait_for,
    wait_for_http,
    write_uci_csv,
)
from tests.integration.conftest import client_env, stack_state_dir

HERE = Path(__file__).parent
# The 2.22 line's last release, and the 3.x release before the one pyproject pins.
OLD_VERSIONS = ["2.22.5", "3.16.1"]
# What an install of that version needs today beyond its own ranges: MLflow 2.22 imports a
# pool class SQLAlchemy 2.1 removed.
EXTRA_PINS = {"2.22.5": ["sqlalchemy<2.1"]}
# Ours, so a model pickled there loads here, and pip reuses what it already has.
SHARED_PINS = ("scikit-learn", "numpy", "scipy", "psycopg2-binary")


def old_mlflow(old: str) -> Path:
    """The Python of a venv with MLflow `old` (made once per machine, under /var/tmp)."""
    venv = Path(f"/var/tmp/mlstack-old-mlflow-{old}")
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pins = [f"{name}=={version(name)}" for name in SHARED_PINS]
        cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
               f"mlflow=={old}", "boto3", *pins, *EXTRA_PINS.get(old, [])]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"pip could not install MLflow {old}: {result.stderr[-1500:]}")
        stamp.touch()
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def old_pythons() -> dict[str, Path]:
    """Every old version's venv, installed side by side (each pip run waits on the network
    and on unpacking, so two at once take little longer than one)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(OLD_VERSIONS)) as pool:
        return dict(zip(OLD_VERSIONS, pool.map(old_mlflow, OLD_VERSIONS), strict=True))


@pytest.fixture(scope="module")
def wine_csv_path(tmp_path_factory) -> Path:
    """The team's wine CSV, else a generated one."""
    if SHARED_WINE_CSV.exists():
        return SHARED_WINE_CSV
    return write_uci_csv(make_wine_frame(1600, seed=5), tmp_path_factory.mktemp("d") / "w.csv")


def _stack_cli(state: Path, *args: str):
    return run_entry(["-m", "mlstack.stack", *args, "--state-dir", str(state)], dict(os.environ))


@pytest.mark.parametrize("old", OLD_VERSIONS)
def test_a_store_made_by_an_older_mlflow_is_upgraded_once_with_a_backup(
    old: str, old_pythons: dict[str, Path], tmp_path: Path, wine_csv_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    python = old_pythons[old]
    state = stack_state_dir()
    stack = NativeStack(StackConfig(state_dir=state, **find_free_ports(), timeout_s=120))
    try:
        # The stores, then the OLD server on them, as that team ran it.
        stack.config.logs.mkdir(parents=True, exist_ok=True)
        stack.config.save()
        stack.postgres.start()
        stack.s3.start()
        server_env = stack.mlflow.server_env()
        cmd = [str(python.parent / "mlflow"), "server",
               "--backend-store-uri", stack.postgres.backend_store_uri,
               "--artifacts-destination", stack.mlflow.artifacts_destination,
               "--serve-artifacts", "--host", "127.0.0.1",
               "--port", str(stack.config.mlflow_port), "--workers", "1"]  # fmt: skip
        out = tmp_path / "logged.json"
        with old_server(cmd, server_env, stack.config.tracking_uri, old):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
            env |= {"MLFLOW_TRACKING_URI": stack.config.tracking_uri, "GIT_PYTHON_REFRESH": "quiet"}
            result = subprocess.run(
                [str(python), str(HERE / "old_client.py"), str(wine_csv_path), str(out)],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
        logged = json.loads(out.read_text())
        assert logged["mlflow_version"] == old
        old_revision = stack_revision(stack)
        assert old_revision != head_revision()

        # Today's `up`: a backup, then the upgrade, both said.
        up = _stack_cli(state, "up")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert f"upgrading the schema {old_revision} -> {head_revision()}" in up.stdout
        backups = list((state / "backups").iterdir())
        assert len(backups) == 1 and backups[0].name.startswith(f"pre-upgrade-{old_revision}")
        manifest = read_manifest(backups[0])
        assert manifest.schema_revision == old_revision
        assert manifest.counts["runs"] == 4 and manifest.counts["model_versions"] == 3
        assert stack_revision(stack) == head_revision()
        log = stack.mlflow.log_file.read_text()
        assert "mlflow db upgrade (exit 0)" in log and "Updating database tables" in log
        # Once: a restart finds nothing to upgrade and takes no second backup.
        stack.stop_service("mlflow")
        again = _stack_cli(state, "up")
        assert again.returncode == 0 and "upgrading" not in again.stdout, again.stdout
        assert len(list((state / "backups").iterdir())) == 1

        # Everything is still there.
        client = MlflowClient(stack.config.tracking_uri, registry_uri=stack.config.tracking_uri)
        for run_id, expected in logged["runs"].items():
            run = client.get_run(run_id)
            assert run.data.params["alpha"] == expected["alpha"]
            assert run.data.tags["made_by"] == old
            history = sorted(client.get_metric_history(run_id, "rmse"), key=lambda m: m.step)
            assert [m.value for m in history] == pytest.approx(expected["rmse"])
            files = {a.path for a in client.list_artifacts(run_id, "")}
            # MLflow 2 kept the model in the run's files; 3 keeps it as a logged model.
            assert files >= ({"model", "notes.txt"} if old.startswith("2.") else {"notes.txt"})
        assert client.get_run(logged["deleted_run"]).info.lifecycle_stage == "deleted"
        versions = client.search_model_versions("name='wine'")
        assert {v.version: v.run_id for v in versions} == logged["versions"]
        champion = client.get_model_version_by_alias("wine", "champion")
        assert champion.version == logged["champion"]
        assert client.get_model_version_by_alias("wine", "challenger").version == "3"

        # models:/wine@champion serves what the old version's model predicted.
        port = free_port()
        serve = [sys.executable, "-m", "mlstack.serving", "--model-uri", "models:/wine@champion",
                 "--port", str(port)]  # fmt: skip
        senv = client_env(stack.config.tracking_uri, tmp_path, wine_csv_path)
        import pandas as pd

        rows = pd.read_csv(wine_csv_path, sep=";").drop(columns=["quality"]).head(5)
        body = {"dataframe_split": rows.to_dict(orient="split")}
        del body["dataframe_split"]["index"]
        with http_server(serve, senv, port, "our server on the upgraded store") as url:
            resp = requests.post(f"{url}/invocations", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        want = logged["runs"][champion.run_id]["predictions"]
        assert resp.json()["predictions"] == pytest.approx(want)
    finally:
        stack.down(purge=True)


@contextmanager
def old_server(cmd: list[str], env: dict[str, str], url: str, old: str) -> Iterator[None]:
    """The old `mlflow server` (it runs gunicorn or uvicorn as a child): started in its own
    process group, waited on until /health answers, and the whole group stopped after."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            try:
                wait_for_http(f"{url}/health", 180, f"MLflow {old} server")
            except pytest.fail.Exception:
                log.seek(0)
                pytest.fail(f"MLflow {old} server did not come up: {log.read().decode()[-1500:]}")
            yield
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            wait_for(lambda: port_free(int(url.rsplit(":", 1)[1])), 30, "the old server's port")


def stack_revision(stack: NativeStack) -> str:
    """The MLflow database's alembic revision now."""
    from mlstack.stack.backup import schema_revision

    revision = schema_revision(stack.store_access())
    assert revision
    return revision
