"""`mlflow run` with MLproject's docker_env on a real engine, logging to the native stack
(PostgreSQL + S3 + MLflow server on the host's 127.0.0.1), exactly as the README says:

    mlflow run . -A network=host -P alpha=0.5
    mlflow run git://HOST/REPO -v REF -A network=host -P alpha=0.5

plus the stale-code guard, and the same params giving the same metrics natively and in the
container.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from mlstack.stack import NativeStack, free_port
from tests.docker.conftest import host_env, source_commit
from tests.docker.engine import DOCKER_HOST
from tests.helpers import PROJ_ROOT, run_entry, wait_for

pytestmark = pytest.mark.docker

MLFLOW = str(Path(sys.executable).parent / "mlflow")


@pytest.fixture
def env(native_stack: NativeStack, tmp_path: Path, data_dir: Path) -> dict[str, str]:
    """A host shell with MLFLOW_TRACKING_URI set to the stack, and the private engine."""
    return host_env(native_stack.config.tracking_uri, tmp_path, data_dir)


def mlflow_run(uri: str, env: dict[str, str], data_dir: Path, *args: str, timeout: float = 600):
    """`mlflow run URI -A network=host ...`, with the data directory mounted read-only."""
    return subprocess.run(
        [MLFLOW, "run", uri, "-A", "network=host", "-A", f"volume={data_dir}:/data:ro", *args],
        cwd=PROJ_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def only_run(env: dict[str, str], experiment: str) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def run_wine_in_the_image(env: dict[str, str], data_dir: Path, experiment: str):
    """`mlflow run . -A network=host -P alpha=0.5` on the mounted data; the FINISHED run."""
    proc = mlflow_run(
        ".", env, data_dir, "--experiment-name", experiment,
        "-P", "alpha=0.5", "-P", "data=/data/winequality-red.csv",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(env, experiment)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.5" and run.data.params["l1_ratio"] == "0.5"
    return run


def test_mlflow_run_dot_in_the_image_matches_the_native_run(
    train_image: str, env: dict[str, str], data_dir: Path
) -> None:
    experiment = f"docker-{uuid.uuid4().hex[:8]}"
    run = run_wine_in_the_image(env, data_dir, experiment)
    assert run.data.tags["mlflow.project.env"] == "docker"
    assert run.data.tags["mlstack.image.commit"] == source_commit()[0]

    native = run_entry(
        ["train.py", "--alpha", "0.5", "--l1-ratio", "0.5",
         "--data", str(data_dir / "winequality-red.csv"), "--experiment", experiment + "-native"],
        env,
    )  # fmt: skip
    assert native.returncode == 0, native.stderr[-2000:]
    native_run = only_run(env, experiment + "-native")
    keys = ("rmse", "mae", "r2")
    assert {k: run.data.metrics[k] for k in keys} == {k: native_run.data.metrics[k] for k in keys}


def test_an_image_from_another_commit_is_refused_and_the_run_fails(
    train_image: str, env: dict[str, str], data_dir: Path
) -> None:
    experiment = f"stale-{uuid.uuid4().hex[:8]}"
    # Stand in for an image built before the last commit: override the commit it carries.
    env = env | {"MLSTACK_IMAGE_COMMIT": "0" * 40}
    proc = mlflow_run(
        ".", env, data_dir, "--experiment-name", experiment, "-A", "env=MLSTACK_IMAGE_COMMIT",
        "-P", "data=/data/winequality-red.csv",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "rebuild it with `make image`" in proc.stderr
    assert only_run(env, experiment).info.status == "FAILED"


@pytest.fixture(scope="module")
def git_daemon(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """This checkout's commits served by `git daemon` on loopback; yields (url, branch)."""
    base = tmp_path_factory.mktemp("git-daemon")
    bare = base / "mlstack.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(PROJ_ROOT), str(bare)], check=True)
    branch = "mlflow-run-test"
    commit = source_commit()[0]
    subprocess.run(["git", "-C", str(bare), "branch", "-f", branch, commit], check=True)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(listening, 30, "git daemon")
        yield f"git://127.0.0.1:{port}/mlstack.git", branch
    finally:
        daemon.terminate()
        daemon.wait(10)


def test_mlflow_run_from_a_git_url(
    train_image: str, env: dict[str, str], data_dir: Path, git_daemon: tuple[str, str]
) -> None:
    url, branch = git_daemon
    experiment = f"git-{uuid.uuid4().hex[:8]}"
    proc = mlflow_run(
        url, env, data_dir, "-v", branch, "--experiment-name", experiment,
        "-P", "alpha=0.3", "-P", "l1_ratio=0.2", "-P", "data=/data/winequality-red.csv",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(env, experiment)
    assert run.info.status == "FINISHED"
    assert (run.data.params["alpha"], run.data.params["l1_ratio"]) == ("0.3", "0.2")
    assert run.data.tags["mlflow.source.git.commit"] == source_commit()[0]
    assert run.data.tags["mlflow.source.git.branch"] == branch


def test_digits_entry_point_in_the_image(train_image: str, env: dict[str, str], data_dir) -> None:
    experiment = f"digits-{uuid.uuid4().hex[:8]}"
    proc = mlflow_run(
        ".", env, data_dir, "-e", "digits", "--experiment-name", experiment, "-P", "epochs=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(env, experiment)
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"
    assert run.data.metrics["test_accuracy"] > 0.8


def test_without_a_server_the_embedded_store_is_refused_or_used(
    train_image: str, data_dir: Path, tmp_path: Path
) -> None:
    # A clean clone as the working directory, so MLflow's default store lands there.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJ_ROOT), str(clone)], check=True)
    # A shell with no MLflow settings at all (in-process training earlier in this session
    # leaves MLFLOW_EXPERIMENT_ID behind, which `mlflow run` would obey).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
    env |= {"DOCKER_HOST": DOCKER_HOST, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [MLFLOW, "run", ".", "-A", "network=host", "-A", f"volume={data_dir}:/data:ro",
         "-P", "data=/data/winequality-red.csv"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{clone}/mlflow.db")
    runs = client.search_runs(["0"])
    assert len(runs) == 1, proc.stderr[-3000:]
    (run,) = runs
    if os.geteuid() == 1000:  # the container's uid owns the store: it simply works
        assert proc.returncode == 0 and run.info.status == "FINISHED", proc.stderr[-2000:]
        return
    assert proc.returncode != 0
    assert "cannot write the embedded store" in proc.stderr and "make stack-up" in proc.stderr
    assert run.info.status == "FAILED"
