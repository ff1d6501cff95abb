"""The native launcher's preflight, without starting services: a taken port or a missing
binary stops `up` with one line naming the fix, before anything is started."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from mlstack.stack import find_free_ports
from tests.helpers import run_entry

STACK = ["-m", "mlstack.stack"]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _one_error_line(proc, code: int) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m mlstack.stack: error: ")
    return lines[0]


def test_taken_port_is_named_with_its_flag(state: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = find_free_ports()  # so only the taken one can be the complaint
        args = ["--pg-port", str(others["pg_port"]), "--s3-port", str(others["s3_port"])]
        proc = run_entry(
            [*STACK, "up", "--state-dir", str(state), "--mlflow-port", str(port), *args], None
        )
    line = _one_error_line(proc, 2)  # bad input: the fix is an option
    assert f"port {port} (mlflow) on 127.0.0.1 is already in use" in line
    assert "--mlflow-port" in line
    assert not (state / "pids.json").exists()  # nothing was started


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("MLSTACK_PG_BIN", "holds no initdb; point it at PostgreSQL's bin/ directory"),
        ("MLSTACK_WEED_BIN", "SeaweedFS `weed` binary not found; run `make setup`"),
    ],
)
def test_missing_binary_is_named_before_anything_starts(
    state: Path, variable: str, expected: str
) -> None:
    env = os.environ | {variable: "/nonexistent/bin"}
    # Free ports, so the binary must be what is named, whatever holds the default ports here.
    ports = [f"--{k.replace('_', '-')}={v}" for k, v in find_free_ports().items()]
    proc = run_entry([*STACK, "up", "--state-dir", str(state), *ports], env)
    assert expected in _one_error_line(proc, 1)  # a service cannot start
    assert not (state / "pids.json").exists()


def test_status_and_env_of_a_stopped_stack(state: Path) -> None:
    proc = run_entry([*STACK, "status", "--state-dir", str(state), "--mlflow-port", "5123"], None)
    assert proc.returncode == 0
    assert [ln.split()[1] for ln in proc.stdout.splitlines()] == ["stopped"] * 3
    env = run_entry([*STACK, "env", "--state-dir", str(state), "--mlflow-port", "5123"], None)
    assert env.stdout.strip() == "export MLFLOW_TRACKING_URI=http://127.0.0.1:5123"
