"""Failure modes of the stack, each on real services: a wrong database password, S3 down,
a missing bucket, a server that is not there. Each must fail fast with one clear line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from mlstack.stack import NativeStack
from tests.helpers import run_entry
from tests.integration.conftest import client_env, pg_rows, running_stack

pytestmark = pytest.mark.integration

STACK_CLI = ["-m", "mlstack.stack"]


@pytest.fixture(scope="module")
def doomed() -> Iterator[NativeStack]:
    """A stack of this module's own: these tests break it on purpose."""
    with running_stack() as stack:
        yield stack


def _timed(args: list[str], env: dict | None = None):
    started = time.monotonic()
    proc = run_entry(args, env, timeout=180)
    return proc, time.monotonic() - started


def _stderr_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "View " not in ln]
    assert lines, proc.stdout
    return lines[-1]


def test_wrong_database_password_is_named_by_the_launcher(doomed: NativeStack) -> None:
    creds_file = doomed.state / "credentials.json"
    original = creds_file.read_text()
    creds_file.write_text(json.dumps(json.loads(original) | {"db_password": "not-the-password"}))
    try:
        proc, seconds = _timed([*STACK_CLI, "up", "--state-dir", str(doomed.state)])
    finally:
        creds_file.write_text(original)
    assert proc.returncode == 1  # a service failed (2 is for a bad option)
    line = _stderr_line(proc)
    assert "PostgreSQL refused user 'mlflow'" in line and "password authentication failed" in line
    assert "credentials.json" in line
    assert seconds < 30


def test_missing_bucket_is_named_by_the_launcher(doomed: NativeStack) -> None:
    proc, seconds = _timed(
        [*STACK_CLI, "status", "--state-dir", str(doomed.state), "--bucket", "no-such-bucket"]
    )
    assert "bucket 'no-such-bucket' does not exist" in proc.stdout
    assert seconds < 30


def test_client_fails_fast_when_the_server_is_absent(wine_csv) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env |= {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLSTACK_WINE_DATA": str(wine_csv)}
    proc, seconds = _timed(["train.py"], env)
    assert proc.returncode == 2
    line = _stderr_line(proc)
    assert "tracking server http://127.0.0.1:9 is not reachable (connection refused)" in line
    assert seconds < 30


def test_client_fails_fast_when_s3_is_down(doomed: NativeStack, tmp_path, wine_csv) -> None:
    env = client_env(doomed.config.tracking_uri, tmp_path, wine_csv)
    doomed.stop_service("s3")
    try:
        proc, seconds = _timed(["train.py"], env)
        status = run_entry([*STACK_CLI, "status", "--state-dir", str(doomed.state)], None)
    finally:
        doomed.start_service("s3")
    assert proc.returncode == 1
    assert "its S3 artifact store may be down" in _stderr_line(proc)
    assert seconds < 60
    assert "s3        stopped" in status.stdout
    # The run that had started is FAILED, not left RUNNING.
    assert pg_rows(doomed, "SELECT status FROM runs") == [("FAILED",)]


def test_client_fails_fast_when_the_bucket_is_gone(doomed: NativeStack, tmp_path, wine_csv) -> None:
    s3 = doomed.s3_client()
    bucket = doomed.config.bucket
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]:
        s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)
    try:
        env = client_env(doomed.config.tracking_uri, tmp_path, wine_csv)
        proc, seconds = _timed(["train.py"], env)
        status = run_entry([*STACK_CLI, "status", "--state-dir", str(doomed.state)], None)
    finally:
        s3.create_bucket(Bucket=bucket)
    assert f"unhealthy: bucket '{bucket}' does not exist" in status.stdout
    assert proc.returncode == 1
    assert "could not store an artifact" in _stderr_line(proc)
    assert seconds < 60
