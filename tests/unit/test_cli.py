"""Entry points as a user runs them: bad input exits 2 with one line and leaves no run behind;
an interrupted run ends FAILED, never RUNNING; promote refuses unknown models and versions."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from mlstack.settings import Settings
from mlstack.tracking import tracking_client
from tests.helpers import PROJ_ROOT, make_wine_frame, run_entry, wait_for, write_uci_csv

pytestmark = pytest.mark.slow

PROMOTE = ["-m", "mlstack.promote"]


def _runs(settings: Settings) -> list:
    """Every run in the embedded store, in any experiment (none if the store was never made)."""
    if not (settings.store_dir / "mlflow.db").exists():
        return []
    client = tracking_client(settings)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def _assert_one_line_usage_error(proc: subprocess.CompletedProcess[str], prog: str, text: str):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prog}: error: ")
    assert text in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    schema = write_uci_csv(make_wine_frame(30).drop(columns=["alcohol"]), tmp_path / "schema.csv")
    unreadable = tmp_path / "locked.csv"
    unreadable.write_bytes(b"\x00\x01\x02")
    np.savez(tmp_path / "bad.npz", images=np.zeros((3, 8, 8)))
    return {"schema": schema, "unreadable": unreadable, "npz": tmp_path / "bad.npz"}


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["train.py", "--alpha", "-1"], "--alpha must be a number >= 0"),
        (["train.py", "--alpha", "abc"], "invalid float value: 'abc'"),
        (["train.py", "--l1-ratio", "1.5"], "--l1-ratio must be within [0, 1]"),
        (["train.py", "--l1-ratio", "-0.5"], "--l1-ratio must be within [0, 1]"),
        (["train.py", "--data", "/no/such/wine.csv"], "/no/such/wine.csv does not exist"),
        (["train.py", "--data", "{schema}"], "lacks column(s) 'alcohol'"),
        (["train.py", "--data", "{unreadable}"], "wine data"),
        (["train.py", "--register-as", "a/b"], "invalid model name 'a/b'"),
        (["train.py", "--bogus"], "unrecognized arguments: --bogus"),
        (["train_digits.py", "--epochs", "0"], "--epochs must be >= 1"),
        (["train_digits.py", "--epochs", "1.5"], "invalid int value"),
        (["train_digits.py", "--learning-rate", "-1"], "--learning-rate must be > 0"),
        (["train_digits.py", "--data", "{npz}"], "expected x_train, y_train, x_test, y_test"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_run(
    args: list[str], text: str, bad_files: dict[str, Path], cli_env: dict, settings: Settings
) -> None:
    argv = [a.format(**bad_files) for a in args]
    proc = run_entry(argv, cli_env)
    _assert_one_line_usage_error(proc, argv[0], text)
    assert _runs(settings) == []


def test_promote_refuses_unknown_model_and_version(cli_env: dict, settings: Settings) -> None:
    trained = run_entry(["train.py", "--register-as", "wine"], cli_env)
    assert trained.returncode == 0, trained.stderr
    assert "registered wine version 1 as challenger; no champion yet" in trained.stdout

    proc = run_entry([*PROMOTE, "--name", "vine", "--version", "1"], cli_env)
    _assert_one_line_usage_error(proc, "python -m mlstack.promote", "'vine' not found")
    proc = run_entry([*PROMOTE, "--name", "wine", "--version", "7"], cli_env)
    _assert_one_line_usage_error(proc, "python -m mlstack.promote", "no version 7 (versions: 1)")
    proc = run_entry([*PROMOTE, "--name", "wine"], cli_env)
    _assert_one_line_usage_error(proc, "python -m mlstack.promote", "--version")

    ok = run_entry([*PROMOTE, "--name", "wine", "--version", "1", "--alias", "prod"], cli_env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "wine@prod now points at v1 (was unset)"


def test_training_on_a_new_store_prints_no_mlflow_chatter(
    cli_env: dict, settings: Settings
) -> None:
    # MLflow logs "Creating initial MLflow database tables..." at INFO when it makes a store.
    assert not (settings.store_dir / "mlflow.db").exists()
    proc = run_entry(["train.py"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert (settings.store_dir / "mlflow.db").exists()
    assert "Creating initial MLflow database tables" not in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if " INFO mlflow" in line], proc.stderr
    assert proc.stdout.splitlines()[0].startswith("run ")


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_interrupted_training_ends_failed_not_running(
    sig: signal.Signals, code: int, cli_env: dict, settings: Settings
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "train_digits.py", "--epochs", "500", "--register-as", "digits"],
        cwd=PROJ_ROOT,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until an epoch has been logged: the run exists and training is under way. Read
        # the database read-only: an MlflowClient here could race the child's schema migration.
        def training() -> bool:
            db = settings.store_dir / "mlflow.db"
            if not db.exists():
                return False
            try:
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                    query = "SELECT count(*) FROM metrics WHERE key = 'loss'"
                    return conn.execute(query).fetchone()[0] > 0
            except sqlite3.OperationalError:  # tables not created yet
                return False

        wait_for(training, timeout=120, what="the digits run to log its first epoch")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    (run,) = _runs(settings)
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    # Nothing half-registered: the model never reached the registry.
    client = tracking_client(settings)
    assert client.search_registered_models() == []
