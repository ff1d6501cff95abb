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


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["backup"], "backup needs --to DIR"),
        (["restore"], "restore needs --from DIR"),
        (["gc"], "gc needs --older-than"),
        (["gc", "--older-than", "30 days"], "e.g. 30d"),
        (["up", "--pipelines", "--gc-older-than", "a month"], "--gc-older-than 'a month'"),
        (["up", "--artifacts", "ftp"], "invalid choice: 'ftp'"),
        (["gc", "--older-than", "99999999999d"], "e.g. 30d"),
        (["up", "--pipelines", "--gc-older-than", "30d", "--gc-every", "0"], "hours > 0"),
    ],
)
def test_data_commands_with_bad_input_say_what_to_give(state: Path, args, says: str) -> None:
    proc = run_entry([*STACK, *args, "--state-dir", str(state)], None)
    assert says in _one_error_line(proc, 2)
    assert not (state / "pids.json").exists()  # nothing was started


def test_backup_and_gc_of_a_stopped_stack_say_to_start_it(state: Path, tmp_path: Path) -> None:
    for args in (["backup", "--to", str(tmp_path / "b")], ["gc", "--older-than", "30d"]):
        line = _one_error_line(run_entry([*STACK, *args, "--state-dir", str(state)], None), 2)
        assert "start it with `up`" in line
    assert not (tmp_path / "b").exists()


def test_a_backup_without_its_manifest_is_not_a_backup(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "databases").mkdir()
    from mlstack.stack.backup import StackUsageError, verify

    with pytest.raises(StackUsageError, match="not a complete backup"):
        verify(tmp_path / "half", echo=print)


def test_one_maintenance_command_at_a_time(tmp_path: Path) -> None:
    from mlstack.stack.backup import BackupLock, StackUsageError

    with BackupLock(tmp_path, "backup").held():
        with pytest.raises(StackUsageError, match=r"backup is running on this stack \(pid \d+\)"):
            with BackupLock(tmp_path, "gc").held():
                pass
    with BackupLock(tmp_path, "gc").held():  # released with its holder
        pass


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            {"databases": {"x; DROP": {"file": "databases/x.dump", "size": 1, "sha256": "0"}}},
            "not one backup writes",
        ),
        (
            {"databases": {"mlflow": {"file": "../../etc/passwd", "size": 1, "sha256": "0"}}},
            "not one backup writes",
        ),
        ({"objects": [{"key": "k", "size": 1, "sha256": "../x"}]}, "not one backup writes"),
        ({"unexpected": 1}, "cannot read"),
    ],
)
def test_a_manifest_naming_what_backup_never_writes_is_refused(tmp_path: Path, edit, says) -> None:
    import hashlib
    import json

    from mlstack.stack.backup import FORMAT, StackUsageError, read_manifest

    data = {"created_at": "t", "mlflow_version": "3", "schema_revision": None, "bucket": "b",
            "format": FORMAT, **edit}  # fmt: skip
    text = json.dumps(data)
    (tmp_path / "manifest.json").write_text(text)
    (tmp_path / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest())
    with pytest.raises(StackUsageError, match=says):
        read_manifest(tmp_path)


def test_age_parsing_matches_mlflow_gc() -> None:
    from datetime import timedelta

    from mlstack.stack.gc import parse_age

    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("1d2h3m4s") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert parse_age("0.5d") == timedelta(hours=12)


def test_bucket_prefix_of_a_logged_model_is_its_whole_folder() -> None:
    from mlstack.stack.gc import bucket_prefix

    loc = "mlflow-artifacts:/2/models/m-abc/artifacts"
    assert bucket_prefix(loc, "artifacts") == "artifacts/2/models/m-abc/"
    assert bucket_prefix("s3://elsewhere/x", "artifacts") is None  # not ours to delete
